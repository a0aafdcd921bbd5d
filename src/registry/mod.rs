//! The connector registry: the file model, validation and compilation, and the problems
//! report that names connector, step and field.

pub mod actor;
pub(crate) mod build;
pub(crate) mod compiled;
pub mod model;
pub(crate) mod problems;
pub mod rules;
pub mod source;

pub use actor::{BuildStatus, RegistryActor, RegistryHandle, RegistrySource, Sync, SyncReason};
pub use build::{build_registry, BuildOptions, CallerIdentity, LoadMode};
pub use compiled::{Auth, CallerReads, Connector, ConnectorKind, Registry, Step};
pub use problems::{Problem, RegistryRejected, Report, Severity};
