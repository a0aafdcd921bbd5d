//! The fuzz corpus as regression tests: every file in `fuzz/corpus/<target>/` (the seeds and
//! any input a fuzzing run found and a fix made pass) goes through the same function as the
//! cargo-fuzz target (`connector_runtime::fuzzing`), so plain `cargo test` replays them all
//! without a fuzzer or a nightly toolchain.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use connector_runtime::fuzzing;

/// One input may take this long in a debug build (the fuzzer's own limit is 10 s, in release).
const PER_INPUT: Duration = Duration::from_secs(20);

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.is_file())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    files.sort();
    files
}

/// Runs every corpus file of `target` through `body`, collecting the failures so one run
/// names all of them.
fn replay(target: &str, body: fn(&[u8])) {
    let files = corpus(target);
    assert!(
        files.len() >= 5,
        "fuzz/corpus/{target} should hold a seed corpus, found {} files",
        files.len()
    );
    let mut failures = Vec::new();
    for file in &files {
        let data = std::fs::read(file).unwrap();
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(|| body(&data));
        let elapsed = started.elapsed();
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        if outcome.is_err() {
            failures.push(format!("{name}: panicked (see the message above)"));
        } else if elapsed > PER_INPUT {
            failures.push(format!("{name}: took {elapsed:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} inputs in fuzz/corpus/{target} failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

#[test]
fn the_registry_build_corpus_replays_cleanly() {
    replay("registry_build", fuzzing::registry_build);
}

#[test]
fn the_template_render_corpus_replays_cleanly() {
    replay("template_render", fuzzing::template_render);
}

#[test]
fn the_from_json_corpus_replays_cleanly() {
    replay("from_json", fuzzing::from_json);
}

#[test]
fn the_url_build_corpus_replays_cleanly() {
    replay("url_build", fuzzing::url_build);
}

#[test]
fn the_current_example_registries_pass_the_registry_target_too() {
    // The corpus holds copies of these; the live files are checked as well, so a change to
    // them is covered before anyone refreshes the copies.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in [
        "examples/connectors_registry.json",
        "deploy/connectors_registry.json",
    ] {
        fuzzing::registry_build(&std::fs::read(root.join(example)).unwrap());
    }
}
