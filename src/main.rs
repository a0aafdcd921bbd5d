//! The `connector-runtime` binary: parses the command line and runs the subcommand.

use clap::Parser;

/// Many small, short-lived allocations per run on several worker threads: mimalloc keeps
/// them thread-local (see the note in Cargo.toml).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let cli = connector_runtime::commands::Cli::parse();
    std::process::exit(connector_runtime::commands::run(cli));
}
