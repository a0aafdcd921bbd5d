//! Problems found in a registry, each naming connector, step and field, printed as
//! `permalink › step › field: message` or as JSON for CI.

use std::fmt;

use serde::Serialize;

/// How bad a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The registry cannot be published.
    Error,
    /// Worth fixing; the registry still loads.
    Warning,
}

/// One problem, located precisely.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Error or warning.
    pub severity: Severity,
    /// Permalink of the connector (or `connectors[3]` when it has none yet), `-` for the file.
    pub connector: String,
    /// Step name (or `steps[1]`) inside a composite.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    /// Field path inside the connector or step, e.g. `headers[0].value`.
    pub field: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.connector)?;
        if let Some(step) = &self.step {
            write!(f, " › {step}")?;
        }
        write!(f, " › {}: {}", self.field, self.message)
    }
}

/// Where problems are being reported: a connector and, inside a composite, a step.
#[derive(Debug, Clone)]
pub(crate) struct Location {
    /// Connector label.
    pub connector: String,
    /// Step label.
    pub step: Option<String>,
}

/// Every problem of one registry, in file order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The problems.
    pub problems: Vec<Problem>,
}

impl Report {
    /// Records an error at `at`.
    pub(crate) fn error(
        &mut self,
        at: &Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Error, at, field, message);
    }

    /// Records a warning at `at`.
    pub(crate) fn warning(
        &mut self,
        at: &Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.push(Severity::Warning, at, field, message);
    }

    fn push(
        &mut self,
        severity: Severity,
        at: &Location,
        field: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.problems.push(Problem {
            severity,
            connector: at.connector.clone(),
            step: at.step.clone(),
            field: field.into(),
            message: message.into(),
        });
    }

    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Error)
    }

    /// The warnings.
    pub(crate) fn warnings(&self) -> impl Iterator<Item = &Problem> {
        self.problems
            .iter()
            .filter(|p| p.severity == Severity::Warning)
    }

    /// Whether any error was found.
    pub(crate) fn has_errors(&self) -> bool {
        self.errors().next().is_some()
    }

    /// Errors then warnings, one per line, prefixed `error:` / `warning:`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        for p in self.errors().chain(self.warnings()) {
            let label = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            out.push_str(&format!("{label}: {p}\n"));
        }
        out
    }

    /// A one-paragraph summary of the errors, for logs and the build status.
    pub(crate) fn summary(&self) -> String {
        let errors: Vec<String> = self.errors().map(|p| p.to_string()).collect();
        match errors.len() {
            0 => "no errors".to_string(),
            1 => errors[0].clone(),
            n => format!("{n} errors: {}", errors.join("; ")),
        }
    }
}

/// The registry could not be published; the report says why.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the registry was rejected: {}", report.summary())]
pub struct RegistryRejected {
    /// Every problem found (errors and warnings).
    pub report: Report,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_print_connector_step_and_field() {
        let mut report = Report::default();
        let at = Location {
            connector: "auth-and-fetch".into(),
            step: Some("fetch-user".into()),
        };
        report.error(&at, "headers[0].value", "unknown filter 'frm_json'");
        assert_eq!(
            report.to_text(),
            "error: auth-and-fetch › fetch-user › headers[0].value: unknown filter 'frm_json'\n"
        );
    }
}
