//! The `connector-runtime` binary: parses the command line and runs the subcommand.

use clap::Parser;

fn main() {
    let cli = connector_runtime::commands::Cli::parse();
    std::process::exit(connector_runtime::commands::run(cli));
}
