//! Starting the real server on port 0, and talking to it.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use bytes::Bytes;
use connector_runtime::config::ServeArgs;
use connector_runtime::registry::RegistryHandle;
use connector_runtime::server::{build_options, Application};
use connector_runtime::template::{
    new_environment, RenderLimits, SecretStore, TemplateSet, Variables,
};
use serde_json::Value;

/// A running connector-runtime.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// `http://127.0.0.1:PORT` of the separate metrics listener (`--metrics-listen`).
    pub metrics_base: Option<String>,
    /// The published registry.
    pub registry: RegistryHandle,
    /// Stops the server.
    pub handle: ServerHandle,
    /// The registry file.
    pub registry_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// How to start the app.
pub struct AppOptions {
    /// Secrets by name.
    pub secrets: Vec<(String, String)>,
    /// Variables (a JSON object).
    pub variables: Value,
    /// Adjusts the server flags.
    pub configure: Box<dyn FnOnce(&mut ServeArgs)>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            secrets: Vec::new(),
            variables: Value::Object(Default::default()),
            configure: Box::new(|_| {}),
        }
    }
}

impl AppOptions {
    /// With one secret.
    pub fn secret(mut self, name: &str, value: &str) -> Self {
        self.secrets.push((name.into(), value.into()));
        self
    }

    /// With flags adjusted by `f`.
    pub fn flags(mut self, f: impl FnOnce(&mut ServeArgs) + 'static) -> Self {
        self.configure = Box::new(f);
        self
    }

    /// With variables.
    pub fn variables(mut self, variables: Value) -> Self {
        self.variables = variables;
        self
    }
}

/// Starts the server on `registry` with private upstreams allowed (tests use loopback).
pub async fn spawn_app(registry: Value) -> TestApp {
    spawn_app_with(registry, AppOptions::default()).await
}

/// Starts the server with options.
pub async fn spawn_app_with(registry: Value, options: AppOptions) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("connectors_registry.json");
    std::fs::write(&path, serde_json::to_string_pretty(&registry).unwrap()).unwrap();
    let mut args = ServeArgs::for_registry(&path);
    args.allow_private_upstreams = true;
    args.workers = Some(2);
    args.shutdown_timeout_secs = 1;
    (options.configure)(&mut args);
    let mut build = build_options(&args).unwrap();
    let mut secrets = SecretStore::new();
    for (k, v) in options.secrets {
        secrets.insert(k, v);
    }
    build.secrets = Arc::new(secrets);
    if let Value::Object(map) = options.variables {
        build.variables = Arc::new(Variables::from_map(map));
    }
    let app = Application::build_with_options(args, build)
        .await
        .unwrap_or_else(|e| panic!("app did not start: {e}"));
    let base = format!("http://127.0.0.1:{}", app.port());
    let metrics_base = app
        .metrics_port()
        .map(|port| format!("http://127.0.0.1:{port}"));
    let registry = app.registry();
    let handle = app.handle();
    actix_rt::spawn(app.run_until_stopped());
    TestApp {
        base,
        metrics_base,
        registry,
        handle,
        registry_path: path,
        _dir: dir,
    }
}

/// A response as tests look at it.
#[derive(Debug)]
pub struct Reply {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: actix_web::http::header::HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// Body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    /// Body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }

    /// The `X-Connector-Timing` header, parsed as JSON.
    #[track_caller]
    pub fn connector_timing(&self) -> Value {
        let header = self
            .header("x-connector-timing")
            .unwrap_or_else(|| panic!("no X-Connector-Timing header: {}", self.text()));
        serde_json::from_str(&header).unwrap()
    }

    /// The error envelope's `errors` object.
    pub fn errors(&self) -> Value {
        let body = self.json();
        assert_eq!(
            body["success"],
            Value::Bool(false),
            "not an error envelope: {body}"
        );
        body["errors"].clone()
    }
}

/// `GET url` (any server), read whole.
pub async fn get_url(url: &str) -> Reply {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    TestApp::reply(url, client.get(url).send()).await
}

/// `POST url` with a JSON `body` (any server), read whole.
pub async fn post_url(url: &str, body: &str) -> Reply {
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
    let sent = client
        .post(url)
        .insert_header(("Content-Type", "application/json"))
        .send_body(body.to_string());
    TestApp::reply(url, sent).await
}

impl TestApp {
    /// A request for `method path` with `headers`, on a client with a 60 s timeout.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> awc::ClientRequest {
        let client = awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish();
        let mut req = client.request(method.parse().unwrap(), format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.insert_header((*k, *v));
        }
        req
    }

    /// Waits for the answer to `sent` (a request to `path`) and reads it, body and all.
    async fn reply(path: &str, sent: awc::SendClientRequest) -> Reply {
        let mut res = sent
            .await
            .unwrap_or_else(|e| panic!("request to {path} failed: {e}"));
        let body = res.body().limit(64 * 1024 * 1024).await.unwrap();
        Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body,
        }
    }

    /// Sends `method path` with optional body and headers.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let req = self.request(method, path, headers);
        let sent = match body {
            Some(b) => req.send_body(b.to_string()),
            None => req.send(),
        };
        Self::reply(path, sent).await
    }

    /// Sends `method path` with a body of `chunks` (chunked transfer encoding, no
    /// Content-Length) and `headers`.
    pub async fn call_chunked(
        &self,
        method: &str,
        path: &str,
        chunks: Vec<Bytes>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        let sent = self.request(method, path, headers).send_stream(stream);
        Self::reply(path, sent).await
    }

    /// `GET path` without a body or headers.
    pub async fn get(&self, path: &str) -> Reply {
        self.call("GET", path, None, &[]).await
    }

    /// `GET /connectors/{permalink}/execute` (a simple connector run) without a body or headers.
    pub async fn execute(&self, permalink: &str) -> Reply {
        self.get(&format!("/connectors/{permalink}/execute")).await
    }

    /// `GET /connectors/{permalink}/execute` with `X-Path-Params: {path_params}`.
    pub async fn execute_with_path_params(&self, permalink: &str, path_params: &str) -> Reply {
        self.call(
            "GET",
            &format!("/connectors/{permalink}/execute"),
            None,
            &[("X-Path-Params", path_params)],
        )
        .await
    }

    /// Starts `POST /connectors/composite/{permalink}/execute` on a raw connection and
    /// returns it without reading the answer: dropping it is a caller that went away.
    pub async fn composite_then_hang_up(&self, permalink: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let address = self.base.trim_start_matches("http://");
        let mut caller = tokio::net::TcpStream::connect(address).await.unwrap();
        let request = format!(
            "POST /connectors/composite/{permalink}/execute HTTP/1.1\r\nHost: runtime\r\nContent-Length: 0\r\n\r\n"
        );
        caller.write_all(request.as_bytes()).await.unwrap();
        caller
    }

    /// `POST /connectors/composite/{permalink}/execute{query}` with `body`.
    pub async fn composite(&self, permalink: &str, query: &str, body: &str) -> Reply {
        self.call(
            "POST",
            &format!("/connectors/composite/{permalink}/execute{query}"),
            Some(body),
            &[("Content-Type", "application/json")],
        )
        .await
    }
}

/// A template set over the real environment (no secrets, no variables) with `limits`, for
/// tests that compile and render templates without a registry.
pub fn template_set(limits: RenderLimits) -> TemplateSet {
    TemplateSet::new(
        new_environment(
            Arc::new(SecretStore::new()),
            Arc::new(Variables::new()),
            limits,
        ),
        limits,
    )
}
