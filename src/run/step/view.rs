//! One step's entry of `X-Debug-Request` (docs/spec.md §14): its request rendered again with
//! `get_secret()` giving its template text, so that no secret value can reach the header.

use serde_json::{json, Map, Value};

use super::{prepare_auth, render_request, StepEnv};
use crate::run::debug::DebugLog;
use crate::run::SharedRunState;
use crate::template::functions::with_secrets_as_text;
use crate::upstream::Transport;

/// Keeps the step's resolved request in `log`: `{url, method, headers, query_parameters,
/// authentication, request_body, response_body, response_content_type}`, with `step` (and
/// `item`) in a composite. A render that fails only in this form is shown as its error.
pub(super) fn record(
    log: &DebugLog,
    client: &Transport,
    shared: &SharedRunState,
    env: &StepEnv<'_>,
) {
    let step = env.step;
    let item = env
        .vars
        .iter()
        .find(|(name, _)| *name == "item_index")
        .and_then(|(_, v)| usize::try_from(v.clone()).ok());
    let (rendered, auth) =
        with_secrets_as_text(|| (render_request(env), prepare_auth(client, shared, env)));
    let mut view = Map::new();
    if env.run.is_composite() {
        view.insert("step".into(), step.name.clone().into());
        if let Some(item) = item {
            view.insert("item".into(), item.into());
        }
    }
    match rendered {
        Ok(request) => {
            let text = |bytes: &[u8]| Value::from(String::from_utf8_lossy(bytes).into_owned());
            let headers: Map<String, Value> = request
                .headers
                .iter()
                .map(|(n, v)| (n.as_str().to_string(), text(v.as_bytes())))
                .collect();
            let query: Map<String, Value> = request
                .query
                .iter()
                .map(|(k, v)| (k.clone(), v.clone().into()))
                .collect();
            view.insert("url".into(), request.url.into());
            view.insert("method".into(), step.method.as_str().into());
            view.insert("headers".into(), headers.into());
            view.insert("query_parameters".into(), query.into());
            view.insert(
                "request_body".into(),
                request.body.as_deref().map_or(Value::Null, text),
            );
        }
        Err(failure) => {
            view.insert("url".into(), Value::Null);
            view.insert("method".into(), step.method.as_str().into());
            view.insert("error".into(), failure.detail.into());
        }
    }
    let authentication = match auth {
        Ok(Some(prepared)) => prepared.describe(),
        Ok(None) => Value::Null,
        Err(failure) => json!({ "error": failure.detail }),
    };
    view.insert("authentication".into(), authentication);
    let templates = &env.run.registry.templates;
    view.insert(
        "response_body".into(),
        step.response_body
            .as_ref()
            .and_then(|id| templates.source(id))
            .map_or(Value::Null, Value::from),
    );
    view.insert(
        "response_content_type".into(),
        step.response_content_type
            .clone()
            .map_or(Value::Null, Value::from),
    );
    log.push(step.index, item, Value::Object(view));
}
