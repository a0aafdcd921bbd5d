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
    /// The failing item of a `for_each` step (from 0).
    pub item: Option<usize>,
}

impl RunError {
    /// The envelope's scope: prefixed with `Composite step '<name>' (index <N>): ` in a
    /// composite, and `Composite step '<name>' (index <N>) item <M>: ` for a `for_each` item.
    pub(crate) fn scope(&self) -> String {
        let scope = self.failure.code.scope().unwrap_or_default();
        match (&self.step, self.item) {
            (Some((name, index)), Some(item)) => {
                format!("Composite step '{name}' (index {index}) item {item}: {scope}")
            }
            (Some((name, index)), None) => {
                format!("Composite step '{name}' (index {index}): {scope}")
            }
            (None, _) => scope.to_string(),
        }
    }
}
