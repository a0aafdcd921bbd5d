//! Fuzz target `url_build`: see `connector_runtime::fuzzing::url_build`.
//!
//! `[URL template NUL] value`: a hostile value rendered into URL paths and queries comes out
//! as one encoded segment or value (or is refused), and the URL keeps its origin.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    connector_runtime::fuzzing::url_build(data);
});
