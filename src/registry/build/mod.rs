//! Validates a registry file field by field and compiles it into a [`Registry`]: every
//! problem is collected (not just the first), each naming connector, step and field.
//!
//! This module holds the entry point, the file's shape (top-level arrays, unknown fields,
//! type errors) and each connector's identity (name, permalink). The calls themselves are
//! checked in `connector`, their templated fields in `templates`, their authentication in
//! `auth`; the limits and name rules live in [`super::rules`].

mod auth;
mod connector;
mod control;
mod rate_limit;
mod templates;

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::compiled::{CallerReads, Connector, ConnectorKind, Registry};
use super::model::known_fields;
use super::problems::{Location, RegistryRejected, Report};
use super::rules::{is_slug, MAX_NAME_LEN};
use crate::template::{new_environment, RenderLimits, SecretStore, TemplateSet, Variables};

/// Why the registry is being loaded. `validate` in a registry's CI usually lacks the server's
/// variables, so a URL host taken from an unset variable is a warning there and an error when
/// serving; so is an `http://` upstream without `--allow-private-upstreams`. Missing secrets
/// are warnings in both modes (a run that reads one fails with 422 and says which).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadMode {
    /// `connector-runtime validate`.
    Validate,
    /// A running server.
    Serve,
}

/// Everything a registry build needs besides the file.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Secrets for `get_secret()`.
    pub secrets: Arc<SecretStore>,
    /// Variables for `get_variable()`.
    pub variables: Arc<Variables>,
    /// Render bounds.
    pub limits: RenderLimits,
    /// Validate or serve.
    pub mode: LoadMode,
    /// Whether `http://` upstreams are accepted (`--allow-private-upstreams`).
    pub allow_http: bool,
    /// What the server gives templates of the caller (docs/spec.md §9); `None` when not
    /// known (`validate` without identity flags): reads are then warnings, not errors.
    pub identity: Option<CallerIdentity>,
}

/// What a server gives templates of the caller: a registry that reads more is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallerIdentity {
    /// `user.*`: a key source (`--identity-jwks-url` or `--identity-jwks-file`) is set.
    pub user: bool,
    /// `tenant_id`: `--tenant-id` or `--identity-tenant-claim` is set.
    pub tenant_id: bool,
}

impl CallerIdentity {
    /// What the identity flags `args` provide; `None` when none is given.
    pub fn of(args: &crate::identity::IdentityArgs) -> Option<CallerIdentity> {
        let identity = CallerIdentity {
            user: args.key_source().is_some(),
            tenant_id: !matches!(args.tenant_source(), crate::identity::TenantSource::None),
        };
        (identity != CallerIdentity::default() || args.identity_issuer.is_some())
            .then_some(identity)
    }
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            secrets: Arc::new(SecretStore::new()),
            variables: Arc::new(Variables::new()),
            limits: RenderLimits::default(),
            mode: LoadMode::Validate,
            allow_http: false,
            identity: None,
        }
    }
}

/// A published registry and the warnings found while building it.
pub(crate) type BuildResult = Result<Registry, RegistryRejected>;

/// Validates and compiles the registry in `text`. All-or-nothing: one error rejects it.
pub fn build_registry(text: &str, options: &BuildOptions) -> BuildResult {
    let mut builder = Builder {
        options,
        report: Report::default(),
        templates: TemplateSet::new(
            new_environment(
                options.secrets.clone(),
                options.variables.clone(),
                options.limits,
            ),
            options.limits,
        )
        .redacting(options.secrets.clone()),
        connectors: Vec::new(),
        permalinks: HashMap::new(),
        reads: CallerReads::default(),
        step_reads: Vec::new(),
    };
    builder.file(text);
    let Builder {
        report,
        templates,
        connectors,
        ..
    } = builder;
    if report.has_errors() {
        return Err(RegistryRejected { report });
    }
    Ok(Registry::new(
        templates,
        connectors,
        revision_of(text),
        report.problems,
    ))
}

/// A short, stable fingerprint of the registry text (FNV-1a, 64 bit).
pub(crate) fn revision_of(text: &str) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

/// Permalink derived from a name: lower-case, spaces become `-` (docs/spec.md §1).
pub(crate) fn derive_permalink(name: &str) -> String {
    name.trim().to_lowercase().replace(' ', "-")
}

/// A part of the registry that failed its checks; its problems are already in the report.
#[derive(Debug, Clone, Copy)]
struct Reported;

/// What checking one part gives: its compiled form, or [`Reported`]. An optional field is
/// `Checked<Option<T>>`: `Ok(None)` when it is absent, `Err(Reported)` when it is invalid.
type Checked<T> = Result<T, Reported>;

/// `Ok(value)` when `ok`, else [`Reported`] (the checks that set `ok` reported why).
fn checked<T>(ok: bool, value: T) -> Checked<T> {
    if ok {
        Ok(value)
    } else {
        Err(Reported)
    }
}

/// The state of one build: the report so far, the templates compiled so far, the
/// connectors compiled so far and the permalinks taken.
struct Builder<'o> {
    options: &'o BuildOptions,
    report: Report,
    templates: TemplateSet,
    connectors: Vec<Connector>,
    permalinks: HashMap<String, String>,
    /// What the templates of the connector being checked read of the caller.
    reads: CallerReads,
    /// The earlier steps the templates of the step being checked read.
    step_reads: Vec<String>,
}

/// Where a call sits, for scoping its templates and naming its problems.
struct CallSite<'a> {
    at: Location,
    permalink: &'a str,
    kind: ConnectorKind,
    step_name: String,
    index: usize,
    earlier_steps: &'a [String],
    current_and_later_steps: &'a [String],
    path_params: &'a [String],
    is_last: bool,
    /// Whether its request templates see `item` and `item_index` (a `for_each` step).
    item: bool,
}

impl<'o> Builder<'o> {
    fn file(&mut self, text: &str) {
        let file_at = Location {
            connector: "-".into(),
            step: None,
        };
        if text.trim().is_empty() {
            return;
        }
        let root: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.report
                    .error(&file_at, "(file)", format!("not valid JSON: {e}"));
                return;
            }
        };
        let Value::Object(mut root) = root else {
            self.report.error(
                &file_at,
                "(file)",
                "the registry must be a JSON object with \"connectors\" and/or \"composite_connectors\" arrays",
            );
            return;
        };
        self.unknown_fields(&file_at, "", &root, &known_fields::FILE);
        for (key, kind) in [
            ("connectors", ConnectorKind::Simple),
            ("composite_connectors", ConnectorKind::Composite),
        ] {
            match root.remove(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    // Each connector's JSON is freed once it is compiled: the parsed file of
                    // a large registry is larger than the compiled registry (10,000
                    // connectors: ~60 MiB of JSON values), and freed as it goes, the
                    // compiled parts fill its space instead of growing the peak.
                    for (i, item) in items.into_iter().enumerate() {
                        match kind {
                            ConnectorKind::Simple => self.simple(i, &item),
                            ConnectorKind::Composite => self.composite(i, &item),
                        }
                    }
                }
                Some(_) => self.report.error(&file_at, key, "must be an array"),
            }
        }
    }

    fn unknown_fields(
        &mut self,
        at: &Location,
        prefix: &str,
        object: &Map<String, Value>,
        known: &[String],
    ) {
        for key in object.keys() {
            if !known.contains(key) {
                let field = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                self.report.warning(
                    at,
                    field,
                    format!(
                        "unknown field '{key}' is ignored (known fields: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }

    fn key_value_unknown_fields(&mut self, at: &Location, prefix: &str, item: &Map<String, Value>) {
        for (list, known) in [
            ("headers", &*known_fields::KEY_VALUE),
            ("query_parameters", &*known_fields::KEY_VALUE),
            ("path_parameters", &*known_fields::PATH_PARAMETER),
        ] {
            if let Some(Value::Array(entries)) = item.get(list) {
                for (j, entry) in entries.iter().enumerate() {
                    if let Value::Object(entry) = entry {
                        self.unknown_fields(at, &format!("{prefix}{list}[{j}]"), entry, known);
                    }
                }
            }
        }
        if let Some(Value::Object(auth)) = item.get("authentication") {
            self.unknown_fields(
                at,
                &format!("{prefix}authentication"),
                auth,
                &known_fields::AUTHENTICATION,
            );
        }
    }

    /// Deserializes `value`, reporting a type error at the path where it happened.
    fn typed<T: DeserializeOwned>(
        &mut self,
        at: &Location,
        prefix: &str,
        value: &Value,
    ) -> Checked<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Ok(v),
            Err(e) => {
                let mut path = e.path().to_string();
                let message = e.into_inner().to_string();
                // A missing field is reported at the field itself, not at its parent.
                if let Some(missing) = message
                    .strip_prefix("missing field `")
                    .and_then(|rest| rest.split('`').next())
                {
                    path = match path.as_str() {
                        "." => missing.to_string(),
                        parent => format!("{parent}.{missing}"),
                    };
                }
                let field = match (prefix.is_empty(), path.as_str()) {
                    (true, ".") if at.step.is_some() => "(step)".to_string(),
                    (true, ".") => "(connector)".to_string(),
                    (false, ".") => prefix.trim_end_matches('.').to_string(),
                    (_, p) => format!("{prefix}{p}"),
                };
                self.report.error(at, field, message);
                Err(Reported)
            }
        }
    }

    /// Label of connector `i` for problems: its permalink if it can be known.
    fn label(item: &Value, list: &str, i: usize) -> String {
        let permalink = item
            .get("permalink")
            .and_then(Value::as_str)
            .map(str::to_string);
        let name = item
            .get("name")
            .and_then(Value::as_str)
            .map(derive_permalink);
        permalink
            .or(name)
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| format!("{list}[{i}]"))
    }

    /// Checks a connector's name and permalink (given or derived) and claims the permalink.
    fn identity(&mut self, at: &Location, name: &str, permalink: Option<&str>) -> Checked<String> {
        let mut ok = true;
        if name.trim().is_empty() {
            self.report
                .error(at, "name", "is required and must not be empty");
            ok = false;
        } else if name.chars().count() > MAX_NAME_LEN {
            self.report.error(
                at,
                "name",
                format!("is longer than {MAX_NAME_LEN} characters"),
            );
            ok = false;
        }
        let permalink = match permalink {
            Some(p) => {
                if !is_slug(p) {
                    self.report.error(at, "permalink", format!(
                        "'{p}' is not a valid permalink: use lower-case letters, digits and single hyphens (e.g. 'auth-and-fetch')"
                    ));
                    ok = false;
                }
                p.to_string()
            }
            None => {
                let derived = derive_permalink(name);
                if ok && !is_slug(&derived) {
                    self.report.error(at, "permalink", format!(
                        "no permalink is given and the one derived from the name ('{derived}') is not a valid slug; add a \"permalink\""
                    ));
                    ok = false;
                }
                derived
            }
        };
        if permalink.len() > MAX_NAME_LEN {
            self.report.error(
                at,
                "permalink",
                format!("is longer than {MAX_NAME_LEN} characters"),
            );
            ok = false;
        }
        if ok {
            if let Some(first) = self.permalinks.get(&permalink) {
                self.report.error(at, "permalink", format!(
                    "'{permalink}' is already used by {first}; permalinks must be unique across simple and composite connectors"
                ));
                ok = false;
            } else {
                self.permalinks
                    .insert(permalink.clone(), format!("the connector named '{name}'"));
            }
        }
        checked(ok, permalink)
    }
}
