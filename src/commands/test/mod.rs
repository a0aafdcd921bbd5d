//! `connector-runtime test [FILES...] --registry R`: runs the test cases of test files
//! (docs/spec.md §14) through the real engine with every upstream answered by the case's
//! mocks — nothing is sent over the network — and reports each case. `--record` sends the
//! cases to the real upstreams once instead and writes their answers into the file as mocks.
//! Exit 0 when every case passes, 1 when any fails, 2 for a bad test file or registry.

pub mod model;
mod record;
mod report;
mod runner;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix::Actor;
use clap::Args;
use serde_json::Value;

use super::Failure;
use crate::config::ServeArgs;
use crate::registry::{
    BuildOptions, CallerIdentity, ConnectorKind, LoadMode, Registry, RegistryActor, RegistryHandle,
    RegistrySource, SyncReason,
};
use crate::template::{SecretStore, Variables};
use model::TestFile;
pub use report::Format;
use report::{CaseResult, FileResult};
use runner::Engine;

/// The test file read when none is named: beside the registry.
pub const DEFAULT_TESTS_FILE: &str = "connectors_tests.json";

/// Runs test cases against the registry with mocked upstreams (never the network).
#[derive(Debug, Clone, Args)]
pub struct TestArgs {
    /// Test files (default: connectors_tests.json beside the registry).
    pub files: Vec<PathBuf>,
    /// The registry file the tests run against.
    #[arg(long, default_value = "connectors_registry.json")]
    pub registry: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
    /// Send each case to the real upstreams once and write their answers into the file as
    /// its mocks (secrets, tokens and Authorization values redacted).
    #[arg(long)]
    pub record: bool,
    /// With --record: allow upstreams on loopback and private addresses, and plain http://.
    #[arg(long)]
    pub allow_private_upstreams: bool,
    /// With --record: PEM file of extra roots trusted for upstream TLS, as `serve` takes it.
    #[arg(long, value_name = "PATH")]
    pub upstream_ca_file: Option<PathBuf>,
    /// What a missing value does in the registry's templates, as `serve
    /// --template-undefined` (strict: a rendering error; lenient: empty text).
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_TEMPLATE_UNDEFINED",
        value_enum,
        default_value_t = crate::template::UndefinedMode::Strict
    )]
    pub template_undefined: crate::template::UndefinedMode,
}

/// A test file, read and checked against the registry's names.
struct LoadedFile {
    path: PathBuf,
    file: TestFile,
    /// The file as JSON, which `--record` rewrites (keeping what the model does not hold).
    raw: Value,
}

/// Reads `path`: JSON of the test file's shape; a failure names the file and the JSON path.
fn read_file(path: &Path) -> Result<LoadedFile, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::new(2, format!("cannot read {}: {e}", path.display())))?;
    let raw: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::new(2, format!("{}: not a JSON test file: {e}", path.display())))?;
    let file: TestFile = serde_path_to_error::deserialize(&raw).map_err(|e| {
        let at = e.path().to_string();
        Failure::new(2, format!("{}: at {at}: {}", path.display(), e.inner()))
    })?;
    Ok(LoadedFile {
        path: path.to_path_buf(),
        file,
        raw,
    })
}

/// The names a case may mock or expect requests of: the composite's step names, or the
/// simple connector's permalink.
fn step_names(registry: &Registry, permalink: &str) -> Option<(ConnectorKind, Vec<String>)> {
    let connector = registry.get(permalink)?;
    Some(match connector.kind {
        ConnectorKind::Simple => (ConnectorKind::Simple, vec![connector.permalink.clone()]),
        ConnectorKind::Composite => (
            ConnectorKind::Composite,
            connector.steps.iter().map(|s| s.name.clone()).collect(),
        ),
    })
}

/// Checks that every case names a connector of the registry, and every mock and expected
/// request one of its steps; a failure names the file and the JSON path.
fn check_names(loaded: &LoadedFile, registry: &Registry) -> Result<(), Failure> {
    let file = loaded.path.display();
    for (i, case) in loaded.file.tests.iter().enumerate() {
        let Some((kind, names)) = step_names(registry, &case.connector) else {
            return Err(Failure::new(
                2,
                format!(
                    "{file}: at tests[{i}].connector: no connector '{}' in the registry",
                    case.connector
                ),
            ));
        };
        let unknown = |field: &str, key: &str| {
            let hint = match kind {
                ConnectorKind::Simple => format!(
                    "a simple connector's mock is named by its permalink '{}'",
                    case.connector
                ),
                ConnectorKind::Composite => format!(
                    "'{}' has no step '{key}' (its steps: {})",
                    case.connector,
                    names.join(", ")
                ),
            };
            Failure::new(2, format!("{file}: at tests[{i}].{field}.{key}: {hint}"))
        };
        for key in case.mocks.keys() {
            let step = key.strip_suffix(".token").unwrap_or(key);
            if !names.iter().any(|n| n == step) {
                return Err(unknown("mocks", key));
            }
        }
        for key in case.expect.requests.keys() {
            if !names.iter().any(|n| n == key) {
                return Err(unknown("expect.requests", key));
            }
        }
    }
    Ok(())
}

/// Loads the registry with the file's own secrets and variables (never the environment's),
/// for a server with caller identity; a registry that does not load is reported as the
/// server would report it.
fn engine(registry_text: &str, loaded: &LoadedFile, args: &TestArgs) -> Result<Engine, Failure> {
    let mut secrets = SecretStore::new();
    for (name, value) in &loaded.file.secrets {
        secrets.insert(name.clone(), value.clone());
    }
    let mut serve = ServeArgs::defaults();
    serve.allow_private_upstreams = args.allow_private_upstreams;
    if let Some(path) = &args.upstream_ca_file {
        serve.upstream_ca_file = Some(path.clone());
    }
    // Checked once here (as `serve` checks it at start), not once per case.
    crate::upstream::tls::client_config(serve.upstream_ca_file.as_deref())
        .map_err(|e| Failure::new(2, e))?;
    let options = BuildOptions {
        secrets: Arc::new(secrets),
        variables: Arc::new(Variables::from_map(loaded.file.variables.clone())),
        mode: LoadMode::Serve,
        // With mocks nothing is sent: an http:// upstream is as good as any.
        allow_http: !args.record || args.allow_private_upstreams,
        identity: Some(CallerIdentity {
            user: true,
            tenant_id: true,
        }),
        limits: crate::template::RenderLimits {
            undefined: args.template_undefined,
            ..crate::template::RenderLimits::default()
        },
    };
    let handle = RegistryHandle::new();
    let mut actor = RegistryActor::new(
        RegistrySource::Inline(registry_text.to_string()),
        options,
        handle.clone(),
        crate::metrics::Metrics::new(),
    )
    .poll_every(None);
    actor.load_now(SyncReason::Startup).map_err(|error| {
        let report = match &error {
            crate::registry::actor::SyncError::Rejected(r) => r.report.to_text(),
            other => other.to_string(),
        };
        Failure::new(
            2,
            format!(
                "the registry {} is invalid (with the secrets and variables of {}):\n{}",
                args.registry.display(),
                loaded.path.display(),
                report.trim_end()
            ),
        )
    })?;
    let registry = handle
        .current()
        .ok_or_else(|| Failure::new(2, "the registry did not load"))?;
    Ok(Engine {
        registry,
        handle,
        registry_actor: actor.start(),
        identity: runner::identity_gate(),
        serve,
        record: args.record,
    })
}

/// Runs the command; returns the exit code.
pub(crate) fn run(args: TestArgs) -> Result<i32, Failure> {
    let registry_text = std::fs::read_to_string(&args.registry).map_err(|e| {
        Failure::new(
            2,
            format!("cannot read the registry {}: {e}", args.registry.display()),
        )
    })?;
    let files = if args.files.is_empty() {
        let dir = args.registry.parent().unwrap_or(Path::new(""));
        vec![dir.join(DEFAULT_TESTS_FILE)]
    } else {
        args.files.clone()
    };
    // Every file is read before any case runs: a bad file stops the command at once.
    let mut loaded: Vec<LoadedFile> = files
        .iter()
        .map(|p| read_file(p))
        .collect::<Result<_, _>>()?;
    actix_rt::System::new().block_on(async move {
        let mut engines = Vec::with_capacity(loaded.len());
        for file in &loaded {
            let engine = engine(&registry_text, file, &args)?;
            check_names(file, &engine.registry)?;
            engines.push(engine);
        }
        let mut results = Vec::with_capacity(loaded.len());
        for (file, engine) in loaded.iter_mut().zip(&engines) {
            let mut tests = Vec::with_capacity(file.file.tests.len());
            for (i, case) in file.file.tests.clone().iter().enumerate() {
                let result = match engine.run(case).await {
                    Ok(run) => {
                        let mut case = case.clone();
                        if args.record {
                            let mocks = record::mocks(&run.calls, &file.file.secrets);
                            case.mocks = record::typed(&mocks);
                            file.raw["tests"][i]["mocks"] = mocks;
                        }
                        let failures = runner::check(&case, &run, !args.record);
                        CaseResult {
                            name: case.name.clone(),
                            connector: case.connector.clone(),
                            passed: failures.is_empty(),
                            status: Some(run.status),
                            duration: run.duration,
                            failures,
                        }
                    }
                    Err(message) => CaseResult {
                        name: case.name.clone(),
                        connector: case.connector.clone(),
                        passed: false,
                        status: None,
                        duration: std::time::Duration::ZERO,
                        failures: vec![runner::Mismatch {
                            field: "request".into(),
                            expected: None,
                            actual: None,
                            message: Some(message),
                        }],
                    },
                };
                tests.push(result);
            }
            if args.record {
                record::write(&file.path, &file.raw)?;
                eprintln!(
                    "recorded the mocks of {} test(s) into {}",
                    tests.len(),
                    file.path.display()
                );
            }
            results.push(FileResult {
                file: file.path.display().to_string(),
                tests,
            });
        }
        print!("{}", report::render(&results, args.format));
        let failed = results.iter().flat_map(|f| &f.tests).any(|c| !c.passed);
        Ok(if failed { 1 } else { 0 })
    })
}
