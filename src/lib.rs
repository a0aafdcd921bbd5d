//! connector-runtime runs *connectors* for browser widgets: templated HTTP calls (simple
//! connectors) and named chains of them (composite connectors), defined in a
//! `connectors_registry.json` written in Jinja2.
//!
//! The registry is validated and every template compiled once when it loads
//! ([`registry`]); a run only renders ([`template`]).

pub mod auth;
pub mod commands;
pub mod config;
pub mod error;
pub mod events;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod http;
pub mod identity;
pub mod jwt;
pub mod metrics;
pub mod mock_upstream;
pub mod registry;
pub mod run;
pub mod server;
pub mod shared_state;
pub mod telemetry;
pub mod template;
pub mod trace;
pub mod upstream;
