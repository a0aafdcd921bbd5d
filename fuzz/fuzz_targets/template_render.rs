//! Fuzz target `template_render`: see `connector_runtime::fuzzing::template_render`.
//!
//! `template NUL JSON-context`: checked, compiled and rendered as every field with a small
//! fuel; no panic, no hang, output within the cap, no context value in an error.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    connector_runtime::fuzzing::template_render(data);
});
