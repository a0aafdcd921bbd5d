//! Shared state across replicas (docs/spec.md §11): OAuth tokens, cached answers and quota
//! counts kept in Redis, tokens and answers sealed with the `--shared-state-key-file` key.
//! Every operation is bounded by `--redis-timeout-ms`; one that fails, times out, or comes
//! while Redis is away answers [`Unavailable`], and its caller uses the replica's own state
//! instead (so Redis never fails a run). Redis is retried a second after a failure; the
//! connection manager reconnects by itself.

mod quota;
mod seal;

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use sha2::{Digest, Sha256};

use crate::events::{SharedStateConnected, SharedStateOperation, SharedStateUnavailable};
use crate::metrics::Metrics;

pub use quota::{Decision, LocalQuotas, Quota};
use seal::Seal;

/// The shared-state flags.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SharedStateArgs {
    /// Redis for state shared by every replica (`redis://[:PASSWORD@]HOST:PORT[/DB]` or
    /// `rediss://` for TLS): OAuth tokens, cached answers and rate_limit counts. Without it
    /// each replica keeps its own.
    #[arg(long, env = "CONNECTOR_RUNTIME_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// File with the key that seals tokens and cached answers in Redis (32 random bytes, or
    /// 64 hex digits). Required with --redis-url; the same on every replica.
    #[arg(long, env = "CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE")]
    pub shared_state_key_file: Option<PathBuf>,
    /// Longest wait for one Redis operation; slower (or Redis down) and the replica uses its
    /// own state for that call.
    #[arg(
        long,
        env = "CONNECTOR_RUNTIME_REDIS_TIMEOUT_MS",
        default_value_t = 50,
        value_parser = clap::value_parser!(u64).range(1..=10_000)
    )]
    pub redis_timeout_ms: u64,
}

/// Why the shared state could not be set up (at start; never while serving).
#[derive(Debug, thiserror::Error)]
pub enum SharedStateError {
    /// `--redis-url` without a key.
    #[error("--redis-url needs --shared-state-key-file: the key that seals tokens and cached answers in Redis (make one with `openssl rand -hex 32 > shared-state.key`, the same file on every replica)")]
    MissingKey,
    /// The key file is unusable.
    #[error("--shared-state-key-file {path}: {reason}")]
    Key {
        /// The file.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The URL is not a Redis URL.
    #[error("--redis-url {url}: {reason}")]
    Url {
        /// The URL without its password.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// Redis did not answer in time, failed, or is away: use the replica's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// An operation on the shared state (the `op` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// Reading a token.
    TokenGet,
    /// Writing (or dropping) a token.
    TokenPut,
    /// Taking or releasing the lock of a token request.
    TokenLock,
    /// Reading a cached answer.
    CacheGet,
    /// Writing a cached answer.
    CachePut,
    /// Counting a quota.
    RateLimit,
}

impl Op {
    fn label(self) -> &'static str {
        match self {
            Op::TokenGet => "token_get",
            Op::TokenPut => "token_put",
            Op::TokenLock => "token_lock",
            Op::CacheGet => "cache_get",
            Op::CachePut => "cache_put",
            Op::RateLimit => "rate_limit",
        }
    }
}

/// How long Redis is left alone after a failure before it is tried again (the connection
/// manager reconnects meanwhile); calls in between fall back at once instead of each
/// waiting out the timeout.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(1);
/// At most one warning per this long.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// Prefix of every key the runtime writes.
const KEY_PREFIX: &str = "connector-runtime:";

/// The Redis name of an entry: its kind and the SHA-256 of what identifies it (a grant key
/// holds a client id and a token URL, a cache key a whole request: neither is written in clear).
pub(crate) fn key_name(kind: &str, material: &[u8]) -> String {
    let digest = Sha256::digest(material);
    let mut name = String::with_capacity(KEY_PREFIX.len() + kind.len() + 65);
    name.push_str(KEY_PREFIX);
    name.push_str(kind);
    name.push(':');
    for byte in digest {
        name.push(char::from(b"0123456789abcdef"[usize::from(byte >> 4)]));
        name.push(char::from(b"0123456789abcdef"[usize::from(byte & 15)]));
    }
    name
}

/// The replicas' shared state in Redis.
pub struct SharedState {
    connection: ConnectionManager,
    seal: Seal,
    timeout: Duration,
    metrics: Arc<Metrics>,
    epoch: Instant,
    /// Milliseconds since `epoch` before which Redis is not tried (0: try).
    away_until_ms: AtomicU64,
    /// Milliseconds since `epoch` of the last warning, plus one (0: none yet).
    warned_at_ms: AtomicU64,
    /// Whether the last operation failed (so the next success is logged as a recovery).
    failing: AtomicBool,
}

impl std::fmt::Debug for SharedState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedState")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `url` with its password replaced, for messages.
fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

impl SharedState {
    /// The shared state `args` configure (`None` without `--redis-url`). Nothing is
    /// connected yet: the first operation connects, so a replica starts (and is ready)
    /// while Redis is down. Must run inside the server's runtime.
    pub fn start(
        args: &SharedStateArgs,
        metrics: Arc<Metrics>,
    ) -> Result<Option<Arc<SharedState>>, SharedStateError> {
        let Some(url) = args.redis_url.as_deref().filter(|u| !u.is_empty()) else {
            metrics.shared_state_connected.set(0);
            return Ok(None);
        };
        let path = args
            .shared_state_key_file
            .as_ref()
            .ok_or(SharedStateError::MissingKey)?;
        let seal = Seal::from_file(path).map_err(|reason| SharedStateError::Key {
            path: path.display().to_string(),
            reason,
        })?;
        let url_error = |reason: String| SharedStateError::Url {
            url: redacted(url),
            reason,
        };
        let client = redis::Client::open(url).map_err(|e| url_error(e.to_string()))?;
        let timeout = Duration::from_millis(args.redis_timeout_ms);
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout.max(Duration::from_millis(250))))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let connection = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| url_error(e.to_string()))?;
        Ok(Some(Arc::new(SharedState {
            connection,
            seal,
            timeout,
            metrics,
            epoch: Instant::now(),
            away_until_ms: AtomicU64::new(0),
            warned_at_ms: AtomicU64::new(0),
            failing: AtomicBool::new(false),
        })))
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Runs one Redis operation within the timeout, counting it; any failure is `Unavailable`.
    async fn run<T, F, Fut>(&self, op: Op, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let label = op.label();
        if self.now_ms() < self.away_until_ms.load(Ordering::Relaxed) {
            SharedStateOperation {
                op: label,
                ok: false,
                duration: Duration::ZERO,
            }
            .emit(&self.metrics);
            return Err(Unavailable);
        }
        let started = Instant::now();
        let result = tokio::time::timeout(self.timeout, call(self.connection.clone())).await;
        let duration = started.elapsed();
        let reason = match &result {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(redis_reason(e)),
            Err(_) => Some("no answer within --redis-timeout-ms".to_string()),
        };
        SharedStateOperation {
            op: label,
            ok: reason.is_none(),
            duration,
        }
        .emit(&self.metrics);
        match (result, reason) {
            (Ok(Ok(value)), _) => {
                if self.failing.swap(false, Ordering::Relaxed)
                    || self.metrics.shared_state_connected.get() == 0
                {
                    SharedStateConnected {
                        recovered: self.warned_at_ms.load(Ordering::Relaxed) != 0,
                    }
                    .emit(&self.metrics);
                }
                Ok(value)
            }
            (_, reason) => {
                self.unavailable(label, reason.as_deref().unwrap_or("failed"));
                Err(Unavailable)
            }
        }
    }

    /// Marks Redis away for a second and warns, at most once a minute.
    fn unavailable(&self, op: &'static str, reason: &str) {
        let now = self.now_ms();
        self.failing.store(true, Ordering::Relaxed);
        self.away_until_ms.store(
            now + RETRY_AFTER_FAILURE.as_millis() as u64,
            Ordering::Relaxed,
        );
        let last = self.warned_at_ms.load(Ordering::Relaxed);
        let log = (last == 0 || now + 1 >= last + WARN_EVERY.as_millis() as u64)
            && self
                .warned_at_ms
                .compare_exchange(last, now + 1, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        SharedStateUnavailable { op, reason, log }.emit(&self.metrics);
    }

    /// The value sealed under `name`; `Ok(None)` when there is none (or it does not open
    /// with this replica's key, which is warned about like a failure).
    pub(crate) async fn get_sealed(
        &self,
        op: Op,
        name: &str,
    ) -> Result<Option<Vec<u8>>, Unavailable> {
        let sealed: Option<Vec<u8>> = self
            .run(op, |mut c| async move {
                redis::cmd("GET").arg(name).query_async(&mut c).await
            })
            .await?;
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        match self.seal.open(name, &sealed) {
            Some(plain) => Ok(Some(plain)),
            None => {
                self.unavailable(
                    op.label(),
                    "an entry in Redis does not open with this replica's key (do all replicas have the same --shared-state-key-file?)",
                );
                Ok(None)
            }
        }
    }

    /// Seals `plain` under `name` for `ttl` (at least a millisecond).
    pub(crate) async fn put_sealed(
        &self,
        op: Op,
        name: &str,
        plain: &[u8],
        ttl: Duration,
    ) -> Result<(), Unavailable> {
        let sealed = self.seal.seal(name, plain);
        let ms = (ttl.as_millis() as u64).max(1);
        self.run(op, |mut c| async move {
            redis::cmd("SET")
                .arg(name)
                .arg(sealed)
                .arg("PX")
                .arg(ms)
                .query_async::<()>(&mut c)
                .await
        })
        .await
    }

    /// Drops `name`.
    pub(crate) async fn delete(&self, op: Op, name: &str) -> Result<(), Unavailable> {
        self.run(op, |mut c| async move {
            redis::cmd("DEL").arg(name).query_async::<()>(&mut c).await
        })
        .await
    }

    /// Takes the lock `name` for `ttl` unless another holder has it: `Some(token)` to
    /// release it with, `None` when it is held. A holder that dies holds it until `ttl`.
    pub(crate) async fn try_lock(
        &self,
        name: &str,
        ttl: Duration,
    ) -> Result<Option<String>, Unavailable> {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let ms = (ttl.as_millis() as u64).max(1);
        let taken: Option<String> = self
            .run(Op::TokenLock, |mut c| {
                let token = token.clone();
                async move {
                    redis::cmd("SET")
                        .arg(name)
                        .arg(token)
                        .arg("NX")
                        .arg("PX")
                        .arg(ms)
                        .query_async(&mut c)
                        .await
                }
            })
            .await?;
        Ok(taken.map(|_| token))
    }

    /// Releases the lock `name` if `token` still holds it (it may have expired and been
    /// taken by another replica since).
    pub(crate) async fn unlock(&self, name: &str, token: &str) {
        let _ = self
            .run(Op::TokenLock, |mut c| async move {
                UNLOCK_SCRIPT
                    .key(name)
                    .arg(token)
                    .invoke_async::<i64>(&mut c)
                    .await
            })
            .await;
    }

    /// Takes `cost` calls of `quota` from the cluster's count under `name`.
    pub(crate) async fn take(
        &self,
        name: &str,
        quota: Quota,
        cost: u32,
    ) -> Result<Decision, Unavailable> {
        let (allowed, retry_after_us): (i64, i64) = self
            .run(Op::RateLimit, |mut c| async move {
                quota::GCRA_SCRIPT
                    .key(name)
                    .arg(quota.interval_us())
                    .arg(quota.period.as_micros() as u64)
                    .arg(cost)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        Ok(if allowed == 1 {
            Decision::Allowed
        } else {
            Decision::Limited(Duration::from_micros(retry_after_us.max(0) as u64))
        })
    }
}

/// Deletes a lock only if it still holds the caller's token.
static UNLOCK_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
    redis::Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// A short reason for a Redis error (its kind and category, never a key or a value).
fn redis_reason(e: &redis::RedisError) -> String {
    if e.is_timeout() {
        "no answer within --redis-timeout-ms".to_string()
    } else if e.is_connection_refusal() {
        "connection refused".to_string()
    } else if e.is_connection_dropped() || e.is_io_error() {
        "connection lost".to_string()
    } else {
        format!("{:?}", e.kind())
    }
}

/// The quotas of a process: counted in Redis when it has one and it answers, else here.
#[derive(Debug, Default)]
pub struct Quotas {
    shared: Option<Arc<SharedState>>,
    local: LocalQuotas,
}

impl Quotas {
    /// Quotas counted through `shared` when given.
    pub fn new(shared: Option<Arc<SharedState>>) -> Self {
        Quotas {
            shared,
            local: LocalQuotas::default(),
        }
    }

    /// Takes `cost` calls of `quota` under `key` (what identifies the quota: connector,
    /// step and the rendered `key`). Returns the decision and whether it was the cluster's.
    pub(crate) async fn take(&self, key: &[u8], quota: Quota, cost: u32) -> (Decision, bool) {
        if let Some(shared) = &self.shared {
            let name = key_name("quota", key);
            if let Ok(decision) = shared.take(&name, quota, cost).await {
                return (decision, true);
            }
        }
        let local_key = String::from_utf8_lossy(key);
        (self.local.take(&local_key, quota, cost), false)
    }
}
