//! The [`RegistryActor`]: the only writer of the registry. It loads and validates the
//! registry from its source and publishes immutable snapshots that runs read without locks;
//! a rejected registry leaves the previous one serving.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use actix::{Actor, Context, Handler, Message, MessageResult};
use arc_swap::ArcSwapOption;
use serde::Serialize;

use super::build::{build_registry, BuildOptions};
use super::compiled::Registry;
use super::problems::{Problem, RegistryRejected};
use crate::metrics::Metrics;

/// Where the current registry snapshot is published. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct RegistryHandle {
    current: Arc<ArcSwapOption<Registry>>,
}

impl RegistryHandle {
    /// An empty handle (nothing loaded yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot; a run keeps it to its end.
    pub fn current(&self) -> Option<Arc<Registry>> {
        self.current.load_full()
    }

    /// Publishes a snapshot (only the registry actor and tests call this).
    pub fn publish(&self, registry: Arc<Registry>) {
        self.current.store(Some(registry));
    }
}

/// The outcome of the last load, for operators.
#[derive(Debug, Clone, Serialize)]
pub struct BuildStatus {
    /// `ok` or `failed`.
    pub state: &'static str,
    /// Revision being served.
    pub revision: Option<String>,
    /// When the served registry was loaded (Unix seconds).
    pub loaded_at: Option<u64>,
    /// Why the last load failed.
    pub error: Option<String>,
    /// Problems of the last load (errors and warnings).
    pub problems: Vec<Problem>,
    /// Permalinks being served.
    pub connectors: Vec<String>,
}

/// Reload the registry from its source now.
#[derive(Debug, Message)]
#[rtype(result = "Result<Arc<Registry>, RegistryRejected>")]
pub struct Reload;

/// Ask for the build status.
#[derive(Debug, Message)]
#[rtype(result = "BuildStatus")]
pub struct GetStatus;

/// Where the registry text comes from.
#[derive(Debug, Clone)]
pub enum RegistrySource {
    /// A file, re-read on every load (a missing file is an empty registry).
    File(PathBuf),
    /// Fixed text (the bundled demo registry).
    Inline(String),
}

impl RegistrySource {
    fn read(&self) -> std::io::Result<String> {
        match self {
            RegistrySource::File(path) => match std::fs::read_to_string(path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                other => other,
            },
            RegistrySource::Inline(text) => Ok(text.clone()),
        }
    }

    fn describe(&self) -> String {
        match self {
            RegistrySource::File(path) => path.display().to_string(),
            RegistrySource::Inline(_) => "the bundled registry".into(),
        }
    }
}

/// Owns the registry source and publishes snapshots.
pub struct RegistryActor {
    source: RegistrySource,
    options: BuildOptions,
    handle: RegistryHandle,
    status: BuildStatus,
    metrics: Arc<Metrics>,
}

impl RegistryActor {
    /// An actor that loads `source` with `options` and publishes into `handle`.
    pub fn new(
        source: RegistrySource,
        options: BuildOptions,
        handle: RegistryHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        RegistryActor {
            metrics,
            source,
            options,
            handle,
            status: BuildStatus {
                state: "failed",
                revision: None,
                loaded_at: None,
                error: Some("not loaded yet".into()),
                problems: Vec::new(),
                connectors: Vec::new(),
            },
        }
    }

    /// Reads, validates and (when valid) publishes the registry.
    pub fn load(&mut self) -> Result<Arc<Registry>, RegistryRejected> {
        let started = std::time::Instant::now();
        let result = self.load_inner();
        self.metrics
            .registry_load_duration
            .set(started.elapsed().as_secs_f64());
        match &result {
            Ok(registry) => {
                self.metrics.registry_loads.with_label_values(&["ok"]).inc();
                self.metrics.registry_load_ok.set(1);
                self.metrics
                    .registry_last_success
                    .set(self.status.loaded_at.unwrap_or(0) as f64);
                let composites = registry
                    .connectors()
                    .iter()
                    .filter(|c| c.kind == crate::template::ConnectorKind::Composite)
                    .count() as i64;
                self.metrics
                    .registry_connectors
                    .with_label_values(&["composite"])
                    .set(composites);
                self.metrics
                    .registry_connectors
                    .with_label_values(&["simple"])
                    .set(registry.len() as i64 - composites);
            }
            Err(_) => {
                self.metrics
                    .registry_loads
                    .with_label_values(&["failed"])
                    .inc();
                self.metrics.registry_load_ok.set(0);
            }
        }
        result
    }

    fn load_inner(&mut self) -> Result<Arc<Registry>, RegistryRejected> {
        let text = match self.source.read() {
            Ok(text) => text,
            Err(e) => {
                let mut report = super::problems::Report::default();
                let at = super::problems::Location {
                    connector: "-".into(),
                    step: None,
                };
                report.error(
                    &at,
                    "(file)",
                    format!("cannot read {}: {e}", self.source.describe()),
                );
                return Err(self.rejected(RegistryRejected { report }));
            }
        };
        match build_registry(&text, &self.options) {
            Ok(registry) => {
                let registry = Arc::new(registry);
                self.handle.publish(registry.clone());
                self.status = BuildStatus {
                    state: "ok",
                    revision: Some(registry.revision.clone()),
                    loaded_at: SystemTime::now()
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .ok()
                        .map(|d| d.as_secs()),
                    error: None,
                    problems: registry.warnings.clone(),
                    connectors: registry
                        .connectors()
                        .iter()
                        .map(|c| c.permalink.clone())
                        .collect(),
                };
                tracing::info!(
                    revision = %registry.revision,
                    connectors = registry.len(),
                    warnings = registry.warnings.len(),
                    "registry published"
                );
                Ok(registry)
            }
            Err(rejected) => Err(self.rejected(rejected)),
        }
    }

    fn rejected(&mut self, rejected: RegistryRejected) -> RegistryRejected {
        tracing::warn!(error = %rejected, "registry rejected; the previous registry keeps serving");
        self.status.state = "failed";
        self.status.error = Some(rejected.report.summary());
        self.status.problems = rejected.report.problems.clone();
        rejected
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;
}

impl Handler<Reload> for RegistryActor {
    type Result = Result<Arc<Registry>, RegistryRejected>;

    fn handle(&mut self, _: Reload, _: &mut Self::Context) -> Self::Result {
        self.load()
    }
}

impl Handler<GetStatus> for RegistryActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.status.clone())
    }
}
