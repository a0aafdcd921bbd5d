//! Jinja2 fidelity through the real server (issue 18, docs/jinja2-differences.md): what
//! `--template-undefined strict|lenient` does to the requests an upstream receives in every
//! templated field (URL query, headers, authentication config, bodies, `response_body`,
//! `when`, `for_each`), that the load-time checks hold in both modes, that `connector-runtime
//! test` takes the flag too, and that the constructs the compatibility layer adds (`%`,
//! `str.format` specs, `filesizeformat`, `forceescape`, `xmlattr`, `pprint`,
//! `loop.previtem`, lists built with `{% set _ = l.append(x) %}`) reach the upstream as
//! Python's Jinja2 renders them.

use std::process::Command;

use actix_web::web;
use connector_runtime::registry::{build_registry, BuildOptions, CallerIdentity};
use connector_runtime::template::{RenderLimits, UndefinedMode};
use serde_json::{json, Value};

use crate::common::*;

/// An upstream with `GET /users` (three users, two active) and `ANY /echo`.
async fn api_upstream() -> Upstream {
    upstream(|cfg| {
        cfg.route(
            "/users",
            web::get().to(json_route(
                200,
                json!({"data": [
                    {"id": 1, "name": "ada", "active": true},
                    {"id": 2, "name": "bob", "active": false},
                    {"id": 3, "name": "cy", "active": true}
                ], "nickname_of": {"1": "countess"}}),
            )),
        )
        .route("/echo", web::route().to(echo_route()));
    })
    .await
}

/// The registry every test here serves; `base` is the upstream.
fn registry(base: &str) -> Value {
    json!({
        "connectors": [
            {
                // Query values, a header and the API key's value read request data that
                // may be missing; `q` is read the documented way (blank when missing).
                "name": "Search", "permalink": "search",
                "url": format!("{base}/echo"),
                "query_parameters": [
                    {"key": "page", "value": "{{ request.query_parameters['page'] }}"},
                    {"key": "q", "value": "{{ request.query_parameters.q }}"}
                ],
                "headers": [
                    {"key": "X-Sort", "value": "by-{{ request.query_parameters['sort'] }}"},
                    {"key": "X-Q", "value": "q={{ request.query_parameters.q | urlencode }}"}
                ],
                "authentication": {"type": "api_key", "config": {
                    "key": "X-Tenant", "value": "t-{{ request.query_parameters['tenant'] }}", "in": "header"}}
            },
            {
                // A response_body reading a key the upstream's answer lacks.
                "name": "Nickname", "permalink": "nickname",
                "url": format!("{base}/users"),
                "response_body": "{\"first\": \"{{ (response.body | from_json).data[0].name }}\", \"nickname\": \"{{ (response.body | from_json).nickname_of['2'] }}\"}",
                "response_content_type": "application/json"
            },
            {
                // The constructs the compatibility layer renders as Python does.
                "name": "Formats", "permalink": "formats", "method": "POST",
                "url": format!("{base}/echo"),
                "request_body": "{% set d = body_text | from_json %}{{ '%s has %d items (%.1f%%)' % (d.name, d['items'] | length, d.ratio * 100) }}|{{ '{:,} {:.1%} {:>6} {!r} {:x}'.format(d.total, d.ratio, d.name, d.name, 255) }}|{{ d.size | filesizeformat }} {{ d.size | filesizeformat(true) }}|{{ d.html | forceescape }}|<a{{ {'href': d.url, 'title': d.html, 'x': none} | xmlattr }}>|{% for i in d['items'] %}{{ loop.previtem | default('^') }}>{{ i }}{% if loop.nextitem is defined %},{% endif %}{% endfor %}|{{ d.nested | pprint }}"
            }
        ],
        "composite_connectors": [
            {
                // A JSON body built in a loop with append and update.
                "name": "Build", "permalink": "build",
                "steps": [
                    {"name": "users", "url": format!("{base}/users")},
                    {"name": "post", "method": "POST", "url": format!("{base}/echo"),
                     "headers": [{"key": "Content-Type", "value": "application/json"}],
                     "request_body": "{% set ids = [] %}{% set rank = {} %}{% for u in (steps.users.body | from_json).data if u.active %}{% set _ = ids.append(u.id) %}{% set _ = rank.update({u.name: loop.index}) %}{% endfor %}{{ {'ids': ids, 'rank': rank, 'count': ids | length} | tojson }}"}
                ]
            },
            {
                // `when` and `for_each` on a caller body that lacks what they read.
                "name": "Fan", "permalink": "fan",
                "steps": [
                    {"name": "maybe", "url": format!("{base}/echo"),
                     "when": "(request.body_text | from_json).flag"},
                    {"name": "each", "url": format!("{base}/echo"),
                     "for_each": "(request.body_text | from_json).ids",
                     "query_parameters": [{"key": "id", "value": "{{ item }}"}]}
                ]
            }
        ]
    })
}

async fn app(up: &Upstream, mode: UndefinedMode) -> TestApp {
    spawn_app_with(
        registry(&up.base),
        AppOptions::default().flags(move |args| args.template_undefined = mode),
    )
    .await
}

async fn search(app: &TestApp, query: &str) -> Reply {
    app.call(
        "GET",
        &format!("/connectors/search/execute{query}"),
        None,
        &[],
    )
    .await
}

#[actix_web::test]
async fn lenient_sends_a_missing_query_parameter_as_blank_text_in_query_header_and_auth() {
    let up = api_upstream().await;
    let app = app(&up, UndefinedMode::Lenient).await;
    let reply = search(&app, "?q=caf%C3%A9").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let received = up.log.to("/echo");
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(
        sent.query_pairs(),
        [
            ("page".to_string(), String::new()),
            ("q".to_string(), "café".to_string())
        ]
    );
    assert_eq!(sent.header("x-sort"), Some("by-"));
    assert_eq!(sent.header("x-q"), Some("q=caf%C3%A9"));
    assert_eq!(sent.header("x-tenant"), Some("t-"));
}

#[actix_web::test]
async fn strict_refuses_the_same_request_with_a_422_naming_the_field_and_sends_nothing() {
    let up = api_upstream().await;
    let app = app(&up, UndefinedMode::Strict).await;
    let reply = search(&app, "?q=x&sort=name&tenant=acme").await;
    let errors = assert_envelope(
        &reply,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some("Configuration (template rendering)"),
    );
    let detail = errors["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("query_parameters[0].value: ")
            && detail.contains("request.query_parameters['page']"),
        "{detail}"
    );
    assert_eq!(up.log.count("/echo"), 0, "nothing may be sent upstream");
    // With every value present the same connector runs.
    let reply = search(&app, "?page=2&sort=name&tenant=acme").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let sent = up.log.to("/echo").pop().unwrap();
    assert_eq!(
        sent.query_pairs(),
        [
            ("page".to_string(), "2".to_string()),
            ("q".to_string(), String::new())
        ],
        "a missing query parameter read as request.query_parameters.q stays blank in strict mode"
    );
    assert_eq!(sent.header("x-q"), Some("q="), "through | urlencode too");
    assert_eq!(sent.header("x-sort"), Some("by-name"));
    assert_eq!(sent.header("x-tenant"), Some("t-acme"));
}

#[actix_web::test]
async fn a_response_body_reading_a_missing_key_is_blank_in_lenient_and_a_422_in_strict() {
    let up = api_upstream().await;
    let lenient = app(&up, UndefinedMode::Lenient).await;
    let reply = lenient.execute("nickname").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json(), json!({"first": "ada", "nickname": ""}));
    let strict = app(&up, UndefinedMode::Strict).await;
    let errors = assert_envelope(
        &strict.execute("nickname").await,
        422,
        "RESPONSE_TEMPLATE_RENDERING_ERROR",
        Some("Configuration (response template rendering)"),
    );
    assert!(
        errors["detail"]
            .as_str()
            .unwrap()
            .starts_with("response_body: "),
        "{errors}"
    );
}

#[actix_web::test]
async fn a_list_built_with_append_in_a_loop_is_the_json_body_the_upstream_receives() {
    for mode in [UndefinedMode::Strict, UndefinedMode::Lenient] {
        let up = api_upstream().await;
        let app = app(&up, mode).await;
        let reply = app.composite("build", "", "").await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.text());
        let sent = up.log.to("/echo");
        assert_eq!(sent.len(), 1, "{mode:?}");
        assert_eq!(sent[0].method, "POST");
        let body: Value = serde_json::from_str(&sent[0].body).unwrap();
        assert_eq!(
            body,
            json!({"ids": [1, 3], "rank": {"ada": 1, "cy": 2}, "count": 2}),
            "{mode:?}"
        );
        // Python's key order of tojson (sorted), as Jinja2 sends it.
        assert_eq!(
            sent[0].body,
            r#"{"count": 2, "ids": [1, 3], "rank": {"ada": 1, "cy": 2}}"#
        );
    }
}

#[actix_web::test]
async fn python_formatting_filters_and_loop_neighbours_reach_the_upstream_as_jinja2_renders_them() {
    // The expected text is what Python's Jinja2 3.1.6 renders for this template and body.
    let caller_body = json!({
        "name": "Ada", "items": ["x", "y", "z"], "ratio": 0.4567, "total": 1234567,
        "size": 123456789, "html": "<b>\"Tom\" & 'Jerry'</b>", "url": "https://e.com/?a=1&b=2",
        "nested": {"b": [1, 2], "a": {"z": null, "y": true}}
    });
    let jinja2 = "Ada has 3 items (45.7%)|1,234,567 45.7%    Ada 'Ada' ff|123.5 MB 117.7 MiB|&lt;b&gt;&#34;Tom&#34; &amp; &#39;Jerry&#39;&lt;/b&gt;|<a href=\"https://e.com/?a=1&amp;b=2\" title=\"&lt;b&gt;&#34;Tom&#34; &amp; &#39;Jerry&#39;&lt;/b&gt;\">|^>x,x>y,y>z|{'a': {'y': True, 'z': None}, 'b': [1, 2]}";
    for mode in [UndefinedMode::Strict, UndefinedMode::Lenient] {
        let up = api_upstream().await;
        let app = app(&up, mode).await;
        let reply = app
            .call(
                "POST",
                "/connectors/formats/execute",
                Some(&caller_body.to_string()),
                &[("Content-Type", "application/json")],
            )
            .await;
        assert_eq!(reply.status, 200, "{mode:?}: {}", reply.text());
        assert_eq!(up.log.to("/echo").pop().unwrap().body, jinja2, "{mode:?}");
    }
}

#[actix_web::test]
async fn a_for_each_over_a_missing_list_calls_nothing_in_lenient_and_is_a_422_in_strict() {
    let up = api_upstream().await;
    let lenient = app(&up, UndefinedMode::Lenient).await;
    let reply = lenient.composite("fan", "", "{}").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    // `when` on a missing value is false in both modes (Jinja2's `{% if missing %}`), and
    // iterating a missing list gives no item: nothing was called.
    assert_eq!(up.log.count("/echo"), 0);
    assert_eq!(reply.text(), "[]");

    let strict = app(&up, UndefinedMode::Strict).await;
    let errors = assert_envelope(
        &strict.composite("fan", "", "{}").await,
        422,
        "TEMPLATE_RENDERING_ERROR",
        Some("Composite step 'each' (index 1): Configuration (template rendering)"),
    );
    assert!(
        errors["detail"]
            .as_str()
            .unwrap()
            .contains("for_each: yields an undefined value, not a list"),
        "{errors}"
    );
    assert_eq!(up.log.count("/echo"), 0);
    // Given the list, both modes call once per item.
    for app in [&lenient, &strict] {
        let reply = app
            .composite("fan", "", r#"{"flag": true, "ids": [7, 8]}"#)
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    let ids: Vec<String> = up.log.to("/echo").iter().map(|r| r.query.clone()).collect();
    assert_eq!(ids, ["", "id=7", "id=8", "", "id=7", "id=8"]);
}

#[test]
fn the_load_time_checks_reject_unknown_names_in_both_modes() {
    // Lenient prints a missing value blank at run time, but a typo that can be seen when the
    // registry loads is still refused: a step that does not exist, a variable no connector
    // has, an attribute `user` never has.
    let registry = json!({
        "connectors": [
            {"name": "A", "permalink": "a", "url": "https://api.example.com/a",
             "request_body": "{{ usr.email }}"},
            {"name": "B", "permalink": "b", "url": "https://api.example.com/b",
             "request_body": "{{ user.middle_name }}"}
        ],
        "composite_connectors": [{"name": "C", "permalink": "c", "steps": [
            {"name": "auth", "url": "https://api.example.com/t"},
            {"name": "next", "url": "https://api.example.com/n",
             "request_body": "{{ steps.auht.body }}"}
        ]}]
    });
    for mode in [UndefinedMode::Strict, UndefinedMode::Lenient] {
        let options = BuildOptions {
            identity: Some(CallerIdentity {
                user: true,
                tenant_id: true,
            }),
            limits: RenderLimits {
                undefined: mode,
                ..RenderLimits::default()
            },
            ..BuildOptions::default()
        };
        let report = build_registry(&registry.to_string(), &options)
            .expect_err("the registry must not load")
            .report
            .to_text();
        for expected in [
            "a › request_body: unknown variable 'usr'",
            "b › request_body: user has no attribute 'middle_name'",
            "c › next › request_body: there is no step 'auht'",
        ] {
            assert!(report.contains(expected), "{mode:?}: {expected}\n{report}");
        }
    }
}

#[test]
fn connector_runtime_test_takes_the_undefined_mode_from_its_flag_and_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let registry = json!({"connectors": [{
        "name": "Search", "permalink": "search", "url": "https://api.example.test/search",
        "query_parameters": [{"key": "page", "value": "{{ request.query_parameters['page'] }}"}]
    }]});
    let tests = json!({"tests": [{
        "name": "no page", "connector": "search",
        "mocks": {"search": {"body": {"ok": true}}},
        "expect": {"status": 200,
                   "requests": {"search": {"url": "https://api.example.test/search?page="}}}
    }]});
    std::fs::write(
        dir.path().join("connectors_registry.json"),
        registry.to_string(),
    )
    .unwrap();
    std::fs::write(dir.path().join("connectors_tests.json"), tests.to_string()).unwrap();
    let run = |args: &[&str], env: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_connector-runtime"));
        command
            .arg("test")
            .arg("--registry")
            .arg(dir.path().join("connectors_registry.json"))
            .args(args)
            .env_remove("CONNECTOR_RUNTIME_TEMPLATE_UNDEFINED");
        if let Some(mode) = env {
            command.env("CONNECTOR_RUNTIME_TEMPLATE_UNDEFINED", mode);
        }
        let output = command.output().expect("the binary runs");
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    };
    let (code, out) = run(&[], None);
    assert_eq!(code, Some(1), "strict by default: the case fails\n{out}");
    assert!(out.contains("status: expected 200, actual 422"), "{out}");
    let (code, out) = run(&["--template-undefined", "lenient"], None);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&[], Some("lenient"));
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = run(&["--template-undefined", "strict"], Some("lenient"));
    assert_eq!(code, Some(1), "the flag wins over the environment\n{out}");
}
