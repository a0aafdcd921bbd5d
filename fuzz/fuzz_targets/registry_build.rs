//! Fuzz target `registry_build`: see `connector_runtime::fuzzing::registry_build`.
//!
//! Arbitrary bytes as a registry file: building it never panics, and the URLs of a registry
//! that builds stay on their origin.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    connector_runtime::fuzzing::registry_build(data);
});
