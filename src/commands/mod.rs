//! The command-line interface: one module per subcommand.

pub(crate) mod demo;
pub(crate) mod mock_upstream;
pub(crate) mod run_once;
pub(crate) mod serve;
pub mod test;
pub mod validate;

use std::fmt::Display;

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
    /// Print the JSON Schema of the registry file (or, with --tests, of test files).
    Schema(SchemaArgs),
    /// Serve connectors over HTTP.
    Serve(crate::config::ServeArgs),
    /// Execute one connector once and print status, body and step timings.
    Run(run_once::RunArgs),
    /// Start a mock upstream and the server with the example registry, and print curl lines to try.
    Demo(demo::DemoArgs),
    /// Serve a fake upstream API (token endpoint, users, items, echo) for demos and tests.
    MockUpstream(mock_upstream::MockUpstreamArgs),
    /// Run the test cases of test files against the registry, with mocked upstreams (exit 1
    /// when any fails, 2 for a bad test file).
    Test(test::TestArgs),
}

/// What `schema` prints.
#[derive(Debug, Clone, clap::Args)]
pub struct SchemaArgs {
    /// The JSON Schema of test files (connectors_tests.json) instead of the registry's.
    #[arg(long)]
    pub tests: bool,
}

impl Cli {
    /// The template fuel the command renders with (the default for commands that do not).
    pub fn template_fuel(&self) -> u64 {
        match &self.command {
            Command::Serve(args) => args.template_fuel,
            Command::Run(args) => args.serve.template_fuel,
            _ => crate::template::engine::DEFAULT_TEMPLATE_FUEL,
        }
    }
}

/// Why a command could not do its work: printed as `error: <message>`, exiting `code`
/// (2 for a usage or input error, 1 for a failure while running).
#[derive(Debug)]
pub(crate) struct Failure {
    code: i32,
    message: String,
}

impl Failure {
    /// A failure that exits `code`.
    pub(crate) fn new(code: i32, message: impl Display) -> Self {
        Failure {
            code,
            message: message.to_string(),
        }
    }
}

/// The exit code of a command's result, printing the failure.
fn exit_code(result: Result<i32, Failure>) -> i32 {
    result.unwrap_or_else(|failure| {
        eprintln!("error: {}", failure.message);
        failure.code
    })
}

/// Runs the parsed command line; returns the exit code.
pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Validate(args) => exit_code(validate::run(&args)),
        Command::Serve(args) => exit_code(serve::run(args)),
        Command::MockUpstream(args) => exit_code(mock_upstream::run(args)),
        Command::Run(args) => exit_code(run_once::run(args)),
        Command::Demo(args) => exit_code(demo::run(args)),
        Command::Test(args) => exit_code(test::run(args)),
        Command::Schema(args) => {
            let schema = if args.tests {
                test::model::json_schema()
            } else {
                crate::registry::model::json_schema()
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&schema).unwrap_or_default()
            );
            0
        }
    }
}
