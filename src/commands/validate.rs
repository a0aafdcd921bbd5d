//! `connector-runtime validate PATH`: every problem of a registry, for its repository's CI.

use super::Failure;
use std::path::PathBuf;
use std::sync::Arc;

use clap::{Args, ValueEnum};

use crate::identity::{IdentityArgs, KeySet};
use crate::registry::{build_registry, BuildOptions, CallerIdentity, LoadMode, Report};
use crate::template::{SecretStore, Variables};

/// Output format of `validate`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `error: permalink › step › field: message` lines and a summary.
    Text,
    /// One JSON document: `{valid, errors, warnings, problems: [...]}`.
    Json,
}

/// Checks a registry file: JSON shape, every field rule and every template. Exits 1 when
/// there are errors, 0 otherwise (warnings included).
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The registry file (connectors_registry.json).
    pub path: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Secrets directory, to check that referenced secrets exist (optional).
    #[arg(long, env = "CONNECTOR_RUNTIME_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Variables JSON file, to resolve get_variable() hosts (optional).
    #[arg(long, env = "CONNECTOR_RUNTIME_VARIABLES_FILE")]
    pub variables_file: Option<PathBuf>,
    /// The server's identity flags: with any of them, a template reading `user.*` or
    /// `tenant_id` that the server could not serve is an error; without them, a warning.
    /// The keys are not fetched.
    #[command(flatten, next_help_heading = "Caller identity")]
    pub identity: IdentityArgs,
}

/// Outcome of a validation, ready to print.
#[derive(Debug)]
pub struct Validation {
    /// Every problem.
    pub report: Report,
    /// Connectors that would load.
    pub connectors: usize,
}

/// Validates the registry text with the given secrets and variables, for a server with
/// `identity` (`None`: not known, see [`BuildOptions::identity`]).
pub fn validate_text(
    text: &str,
    secrets: SecretStore,
    variables: Variables,
    identity: Option<CallerIdentity>,
) -> Validation {
    let options = BuildOptions {
        secrets: Arc::new(secrets),
        variables: Arc::new(variables),
        mode: LoadMode::Validate,
        identity,
        ..BuildOptions::default()
    };
    match build_registry(text, &options) {
        Ok(registry) => Validation {
            connectors: registry.len(),
            report: Report {
                problems: registry.warnings.clone(),
            },
        },
        Err(rejected) => Validation {
            connectors: 0,
            report: rejected.report,
        },
    }
}

/// Renders a validation as the command prints it.
pub fn render(validation: &Validation, format: Format) -> String {
    let report = &validation.report;
    let errors = report.errors().count();
    let warnings = report.warnings().count();
    match format {
        Format::Text => {
            let mut out = report.to_text();
            if errors == 0 {
                out.push_str(&format!(
                    "ok: {} connector(s), {warnings} warning(s)\n",
                    validation.connectors
                ));
            } else {
                out.push_str(&format!(
                    "invalid: {errors} error(s), {warnings} warning(s)\n"
                ));
            }
            out
        }
        Format::Json => {
            let doc = serde_json::json!({
                "valid": errors == 0,
                "connectors": validation.connectors,
                "errors": errors,
                "warnings": warnings,
                "problems": report.problems,
            });
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
    }
}

/// Runs the command; returns the process exit code.
pub(crate) fn run(args: &ValidateArgs) -> Result<i32, Failure> {
    let text = std::fs::read_to_string(&args.path)
        .map_err(|e| Failure::new(2, format!("cannot read {}: {e}", args.path.display())))?;
    let secrets = SecretStore::load(args.secrets_dir.as_deref()).map_err(|e| Failure::new(2, e))?;
    let variables =
        Variables::load(args.variables_file.as_deref()).map_err(|e| Failure::new(2, e))?;
    args.identity.validate().map_err(|e| Failure::new(2, e))?;
    if let Some(path) = &args.identity.identity_jwks_file {
        // A key file is read as `serve` would read it (a URL is never fetched here).
        let keys = std::fs::read(path)
            .map_err(|e| e.to_string())
            .and_then(|bytes| KeySet::parse(&bytes).map_err(|e| e.to_string()))
            .map_err(|e| {
                Failure::new(2, format!("--identity-jwks-file {}: {e}", path.display()))
            })?;
        if keys.is_empty() {
            return Err(Failure::new(
                2,
                format!(
                    "--identity-jwks-file {}: no usable signing key",
                    path.display()
                ),
            ));
        }
    }
    let validation = validate_text(
        &text,
        secrets,
        variables,
        CallerIdentity::of(&args.identity),
    );
    print!("{}", render(&validation, args.format));
    Ok(if validation.report.has_errors() { 1 } else { 0 })
}
