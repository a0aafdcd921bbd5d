//! Where registry text comes from: a file (watched), a watched branch of a git repository,
//! or fixed text. The [`super::actor::RegistryActor`] owns one source and reads it on
//! start, on change notifications, on webhooks, on demand and on its poll interval.

pub(crate) mod file;
pub mod git;

use std::fmt;

pub(crate) use file::FileSource;
pub use git::GitSource;

/// The registry text at one revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The file's content (empty when the file does not exist: no connectors).
    pub text: String,
    /// The source's own revision (a git commit), if it has one.
    pub revision: Option<String>,
}

/// Reading the source failed; the previous registry keeps serving.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// A registry source. Reads may block (git fetches); the actor runs them off its thread.
pub trait Source: Send + Sync + fmt::Debug {
    /// The current registry text.
    fn read(&self) -> Result<Snapshot, SourceError>;
    /// A short description for logs and the build status (never a credential).
    fn describe(&self) -> String;
}

/// Fixed registry text (the bundled demo registry).
#[derive(Debug, Clone)]
pub(crate) struct InlineSource(pub String);

impl Source for InlineSource {
    fn read(&self) -> Result<Snapshot, SourceError> {
        Ok(Snapshot {
            text: self.0.clone(),
            revision: None,
        })
    }

    fn describe(&self) -> String {
        "the bundled registry".into()
    }
}
