//! Simple connectors, composite connectors and their steps, and the call both are made of:
//! method, URL, headers, query and path parameters, bodies, content type and cache lifetime.

use serde_json::Value;

use super::{checked, revision_of, Builder, CallSite, Checked, Reported};
use crate::registry::compiled::{
    Answer, CallerReads, Connector, ConnectorKind, Param, Step, StepCache,
};
use crate::registry::model::{
    known_fields, AuthenticationDef, CacheSetting, CompositeConnectorDef, Execution, HttpMethod,
    KeyValueDef, RateLimitDef, SimpleConnectorDef, StepDef,
};
use crate::registry::problems::Location;
use crate::registry::rules::{
    is_forwarding_header, is_header_name, is_path_param_name, is_runtime_header, is_slug,
    is_valid_path_param_value, MAX_CACHE_TTL_SECS, MAX_NAME_LEN, MAX_VALUE_LEN,
};
use crate::template::{Field, TemplateId};

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
    cache: Option<CacheSetting>,
    rate_limit: Option<&'d RateLimitDef>,
}

impl<'o> Builder<'o> {
    /// Checks and compiles simple connector `i` of the file.
    pub(super) fn simple(&mut self, i: usize, item: &Value) {
        let at = Location {
            connector: Self::label(item, "connectors", i),
            step: None,
        };
        self.reads = CallerReads::default();
        if let Value::Object(obj) = item {
            self.unknown_fields(&at, "", obj, &known_fields::SIMPLE);
            self.key_value_unknown_fields(&at, "", obj);
            self.rate_limit_unknown_fields(&at, obj);
        }
        let Ok(def) = self.typed::<SimpleConnectorDef>(&at, "", item) else {
            return;
        };
        let permalink = self.identity(&at, &def.name, def.permalink.as_deref());
        let path_params = self.path_parameters(&at, &def);
        let names: Vec<String> = path_params.iter().map(|(k, _)| k.clone()).collect();
        let step_name = permalink.clone().unwrap_or_else(|_| at.connector.clone());
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
            item: false,
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
            cache: def.cache,
            rate_limit: def.rate_limit.as_ref(),
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
        if let (Ok(permalink), Ok(step)) = (permalink, step) {
            self.connectors.push(Connector {
                name: def.name,
                permalink,
                kind: ConnectorKind::Simple,
                steps: vec![step],
                path_parameters: path_params,
                fingerprint: revision_of(&item.to_string()),
                hot_metrics: Default::default(),
                reads: std::mem::take(&mut self.reads),
                cache_metrics: Default::default(),
                execution: Execution::Sequential,
                answer: Answer::default(),
                rate_limit: None,
            });
        }
    }

    /// The valid declared path parameters and their defaults; the invalid ones are reported
    /// (and left out, so the URL's checks do not report them again).
    fn path_parameters(
        &mut self,
        at: &Location,
        def: &SimpleConnectorDef,
    ) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for (j, p) in def.path_parameters.iter().enumerate() {
            let field = format!("path_parameters[{j}].key");
            if !is_path_param_name(&p.key) {
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

    /// Checks and compiles composite connector `i` of the file, each step at its own location.
    pub(super) fn composite(&mut self, i: usize, item: &Value) {
        let at = Location {
            connector: Self::label(item, "composite_connectors", i),
            step: None,
        };
        self.reads = CallerReads::default();
        let mut shallow = item.clone();
        let raw_steps = match &mut shallow {
            Value::Object(obj) => {
                self.unknown_fields(&at, "", obj, &known_fields::COMPOSITE);
                self.rate_limit_unknown_fields(&at, obj);
                // Steps are typed one by one below, each with its own location.
                obj.insert("steps".into(), Value::Array(Vec::new()))
            }
            _ => None,
        };
        let Ok(def) = self.typed::<CompositeConnectorDef>(&at, "", &shallow) else {
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
                self.unknown_fields(&step_at, "", obj, &known_fields::STEP);
                self.key_value_unknown_fields(&step_at, "", obj);
                if let Some(Value::Object(retry)) = obj.get("retry") {
                    self.unknown_fields(&step_at, "retry", retry, &known_fields::RETRY);
                }
                self.rate_limit_unknown_fields(&step_at, obj);
            }
            let Ok(step_def) = self.typed::<StepDef>(&step_at, "", raw) else {
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
                item: step_def.for_each.is_some(),
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
                cache_ttl_seconds: step_def.cache_ttl_seconds,
                cache: step_def.cache,
                rate_limit: step_def.rate_limit.as_ref(),
            };
            self.step_reads.clear();
            let step = self.call(&site, &call);
            let control = self.control(&site, &step_def, &labels);
            match (step, control) {
                (Ok(mut step), Ok(control)) => {
                    step.control = control;
                    steps.push(step);
                }
                _ => complete = false,
            }
        }
        let answer = self.answer(
            &at,
            permalink.as_deref().unwrap_or(&at.connector),
            &def,
            &labels,
        );
        // Taken before the first step: it reads the request and the caller, no step.
        let rate_limit_site = CallSite {
            at: at.clone(),
            permalink: permalink.as_deref().unwrap_or(&at.connector),
            kind: ConnectorKind::Composite,
            step_name: String::new(),
            index: labels.len() + 1,
            earlier_steps: &[],
            current_and_later_steps: &labels,
            path_params: &[],
            is_last: false,
            item: false,
        };
        let rate_limit = self.rate_limit(&rate_limit_site, def.rate_limit.as_ref());
        if let (Ok(permalink), true, Ok(answer), Ok(rate_limit)) =
            (permalink, complete, answer, rate_limit)
        {
            self.connectors.push(Connector {
                name: def.name,
                permalink,
                kind: ConnectorKind::Composite,
                steps,
                path_parameters: Vec::new(),
                fingerprint: revision_of(&item.to_string()),
                hot_metrics: Default::default(),
                reads: std::mem::take(&mut self.reads),
                cache_metrics: Default::default(),
                execution: def.execution.unwrap_or_default(),
                answer,
                rate_limit,
            });
        }
    }

    /// A composite's own `response_body` (reading any step) and `response_content_type`.
    fn answer(
        &mut self,
        at: &Location,
        permalink: &str,
        def: &CompositeConnectorDef,
        labels: &[String],
    ) -> Checked<Answer> {
        let site = CallSite {
            at: at.clone(),
            permalink,
            kind: ConnectorKind::Composite,
            step_name: String::new(),
            index: labels.len(),
            earlier_steps: labels,
            current_and_later_steps: &[],
            path_params: &[],
            is_last: true,
            item: false,
        };
        let body = self.optional_template(
            &site,
            "response_body",
            Field::CompositeResponseBody,
            &def.response_body,
        );
        self.step_reads.clear();
        let content_type = def.response_content_type.trim();
        if content_type.bytes().any(|b| b.is_ascii_control()) {
            self.report.error(
                at,
                "response_content_type",
                "must be a single-line header value",
            );
            return Err(Reported);
        }
        Ok(Answer {
            body: body?,
            content_type: (!content_type.is_empty()).then(|| content_type.to_string()),
        })
    }

    /// Checks a header key: a valid name, not one the runtime sets, and not a forwarding
    /// header that callers could override.
    fn header_key(
        &mut self,
        site: &CallSite<'_>,
        list: &str,
        j: usize,
        item: &KeyValueDef,
    ) -> Checked<()> {
        let key_field = format!("{list}[{j}].key");
        if !is_header_name(&item.key) {
            self.report.error(
                &site.at,
                &key_field,
                format!("'{}' is not a valid HTTP header name", item.key),
            );
            return Err(Reported);
        }
        if is_runtime_header(&item.key) {
            self.report.error(
                &site.at,
                &key_field,
                format!(
                    "'{}' is set by the runtime and cannot be configured",
                    item.key
                ),
            );
            return Err(Reported);
        }
        if item.overridable && is_forwarding_header(&item.key) {
            self.report.error(&site.at, format!("{list}[{j}].overridable"), format!(
                "'{}' cannot be overridable: callers may not set forwarding headers (a fixed value is allowed)",
                item.key
            ));
            return Err(Reported);
        }
        Ok(())
    }

    /// Checks and compiles the headers (`field` is [`Field::HeaderValue`]) or query
    /// parameters of a call.
    fn params(
        &mut self,
        site: &CallSite<'_>,
        list: &str,
        items: &[KeyValueDef],
        field: Field,
    ) -> Checked<Vec<Param>> {
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
            if field == Field::HeaderValue && self.header_key(site, list, j, item).is_err() {
                ok = false;
                continue;
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
                Ok(value) => out.push(Param {
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
                Err(Reported) => ok = false,
            }
        }
        checked(ok, out)
    }

    /// A template that may be left blank: `Ok(None)` when it is.
    fn optional_template(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Checked<Option<TemplateId>> {
        if source.is_empty() {
            return Ok(None);
        }
        self.template(site, field_path, field, source).map(Some)
    }

    /// The method of a call (GET when absent).
    fn method(&mut self, site: &CallSite<'_>, method: Option<&str>) -> Checked<HttpMethod> {
        let Some(name) = method else {
            return Ok(HttpMethod::GET);
        };
        HttpMethod::parse(name).ok_or_else(|| {
            self.report.error(&site.at, "method", format!(
                "'{name}' is not a supported method; use GET, POST, PUT, PATCH, DELETE, HEAD or OPTIONS"
            ));
            Reported
        })
    }

    /// Whether and how a call's answers are cached (docs/spec.md §10): GET and HEAD calls
    /// are, unless `cache` is `"off"`; `cache_ttl_seconds` forces a freshness.
    fn cache(
        &mut self,
        site: &CallSite<'_>,
        seconds: Option<u64>,
        setting: Option<CacheSetting>,
        method: Checked<HttpMethod>,
    ) -> Checked<StepCache> {
        let cacheable = matches!(method, Ok(HttpMethod::GET | HttpMethod::HEAD));
        let off = setting == Some(CacheSetting::Off);
        let Some(seconds) = seconds.filter(|s| *s > 0) else {
            return Ok(StepCache {
                enabled: cacheable && !off,
                forced_ttl: None,
            });
        };
        if seconds > MAX_CACHE_TTL_SECS {
            self.report.error(
                &site.at,
                "cache_ttl_seconds",
                format!("must be at most {MAX_CACHE_TTL_SECS} (a day)"),
            );
            return Err(Reported);
        }
        if off {
            self.report.error(
                &site.at,
                "cache_ttl_seconds",
                "has no effect with cache: \"off\"; remove one of them",
            );
            return Err(Reported);
        }
        match method {
            Ok(HttpMethod::GET | HttpMethod::HEAD) => Ok(StepCache {
                enabled: true,
                forced_ttl: Some(std::time::Duration::from_secs(seconds)),
            }),
            Ok(other) => {
                self.report.error(
                    &site.at,
                    "cache_ttl_seconds",
                    format!(
                        "only GET and HEAD calls can be cached, not {}",
                        other.as_str()
                    ),
                );
                Err(Reported)
            }
            // The method's own error is reported; the call is rejected for it.
            Err(Reported) => Ok(StepCache::default()),
        }
    }

    /// Warns about unknown fields inside an object's `rate_limit`.
    fn rate_limit_unknown_fields(&mut self, at: &Location, obj: &serde_json::Map<String, Value>) {
        if let Some(Value::Object(limit)) = obj.get("rate_limit") {
            self.unknown_fields(at, "rate_limit", limit, &known_fields::RATE_LIMIT);
        }
    }

    /// Checks and compiles one call: every field is checked (so every problem is reported)
    /// before the step is assembled.
    fn call(&mut self, site: &CallSite<'_>, def: &CallDef<'_>) -> Checked<Step> {
        let method = self.method(site, def.method);
        let url = self.url(site, "url", Field::Url, def.url);
        let headers = self.params(site, "headers", def.headers, Field::HeaderValue);
        let query = self.params(
            site,
            "query_parameters",
            def.query_parameters,
            Field::QueryValue,
        );
        let auth = match def.authentication {
            // Boxed: most calls have none, and the largest kind is ~440 bytes.
            Some(a) => self.auth(site, a).map(|a| a.map(Box::new)),
            None => Ok(None),
        };
        let request_body =
            self.optional_template(site, "request_body", Field::RequestBody, def.request_body);
        let response_body = self.optional_template(
            site,
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
            return Err(Reported);
        }
        if !content_type.is_empty() && !site.is_last {
            self.report.warning(&site.at, "response_content_type",
                "only the last step's response_content_type is returned to the widget; this one is ignored");
        }
        let rate_limit = self.rate_limit(site, def.rate_limit);
        let cache = self.cache(site, def.cache_ttl_seconds, def.cache, method)?;
        let (url, origin) = url?;
        Ok(Step {
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
            cache,
            control: Default::default(),
            ok_state_metric: Default::default(),
            rate_limit: rate_limit?,
        })
    }
}
