//! Where an upstream request goes: the network (this worker's awc client), a set of mocked
//! answers (`connector-runtime test`: nothing leaves the process), or the network with every
//! answer kept (`connector-runtime test --record`). [`super::send_with_retry`] matches on it
//! once per call; the server only ever uses [`Transport::Network`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use awc::http::header::{HeaderMap, HeaderName, HeaderValue};
use bytes::Bytes;

use super::send::{OutboundRequest, UpstreamError, UpstreamResponse};

/// How upstream requests are sent.
#[derive(Clone)]
pub enum Transport {
    /// Over the network with this worker's client (the server).
    Network(awc::Client),
    /// Answered by mocks, never sent (`connector-runtime test`).
    Mock(Arc<MockUpstreams>),
    /// Over the network, every request and answer kept (`connector-runtime test --record`).
    Record(awc::Client, Arc<MockUpstreams>),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Transport::Network(_) => "Transport::Network",
            Transport::Mock(_) => "Transport::Mock",
            Transport::Record(..) => "Transport::Record",
        })
    }
}

impl From<awc::Client> for Transport {
    fn from(client: awc::Client) -> Self {
        Transport::Network(client)
    }
}

/// Which mock answers a call: a step's name (a composite's steps) or a simple connector's
/// permalink, and whether it is the OAuth token request of that step (`"<name>.token"`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct MockKey<'a> {
    /// The step name or permalink.
    pub name: &'a str,
    /// The token request of that step.
    pub token: bool,
}

impl MockKey<'_> {
    /// The key as test files write it: `name` or `name.token`.
    pub(crate) fn text(&self) -> String {
        if self.token {
            format!("{}.token", self.name)
        } else {
            self.name.to_string()
        }
    }
}

/// One mocked (or recorded) answer.
#[derive(Debug, Clone)]
pub struct MockAnswer {
    /// Status code.
    pub status: u16,
    /// Response headers, in order.
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Bytes,
}

/// One request as it would have been (or was) sent, with its answer when there was one.
#[derive(Debug, Clone)]
pub struct RecordedCall {
    /// `name` or `name.token`.
    pub key: String,
    /// Method.
    pub method: String,
    /// Absolute URL with its query string.
    pub url: String,
    /// Headers, in order (names lower-case).
    pub headers: Vec<(String, String)>,
    /// Body, if any.
    pub body: Option<Bytes>,
    /// The answer (`None`: no mock for the call, or the network failed).
    pub answer: Option<MockAnswer>,
}

/// The answers of one test case by key, and every call made: what `expect.requests` checks
/// and `--record` writes.
#[derive(Debug, Default)]
pub struct MockUpstreams {
    answers: HashMap<String, MockAnswer>,
    calls: Mutex<Vec<RecordedCall>>,
}

/// The access token a token request gets when the test file mocks none.
pub const TEST_TOKEN: &str = "test-token";

impl MockUpstreams {
    /// Mocks answering with `answers` (key: step name or permalink, or `"<name>.token"`).
    pub fn new(answers: HashMap<String, MockAnswer>) -> Arc<Self> {
        Arc::new(MockUpstreams {
            answers,
            calls: Mutex::new(Vec::new()),
        })
    }

    /// Every call so far, in the order made.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    fn keep(&self, call: RecordedCall) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.push(call);
        }
    }

    /// The mock's answer to `request`, kept with it; a call without a mock is an error
    /// naming the step. An unmocked token request gets [`TEST_TOKEN`].
    pub(crate) fn answer(
        &self,
        key: MockKey<'_>,
        request: &OutboundRequest,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let text = key.text();
        let answer = self.answers.get(&text).cloned().or_else(|| {
            key.token.then(|| MockAnswer {
                status: 200,
                headers: vec![("content-type".into(), "application/json".into())],
                body: Bytes::from(format!(
                    r#"{{"access_token":"{TEST_TOKEN}","token_type":"Bearer","expires_in":3600}}"#
                )),
            })
        });
        self.keep(recorded(&text, request, answer.clone()));
        let Some(answer) = answer else {
            return Err(UpstreamError::Network(format!(
                "no mock for step '{}'",
                key.name
            )));
        };
        let mut headers = HeaderMap::new();
        for (name, value) in &answer.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        Ok(UpstreamResponse {
            status: answer.status,
            headers,
            body: answer.body,
        })
    }

    /// Keeps a call sent over the network and what came back (`--record`).
    pub(crate) fn record(
        &self,
        key: MockKey<'_>,
        request: &OutboundRequest,
        response: Option<&UpstreamResponse>,
    ) {
        let answer = response.map(|r| MockAnswer {
            status: r.status,
            headers: header_texts(r.headers.iter()),
            body: r.body.clone(),
        });
        self.keep(recorded(&key.text(), request, answer));
    }
}

fn recorded(key: &str, request: &OutboundRequest, answer: Option<MockAnswer>) -> RecordedCall {
    RecordedCall {
        key: key.to_string(),
        method: request.method.as_str().to_string(),
        url: request.url.clone(),
        headers: header_texts(request.headers.iter().map(|(n, v)| (n, v))),
        body: request.body.clone(),
        answer,
    }
}

/// Header names and values as text, in order (a value that is not UTF-8 lossily).
fn header_texts<'h>(
    headers: impl Iterator<Item = (&'h HeaderName, &'h HeaderValue)>,
) -> Vec<(String, String)> {
    headers
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}
