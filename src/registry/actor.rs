//! The [`RegistryActor`]: the only writer of the registry. It reads its source, validates
//! and compiles the whole registry, and publishes an immutable snapshot that runs read
//! without locks. Publishing is all-or-nothing: a rejected registry leaves the previous one
//! serving, and runs in flight finish on the snapshot they started with.

use crate::events::{RegistryPublished, RegistrySyncFailed, RegistryUnchanged};
use std::collections::hash_map::RandomState;
use std::collections::{HashSet, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::{
    Actor, ActorFutureExt, AsyncContext, Context, Handler, Message, MessageResult, ResponseFuture,
    WrapFuture,
};
use arc_swap::ArcSwapOption;
use serde::Serialize;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use super::build::{build_registry, revision_of, BuildOptions};
use super::compiled::{ConnectorKind, Registry};
use super::problems::{Location, Problem, RegistryRejected, Report, Severity};
use super::source::{FileSource, GitSource, InlineSource, Snapshot, Source, SourceError};
use crate::metrics::Metrics;

/// Where the current registry snapshot is published. Cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct RegistryHandle {
    current: Arc<ArcSwapOption<Registry>>,
}

impl RegistryHandle {
    /// An empty handle (nothing loaded yet).
    pub fn new() -> Self {
        Self::default()
    }

    /// The current snapshot; a run keeps it to its end.
    pub fn current(&self) -> Option<Arc<Registry>> {
        self.current.load_full()
    }

    /// Publishes a snapshot (only the registry actor and tests call this).
    pub(crate) fn publish(&self, registry: Arc<Registry>) {
        self.current.store(Some(registry));
    }
}

/// Where the registry comes from.
#[derive(Debug, Clone)]
pub enum RegistrySource {
    /// A file, watched for changes (a missing file is an empty registry).
    File(std::path::PathBuf),
    /// A watched branch of a git repository, polled and re-read on push webhooks.
    Git(GitSource),
    /// Fixed text (the bundled demo registry).
    Inline(String),
}

impl RegistrySource {
    fn reader(&self) -> Arc<dyn Source> {
        match self {
            RegistrySource::File(path) => Arc::new(FileSource::new(path.clone())),
            RegistrySource::Git(git) => Arc::new(git.clone()),
            RegistrySource::Inline(text) => Arc::new(InlineSource(text.clone())),
        }
    }

    /// Reads the registry text once (blocking).
    pub(crate) fn read(&self) -> Result<Snapshot, SourceError> {
        self.reader().read()
    }

    /// The watched branch, for git sources.
    pub(crate) fn branch(&self) -> Option<&str> {
        match self {
            RegistrySource::Git(git) => Some(git.branch()),
            _ => None,
        }
    }
}

/// What triggered a sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncReason {
    /// Server start.
    Startup,
    /// The poll interval.
    Poll,
    /// The registry file changed.
    FileChange,
    /// SIGHUP.
    Signal,
    /// A push webhook.
    Webhook,
    /// `POST /admin/registry/sync`.
    Admin,
}

impl SyncReason {
    fn label(self) -> &'static str {
        match self {
            SyncReason::Startup => "startup",
            SyncReason::Poll => "poll",
            SyncReason::FileChange => "file_change",
            SyncReason::Signal => "signal",
            SyncReason::Webhook => "webhook",
            SyncReason::Admin => "admin",
        }
    }
}

/// Connectors created, updated, removed and unchanged by a publish, by permalink.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Changes {
    /// New permalinks.
    pub created: Vec<String>,
    /// Permalinks whose definition changed (a renamed `name` with the same permalink too).
    pub updated: Vec<String>,
    /// Permalinks no longer defined.
    pub removed: Vec<String>,
    /// How many stayed the same.
    pub unchanged: usize,
}

/// Compares the connectors of two registries by permalink and definition fingerprint.
pub(crate) fn diff(previous: Option<&Registry>, next: &Registry) -> Changes {
    let mut changes = Changes::default();
    for connector in next.connectors() {
        match previous.and_then(|p| p.get(&connector.permalink)) {
            None => changes.created.push(connector.permalink.clone()),
            Some(old) if old.fingerprint != connector.fingerprint => {
                changes.updated.push(connector.permalink.clone())
            }
            Some(_) => changes.unchanged += 1,
        }
    }
    if let Some(previous) = previous {
        for connector in previous.connectors() {
            if next.get(&connector.permalink).is_none() {
                changes.removed.push(connector.permalink.clone());
            }
        }
    }
    changes
}

/// The outcome of one sync, as operators see it.
#[derive(Debug, Clone, Serialize)]
pub struct SyncRecord {
    /// What triggered it.
    pub reason: SyncReason,
    /// `published`, `unchanged` or `failed`.
    pub result: &'static str,
    /// Revision read from the source.
    pub revision: Option<String>,
    /// What changed (for `published`).
    pub changes: Changes,
    /// When it finished (Unix seconds).
    pub at: u64,
    /// How long it took.
    pub duration_ms: f64,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The registry's build status (`GET /admin/registry`).
#[derive(Debug, Clone, Serialize)]
pub struct BuildStatus {
    /// `ok` when the last sync succeeded (or found nothing new), `failed` otherwise.
    pub state: &'static str,
    /// The source.
    pub source: String,
    /// Revision being served.
    pub revision: Option<String>,
    /// When the served registry was published (Unix seconds).
    pub loaded_at: Option<u64>,
    /// Why the last sync failed.
    pub error: Option<String>,
    /// Errors of the last failed sync (each naming connector, step and field).
    pub errors: Vec<Problem>,
    /// Warnings of the served registry.
    pub warnings: Vec<Problem>,
    /// Connectors being served.
    pub connectors: Vec<ConnectorSummary>,
    /// The last sync.
    pub last_sync: Option<SyncRecord>,
}

/// A served connector, for the build status and the console.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectorSummary {
    /// Permalink.
    pub permalink: String,
    /// Name.
    pub name: String,
    /// `simple` or `composite`.
    pub kind: &'static str,
    /// Method callers use.
    pub method: &'static str,
    /// Declared path parameters.
    pub path_parameters: Vec<String>,
    /// Step names.
    pub steps: Vec<String>,
}

impl ConnectorSummary {
    /// Summarizes every connector of `registry`.
    pub(crate) fn all(registry: &Registry) -> Vec<ConnectorSummary> {
        registry
            .connectors()
            .iter()
            .map(|c| ConnectorSummary {
                permalink: c.permalink.clone(),
                name: c.name.clone(),
                kind: match c.kind {
                    ConnectorKind::Simple => "simple",
                    ConnectorKind::Composite => "composite",
                },
                method: c.caller_method().as_str(),
                path_parameters: c.path_parameters.iter().map(|(k, _)| k.clone()).collect(),
                steps: c.steps.iter().map(|s| s.name.clone()).collect(),
            })
            .collect()
    }
}

/// Why a sync did not publish.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncError {
    /// The source could not be read.
    #[error("reading the registry source failed: {0}")]
    Source(#[from] SourceError),
    /// The registry is invalid.
    #[error(transparent)]
    Rejected(#[from] RegistryRejected),
}

impl SyncError {
    /// The problems behind the failure.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        match self {
            SyncError::Rejected(r) => r.report.problems.clone(),
            SyncError::Source(e) => {
                let mut report = Report::default();
                let at = Location {
                    connector: "-".into(),
                    step: None,
                };
                report.error(&at, "(source)", e.to_string());
                report.problems
            }
        }
    }
}

/// Sync the registry from its source, and answer with the outcome of a read that started
/// after this request arrived. While a sync is running, this joins the one sync that runs
/// next (see [`RegistryActor`]).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "Result<SyncRecord, SyncError>")]
pub struct Sync(pub SyncReason);

/// Like [`Sync`], for callers that do not wait for the outcome (webhook, poll, file watch).
#[derive(Debug, Clone, Copy, Message)]
#[rtype(result = "()")]
pub(crate) struct RequestSync(pub SyncReason);

/// Ask for the build status. Answered at once, even while syncs run.
#[derive(Debug, Message)]
#[rtype(result = "BuildStatus")]
pub(crate) struct GetStatus;

/// How many push-webhook bodies are read at once, over all workers: each may hold up to the
/// webhook's body limit until it is verified, so this bounds that memory.
pub const WEBHOOK_BODIES_AT_ONCE: usize = 8;

/// How many webhook delivery ids are remembered to refuse replays (the oldest are forgotten).
pub(crate) const REMEMBERED_DELIVERIES: usize = 1024;

/// A place to read one push-webhook body: `None` when [`WEBHOOK_BODIES_AT_ONCE`] are being
/// read. The place is held until the permit is dropped.
#[derive(Debug, Message)]
#[rtype(result = "Option<OwnedSemaphorePermit>")]
pub(crate) struct WebhookBodySlot;

/// A push webhook whose signature was verified, with its `X-GitHub-Delivery` id if any.
#[derive(Debug, Clone, Message)]
#[rtype(result = "PushOutcome")]
pub(crate) struct SignedPush {
    /// The delivery id.
    pub delivery: Option<String>,
}

/// What became of a [`SignedPush`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushOutcome {
    /// A sync was requested (it may be coalesced with one already running).
    SyncRequested,
    /// This delivery id was seen before: nothing was done.
    Replayed,
}

/// The delivery ids seen lately, as keyed hashes (bounded memory, whatever the ids' length).
#[derive(Debug)]
struct RecentDeliveries {
    order: VecDeque<u64>,
    seen: HashSet<u64>,
    keys: RandomState,
    capacity: usize,
}

impl RecentDeliveries {
    fn new(capacity: usize) -> Self {
        RecentDeliveries {
            order: VecDeque::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
            keys: RandomState::new(),
            capacity,
        }
    }

    /// Remembers `id`; false when it was already remembered.
    fn first_time(&mut self, id: &str) -> bool {
        let hash = self.keys.hash_one(id);
        if !self.seen.insert(hash) {
            return false;
        }
        self.order.push_back(hash);
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        true
    }
}

/// Whoever waits for the outcome of a sync.
type SyncWaiter = oneshot::Sender<Result<SyncRecord, SyncError>>;

/// The one sync that runs after the current one: every request that arrived meanwhile.
#[derive(Debug)]
struct PendingSync {
    /// The first request's reason (the record shows it).
    reason: SyncReason,
    waiters: Vec<SyncWaiter>,
    /// Requests folded into this sync.
    requests: u64,
}

/// Owns the registry source and publishes snapshots.
pub struct RegistryActor {
    source: RegistrySource,
    reader: Arc<dyn Source>,
    options: BuildOptions,
    handle: RegistryHandle,
    metrics: Arc<Metrics>,
    poll: Option<Duration>,
    watch: bool,
    last_seen: Option<String>,
    status: BuildStatus,
    watcher: Option<Box<dyn std::any::Any>>,
    /// Whether a sync is running now.
    running: bool,
    /// The sync to run when the current one ends.
    pending: Option<PendingSync>,
    webhook_bodies: Arc<Semaphore>,
    deliveries: RecentDeliveries,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl RegistryActor {
    /// An actor that reads `source` with `options` and publishes into `handle`.
    pub fn new(
        source: RegistrySource,
        options: BuildOptions,
        handle: RegistryHandle,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reader = source.reader();
        RegistryActor {
            status: BuildStatus {
                state: "failed",
                source: reader.describe(),
                revision: None,
                loaded_at: None,
                error: Some("not loaded yet".into()),
                errors: Vec::new(),
                warnings: Vec::new(),
                connectors: Vec::new(),
                last_sync: None,
            },
            source,
            reader,
            options,
            handle,
            metrics,
            poll: None,
            watch: false,
            last_seen: None,
            watcher: None,
            running: false,
            pending: None,
            webhook_bodies: Arc::new(Semaphore::new(WEBHOOK_BODIES_AT_ONCE)),
            deliveries: RecentDeliveries::new(REMEMBERED_DELIVERIES),
        }
    }

    /// Re-reads the source every `interval` (git sources; a cheap fallback for files).
    pub(crate) fn poll_every(mut self, interval: Option<Duration>) -> Self {
        self.poll = interval.filter(|d| !d.is_zero());
        self
    }

    /// Watches a file source for changes.
    pub(crate) fn watch_file(mut self, watch: bool) -> Self {
        self.watch = watch;
        self
    }

    /// Reads the source here and now (blocking) and publishes: used once at start.
    pub(crate) fn load_now(&mut self, reason: SyncReason) -> Result<SyncRecord, SyncError> {
        let started = Instant::now();
        let snapshot = self.reader.read();
        self.apply(snapshot, reason, started)
    }

    /// Builds and publishes a snapshot read from the source; records status and metrics.
    fn apply(
        &mut self,
        snapshot: Result<Snapshot, SourceError>,
        reason: SyncReason,
        started: Instant,
    ) -> Result<SyncRecord, SyncError> {
        let result = self.publish(snapshot, reason, started);
        if matches!(result, Ok(Some(_))) {
            return_freed_memory();
        }
        let duration = started.elapsed();
        let record = |result: &'static str, revision, changes, error| SyncRecord {
            reason,
            result,
            revision,
            changes,
            at: unix_now(),
            duration_ms: (duration.as_secs_f64() * 10_000.0).round() / 10.0,
            error,
        };
        match result {
            Ok(Some((revision, changes))) => {
                let rec = record("published", Some(revision), changes, None);
                self.status.last_sync = Some(rec.clone());
                Ok(rec)
            }
            Ok(None) => {
                RegistryUnchanged { duration }.emit(&self.metrics);
                let rec = record(
                    "unchanged",
                    self.last_seen.clone(),
                    Changes::default(),
                    None,
                );
                self.status.last_sync = Some(rec.clone());
                Ok(rec)
            }
            Err(error) => {
                let summary = match &error {
                    SyncError::Rejected(r) => r.report.summary(),
                    SyncError::Source(e) => e.to_string(),
                };
                RegistrySyncFailed {
                    reason: reason.label(),
                    summary: &summary,
                    duration,
                }
                .emit(&self.metrics);
                self.status.state = "failed";
                self.status.error = Some(summary.clone());
                self.status.errors = error
                    .problems()
                    .into_iter()
                    .filter(|p| p.severity == Severity::Error)
                    .collect();
                self.status.last_sync = Some(record(
                    "failed",
                    self.last_seen.clone(),
                    Changes::default(),
                    Some(summary),
                ));
                Err(error)
            }
        }
    }

    /// `Ok(None)` when the source has not changed since the last attempt.
    fn publish(
        &mut self,
        snapshot: Result<Snapshot, SourceError>,
        reason: SyncReason,
        started: Instant,
    ) -> Result<Option<(String, Changes)>, SyncError> {
        let snapshot = snapshot?;
        let revision = snapshot
            .revision
            .clone()
            .unwrap_or_else(|| revision_of(&snapshot.text));
        if self.last_seen.as_deref() == Some(revision.as_str()) && reason != SyncReason::Startup {
            return Ok(None);
        }
        self.last_seen = Some(revision.clone());
        let mut registry = build_registry(&snapshot.text, &self.options)?;
        registry.revision = revision.clone();
        let registry = Arc::new(registry);
        let previous = self.handle.current();
        let changes = diff(previous.as_deref(), &registry);
        self.handle.publish(registry.clone());
        let now = unix_now();
        self.status = BuildStatus {
            state: "ok",
            source: self.reader.describe(),
            revision: Some(revision.clone()),
            loaded_at: Some(now),
            error: None,
            errors: Vec::new(),
            warnings: registry.warnings.clone(),
            connectors: ConnectorSummary::all(&registry),
            last_sync: self.status.last_sync.clone(),
        };
        let composite = registry
            .connectors()
            .iter()
            .filter(|c| c.kind == ConnectorKind::Composite)
            .count();
        RegistryPublished {
            reason: reason.label(),
            revision: &revision,
            simple: registry.len() - composite,
            composite,
            changes: (
                changes.created.len(),
                changes.updated.len(),
                changes.removed.len(),
            ),
            warnings: registry.warnings.len(),
            duration: started.elapsed(),
            at: now,
        }
        .emit(&self.metrics);
        Ok(Some((revision, changes)))
    }
}

impl RegistryActor {
    /// Asks for a sync. Syncs never overlap and never queue up: with none running, one starts
    /// now; while one runs, every further request (webhook, admin, poll, file watch, signal)
    /// joins the single sync that starts when it ends, which reads the source afresh. So a
    /// burst of 300 pushes costs two reads, not 300, and the mailbox stays free for
    /// [`GetStatus`] and the webhook's messages meanwhile.
    fn request_sync(
        &mut self,
        reason: SyncReason,
        waiter: Option<SyncWaiter>,
        ctx: &mut Context<Self>,
    ) {
        if !self.running {
            self.start_sync(reason, waiter.into_iter().collect(), ctx);
            return;
        }
        let pending = self.pending.get_or_insert_with(|| PendingSync {
            reason,
            waiters: Vec::new(),
            requests: 0,
        });
        pending.requests += 1;
        // Waiters whose caller is gone need no answer.
        pending.waiters.retain(|w| !w.is_closed());
        pending.waiters.extend(waiter);
    }

    /// Reads the source off the actor's thread (git fetches block), then builds and publishes
    /// on it; answers `waiters`, then starts the pending sync if there is one.
    fn start_sync(
        &mut self,
        reason: SyncReason,
        waiters: Vec<SyncWaiter>,
        ctx: &mut Context<Self>,
    ) {
        self.running = true;
        let reader = self.reader.clone();
        let started = Instant::now();
        let read = actix_rt::task::spawn_blocking(move || reader.read());
        // `spawn`, not `wait`: the actor keeps handling messages while the source is read.
        ctx.spawn(read.into_actor(self).map(move |joined, act, ctx| {
            let snapshot =
                joined.unwrap_or_else(|_| Err(SourceError("reading the source panicked".into())));
            let outcome = act.apply(snapshot, reason, started);
            for waiter in waiters {
                let _ = waiter.send(outcome.clone());
            }
            act.running = false;
            if let Some(next) = act.pending.take() {
                tracing::debug!(
                    requests = next.requests,
                    "registry sync requests made during the last sync: one more sync"
                );
                act.start_sync(next.reason, next.waiters, ctx);
            }
        }));
    }
}

impl Actor for RegistryActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(interval) = self.poll {
            ctx.run_interval(interval, |act, ctx| {
                act.request_sync(SyncReason::Poll, None, ctx)
            });
        }
        if let (true, RegistrySource::File(path)) = (self.watch, &self.source) {
            let addr = ctx.address();
            match FileSource::new(path.clone())
                .watch(move || addr.do_send(RequestSync(SyncReason::FileChange)))
            {
                Ok(watcher) => self.watcher = Some(Box::new(watcher)),
                Err(e) => {
                    tracing::warn!(error = %e, "registry file is not watched; reload with SIGHUP or the admin API")
                }
            }
        }
    }
}

impl Handler<Sync> for RegistryActor {
    type Result = ResponseFuture<Result<SyncRecord, SyncError>>;

    fn handle(&mut self, msg: Sync, ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.request_sync(msg.0, Some(tx), ctx);
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(SyncError::Source(SourceError(
                    "the registry actor stopped before the sync ended".into(),
                )))
            })
        })
    }
}

impl Handler<RequestSync> for RegistryActor {
    type Result = ();

    fn handle(&mut self, msg: RequestSync, ctx: &mut Self::Context) {
        self.request_sync(msg.0, None, ctx);
    }
}

impl Handler<WebhookBodySlot> for RegistryActor {
    type Result = Option<OwnedSemaphorePermit>;

    fn handle(&mut self, _: WebhookBodySlot, _: &mut Self::Context) -> Self::Result {
        self.webhook_bodies.clone().try_acquire_owned().ok()
    }
}

impl Handler<SignedPush> for RegistryActor {
    type Result = MessageResult<SignedPush>;

    /// A delivery id seen before is a replay (or a redelivery of a push already acted on):
    /// nothing to do. Otherwise a sync is requested; pushes without an id always are.
    fn handle(&mut self, msg: SignedPush, ctx: &mut Self::Context) -> Self::Result {
        if let Some(id) = &msg.delivery {
            if !self.deliveries.first_time(id) {
                return MessageResult(PushOutcome::Replayed);
            }
        }
        self.request_sync(SyncReason::Webhook, None, ctx);
        MessageResult(PushOutcome::SyncRequested)
    }
}

impl Handler<GetStatus> for RegistryActor {
    type Result = MessageResult<GetStatus>;

    fn handle(&mut self, _: GetStatus, _: &mut Self::Context) -> Self::Result {
        let mut status = self.status.clone();
        if status.state == "ok" && self.handle.current().is_none() {
            status.state = "failed";
        }
        MessageResult(status)
    }
}

/// Hands the memory a build freed back to the OS now. A build frees as much as it keeps (the
/// parsed file, the checks' syntax trees, the previous registry), and the binary's allocator
/// (mimalloc) returns freed pages only after its purge delay and only when the thread that
/// freed them allocates again, which this actor's thread may not do until the next sync: a
/// 10,000-connector registry held 60-110 MiB more than it used after a reload.
fn return_freed_memory() {
    // SAFETY: `mi_collect` takes no pointer and only walks this thread's own heap; when
    // mimalloc is not the global allocator (tests, benches) that heap is empty.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::Addr;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    /// A source that takes `delay` per read, counts its reads, and reads whatever `revision`
    /// holds at the start of the read (as a fetch of a branch head would).
    #[derive(Debug)]
    struct SlowSource {
        reads: Arc<AtomicUsize>,
        revision: Arc<Mutex<String>>,
        delay: Duration,
    }

    impl Source for SlowSource {
        fn read(&self) -> Result<Snapshot, SourceError> {
            let revision = self.revision.lock().unwrap().clone();
            self.reads.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.delay);
            Ok(Snapshot {
                text: "{}".into(),
                revision: Some(revision),
            })
        }

        fn describe(&self) -> String {
            "a slow test source".into()
        }
    }

    struct Started {
        addr: Addr<RegistryActor>,
        reads: Arc<AtomicUsize>,
        revision: Arc<Mutex<String>>,
    }

    fn start(delay: Duration) -> Started {
        let reads = Arc::new(AtomicUsize::new(0));
        let revision = Arc::new(Mutex::new("r1".to_string()));
        let mut actor = RegistryActor::new(
            RegistrySource::Inline("{}".into()),
            BuildOptions::default(),
            RegistryHandle::new(),
            Metrics::new(),
        );
        actor.reader = Arc::new(SlowSource {
            reads: reads.clone(),
            revision: revision.clone(),
            delay,
        });
        Started {
            addr: actor.start(),
            reads,
            revision,
        }
    }

    #[actix_rt::test]
    async fn requests_during_a_sync_fold_into_one_more_and_the_status_answers_meanwhile() {
        let app = start(Duration::from_millis(300));
        for _ in 0..300 {
            app.addr.do_send(RequestSync(SyncReason::Webhook));
        }
        // The status does not wait behind the syncs (with one queued per request, it waited
        // for all 300 reads).
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        let asked = Instant::now();
        let status = app.addr.send(GetStatus).await.unwrap();
        assert!(
            asked.elapsed() < Duration::from_millis(150),
            "the status took {:?}",
            asked.elapsed()
        );
        assert_eq!(status.source, "the bundled registry");
        // The running read, then one more for everything that arrived meanwhile.
        actix_rt::time::sleep(Duration::from_millis(1200)).await;
        assert_eq!(app.reads.load(Ordering::SeqCst), 2);
        // Idle again: the next request starts a read at once.
        app.addr
            .send(Sync(SyncReason::Admin))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(app.reads.load(Ordering::SeqCst), 3);
    }

    #[actix_rt::test]
    async fn a_sync_requested_during_a_read_reports_a_read_that_started_after_it() {
        let app = start(Duration::from_millis(300));
        app.addr.do_send(RequestSync(SyncReason::Poll));
        actix_rt::time::sleep(Duration::from_millis(50)).await;
        // Pushed after that read began: the admin sync must not report the older read.
        *app.revision.lock().unwrap() = "r2".into();
        let first = app.addr.send(Sync(SyncReason::Admin));
        let second = app.addr.send(Sync(SyncReason::Signal));
        let (first, second) = tokio::join!(first, second);
        let (first, second) = (first.unwrap().unwrap(), second.unwrap().unwrap());
        assert_eq!(first.revision.as_deref(), Some("r2"));
        assert_eq!(first.result, "published");
        assert_eq!(
            first.reason,
            SyncReason::Admin,
            "the first request names the sync"
        );
        assert_eq!(second.revision.as_deref(), Some("r2"));
        assert_eq!(app.reads.load(Ordering::SeqCst), 2);
    }

    #[actix_rt::test]
    async fn a_delivery_id_is_acted_on_once_and_the_memory_of_ids_is_bounded() {
        let app = start(Duration::from_millis(1));
        let push = |id: &str| {
            app.addr.send(SignedPush {
                delivery: Some(id.to_string()),
            })
        };
        assert_eq!(push("d-1").await.unwrap(), PushOutcome::SyncRequested);
        assert_eq!(push("d-1").await.unwrap(), PushOutcome::Replayed);
        assert_eq!(push("d-2").await.unwrap(), PushOutcome::SyncRequested);
        let anonymous = SignedPush { delivery: None };
        assert_eq!(
            app.addr.send(anonymous.clone()).await.unwrap(),
            PushOutcome::SyncRequested
        );
        assert_eq!(
            app.addr.send(anonymous).await.unwrap(),
            PushOutcome::SyncRequested,
            "without an id there is nothing to compare"
        );
        let mut log = RecentDeliveries::new(4);
        for id in ["a", "b", "c", "d", "e"] {
            assert!(log.first_time(id));
        }
        assert_eq!((log.order.len(), log.seen.len()), (4, 4));
        assert!(!log.first_time("e"));
        assert!(log.first_time("a"), "the oldest id is forgotten first");
    }

    #[actix_rt::test]
    async fn webhook_body_slots_are_capped_and_freed_on_drop() {
        let app = start(Duration::from_millis(1));
        let mut held = Vec::new();
        for _ in 0..WEBHOOK_BODIES_AT_ONCE {
            held.push(app.addr.send(WebhookBodySlot).await.unwrap().unwrap());
        }
        assert!(app.addr.send(WebhookBodySlot).await.unwrap().is_none());
        held.pop();
        assert!(app.addr.send(WebhookBodySlot).await.unwrap().is_some());
    }
}
