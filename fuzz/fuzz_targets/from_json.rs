//! Fuzz target `from_json`: see `connector_runtime::fuzzing::from_json`.
//!
//! JSON text: the lazily built `from_json` value and the fully built one fail alike or read
//! alike.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    connector_runtime::fuzzing::from_json(data);
});
