//! connector-runtime runs *connectors* for browser widgets: templated HTTP calls (simple
//! connectors) and named chains of them (composite connectors), defined in a
//! `connectors_registry.json` written in Jinja2.
//!
//! The registry is validated and every template compiled once when it loads
//! ([`registry`]); a run only renders ([`template`]).

pub mod commands;
pub mod jwt;
pub mod registry;
pub mod template;
