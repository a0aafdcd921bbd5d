//! Validates a registry file field by field and compiles it into a [`Registry`]: every
//! problem is collected (not just the first), each naming connector, step and field.

use std::collections::HashMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::compiled::{ApiKeyPlacement, Auth, ConfigValue, Connector, Param, Registry, Step};
use super::model::{
    known_fields, AuthenticationDef, CompositeConnectorDef, HttpMethod, KeyValueDef,
    SimpleConnectorDef, StepDef,
};
use super::problems::{Location, RegistryRejected, Report};
use crate::template::{
    analyze, new_environment, url_origin, ConnectorKind, Field, RenderLimits, Scope, SecretStore,
    TemplateId, TemplateSet, UrlOrigin, Variables,
};

/// Longest name, permalink, header key or query key.
pub const MAX_NAME_LEN: usize = 255;
/// Longest URL template.
pub const MAX_URL_LEN: usize = 2048;
/// Longest header or query value template.
pub const MAX_VALUE_LEN: usize = 1000;
/// Longest response cache lifetime.
pub const MAX_CACHE_TTL_SECS: u64 = 86_400;

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
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            secrets: Arc::new(SecretStore::new()),
            variables: Arc::new(Variables::new()),
            limits: RenderLimits::default(),
            mode: LoadMode::Validate,
            allow_http: false,
        }
    }
}

/// A published registry and the warnings found while building it.
pub type BuildResult = Result<Registry, RegistryRejected>;

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
pub fn revision_of(text: &str) -> String {
    let mut hash: u64 = 0xcbf29ce484222325;
    for byte in text.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x100000001b3);
    }
    format!("{hash:016x}")
}

/// Permalink derived from a name: lower-case, spaces become `-` (SPEC §1).
pub fn derive_permalink(name: &str) -> String {
    name.trim().to_lowercase().replace(' ', "-")
}

/// Whether `s` matches `^[a-z0-9]+(?:-[a-z0-9]+)*$`.
pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.split('-').all(|part| {
            !part.is_empty()
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// Whether `s` is a valid path parameter value (SPEC §3): 1–200 of `[A-Za-z0-9._~-]`,
/// not `.` or `..`, and nothing containing `..`.
pub fn is_valid_path_param_value(s: &str) -> bool {
    (1..=200).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'))
        && !s.contains("..")
        && s != "."
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Headers the runtime sets itself; a registry may not configure them.
const RUNTIME_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "upgrade",
    "te",
    "trailer",
    "keep-alive",
    "proxy-connection",
];

struct Builder<'o> {
    options: &'o BuildOptions,
    report: Report,
    templates: TemplateSet,
    connectors: Vec<Connector>,
    permalinks: HashMap<String, String>,
}

/// The fields a simple connector and a composite step share.
struct CallDef<'d> {
    url: &'d str,
    method: Option<&'d str>,
    headers: &'d [KeyValueDef],
    query_parameters: &'d [KeyValueDef],
    authentication: Option<&'d AuthenticationDef>,
    request_body: &'d str,
    response_body: &'d str,
    response_content_type: &'d str,
    cache_ttl_seconds: Option<u64>,
}

/// Where the call sits, for scoping templates and naming problems.
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
        let Value::Object(root) = root else {
            self.report.error(
                &file_at,
                "(file)",
                "the registry must be a JSON object with \"connectors\" and/or \"composite_connectors\" arrays",
            );
            return;
        };
        self.unknown_fields(&file_at, "", &root, known_fields::FILE);
        for (key, kind) in [
            ("connectors", ConnectorKind::Simple),
            ("composite_connectors", ConnectorKind::Composite),
        ] {
            match root.get(key) {
                None | Some(Value::Null) => {}
                Some(Value::Array(items)) => {
                    for (i, item) in items.iter().enumerate() {
                        match kind {
                            ConnectorKind::Simple => self.simple(i, item),
                            ConnectorKind::Composite => self.composite(i, item),
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
        known: &[&str],
    ) {
        for key in object.keys() {
            if !known.contains(&key.as_str()) {
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
            ("headers", known_fields::KEY_VALUE),
            ("query_parameters", known_fields::KEY_VALUE),
            ("path_parameters", known_fields::PATH_PARAMETER),
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
                known_fields::AUTHENTICATION,
            );
        }
    }

    /// Deserializes `value`, reporting a type error at the path where it happened.
    fn typed<T: DeserializeOwned>(
        &mut self,
        at: &Location,
        prefix: &str,
        value: &Value,
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
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
                None
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

    fn identity(&mut self, at: &Location, name: &str, permalink: Option<&str>) -> Option<String> {
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
        ok.then_some(permalink)
    }

    fn simple(&mut self, i: usize, item: &Value) {
        let at = Location {
            connector: Self::label(item, "connectors", i),
            step: None,
        };
        if let Value::Object(obj) = item {
            self.unknown_fields(&at, "", obj, known_fields::SIMPLE);
            self.key_value_unknown_fields(&at, "", obj);
        }
        let Some(def) = self.typed::<SimpleConnectorDef>(&at, "", item) else {
            return;
        };
        let permalink = self.identity(&at, &def.name, def.permalink.as_deref());
        let path_params = self.path_parameters(&at, &def);
        let names: Vec<String> = path_params.iter().map(|(k, _)| k.clone()).collect();
        let step_name = permalink.clone().unwrap_or_else(|| at.connector.clone());
        let steps = [step_name.clone()];
        let site = CallSite {
            at: at.clone(),
            permalink: permalink.as_deref().unwrap_or(&at.connector),
            kind: ConnectorKind::Simple,
            step_name,
            index: 0,
            earlier_steps: &[],
            current_and_later_steps: &steps,
            path_params: &names,
            is_last: true,
        };
        let call = CallDef {
            url: &def.url,
            method: def.method.as_deref(),
            headers: &def.headers,
            query_parameters: &def.query_parameters,
            authentication: def.authentication.as_ref(),
            request_body: &def.request_body,
            response_body: &def.response_body,
            response_content_type: &def.response_content_type,
            cache_ttl_seconds: def.cache_ttl_seconds,
        };
        let step = self.call(&site, &call);
        for (key, _) in &path_params {
            let used = def.url.contains(&format!("pathParams.{key}"))
                || def.url.contains(&format!("pathParams['{key}']"))
                || def.url.contains(&format!("pathParams[\"{key}\"]"));
            if !used {
                self.report.warning(&at, "path_parameters", format!(
                    "path parameter '{key}' is declared but the url never uses {{{{ pathParams.{key} }}}}"
                ));
            }
        }
        if let (Some(permalink), Some(step)) = (permalink, step) {
            self.connectors.push(Connector {
                name: def.name,
                permalink,
                kind: ConnectorKind::Simple,
                steps: vec![step],
                path_parameters: path_params,
                fingerprint: revision_of(&item.to_string()),
                hot_metrics: Default::default(),
            });
        }
    }

    fn path_parameters(
        &mut self,
        at: &Location,
        def: &SimpleConnectorDef,
    ) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for (j, p) in def.path_parameters.iter().enumerate() {
            let field = format!("path_parameters[{j}].key");
            let valid_key = !p.key.is_empty()
                && p.key.len() <= MAX_NAME_LEN
                && p.key
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
                && p.key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !valid_key {
                self.report.error(at, field, format!(
                    "'{}' is not a valid path parameter name: use letters, digits and '_' (it is read as pathParams.NAME)",
                    p.key
                ));
                continue;
            }
            if out.iter().any(|(k, _)| *k == p.key) {
                self.report
                    .error(at, field, format!("duplicate path parameter '{}'", p.key));
                continue;
            }
            if let Some(value) = &p.value {
                if !is_valid_path_param_value(value) {
                    self.report.error(at, format!("path_parameters[{j}].value"),
                        "the default value must be 1-200 characters of A-Z a-z 0-9 . _ ~ - and must not contain '..'");
                }
            }
            out.push((p.key.clone(), p.value.clone()));
        }
        out
    }

    fn composite(&mut self, i: usize, item: &Value) {
        let at = Location {
            connector: Self::label(item, "composite_connectors", i),
            step: None,
        };
        let mut shallow = item.clone();
        let raw_steps = match &mut shallow {
            Value::Object(obj) => {
                self.unknown_fields(&at, "", obj, known_fields::COMPOSITE);
                // Steps are typed one by one below, each with its own location.
                obj.insert("steps".into(), Value::Array(Vec::new()))
            }
            _ => None,
        };
        let Some(def) = self.typed::<CompositeConnectorDef>(&at, "", &shallow) else {
            return;
        };
        let permalink = self.identity(&at, &def.name, def.permalink.as_deref());
        let raw_steps = match raw_steps {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(steps)) => steps,
            Some(_) => {
                self.report.error(&at, "steps", "must be an array of steps");
                return;
            }
        };
        if raw_steps.is_empty() {
            self.report.error(
                &at,
                "steps",
                "a composite connector needs at least one step",
            );
            return;
        }
        let labels: Vec<String> = raw_steps
            .iter()
            .enumerate()
            .map(|(j, s)| {
                s.get("name")
                    .and_then(Value::as_str)
                    .filter(|n| !n.is_empty())
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("steps[{j}]"))
            })
            .collect();
        let mut steps = Vec::new();
        let mut complete = true;
        for (j, raw) in raw_steps.iter().enumerate() {
            let step_at = Location {
                connector: at.connector.clone(),
                step: Some(labels[j].clone()),
            };
            if let Value::Object(obj) = raw {
                self.unknown_fields(&step_at, "", obj, known_fields::STEP);
                self.key_value_unknown_fields(&step_at, "", obj);
            }
            let Some(step_def) = self.typed::<StepDef>(&step_at, "", raw) else {
                complete = false;
                continue;
            };
            if !is_slug(&step_def.name) || step_def.name.len() > MAX_NAME_LEN {
                self.report.error(&step_at, "name", format!(
                    "'{}' is not a valid step name: use a slug of lower-case letters, digits and single hyphens (e.g. 'fetch-user')",
                    step_def.name
                ));
                complete = false;
            } else if labels[..j].contains(&step_def.name) {
                self.report.error(
                    &step_at,
                    "name",
                    format!(
                        "duplicate step name '{}'; step names must be unique within a composite",
                        step_def.name
                    ),
                );
                complete = false;
            }
            let site = CallSite {
                at: step_at,
                permalink: permalink.as_deref().unwrap_or(&at.connector),
                kind: ConnectorKind::Composite,
                step_name: step_def.name.clone(),
                index: j,
                earlier_steps: &labels[..j],
                current_and_later_steps: &labels[j..],
                path_params: &[],
                is_last: j + 1 == raw_steps.len(),
            };
            let call = CallDef {
                url: &step_def.url,
                method: step_def.method.as_deref(),
                headers: &step_def.headers,
                query_parameters: &step_def.query_parameters,
                authentication: step_def.authentication.as_ref(),
                request_body: &step_def.request_body,
                response_body: &step_def.response_body,
                response_content_type: &step_def.response_content_type,
                cache_ttl_seconds: None,
            };
            match self.call(&site, &call) {
                Some(step) => steps.push(step),
                None => complete = false,
            }
        }
        if let (Some(permalink), true) = (permalink, complete) {
            self.connectors.push(Connector {
                name: def.name,
                permalink,
                kind: ConnectorKind::Composite,
                steps,
                path_parameters: Vec::new(),
                fingerprint: revision_of(&item.to_string()),
                hot_metrics: Default::default(),
            });
        }
    }

    /// Checks and compiles one template; `None` when it has errors.
    fn template(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Option<TemplateId> {
        let scope = Scope {
            field,
            kind: site.kind,
            earlier_steps: site.earlier_steps,
            current_and_later_steps: site.current_and_later_steps,
            path_params: site.path_params,
        };
        let analysis = analyze(source, &scope, self.templates.env());
        let multiline = source.contains('\n');
        for finding in &analysis.errors {
            let message = match finding.line {
                Some(line) if multiline => format!("{} (line {line})", finding.message),
                _ => finding.message.clone(),
            };
            self.report.error(&site.at, field_path, message);
        }
        for secret in &analysis.secrets {
            if !self.options.secrets.contains(secret) {
                self.report.warning(&site.at, field_path, format!(
                    "secret '{secret}' is not configured here; the server needs it as a file '{secret}' in --secrets-dir or as CONNECTOR_SECRET_{}",
                    secret.to_ascii_uppercase()
                ));
            }
        }
        for (variable, guarded) in &analysis.variables {
            if !guarded && self.options.variables.get(variable).is_none() {
                self.report.warning(
                    &site.at,
                    field_path,
                    format!(
                    "variable '{variable}' is not set here; the server needs it in --variables-file"
                ),
                );
            }
        }
        if !analysis.errors.is_empty() {
            return None;
        }
        let location = format!("{}/{}/{}", site.permalink, site.index, field_path);
        match self.templates.add(&location, field, source) {
            Ok(id) => Some(id),
            Err(e) => {
                self.report.error(
                    &site.at,
                    field_path,
                    format!("template error: {}", e.detail().unwrap_or("cannot compile")),
                );
                None
            }
        }
    }

    /// Resolves the origin a URL must have, from its literal text or a variable.
    fn origin(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        origin: UrlOrigin,
    ) -> Option<String> {
        let variable_value = |name: &str, default: &Option<String>| -> Option<String> {
            match self.options.variables.get(name) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => None,
                None => default.clone(),
            }
        };
        let (resolved, variable) = match &origin {
            UrlOrigin::Literal(o) => (Some(o.clone()), None),
            UrlOrigin::VariableHost {
                scheme,
                variable,
                default,
                port,
            } => (
                variable_value(variable, default)
                    .map(|host| format!("{scheme}://{}{port}", host.to_ascii_lowercase())),
                Some(variable.clone()),
            ),
            UrlOrigin::VariableOrigin { variable, default } => (
                variable_value(variable, default)
                    .map(|o| o.trim_end_matches('/').to_ascii_lowercase()),
                Some(variable.clone()),
            ),
        };
        let Some(resolved) = resolved else {
            let variable = variable.unwrap_or_default();
            let message = format!(
                "the URL's host comes from variable '{variable}', which is not set (add it to --variables-file or use | default('host'))"
            );
            if self.options.mode == LoadMode::Serve {
                self.report.error(&site.at, field_path, message);
                return None;
            }
            self.report.warning(&site.at, field_path, message);
            return Some(String::new());
        };
        let valid = resolved
            .split_once("://")
            .filter(|(scheme, _)| matches!(*scheme, "http" | "https"))
            .is_some_and(|(_, host)| {
                !host.is_empty()
                    && host.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']')
                    })
            });
        if !valid {
            self.report.error(&site.at, field_path, format!(
                "the URL's scheme and host resolve to '{resolved}', which is not of the form https://host[:port]"
            ));
            return None;
        }
        if resolved.starts_with("http://") && !self.options.allow_http {
            let message = "upstreams must use https:// (plain http is allowed only with --allow-private-upstreams, for local development)";
            if self.options.mode == LoadMode::Serve {
                self.report.error(&site.at, field_path, message);
                return None;
            }
            self.report.warning(&site.at, field_path, message);
        }
        Some(resolved)
    }

    fn url(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Option<(TemplateId, String)> {
        if source.trim().is_empty() {
            self.report
                .error(&site.at, field_path, "is required and must not be empty");
            return None;
        }
        if source.chars().count() > MAX_URL_LEN {
            self.report.error(
                &site.at,
                field_path,
                format!("is longer than {MAX_URL_LEN} characters"),
            );
            return None;
        }
        let origin = match url_origin(source) {
            Ok(origin) => origin,
            Err(message) => {
                self.report.error(&site.at, field_path, message);
                return None;
            }
        };
        let origin = self.origin(site, field_path, origin);
        let template = self.template(site, field_path, field, source);
        Some((template?, origin?))
    }

    fn params(
        &mut self,
        site: &CallSite<'_>,
        list: &str,
        items: &[KeyValueDef],
        field: Field,
    ) -> Option<Vec<Param>> {
        let mut out = Vec::new();
        let mut ok = true;
        for (j, item) in items.iter().enumerate() {
            let key_field = format!("{list}[{j}].key");
            let value_field = format!("{list}[{j}].value");
            if item.key.is_empty() || item.key.chars().count() > MAX_NAME_LEN {
                self.report.error(
                    &site.at,
                    key_field,
                    format!("must be 1-{MAX_NAME_LEN} characters"),
                );
                ok = false;
                continue;
            }
            if field == Field::HeaderValue {
                if !is_header_name(&item.key) {
                    self.report.error(
                        &site.at,
                        &key_field,
                        format!("'{}' is not a valid HTTP header name", item.key),
                    );
                    ok = false;
                    continue;
                }
                if RUNTIME_HEADERS.contains(&item.key.to_ascii_lowercase().as_str()) {
                    self.report.error(
                        &site.at,
                        &key_field,
                        format!(
                            "'{}' is set by the runtime and cannot be configured",
                            item.key
                        ),
                    );
                    ok = false;
                    continue;
                }
                let lower = item.key.to_ascii_lowercase();
                if item.overridable && (lower.starts_with("x-forwarded-") || lower == "forwarded") {
                    // Upstreams trust these for client addresses; a caller must never choose them.
                    self.report.error(&site.at, format!("{list}[{j}].overridable"), format!(
                        "'{}' cannot be overridable: callers may not set forwarding headers (a fixed value is allowed)",
                        item.key
                    ));
                    ok = false;
                    continue;
                }
            }
            let duplicate = items[..j].iter().any(|other| match field {
                Field::HeaderValue => other.key.eq_ignore_ascii_case(&item.key),
                _ => other.key == item.key,
            });
            if duplicate {
                self.report
                    .error(&site.at, key_field, format!("duplicate key '{}'", item.key));
                ok = false;
            }
            if item.value.chars().count() > MAX_VALUE_LEN {
                self.report.error(
                    &site.at,
                    value_field,
                    format!("is longer than {MAX_VALUE_LEN} characters"),
                );
                ok = false;
                continue;
            }
            match self.template(site, &value_field, field, &item.value) {
                Some(value) => out.push(Param {
                    header: (field == Field::HeaderValue)
                        .then(|| {
                            awc::http::header::HeaderName::from_bytes(item.key.as_bytes()).ok()
                        })
                        .flatten()
                        .map(|name| {
                            let literal = value
                                .literal()
                                .and_then(|l| awc::http::header::HeaderValue::from_str(l).ok());
                            (name, literal)
                        }),
                    key: item.key.clone(),
                    value,
                    overridable: item.overridable,
                }),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn call(&mut self, site: &CallSite<'_>, def: &CallDef<'_>) -> Option<Step> {
        let method = match def.method {
            None => Some(HttpMethod::GET),
            Some(name) => {
                let parsed = HttpMethod::parse(name);
                if parsed.is_none() {
                    self.report.error(&site.at, "method", format!(
                        "'{name}' is not a supported method; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"
                    ));
                }
                parsed
            }
        };
        let url = self.url(site, "url", Field::Url, def.url);
        let headers = self.params(site, "headers", def.headers, Field::HeaderValue);
        let query = self.params(
            site,
            "query_parameters",
            def.query_parameters,
            Field::QueryValue,
        );
        let auth = match def.authentication {
            Some(a) if a.kind == "none" => {
                self.auth_none(site, a);
                Some(None)
            }
            Some(a) => self.auth(site, a).map(Some),
            None => Some(None),
        };
        let optional = |this: &mut Self,
                        field_path: &str,
                        field: Field,
                        source: &str|
         -> Option<Option<TemplateId>> {
            if source.is_empty() {
                Some(None)
            } else {
                this.template(site, field_path, field, source).map(Some)
            }
        };
        let request_body = optional(self, "request_body", Field::RequestBody, def.request_body);
        let response_body = optional(
            self,
            "response_body",
            Field::ResponseBody,
            def.response_body,
        );
        let content_type = def.response_content_type.trim();
        if content_type.bytes().any(|b| b.is_ascii_control()) {
            self.report.error(
                &site.at,
                "response_content_type",
                "must be a single-line header value",
            );
            return None;
        }
        if !content_type.is_empty() && !site.is_last {
            self.report.warning(&site.at, "response_content_type",
                "only the last step's response_content_type is returned to the widget; this one is ignored");
        }
        let cache_ttl = match def.cache_ttl_seconds.filter(|s| *s > 0) {
            None => None,
            Some(seconds) if seconds > MAX_CACHE_TTL_SECS => {
                self.report.error(
                    &site.at,
                    "cache_ttl_seconds",
                    format!("must be at most {MAX_CACHE_TTL_SECS} (a day)"),
                );
                return None;
            }
            Some(seconds) => match method {
                Some(HttpMethod::GET | HttpMethod::HEAD) => {
                    Some(std::time::Duration::from_secs(seconds))
                }
                Some(other) => {
                    self.report.error(
                        &site.at,
                        "cache_ttl_seconds",
                        format!(
                            "only GET and HEAD connectors can be cached, not {}",
                            other.as_str()
                        ),
                    );
                    return None;
                }
                None => None,
            },
        };
        let (url, origin) = url?;
        Some(Step {
            name: site.step_name.clone(),
            index: site.index,
            method: method?,
            url,
            origin,
            headers: headers?,
            query: query?,
            auth: auth?,
            request_body: request_body?,
            response_body: response_body?,
            response_content_type: (!content_type.is_empty()).then(|| content_type.to_string()),
            hot_metrics: Default::default(),
            cache_ttl,
        })
    }

    fn auth_none(&mut self, site: &CallSite<'_>, def: &AuthenticationDef) {
        for key in def.config.keys() {
            self.report.warning(
                &site.at,
                format!("authentication.config.{key}"),
                "authentication type 'none' takes no config; this key is ignored",
            );
        }
    }

    fn auth(&mut self, site: &CallSite<'_>, def: &AuthenticationDef) -> Option<Auth> {
        let config = &def.config;
        let kind = def.kind.as_str();
        let (required, optional): (&[&str], &[&str]) = match kind {
            "api_key" | "apikey" => (&["key", "value"], &["in"]),
            "oauth_client_credentials" => {
                (&["client_id", "client_secret", "token_url"], &["scope"])
            }
            "jwt" => (&["private_key", "claims"], &["algorithm", "jwt_headers"]),
            "oauth_jwt_bearer" => (
                &[
                    "client_id",
                    "private_key",
                    "token_url",
                    "subject",
                    "audience",
                ],
                &["token_ttl", "algorithm", "additional_claims", "jwt_headers"],
            ),
            other => {
                self.report.error(&site.at, "authentication.type", format!(
                    "unknown authentication type '{other}'; use none, api_key, oauth_client_credentials, jwt or oauth_jwt_bearer"
                ));
                return None;
            }
        };
        let mut ok = true;
        for key in required {
            if !config.contains_key(*key) {
                self.report.error(
                    &site.at,
                    format!("authentication.config.{key}"),
                    format!("{kind} authentication needs '{key}' in its config"),
                );
                ok = false;
            }
        }
        for key in config.keys() {
            if !required.contains(&key.as_str()) && !optional.contains(&key.as_str()) {
                let mut known: Vec<&str> = required.to_vec();
                known.extend_from_slice(optional);
                self.report.warning(
                    &site.at,
                    format!("authentication.config.{key}"),
                    format!(
                        "unknown {kind} config key '{key}' is ignored (known: {})",
                        known.join(", ")
                    ),
                );
            }
        }
        if !ok {
            return None;
        }
        let tpl = |this: &mut Self, key: &str| -> Option<TemplateId> {
            let field_path = format!("authentication.config.{key}");
            match config.get(key) {
                Some(Value::String(s)) => this.template(site, &field_path, Field::AuthConfig, s),
                Some(Value::Number(n)) => {
                    this.template(site, &field_path, Field::AuthConfig, &n.to_string())
                }
                _ => {
                    this.report.error(&site.at, field_path, "must be a string");
                    None
                }
            }
        };
        match kind {
            "api_key" | "apikey" => {
                let key = match config.get("key") {
                    Some(Value::String(k)) if is_header_name(k) && !k.contains("{{") => k.clone(),
                    _ => {
                        self.report.error(&site.at, "authentication.config.key",
                            "must be the literal name of the header or query parameter that carries the key");
                        return None;
                    }
                };
                let placement = match config.get("in").and_then(Value::as_str).unwrap_or("header") {
                    "header" => ApiKeyPlacement::Header,
                    "query" => ApiKeyPlacement::Query,
                    other => {
                        self.report.error(
                            &site.at,
                            "authentication.config.in",
                            format!(
                            "'{other}' is not a place for an API key; use \"header\" or \"query\""
                        ),
                        );
                        return None;
                    }
                };
                let value = tpl(self, "value")?;
                Some(Auth::ApiKey {
                    key,
                    value,
                    placement,
                })
            }
            "oauth_client_credentials" => {
                let client_id = tpl(self, "client_id");
                let client_secret = tpl(self, "client_secret");
                let token = self.token_url(site, config);
                let scope = if config.contains_key("scope") {
                    Some(tpl(self, "scope")?)
                } else {
                    None
                };
                let (token_url, token_origin) = token?;
                Some(Auth::OAuthClientCredentials {
                    client_id: client_id?,
                    client_secret: client_secret?,
                    token_url,
                    token_origin,
                    scope,
                })
            }
            "jwt" => {
                let private_key = tpl(self, "private_key");
                let algorithm = self.algorithm(site, config);
                let claims = self.config_tree(site, "claims", config.get("claims"), true);
                let jwt_headers = self.optional_tree(site, "jwt_headers", config);
                Some(Auth::Jwt {
                    private_key: private_key?,
                    algorithm: algorithm?,
                    claims: claims?,
                    jwt_headers: jwt_headers?,
                })
            }
            "oauth_jwt_bearer" => {
                let client_id = tpl(self, "client_id");
                let private_key = tpl(self, "private_key");
                let subject = tpl(self, "subject");
                let audience = tpl(self, "audience");
                let token = self.token_url(site, config);
                let algorithm = self.algorithm(site, config);
                let token_ttl = match config.get("token_ttl") {
                    None => Some(3600),
                    Some(v) => match v
                        .as_u64()
                        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                    {
                        Some(ttl) if ttl > 60 => Some(ttl),
                        _ => {
                            self.report.error(
                                &site.at,
                                "authentication.config.token_ttl",
                                "must be a whole number of seconds greater than 60",
                            );
                            None
                        }
                    },
                };
                let additional_claims = self.optional_tree(site, "additional_claims", config);
                let jwt_headers = self.optional_tree(site, "jwt_headers", config);
                let (token_url, token_origin) = token?;
                Some(Auth::OAuthJwtBearer {
                    client_id: client_id?,
                    private_key: private_key?,
                    token_url,
                    token_origin,
                    subject: subject?,
                    audience: audience?,
                    token_ttl: token_ttl?,
                    algorithm: algorithm?,
                    additional_claims: additional_claims?,
                    jwt_headers: jwt_headers?,
                })
            }
            _ => None,
        }
    }

    fn token_url(
        &mut self,
        site: &CallSite<'_>,
        config: &Map<String, Value>,
    ) -> Option<(TemplateId, String)> {
        match config.get("token_url") {
            Some(Value::String(url)) => self.url(
                site,
                "authentication.config.token_url",
                Field::AuthConfig,
                url,
            ),
            _ => {
                self.report.error(
                    &site.at,
                    "authentication.config.token_url",
                    "must be a string URL",
                );
                None
            }
        }
    }

    fn algorithm(&mut self, site: &CallSite<'_>, config: &Map<String, Value>) -> Option<String> {
        let algorithm = match config.get("algorithm") {
            None => "RS256",
            Some(Value::String(a)) => a.as_str(),
            Some(_) => "",
        };
        match crate::jwt::parse_algorithm(algorithm) {
            Ok(_) => Some(algorithm.to_string()),
            Err(e) => {
                self.report
                    .error(&site.at, "authentication.config.algorithm", e.to_string());
                None
            }
        }
    }

    fn optional_tree(
        &mut self,
        site: &CallSite<'_>,
        key: &str,
        config: &Map<String, Value>,
    ) -> Option<Option<ConfigValue>> {
        match config.get(key) {
            None | Some(Value::Null) => Some(None),
            value => self.config_tree(site, key, value, true).map(Some),
        }
    }

    /// Compiles a JSON config value whose strings are templates.
    fn config_tree(
        &mut self,
        site: &CallSite<'_>,
        path: &str,
        value: Option<&Value>,
        must_be_object: bool,
    ) -> Option<ConfigValue> {
        let field_path = format!("authentication.config.{path}");
        match value {
            Some(Value::Object(map)) => {
                let mut entries = Vec::new();
                let mut ok = true;
                for (k, v) in map {
                    match self.config_tree(site, &format!("{path}.{k}"), Some(v), false) {
                        Some(c) => entries.push((k.clone(), c)),
                        None => ok = false,
                    }
                }
                ok.then_some(ConfigValue::Object(entries))
            }
            _ if must_be_object => {
                self.report.error(&site.at, field_path, "must be an object");
                None
            }
            Some(Value::String(s)) => self
                .template(site, &field_path, Field::AuthConfig, s)
                .map(ConfigValue::Template),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                let mut ok = true;
                for (i, item) in items.iter().enumerate() {
                    match self.config_tree(site, &format!("{path}[{i}]"), Some(item), false) {
                        Some(c) => out.push(c),
                        None => ok = false,
                    }
                }
                ok.then_some(ConfigValue::Array(out))
            }
            Some(other) => Some(ConfigValue::Literal(other.clone())),
            None => Some(ConfigValue::Literal(Value::Null)),
        }
    }
}
