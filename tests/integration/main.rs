//! The integration suite in one binary: each module is one area of the contract, run against
//! the real server on port 0 and real upstream servers on 127.0.0.1.

#[path = "../common/mod.rs"]
mod common;

mod auth;
mod cancellation;
mod chain_control;
mod cli_demo;
mod dns_pinning;
mod errors;
mod examples;
mod execute_chain;
mod execute_composite;
mod execute_simple;
mod fuzz_corpus;
mod git_cache;
mod hardening;
mod hostile_input;
mod http_cache;
mod identity;
mod identity_server;
mod jwt_algorithms;
mod large_registry;
mod metrics;
mod module_graph;
mod openapi;
mod overrides_and_params;
mod properties;
mod registry_rules;
mod registry_sync;
mod response_cache;
mod shared_state;
mod shutdown;
mod slow_bodies;
mod soak;
mod template_compat;
mod template_fidelity;
mod test_command;
mod trace_links;
mod tracing;
mod upstream_client;
mod upstream_limits;
mod upstream_tls;
mod url_rendering;
mod validate_cli;
mod web_assets;
mod webhook_limits;
