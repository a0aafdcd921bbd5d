//! Shared test harness: the real server on port 0 and real upstream servers on 127.0.0.1.
#![allow(dead_code)]

pub mod app;
pub mod assert;
pub mod dns;
pub mod git;
pub mod idp;
pub mod keys;
pub mod process;
pub mod upstreams;

// Each test binary uses a different part of the harness.
#[allow(unused_imports)]
pub use app::*;
#[allow(unused_imports)]
pub use assert::*;
#[allow(unused_imports)]
pub use upstreams::*;

/// `base` with `extra` merged in; a `null` in `extra` removes the key (registries and token
/// claims are built this way).
pub fn merged(mut base: serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    if let (serde_json::Value::Object(base), serde_json::Value::Object(extra)) = (&mut base, extra)
    {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    base
}
