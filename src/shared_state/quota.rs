//! Quotas of `rate_limit` (docs/spec.md §11) by the generic cell rate algorithm (GCRA, as
//! redis-cell and Stripe's limiter count): each quota keeps one number, the theoretical
//! arrival time of the next call; `requests` calls may come at once, then one every
//! `per_seconds / requests`. Counted in Redis by one atomic script (the cluster's count), or
//! in the replica's own table when there is no Redis or it is away.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// A quota: `requests` calls per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Calls allowed per period (also the largest burst).
    pub requests: u32,
    /// The period.
    pub period: Duration,
}

impl Quota {
    /// Microseconds between two calls at the sustained rate.
    pub(crate) fn interval_us(self) -> u64 {
        (self.period.as_micros() as u64 / u64::from(self.requests.max(1))).max(1)
    }

    fn period_us(self) -> u64 {
        self.period.as_micros() as u64
    }
}

/// What a quota decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// The call may go ahead.
    Allowed,
    /// Over the quota: the call may be made again after this long.
    Limited(Duration),
}

/// The GCRA step: with `tat` the stored arrival time (None: never used) and `now`, both in
/// microseconds, taking `cost` calls. Returns the decision and the new arrival time to store.
pub(crate) fn gcra(quota: Quota, tat: Option<u64>, now: u64, cost: u32) -> (Decision, u64) {
    let tat = tat.unwrap_or(now).max(now);
    let new_tat = tat.saturating_add(quota.interval_us().saturating_mul(u64::from(cost)));
    let allow_at = new_tat.saturating_sub(quota.period_us());
    if allow_at > now {
        (
            Decision::Limited(Duration::from_micros(allow_at - now)),
            tat,
        )
    } else {
        (Decision::Allowed, new_tat)
    }
}

/// The same step in Redis, atomically, on Redis' own clock (replicas' clocks may differ).
/// KEYS[1]: the quota; ARGV: interval µs, period µs, cost. Returns `{allowed, retry_after_us}`.
pub(crate) static GCRA_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval * cost
local allow_at = new_tat - period
if allow_at > now then
  return {0, allow_at - now}
end
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000))
return {1, 0}
",
    )
});

/// The replica's own quotas: used without Redis, and while Redis is away.
#[derive(Debug)]
pub struct LocalQuotas {
    epoch: Instant,
    arrivals: DashMap<String, u64>,
}

/// Past this many quota keys, the ones whose arrival time has passed (which decide nothing
/// any more) are dropped.
const PRUNE_ABOVE: usize = 16_384;

impl Default for LocalQuotas {
    fn default() -> Self {
        LocalQuotas {
            epoch: Instant::now(),
            arrivals: DashMap::new(),
        }
    }
}

impl LocalQuotas {
    /// Takes `cost` calls of `quota` under `key` from this replica's count.
    pub(crate) fn take(&self, key: &str, quota: Quota, cost: u32) -> Decision {
        let now = self.epoch.elapsed().as_micros() as u64;
        if self.arrivals.len() > PRUNE_ABOVE {
            self.arrivals.retain(|_, tat| *tat > now);
        }
        let mut entry = self.arrivals.entry(key.to_string()).or_insert(now);
        let stored = *entry;
        let (decision, tat) = gcra(quota, Some(stored), now, cost);
        *entry = tat;
        decision
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_a_minute_allows_five_at_once_then_one_every_twelve_seconds() {
        let quota = Quota {
            requests: 5,
            period: Duration::from_secs(60),
        };
        let mut tat = None;
        let now = 1_000_000_000;
        for _ in 0..5 {
            let (d, t) = gcra(quota, tat, now, 1);
            assert_eq!(d, Decision::Allowed);
            tat = Some(t);
        }
        let (d, _) = gcra(quota, tat, now, 1);
        assert_eq!(d, Decision::Limited(Duration::from_secs(12)));
        let (d, _) = gcra(quota, tat, now + 12_000_000, 1);
        assert_eq!(d, Decision::Allowed);
        // A fan-out of 6 is more than the quota ever allows at once.
        assert!(matches!(gcra(quota, None, now, 6).0, Decision::Limited(_)));
        assert_eq!(gcra(quota, None, now, 5).0, Decision::Allowed);
    }

    #[test]
    fn local_quotas_count_each_key_apart() {
        let local = LocalQuotas::default();
        let quota = Quota {
            requests: 2,
            period: Duration::from_secs(60),
        };
        assert_eq!(local.take("a", quota, 1), Decision::Allowed);
        assert_eq!(local.take("a", quota, 1), Decision::Allowed);
        assert!(matches!(local.take("a", quota, 1), Decision::Limited(_)));
        assert_eq!(local.take("b", quota, 1), Decision::Allowed);
    }
}
