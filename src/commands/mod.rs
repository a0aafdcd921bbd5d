//! The command-line interface: one module per subcommand.

pub mod validate;

use clap::{Parser, Subcommand};

/// connector-runtime: runs templated HTTP connectors and composite connector chains for
/// browser widgets.
#[derive(Debug, Parser)]
#[command(name = "connector-runtime", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a registry file and print every problem (exit 1 on errors).
    Validate(validate::ValidateArgs),
    /// Print the JSON Schema of the registry file.
    Schema,
}

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema => {
            let schema = crate::registry::model::json_schema();
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            0
        }
    }
}
