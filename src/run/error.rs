//! How a run fails: a [`StepFailure`] (its [`Code`] and a caller-safe detail) and, in a
//! composite, which step failed — which gives the envelope its scope (docs/spec.md §6).

pub use crate::error::{Code, StepFailure};

/// A failed run: the failure and, for composites, which step failed.
#[derive(Debug, Clone)]
pub struct RunError {
    /// What failed.
    pub failure: StepFailure,
    /// `(name, index)` of the failing composite step.
    pub step: Option<(String, usize)>,
}

impl RunError {
    /// The envelope's scope: prefixed with `Composite step '<name>' (index <N>): ` in a
    /// composite.
    pub(crate) fn scope(&self) -> String {
        let scope = self.failure.code.scope().unwrap_or_default();
        match &self.step {
            Some((name, index)) => format!("Composite step '{name}' (index {index}): {scope}"),
            None => scope.to_string(),
        }
    }
}
