//! Templated fields: the static checks' findings reported at the field, templates compiled,
//! and a URL's origin (scheme and host) fixed when the registry loads.

use super::{Builder, CallSite, Checked, LoadMode, Reported};
use crate::registry::rules::MAX_URL_LEN;
use crate::template::{analyze, Analysis, Field, Scope, TemplateId};
use crate::upstream::origin::{self, url_origin, ResolveError, UrlOrigin};

impl<'o> Builder<'o> {
    /// Checks and compiles one template.
    pub(super) fn template(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Checked<TemplateId> {
        self.checked(site, field_path, field, source)?;
        let location = format!("{}/{}/{}", site.permalink, site.index, field_path);
        self.templates.add(&location, field, source).map_err(|e| {
            self.report.error(
                &site.at,
                field_path,
                format!("template error: {}", e.detail().unwrap_or("cannot compile")),
            );
            Reported
        })
    }

    /// Checks and compiles one expression (`when`, `for_each`): a single Jinja2 expression,
    /// under the same static checks as a template.
    pub(super) fn expression(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Checked<TemplateId> {
        if let Err(message) = self.templates.check_expression(source) {
            self.report.error(&site.at, field_path, message);
            return Err(Reported);
        }
        self.checked(site, field_path, field, &format!("{{{{ ({source}\n) }}}}"))?;
        let location = format!("{}/{}/{}", site.permalink, site.index, field_path);
        self.templates
            .add_expression(&location, field, source)
            .map_err(|e| {
                self.report.error(
                    &site.at,
                    field_path,
                    format!(
                        "expression error: {}",
                        e.detail().unwrap_or("cannot compile")
                    ),
                );
                Reported
            })
    }

    /// Runs the static checks of one template and reports what they find; records the
    /// steps and the caller attributes it reads.
    fn checked(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Checked<()> {
        let scope = Scope {
            field,
            kind: site.kind.context(),
            earlier_steps: site.earlier_steps,
            current_and_later_steps: site.current_and_later_steps,
            path_params: site.path_params,
            item: site.item && !field.is_expression(),
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
        self.caller_reads(site, field_path, &analysis);
        for step in analysis.step_reads {
            if !self.step_reads.contains(&step) {
                self.step_reads.push(step);
            }
        }
        if analysis.errors.is_empty() {
            Ok(())
        } else {
            Err(Reported)
        }
    }

    /// Records what a template reads of the caller, and refuses a read the server cannot
    /// serve (docs/spec.md §9); without the server's identity settings (`validate` without
    /// identity flags) it only warns.
    fn caller_reads(&mut self, site: &CallSite<'_>, field_path: &str, analysis: &Analysis) {
        self.reads.user |= analysis.reads_user;
        self.reads.tenant_id |= analysis.reads_tenant_id;
        let provided = self.options.identity;
        let mut missing = Vec::new();
        if analysis.reads_user && !provided.is_some_and(|p| p.user) {
            missing.push(
                "reads user.*, which needs caller identity: --identity-issuer with --identity-jwks-url or --identity-jwks-file",
            );
        }
        if analysis.reads_tenant_id && !provided.is_some_and(|p| p.tenant_id) {
            missing.push("reads tenant_id, which needs --tenant-id or --identity-tenant-claim");
        }
        for message in missing {
            match provided {
                Some(_) => self.report.error(&site.at, field_path, message),
                None => self.report.warning(
                    &site.at,
                    field_path,
                    format!("{message} (a server without it refuses this registry)"),
                ),
            }
        }
    }

    /// Checks and compiles a URL template (a call's `url` or a `token_url`), and fixes the
    /// origin its renders must stay on.
    pub(super) fn url(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        field: Field,
        source: &str,
    ) -> Checked<(TemplateId, String)> {
        if source.trim().is_empty() {
            self.report
                .error(&site.at, field_path, "is required and must not be empty");
            return Err(Reported);
        }
        if source.chars().count() > MAX_URL_LEN {
            self.report.error(
                &site.at,
                field_path,
                format!("is longer than {MAX_URL_LEN} characters"),
            );
            return Err(Reported);
        }
        let origin = url_origin(source).map_err(|message| {
            self.report.error(&site.at, field_path, message);
            Reported
        })?;
        let origin = self.origin(site, field_path, origin);
        let template = self.template(site, field_path, field, source);
        Ok((template?, origin?))
    }

    /// Resolves the origin a URL must have, from its literal text or a variable. An unset
    /// variable (without a default) leaves it empty when validating, and is an error when
    /// serving; so is plain `http://` without `--allow-private-upstreams`.
    fn origin(
        &mut self,
        site: &CallSite<'_>,
        field_path: &str,
        origin: UrlOrigin,
    ) -> Checked<String> {
        let variables = &self.options.variables;
        let resolved = match origin::resolve(&origin, |name| variables.get(name)) {
            Ok(resolved) => resolved,
            Err(ResolveError::Unset { variable }) => {
                let message = format!(
                    "the URL's host comes from variable '{variable}', which is not set (add it to --variables-file or use | default('host'))"
                );
                if self.options.mode == LoadMode::Serve {
                    self.report.error(&site.at, field_path, message);
                    return Err(Reported);
                }
                self.report.warning(&site.at, field_path, message);
                return Ok(String::new());
            }
            Err(ResolveError::NotAnOrigin { resolved }) => {
                self.report.error(&site.at, field_path, format!(
                    "the URL's scheme and host resolve to '{resolved}', which is not of the form https://host[:port]"
                ));
                return Err(Reported);
            }
        };
        if resolved.starts_with("http://") && !self.options.allow_http {
            let message = "upstreams must use https:// (plain http is allowed only with --allow-private-upstreams, for local development)";
            if self.options.mode == LoadMode::Serve {
                self.report.error(&site.at, field_path, message);
                return Err(Reported);
            }
            self.report.warning(&site.at, field_path, message);
        }
        Ok(resolved)
    }
}
