//! Large registries (issue 19): templates are checked when the registry loads and compiled on
//! their first render, the same text in the same field is one template, and plain text is
//! never compiled. What that must not change: each connector renders its own values, is
//! escaped for its own field and names its own field in errors; a template that is never
//! rendered still rejects the registry at load; a reload of many connectors keeps serving.

use std::time::Duration;

use crate::common::{assert_envelope, echo_upstream, spawn_app};
use connector_runtime::registry::{build_registry, BuildOptions, Severity};
use serde_json::{json, Value};

/// Simple connector `permalink` calling `url` with `headers` (key, value).
fn connector(permalink: &str, url: &str, headers: &[(&str, &str)]) -> Value {
    json!({
        "name": permalink, "permalink": permalink, "url": url,
        "path_parameters": [{"key": "id"}],
        "headers": headers.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>(),
    })
}

#[actix_web::test]
async fn connectors_with_the_same_template_text_render_their_own_values_and_escaping() {
    let up = echo_upstream().await;
    // The same text as both connectors' URL and as a header value of the second: one
    // template per field and text, so the URL percent-encodes what it interpolates and the
    // header sends it as it is.
    let same = format!("{}/echo?id={{{{ 'a b/' ~ pathParams.id }}}}", up.base);
    let registry = json!({"connectors": [
        connector("first", &same, &[("X-Id", "{{ pathParams.id }}")]),
        connector("second", &same, &[("X-Other", "plain"), ("X-Id", "{{ pathParams.id }}"), ("X-Url", &same)]),
    ]});
    let app = spawn_app(registry).await;
    for (permalink, id) in [("first", "x1"), ("second", "y-2"), ("first", "z_3")] {
        let reply = app
            .execute_with_path_params(permalink, &format!("id={id}"))
            .await;
        assert_eq!(reply.status, 200, "{permalink}: {}", reply.text());
        let received = up.log.all().pop().unwrap();
        assert_eq!(received.header("x-id"), Some(id), "{permalink}");
        assert_eq!(received.query, format!("id=a%20b%2F{id}"), "{permalink}");
        match permalink {
            "second" => {
                assert_eq!(received.header("x-other"), Some("plain"));
                assert_eq!(
                    received.header("x-url"),
                    Some(format!("{}/echo?id=a b/{id}", up.base).as_str())
                );
            }
            _ => assert_eq!(received.header("x-url"), None, "{permalink}"),
        }
    }
}

#[actix_web::test]
async fn a_shared_template_that_fails_names_the_field_of_the_connector_that_ran_it() {
    let up = echo_upstream().await;
    let url = format!("{}/echo", up.base);
    let failing = "{{ (body_text | from_json).missing.deeper }}";
    let registry = json!({"connectors": [
        connector("first", &url, &[("X-A", failing)]),
        connector("second", &url, &[("X-Plain", "1"), ("X-B", "ok"), ("X-A", failing)]),
    ]});
    let app = spawn_app(registry).await;
    for (permalink, field) in [
        ("second", "headers[2].value"),
        ("first", "headers[0].value"),
    ] {
        let reply = app
            .call(
                "GET",
                &format!("/connectors/{permalink}/execute"),
                None,
                &[("X-Path-Params", "id=1")],
            )
            .await;
        let envelope = assert_envelope(
            &reply,
            422,
            "TEMPLATE_RENDERING_ERROR",
            Some("Configuration (template rendering)"),
        );
        let message = envelope.to_string();
        assert!(
            message.contains(field),
            "{permalink} must name {field}: {message}"
        );
    }
    assert!(up.log.all().is_empty(), "nothing went upstream");
}

#[test]
fn a_template_no_run_has_rendered_still_rejects_the_registry_when_it_loads() {
    let options = BuildOptions {
        allow_http: true,
        ..BuildOptions::default()
    };
    let base = "http://127.0.0.1:9/echo";
    for bad in [
        "{{ pathParams.id ",
        "{% if pathParams.id %}unclosed",
        // Compiled from a rewritten text (`%` on a string), which is checked too.
        "{{ '%s' % pathParams.id }}{% endfor %}",
    ] {
        let registry = json!({"connectors": [
            connector("good", &format!("{base}?id={{{{ pathParams.id }}}}"), &[]),
            connector("bad", base, &[("X-Id", bad)]),
        ]});
        let rejected = build_registry(&registry.to_string(), &options)
            .expect_err(&format!("{bad} must be refused at load"));
        let errors: Vec<_> = rejected
            .report
            .problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
            .collect();
        assert!(
            errors.len() == 1
                && errors[0].connector == "bad"
                && errors[0].field == "headers[0].value",
            "{bad}: {errors:?}"
        );
    }
}

/// `n` connectors, each with its own URL text and the version in a header.
fn many(base: &str, n: usize, version: u32) -> Value {
    let connectors: Vec<Value> = (0..n)
        .map(|i| {
            connector(
                &format!("c-{i}"),
                &format!("{base}/echo?n={i}&id={{{{ pathParams.id }}}}"),
                &[
                    ("X-Version", &format!("{{{{ {version} }}}}")),
                    ("X-Shared", "{{ pathParams.id | upper }}"),
                ],
            )
        })
        .collect();
    json!({ "connectors": connectors })
}

#[actix_web::test]
async fn reloading_a_registry_of_many_connectors_keeps_serving_every_one_of_them() {
    const N: usize = 600;
    let up = echo_upstream().await;
    let app = spawn_app(many(&up.base, N, 1)).await;
    let base = app.base.clone();
    let caller = actix_rt::spawn(async move {
        let client = awc::Client::default();
        let mut seen = Vec::new();
        for i in 0..300 {
            let mut res = client
                .get(format!("{base}/connectors/c-{}/execute", (i * 7) % N))
                .insert_header(("X-Path-Params", "id=ab"))
                .send()
                .await
                .unwrap();
            let body: Value = res.json().await.unwrap_or(Value::Null);
            seen.push((res.status().as_u16(), body));
        }
        seen
    });
    actix_rt::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&app.registry_path, many(&up.base, N, 2).to_string()).unwrap();
    let mut versions = std::collections::BTreeSet::new();
    for (status, body) in caller.await.unwrap() {
        assert_eq!(status, 200, "a run failed during the reload: {body}");
        assert_eq!(body["headers"]["x-shared"], "AB", "{body}");
        versions.insert(body["headers"]["x-version"].as_str().unwrap().to_string());
    }
    // The watcher publishes the new registry; every connector serves it.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let reply = app.execute_with_path_params("c-599", "id=x").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        if reply.json()["headers"]["x-version"] == "2" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the edited registry was never served"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    for i in [0, 1, N / 2, N - 2] {
        let reply = app
            .execute_with_path_params(&format!("c-{i}"), "id=y")
            .await;
        let body = reply.json();
        assert_eq!(body["headers"]["x-version"], "2", "c-{i}: {body}");
        assert_eq!(body["query"], format!("n={i}&id=y"), "c-{i}: {body}");
    }
    assert!(versions.contains("1"), "{versions:?}");
}
