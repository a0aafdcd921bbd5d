//! Chain control of composite steps (docs/spec.md §12): `when`, `for_each` and
//! `max_concurrency`, `retry`, `timeout_ms`, `on_error` and `depends_on`, checked and
//! compiled; and the earlier steps each step must wait for in parallel mode.

use std::time::Duration;

use super::{checked, Builder, CallSite, Checked, Reported};
use crate::registry::compiled::{ForEach, StepControl, StepRetry};
use crate::registry::model::{HttpMethod, OnError, RetryDef, RetryOnDef, StepDef};
use crate::registry::rules::{
    DEFAULT_FOR_EACH_CONCURRENCY, DEFAULT_RETRY_BACKOFF_MS, DEFAULT_RETRY_STATUSES,
    MAX_FOR_EACH_CONCURRENCY, MAX_RETRY_ATTEMPTS, MAX_RETRY_BACKOFF_MS, MAX_STEP_TIMEOUT_MS,
};
use crate::template::Field;

/// The methods a step may retry without an `Idempotency-Key` header (RFC 9110 §9.2.2).
fn is_idempotent(method: HttpMethod) -> bool {
    !matches!(method, HttpMethod::POST | HttpMethod::PATCH)
}

impl Builder<'_> {
    /// Checks and compiles a step's chain control. `labels` are the names of every step of
    /// the composite, in order; the step's own templates have already recorded the earlier
    /// steps they read in `self.step_reads`.
    pub(super) fn control(
        &mut self,
        site: &CallSite<'_>,
        def: &StepDef,
        labels: &[String],
    ) -> Checked<StepControl> {
        let when = def
            .when
            .as_deref()
            .map(|source| self.expression(site, "when", Field::When, source))
            .transpose();
        let for_each = self.for_each(site, def);
        let retry = def
            .retry
            .as_ref()
            .map(|retry| self.retry(site, def, retry))
            .transpose();
        let timeout = match def.timeout_ms {
            Some(ms) if !(1..=MAX_STEP_TIMEOUT_MS).contains(&ms) => {
                self.report.error(
                    &site.at,
                    "timeout_ms",
                    format!("must be 1-{MAX_STEP_TIMEOUT_MS} milliseconds"),
                );
                Err(Reported)
            }
            ms => Ok(ms.map(Duration::from_millis)),
        };
        let needs = self.needs(site, def, labels);
        Ok(StepControl {
            when: when?,
            for_each: for_each?,
            retry: retry?,
            timeout: timeout?,
            continue_on_error: def.on_error == Some(OnError::Continue),
            needs: needs?,
        })
    }

    fn for_each(&mut self, site: &CallSite<'_>, def: &StepDef) -> Checked<Option<ForEach>> {
        let concurrency = match def.max_concurrency {
            Some(n) if !(1..=MAX_FOR_EACH_CONCURRENCY).contains(&n) => {
                self.report.error(
                    &site.at,
                    "max_concurrency",
                    format!("must be 1-{MAX_FOR_EACH_CONCURRENCY}"),
                );
                Err(Reported)
            }
            Some(_) if def.for_each.is_none() => {
                self.report.error(
                    &site.at,
                    "max_concurrency",
                    "applies only to a for_each step; add for_each or remove max_concurrency",
                );
                Err(Reported)
            }
            n => Ok(n.map_or(DEFAULT_FOR_EACH_CONCURRENCY, |n| n as usize)),
        };
        let Some(source) = def.for_each.as_deref() else {
            return concurrency.map(|_| None);
        };
        let list = self.expression(site, "for_each", Field::ForEach, source);
        Ok(Some(ForEach {
            list: list?,
            max_concurrency: concurrency?,
        }))
    }

    fn retry(
        &mut self,
        site: &CallSite<'_>,
        def: &StepDef,
        retry: &RetryDef,
    ) -> Checked<StepRetry> {
        let mut ok = true;
        if !(1..=MAX_RETRY_ATTEMPTS).contains(&retry.attempts) {
            self.report.error(
                &site.at,
                "retry.attempts",
                format!("must be 1-{MAX_RETRY_ATTEMPTS} (tries in all, the first included)"),
            );
            ok = false;
        }
        let backoff = retry.backoff_ms.unwrap_or(DEFAULT_RETRY_BACKOFF_MS);
        if backoff > MAX_RETRY_BACKOFF_MS {
            self.report.error(
                &site.at,
                "retry.backoff_ms",
                format!("must be at most {MAX_RETRY_BACKOFF_MS}"),
            );
            ok = false;
        }
        let method = def
            .method
            .as_deref()
            .and_then(HttpMethod::parse)
            .unwrap_or(HttpMethod::GET);
        let keyed = def
            .headers
            .iter()
            .any(|h| h.key.eq_ignore_ascii_case("idempotency-key"));
        if !is_idempotent(method) && !keyed {
            self.report.error(&site.at, "retry", format!(
                "a {} step is retried only with an Idempotency-Key header (a retry could otherwise repeat its effect); add one to headers or remove retry",
                method.as_str()
            ));
            ok = false;
        }
        let mut out = StepRetry {
            attempts: retry.attempts,
            backoff: Duration::from_millis(backoff),
            statuses: Vec::new(),
            network: false,
            timeout: false,
        };
        match &retry.retry_on {
            None => {
                out.statuses = DEFAULT_RETRY_STATUSES.to_vec();
                out.network = true;
                out.timeout = true;
            }
            Some(entries) => {
                for (j, entry) in entries.iter().enumerate() {
                    match entry {
                        RetryOnDef::Status(status @ 400..=599) => out.statuses.push(*status),
                        RetryOnDef::Failure(kind) if kind == "network" => out.network = true,
                        RetryOnDef::Failure(kind) if kind == "timeout" => out.timeout = true,
                        _ => {
                            self.report.error(
                                &site.at,
                                format!("retry.retry_on[{j}]"),
                                "must be a status 400-599, \"network\" or \"timeout\"",
                            );
                            ok = false;
                        }
                    }
                }
            }
        }
        checked(ok, out)
    }

    /// The earlier steps this one waits for: those its templates read, and its `depends_on`.
    fn needs(
        &mut self,
        site: &CallSite<'_>,
        def: &StepDef,
        labels: &[String],
    ) -> Checked<Vec<usize>> {
        let mut ok = true;
        let mut needs: Vec<usize> = Vec::new();
        let earlier = &labels[..site.index];
        for (j, name) in def.depends_on.iter().enumerate() {
            let field = format!("depends_on[{j}]");
            match earlier.iter().position(|s| s == name) {
                Some(index) => needs.push(index),
                None => {
                    let why = if *name == site.step_name {
                        "a step cannot depend on itself".to_string()
                    } else if labels.contains(name) {
                        format!("step '{name}' runs after this one; depends_on names earlier steps only")
                    } else {
                        format!("there is no step '{name}'")
                    };
                    self.report.error(&site.at, field, why);
                    ok = false;
                }
            }
        }
        for name in std::mem::take(&mut self.step_reads) {
            if let Some(index) = earlier.iter().position(|s| *s == name) {
                needs.push(index);
            }
        }
        needs.sort_unstable();
        needs.dedup();
        checked(ok, needs)
    }
}
