//! `rate_limit` of a connector or step (docs/spec.md §11), checked and compiled: the quota's
//! size and period, and its `key` template.

use std::time::Duration;

use super::{Builder, CallSite, Checked, Reported};
use crate::registry::compiled::RateLimit;
use crate::registry::model::RateLimitDef;
use crate::registry::rules::{MAX_RATE_LIMIT_REQUESTS, MAX_RATE_LIMIT_SECONDS};
use crate::shared_state::Quota;
use crate::template::Field;

impl Builder<'_> {
    /// Checks and compiles `def`, reported at `site`'s `rate_limit`.
    pub(super) fn rate_limit(
        &mut self,
        site: &CallSite<'_>,
        def: Option<&RateLimitDef>,
    ) -> Checked<Option<RateLimit>> {
        let Some(def) = def else {
            return Ok(None);
        };
        let mut ok = true;
        if !(1..=MAX_RATE_LIMIT_REQUESTS).contains(&def.requests) {
            self.report.error(
                &site.at,
                "rate_limit.requests",
                format!("must be 1-{MAX_RATE_LIMIT_REQUESTS} (calls allowed per period)"),
            );
            ok = false;
        }
        if !(1..=MAX_RATE_LIMIT_SECONDS).contains(&def.per_seconds) {
            self.report.error(
                &site.at,
                "rate_limit.per_seconds",
                format!("must be 1-{MAX_RATE_LIMIT_SECONDS} seconds"),
            );
            ok = false;
        }
        let key = match def.key.as_deref().map(str::trim) {
            Some("") => {
                self.report.error(
                    &site.at,
                    "rate_limit.key",
                    "is blank; remove it for one quota per connector, or give a template such as {{ user.id }}",
                );
                Err(Reported)
            }
            Some(_) => self
                .template(
                    site,
                    "rate_limit.key",
                    Field::RateLimitKey,
                    def.key.as_deref().unwrap_or_default(),
                )
                .map(Some),
            None => Ok(None),
        };
        let key = key?;
        if !ok {
            return Err(Reported);
        }
        Ok(Some(RateLimit {
            quota: Quota {
                requests: def.requests,
                period: Duration::from_secs(u64::from(def.per_seconds)),
            },
            key,
        }))
    }
}
