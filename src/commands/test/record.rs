//! `--record`: the answers a case got from the real upstreams, written as its mocks. What
//! must not land in a repository is redacted: the file's secret values, every token a token
//! endpoint gave (a recorded token answer gives `test-token`, as an unmocked one would),
//! every `Authorization` value sent, and cookies.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::{json, Map, Value};

use super::model::Mock;
use super::Failure;
use crate::upstream::transport::{RecordedCall, TEST_TOKEN};

/// What replaces a redacted value.
pub(crate) const REDACTED: &str = "[REDACTED]";

/// Headers not worth keeping in a mock: they describe the connection or the moment.
const DROPPED_HEADERS: [&str; 6] = [
    "connection",
    "content-length",
    "date",
    "keep-alive",
    "server",
    "transfer-encoding",
];

/// Headers whose values are credentials.
const CREDENTIAL_HEADERS: [&str; 4] = [
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
];

/// Fields of a token answer that hold tokens.
const TOKEN_FIELDS: [&str; 3] = ["access_token", "refresh_token", "id_token"];

/// Every value to scrub: the secrets of the file, each token a token endpoint answered and
/// each credential sent (whole, and the part after `Bearer `/`Basic `).
fn sensitive(calls: &[RecordedCall], secrets: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = secrets.values().cloned().collect();
    for call in calls {
        for (name, value) in &call.headers {
            if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                out.insert(value.clone());
                if let Some((_, token)) = value.split_once(' ') {
                    out.insert(token.to_string());
                }
            }
        }
        if call.key.ends_with(".token") {
            if let Some(Value::Object(map)) = call
                .answer
                .as_ref()
                .and_then(|a| serde_json::from_slice::<Value>(&a.body).ok())
            {
                for field in TOKEN_FIELDS {
                    if let Some(Value::String(token)) = map.get(field) {
                        out.insert(token.clone());
                    }
                }
            }
        }
    }
    // Values this short would match everywhere; they are not secrets worth the name.
    out.retain(|v| v.len() >= 4);
    out
}

fn scrub(text: &str, sensitive: &BTreeSet<String>) -> String {
    let mut out = text.to_string();
    // Longest first: a token inside a longer credential is replaced with it.
    let mut values: Vec<&String> = sensitive.iter().collect();
    values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    for value in values {
        if out.contains(value.as_str()) {
            out = out.replace(value.as_str(), REDACTED);
        }
    }
    out
}

fn scrub_value(value: &mut Value, sensitive: &BTreeSet<String>) {
    match value {
        Value::String(s) => *s = scrub(s, sensitive),
        Value::Array(items) => items.iter_mut().for_each(|v| scrub_value(v, sensitive)),
        Value::Object(map) => map.values_mut().for_each(|v| scrub_value(v, sensitive)),
        _ => {}
    }
}

/// The mocks of one case from the calls it made: the first answer of each step (a
/// `for_each` step's item 0), redacted. The body is JSON when it parses as JSON, else text.
pub(crate) fn mocks(calls: &[RecordedCall], secrets: &BTreeMap<String, String>) -> Value {
    let sensitive = sensitive(calls, secrets);
    let mut out = Map::new();
    for call in calls {
        let Some(answer) = &call.answer else { continue };
        if out.contains_key(&call.key) {
            continue;
        }
        let mut headers = Map::new();
        for (name, value) in &answer.headers {
            if DROPPED_HEADERS.contains(&name.as_str()) {
                continue;
            }
            let value = if CREDENTIAL_HEADERS.contains(&name.as_str()) {
                REDACTED.to_string()
            } else {
                scrub(value, &sensitive)
            };
            headers.insert(name.clone(), Value::String(value));
        }
        let text = String::from_utf8_lossy(&answer.body);
        let mut body = match serde_json::from_str::<Value>(&text) {
            Ok(Value::String(_)) | Err(_) => Value::String(text.into_owned()),
            Ok(json) => json,
        };
        if call.key.ends_with(".token") {
            if let Value::Object(map) = &mut body {
                for field in TOKEN_FIELDS {
                    if let Some(token) = map.get_mut(field) {
                        *token = Value::from(if field == "access_token" {
                            TEST_TOKEN
                        } else {
                            REDACTED
                        });
                    }
                }
            }
        }
        scrub_value(&mut body, &sensitive);
        let mut mock = json!({"status": answer.status});
        if !headers.is_empty() {
            mock["headers"] = Value::Object(headers);
        }
        if !answer.body.is_empty() {
            mock["body"] = body;
        }
        out.insert(call.key.clone(), mock);
    }
    Value::Object(out)
}

/// The recorded mocks as the model holds them.
pub(crate) fn typed(mocks: &Value) -> BTreeMap<String, Mock> {
    serde_json::from_value(mocks.clone()).unwrap_or_default()
}

/// Writes the test file back, pretty-printed.
pub(crate) fn write(path: &Path, raw: &Value) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(raw).unwrap_or_default() + "\n";
    std::fs::write(path, text)
        .map_err(|e| Failure::new(2, format!("cannot write {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::transport::MockAnswer;
    use bytes::Bytes;

    fn call(key: &str, headers: &[(&str, &str)], status: u16, body: &str) -> RecordedCall {
        RecordedCall {
            key: key.into(),
            method: "GET".into(),
            url: "http://127.0.0.1/x".into(),
            headers: headers
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            body: None,
            answer: Some(MockAnswer {
                status,
                headers: vec![
                    ("content-type".into(), "application/json".into()),
                    ("date".into(), "now".into()),
                    ("set-cookie".into(), "sid=abc".into()),
                ],
                body: Bytes::from(body.to_string()),
            }),
        }
    }

    #[test]
    fn secrets_tokens_and_credentials_are_redacted() {
        let calls = vec![
            call(
                "auth.token",
                &[],
                200,
                r#"{"access_token":"tok-12345","expires_in":60}"#,
            ),
            call(
                "auth",
                &[("authorization", "Bearer tok-12345")],
                200,
                r#"{"echo":"Bearer tok-12345","key":"hunter22"}"#,
            ),
        ];
        let secrets = BTreeMap::from([("k".to_string(), "hunter22".to_string())]);
        let mocks = mocks(&calls, &secrets);
        assert_eq!(mocks["auth.token"]["body"]["access_token"], TEST_TOKEN);
        assert_eq!(
            mocks["auth"]["body"],
            json!({"echo": REDACTED, "key": REDACTED})
        );
        assert_eq!(mocks["auth"]["headers"]["set-cookie"], REDACTED);
        assert!(mocks["auth"]["headers"].get("date").is_none());
        assert!(!mocks.to_string().contains("tok-12345"));
        assert!(!mocks.to_string().contains("hunter22"));
    }
}
