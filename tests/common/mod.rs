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
