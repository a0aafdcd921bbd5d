//! The `connector-runtime` binary: parses the command line and runs the subcommand.

use clap::Parser;

/// Many small, short-lived allocations per run on several worker threads: mimalloc keeps
/// them thread-local (see the note in Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's option number of `purge_delay` (mimalloc.h, `mi_option_purge_delay`).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

fn main() {
    // Freed pages go back to the OS after 1 s instead of 10 ms: a busy server reuses them at
    // once, and re-faulting them was ~14% of CPU per run at 1,000 concurrent runs.
    // SAFETY: called before any other thread exists; the option is a plain integer.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    let cli = connector_runtime::commands::Cli::parse();
    std::process::exit(connector_runtime::commands::run(cli));
}
