//! The widget SDK (`/sdk/...`) and the connector console (`/console`), embedded in the
//! binary so the runtime serves them with no files to deploy.

use std::sync::OnceLock;

use actix_web::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::registry::actor::ConnectorSummary;

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(body: &'static str, content_type: &'static str) -> Self {
        Asset {
            body,
            content_type,
            etag: OnceLock::new(),
        }
    }

    /// Answers with the file, or 304 when the caller has this version. Browsers may reuse
    /// it for five minutes and revalidate with the ETag after that.
    fn respond(&self, req: &HttpRequest) -> HttpResponse {
        let etag = self
            .etag
            .get_or_init(|| format!("\"{}\"", crate::registry::build::revision_of(self.body)));
        let fresh = req
            .headers()
            .get(IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.split(',').any(|t| t.trim() == etag));
        let mut builder = if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        };
        builder
            .insert_header((ETAG, etag.as_str()))
            .insert_header((CACHE_CONTROL, "public, max-age=300, must-revalidate"));
        if fresh {
            builder.finish()
        } else {
            builder.content_type(self.content_type).body(self.body)
        }
    }
}

static SDK_CLASSIC: Asset = Asset::new(
    include_str!("../../sdk/connectors-sdk.js"),
    "text/javascript; charset=utf-8",
);
static SDK_MODULE: Asset = Asset::new(
    include_str!("../../sdk/connectors-sdk.mjs"),
    "text/javascript; charset=utf-8",
);
static SDK_TYPES: Asset = Asset::new(
    include_str!("../../sdk/connectors-sdk.d.ts"),
    "text/plain; charset=utf-8",
);
static CONSOLE: Asset = Asset::new(
    include_str!("../../console/index.html"),
    "text/html; charset=utf-8",
);

/// `GET /sdk/connectors-sdk.js`: the classic script that sets `window.WidgetServiceSDK`.
pub(crate) async fn sdk_classic(req: HttpRequest) -> HttpResponse {
    SDK_CLASSIC.respond(&req)
}

/// `GET /sdk/connectors-sdk.mjs`: the ES module.
pub(crate) async fn sdk_module(req: HttpRequest) -> HttpResponse {
    SDK_MODULE.respond(&req)
}

/// `GET /sdk/connectors-sdk.d.ts`: TypeScript declarations.
pub(crate) async fn sdk_types(req: HttpRequest) -> HttpResponse {
    SDK_TYPES.respond(&req)
}

fn console_off(req: &HttpRequest) -> HttpResponse {
    super::feature_off(req, "connector console", "--console")
}

/// `GET /console`: the connector console (only with `--console`).
pub(crate) async fn console(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    if !state.console {
        return console_off(&req);
    }
    let mut response = CONSOLE.respond(&req);
    response.headers_mut().insert(
        actix_web::http::header::HeaderName::from_static("x-frame-options"),
        actix_web::http::header::HeaderValue::from_static("DENY"),
    );
    response
}

/// `GET /console/api/connectors`: the served connectors, for the console, and the
/// `--trace-ui-url` template (`trace_ui_url`) when tracing is on and one is configured.
pub(crate) async fn console_connectors(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> HttpResponse {
    if !state.console {
        return console_off(&req);
    }
    let connectors = state
        .registry
        .current()
        .map(|r| ConnectorSummary::all(&r))
        .unwrap_or_default();
    let mut doc = json!({ "connectors": connectors });
    if let Some(url) = state.tracing.as_ref().and_then(|t| t.ui_url()) {
        doc["trace_ui_url"] = json!(url);
    }
    HttpResponse::Ok().json(doc)
}
