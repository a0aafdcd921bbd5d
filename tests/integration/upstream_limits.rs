//! Limits on what upstreams can do to a run: redirects are not followed, oversize bodies are
//! refused, and with the address policy on, hosts that resolve to private addresses are
//! never connected to (SSRF).

use crate::common::{
    assert_envelope, composite_scope, counting_listener, json_route, resolver_flags,
    spawn_app_with, upstream, AppOptions, Log, NETWORK_SCOPE,
};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde_json::json;

const MIB: usize = 1024 * 1024;

#[actix_web::test]
async fn redirects_are_not_followed_and_no_location_is_returned() {
    let up = upstream(|cfg| {
        cfg.route(
            "/redirect",
            web::route().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    let target = format!("http://{}/target", req.connection_info().host());
                    HttpResponse::Found()
                        .insert_header(("Location", target))
                        .content_type("text/plain")
                        .body("moved")
                },
            ),
        )
        .route(
            "/temporary",
            web::route().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::TemporaryRedirect()
                        .insert_header(("Location", "/target"))
                        .finish()
                },
            ),
        )
        .route(
            "/target",
            web::route().to(json_route(200, json!({"hit": true}))),
        );
    })
    .await;
    let registry = json!({
        "connectors": [
            {"name": "Redirect", "permalink": "redirect", "url": format!("{}/redirect", up.base)},
            {"name": "Temporary", "permalink": "temporary", "method": "POST",
             "url": format!("{}/temporary", up.base), "request_body": "x"}
        ],
        "composite_connectors": [{"name": "C", "permalink": "c", "steps": [
            {"name": "first", "url": format!("{}/redirect", up.base)},
            {"name": "second", "url": format!("{}/echo-status", up.base), "method": "POST",
             "request_body": "{{ steps.first.status_code }}"}
        ]}]
    });
    let app = spawn_app_with(registry, AppOptions::default()).await;
    let reply = app.execute("redirect").await;
    assert_eq!(reply.status, 302, "{}", reply.text());
    assert_eq!(reply.header("location"), None);
    assert_eq!(reply.text(), "moved");
    let reply = app
        .call("POST", "/connectors/temporary/execute", Some(""), &[])
        .await;
    assert_eq!(reply.status, 307, "{}", reply.text());
    assert_eq!(reply.header("location"), None);
    // In a composite, a 3xx is a step result like any other.
    let reply = app.composite("c", "", "").await;
    assert_eq!(reply.status, 502, "{}", reply.text()); // /echo-status does not exist: 404
    assert_eq!(up.log.to("/echo-status")[0].body, "302");
    assert_eq!(
        up.log.count("/target"),
        0,
        "the redirect target must never be hit"
    );
}

fn big_body_registry(base: &str) -> serde_json::Value {
    json!({
        "connectors": [
            {"name": "Big", "permalink": "big", "url": format!("{base}/big")},
            {"name": "Big chunked", "permalink": "big-chunked", "url": format!("{base}/big-chunked")},
            {"name": "Fits", "permalink": "fits", "url": format!("{base}/fits")}
        ],
        "composite_connectors": [{"name": "C big", "permalink": "c-big", "steps": [
            {"name": "first", "url": format!("{base}/fits")},
            {"name": "second", "url": format!("{base}/big")}
        ]}]
    })
}

#[actix_web::test]
async fn an_upstream_body_over_max_response_bytes_is_a_502() {
    let up = upstream(|cfg| {
        cfg.route(
            "/big",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::Ok()
                        .content_type("application/octet-stream")
                        .body(vec![b'x'; 2 * MIB])
                },
            ),
        )
        .route(
            "/big-chunked",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    let chunks = (0..32)
                        .map(|_| Ok::<_, actix_web::Error>(Bytes::from(vec![b'y'; 64 * 1024])));
                    HttpResponse::Ok()
                        .content_type("application/octet-stream")
                        .streaming(futures_util::stream::iter(chunks))
                },
            ),
        )
        .route(
            "/fits",
            web::get().to(
                |req: HttpRequest, body: Bytes, log: web::Data<Log>| async move {
                    log.record(&req, &body);
                    HttpResponse::Ok()
                        .content_type("text/plain")
                        .body(vec![b'z'; MIB - 1024])
                },
            ),
        );
    })
    .await;
    let app = spawn_app_with(
        big_body_registry(&up.base),
        AppOptions::default().flags(|f| f.max_response_bytes = MIB),
    )
    .await;
    for permalink in ["big", "big-chunked"] {
        let reply = app.execute(permalink).await;
        assert_envelope(
            &reply,
            502,
            "DOWNSTREAM_RESPONSE_TOO_LARGE",
            Some(NETWORK_SCOPE),
        );
        assert!(
            reply.body.len() < 4096,
            "{permalink}: the body must not be relayed"
        );
    }
    let reply = app.composite("c-big", "", "").await;
    assert_envelope(
        &reply,
        502,
        "DOWNSTREAM_RESPONSE_TOO_LARGE",
        Some(&composite_scope("second", 1, NETWORK_SCOPE)),
    );
    let fits = app.execute("fits").await;
    assert_eq!(fits.status, 200);
    assert_eq!(fits.body.len(), MIB - 1024);
}

#[actix_web::test]
async fn with_the_address_policy_on_private_upstreams_are_never_connected_to() {
    let listener = counting_listener().await;
    let port = listener.port;
    let internal = format!("https://internal.test:{port}");
    let registry = json!({
        "connectors": [
            {"name": "Internal", "permalink": "internal", "url": format!("{internal}/secret")},
            {"name": "Loopback literal", "permalink": "loopback-literal",
             "url": format!("https://127.0.0.1:{port}/secret")},
            {"name": "Decimal literal", "permalink": "decimal-literal",
             "url": format!("https://2130706433:{port}/secret")},
            {"name": "Mapped literal", "permalink": "mapped-literal",
             "url": format!("https://[::ffff:127.0.0.1]:{port}/secret")},
            {"name": "Ipv6 literal", "permalink": "ipv6-literal",
             "url": format!("https://[::1]:{port}/secret")},
            {"name": "Hex literal", "permalink": "hex-literal",
             "url": format!("https://0x7f000001:{port}/secret")},
            {"name": "Short literal", "permalink": "short-literal",
             "url": format!("https://127.1:{port}/secret")},
            {"name": "Localhost", "permalink": "localhost",
             "url": format!("https://localhost:{port}/secret")},
            {"name": "Internal token", "permalink": "internal-token",
             "url": "https://public.test/data",
             "authentication": {"type": "oauth_client_credentials", "config": {
                 "client_id": "cid", "client_secret": "cs",
                 "token_url": format!("{internal}/oauth/token")}}}
        ],
        "composite_connectors": [{"name": "C internal", "permalink": "c-internal", "steps": [
            {"name": "probe", "url": format!("{internal}/meta"), "method": "POST"}
        ]}]
    });
    let app = spawn_app_with(
        registry,
        AppOptions::default().flags(resolver_flags(false, ["internal.test=127.0.0.1"], 2_000)),
    )
    .await;
    for permalink in [
        "internal",
        "loopback-literal",
        "decimal-literal",
        "mapped-literal",
        "ipv6-literal",
        "hex-literal",
        "short-literal",
        "localhost",
        "internal-token",
    ] {
        let reply = app.execute(permalink).await;
        assert_envelope(
            &reply,
            502,
            "UPSTREAM_ADDRESS_FORBIDDEN",
            Some(NETWORK_SCOPE),
        );
    }
    let reply = app.composite("c-internal", "", "").await;
    assert_envelope(
        &reply,
        502,
        "UPSTREAM_ADDRESS_FORBIDDEN",
        Some(&composite_scope("probe", 0, NETWORK_SCOPE)),
    );
    assert_eq!(listener.count(), 0, "a forbidden address was connected to");
}

#[actix_web::test]
async fn with_the_address_policy_on_plain_http_upstreams_do_not_load() {
    let registry = json!({"connectors": [
        {"name": "Plain", "permalink": "plain", "url": "http://internal.test/x"}
    ]});
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, registry.to_string()).unwrap();
    let args = connector_runtime::config::ServeArgs::for_registry(&path);
    let error = match connector_runtime::server::Application::build(args).await {
        Ok(_) => panic!("an http:// upstream loaded with the address policy on"),
        Err(e) => e.to_string(),
    };
    assert!(error.contains("https://"), "{error}");
}
