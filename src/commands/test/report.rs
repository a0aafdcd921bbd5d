//! The report of `connector-runtime test`: text a person reads at a glance (each failure
//! with expected and actual), JSON for tools, JUnit XML for CI systems.

use std::fmt::Write;
use std::time::Duration;

use clap::ValueEnum;
use serde::Serialize;

use super::runner::Mismatch;

/// Output format of `test`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// `ok`/`FAIL` per test, each failure with expected and actual, and a summary.
    Text,
    /// One JSON document: `{passed, failed, files: [{file, tests: [...]}]}`.
    Json,
    /// JUnit XML: a `<testsuite>` per file, a `<testcase>` per test.
    Junit,
}

/// One test's result.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CaseResult {
    /// The case's name.
    pub name: String,
    /// The connector it calls.
    pub connector: String,
    /// Whether every expectation held.
    pub passed: bool,
    /// The answer's status (none when the case could not run).
    pub status: Option<u16>,
    /// How long the run took.
    #[serde(rename = "duration_ms", serialize_with = "millis")]
    pub duration: Duration,
    /// Every way it failed.
    pub failures: Vec<Mismatch>,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1e6).round() / 1e3)
}

/// The results of one file.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct FileResult {
    /// The file, as given.
    pub file: String,
    /// Its cases, in order.
    pub tests: Vec<CaseResult>,
}

fn counts(files: &[FileResult]) -> (usize, usize) {
    let all = files.iter().flat_map(|f| &f.tests);
    let failed = all.clone().filter(|c| !c.passed).count();
    (all.count() - failed, failed)
}

/// The report in `format`.
pub(crate) fn render(files: &[FileResult], format: Format) -> String {
    match format {
        Format::Text => text(files),
        Format::Json => {
            let (passed, failed) = counts(files);
            let doc = serde_json::json!({"passed": passed, "failed": failed, "files": files});
            format!(
                "{}\n",
                serde_json::to_string_pretty(&doc).unwrap_or_default()
            )
        }
        Format::Junit => junit(files),
    }
}

/// Long values are cut in the text report (the JSON report has them whole).
fn short(value: &str) -> String {
    const MAX: usize = 400;
    if value.len() <= MAX {
        return value.to_string();
    }
    let mut end = MAX;
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &value[..end], value.len())
}

fn describe(m: &Mismatch, indent: &str) -> String {
    let mut out = String::new();
    match (&m.expected, &m.actual) {
        (Some(expected), Some(actual))
            if m.message.is_none()
                && expected.len() + actual.len() <= 60
                && !expected.contains('\n')
                && !actual.contains('\n') =>
        {
            let _ = writeln!(
                out,
                "{indent}{}: expected {expected}, actual {actual}",
                m.field
            );
        }
        (Some(expected), Some(actual)) => {
            let _ = write!(out, "{indent}{}", m.field);
            if let Some(message) = &m.message {
                let _ = write!(out, ": {message}");
            }
            let _ = writeln!(out);
            let _ = writeln!(out, "{indent}  expected: {}", short(expected));
            let _ = writeln!(out, "{indent}  actual:   {}", short(actual));
        }
        _ => {
            let _ = writeln!(
                out,
                "{indent}{}: {}",
                m.field,
                m.message.as_deref().unwrap_or("failed")
            );
        }
    }
    out
}

fn text(files: &[FileResult]) -> String {
    let mut out = String::new();
    for file in files {
        let _ = writeln!(out, "{}", file.file);
        for case in &file.tests {
            let _ = writeln!(
                out,
                "  {} {} ({}, {:.1} ms)",
                if case.passed { "ok  " } else { "FAIL" },
                case.name,
                case.connector,
                case.duration.as_secs_f64() * 1e3
            );
            for failure in &case.failures {
                out.push_str(&describe(failure, "        "));
            }
        }
    }
    let (passed, failed) = counts(files);
    let _ = writeln!(
        out,
        "{}: {} test(s), {passed} passed, {failed} failed",
        if failed == 0 { "ok" } else { "FAILED" },
        passed + failed
    );
    out
}

/// `text` escaped for XML attribute values and text (characters XML 1.0 cannot hold are
/// dropped).
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

fn junit(files: &[FileResult]) -> String {
    let (passed, failed) = counts(files);
    let total_time: f64 = files
        .iter()
        .flat_map(|f| &f.tests)
        .map(|c| c.duration.as_secs_f64())
        .sum();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"connector-runtime test\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" time=\"{total_time:.6}\">",
        passed + failed
    );
    for file in files {
        let failures = file.tests.iter().filter(|c| !c.passed).count();
        let time: f64 = file.tests.iter().map(|c| c.duration.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\" time=\"{time:.6}\">",
            xml(&file.file),
            file.tests.len()
        );
        for case in &file.tests {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.6}\"",
                xml(&case.name),
                xml(&case.connector),
                case.duration.as_secs_f64()
            );
            if case.passed {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            let first = case
                .failures
                .first()
                .map(|m| {
                    m.message
                        .clone()
                        .unwrap_or_else(|| format!("{} differs", m.field))
                })
                .unwrap_or_else(|| "failed".into());
            let details: String = case.failures.iter().map(|m| describe(m, "")).collect();
            let _ = writeln!(
                out,
                "      <failure message=\"{}\" type=\"expectation\">{}</failure>",
                xml(&first),
                xml(&details)
            );
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}
