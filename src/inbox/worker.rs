//! [`Worker`]: runs the handler on stored jobs, with leases, timeouts, retries and dead letters.

use std::any::Any;
use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::{Future, poll_fn};
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{Method, Request, Response, Uri};
use http_body_util::Full;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;
use tower_service::Service;

use super::alert::Alerts;
use super::{ClaimRequest, ClaimedJob, InboxError, InboxStore, JobId, Lease, paced, saturating_add};
use crate::event::{EventKind, WebhookEvent};
use crate::metadata::RawBody;
use crate::metrics::{self, AttemptEnd};
use crate::response::BoxError;
use crate::router::HandlerError;

/// How long after its last claim a worker woken by a stored delivery waits before it claims
/// again: the deliveries stored meanwhile are claimed together. A pickup waits at most this.
const WAKE_COALESCING: Duration = Duration::from_millis(5);

/// How a [`Worker`] runs jobs. Every field has a default ([`WorkerConfig::default`]).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// Jobs handled at once (default 8).
    pub concurrency: usize,
    /// How many consecutive jobs of one chat a claim takes at once, at most (default 64): the
    /// worker runs them one after the other, in one of its [`concurrency`](Self::concurrency)
    /// slots, each as soon as the one before it was handled, without waiting for the store to
    /// record it. A chat with a backlog is then handled at the handler's pace, not one job per
    /// commit. The jobs behind the first hold at most [`MAX_RUN_BYTES`](super::MAX_RUN_BYTES)
    /// of bodies. Jobs being retried are claimed alone; 1 claims every job alone.
    pub run_length: usize,
    /// Attempts before a job becomes a dead letter (default 8).
    pub max_attempts: u32,
    /// How long one attempt may run before it counts as failed (default 30 s).
    pub attempt_timeout: Duration,
    /// How long a claim holds a job before another worker may take it over (default 60 s).
    /// While a handler runs, the worker renews the lease every third of it, so a handler may run
    /// longer than the lease, up to the attempt timeout; a worker that cannot renew (paused, cut
    /// off from the store) drops the handler at the lease's end and leaves the job to the next
    /// claim. It is never shorter than 3 s.
    pub lease: Duration,
    /// The delay before the first retry (default 1 s); it doubles with each attempt, with
    /// jitter (a random delay between half and all of it).
    pub backoff_base: Duration,
    /// The longest delay between attempts (default 10 min).
    pub backoff_max: Duration,
    /// How often the store is asked for due jobs when nothing wakes the worker (default 1 s):
    /// retries coming due, jobs stored by other processes that the store could not announce
    /// ([`InboxStore::stored_elsewhere`]).
    pub poll_interval: Duration,
    /// On shutdown, how long jobs in flight may finish before they are released (default 10 s).
    pub shutdown_grace: Duration,
    /// How long the worker waits for one store call (a claim, a settle, a purge) before it
    /// counts as failed (default 30 s): a store that hangs (a lock held elsewhere, a network
    /// that drops packets) delays jobs, but never stops the worker or its shutdown.
    pub store_timeout: Duration,
    /// How long handled jobs are kept (default 24 hours). Until then, the same occurrence is
    /// answered as a duplicate; after it, it is accepted again. Keep it at least as long as
    /// Periskope may redeliver.
    pub retention: Duration,
    /// How long dead letters are kept, counted from when each became one; `None` (the default)
    /// keeps them until they are retried or purged.
    pub dead_retention: Option<Duration>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 8,
            run_length: 64,
            max_attempts: 8,
            attempt_timeout: Duration::from_secs(30),
            lease: Duration::from_secs(60),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(10 * 60),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            store_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(24 * 60 * 60),
            dead_retention: None,
        }
    }
}

/// What a lease keeps beyond its attempt's end, for the settle's round trip.
const LEASE_MARGIN: Duration = Duration::from_secs(1);
/// The shortest lease: its third must leave a renewal time for its round trip.
const MIN_LEASE: Duration = Duration::from_secs(3);

impl WorkerConfig {
    fn effective_lease(&self) -> Duration {
        self.lease.max(MIN_LEASE)
    }

    /// The delay before the attempt after `attempt`: `backoff_base * 2^(attempt - 1)`, at most
    /// `backoff_max`, of which a random half is jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        let doubled = self.backoff_base.saturating_mul(1u32 << attempt.saturating_sub(1).min(31));
        let delay = doubled.min(self.backoff_max);
        let half = delay / 2;
        let random = RandomState::new().build_hasher().finish();
        let jitter = half.mul_f64((random >> 11) as f64 / (1u64 << 53) as f64);
        half + jitter
    }
}

/// What the handler learns about the job it runs: the second argument of an
/// [`EventRouter`](crate::EventRouter) handler that takes one
/// ([`EventHandler`](crate::router::EventHandler)), and in the request extensions for any other
/// handler (`Extension<Attempt>` in axum).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    job: JobId,
    number: u32,
    fencing_token: u64,
    max_attempts: u32,
    key: String,
    signing_key: Option<String>,
    received_at: SystemTime,
}

impl Attempt {
    /// The job's id in the store.
    pub fn job(&self) -> JobId {
        self.job
    }

    /// Which attempt this is, from 1.
    pub fn number(&self) -> u32 {
        self.number
    }

    /// This attempt's fencing token: the job's claim counter, larger for every later claim of
    /// the job (a takeover after this attempt's lease expired, a retry, a replay), and never
    /// reused. A handler that writes to its own database stores it with what it writes and
    /// refuses a write under a smaller token, so a late attempt cannot overwrite a later one;
    /// [`InboxStore::holds`] tells whether it is still current.
    pub fn fencing_token(&self) -> u64 {
        self.fencing_token
    }

    /// Whether a failure now makes the job a dead letter.
    pub fn is_last(&self) -> bool {
        self.number >= self.max_attempts
    }

    /// The occurrence's de-duplication key: the idempotency key for the handler's side effects
    /// (it can hold phone numbers: do not log it).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The id of the signing key that verified the delivery.
    pub fn signing_key(&self) -> Option<&str> {
        self.signing_key.as_deref()
    }

    /// When the delivery arrived.
    pub fn received_at(&self) -> SystemTime {
        self.received_at
    }
}

/// Runs a handler on the jobs of an [`InboxStore`].
///
/// The handler is a tower service, as behind the layer: an [`EventRouter`](crate::EventRouter),
/// an axum `Router` (the request is a `POST` on the path the delivery arrived on, so the
/// webhook's own route matches), or any `Service<Request<Full<Bytes>>>`. Its request
/// carries the [`WebhookEvent`], the [`RawBody`] and the [`Attempt`] in its extensions and the
/// body as received. A `2xx` answer handles the job; any other answer, an error, a panic or the
/// [timeout](WorkerConfig::attempt_timeout) fails the attempt, and the job is retried after a
/// backoff, or becomes a dead letter after [`WorkerConfig::max_attempts`].
///
/// With the `tracing` feature, each attempt runs in a `periskope.attempt` span (a consumer's:
/// `otel.kind = "consumer"`) with the fields `job_id`, `attempt`, `event_kind`, `waited_ms`
/// (since the delivery was received), `outcome` (`handled`, `failed`, `timed_out`, `released`,
/// `abandoned`) and `duration_ms`, and OpenTelemetry's `messaging.system` (`periskope_inbox`),
/// `messaging.operation.type` and `messaging.operation.name` (`process`); the handler's future
/// runs inside it: the handler's own spans and outgoing calls nest under the attempt. No field
/// holds Periskope's ids (never `messaging.message.id`). With the `opentelemetry` feature, each
/// attempt links to the span that accepted its delivery ([`ClaimedJob::traceparent`]); the
/// first attempt is also its child, and each later one starts a trace of its own.
///
/// [`Worker::run`] claims jobs until its shutdown future completes, even while a store call is
/// pending; then it stops claiming, gives the jobs in flight [`WorkerConfig::shutdown_grace`]
/// to finish, and releases the others (their attempt is not counted; each release waits at
/// most [`WorkerConfig::store_timeout`]). If the `run` future is dropped instead, the attempts
/// in flight are aborted and their jobs are taken over when their lease expires (the embedded
/// store takes them back at once when it next opens).
pub struct Worker<St, H> {
    store: St,
    handler: H,
    config: WorkerConfig,
    wake: Arc<Notify>,
    alerts: Option<Arc<Alerts>>,
}

impl<St, H> fmt::Debug for Worker<St, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Worker").field("config", &self.config).finish_non_exhaustive()
    }
}

/// How an attempt ended.
enum Outcome {
    Handled,
    Failed(String),
    /// The attempt ran past [`WorkerConfig::attempt_timeout`].
    TimedOut(Duration),
    /// Shutdown came before it finished.
    Released,
}

impl Outcome {
    fn metric(&self) -> AttemptEnd {
        match self {
            Outcome::Handled => AttemptEnd::Handled,
            Outcome::Failed(_) => AttemptEnd::Failed,
            Outcome::TimedOut(_) => AttemptEnd::TimedOut,
            Outcome::Released => AttemptEnd::Released,
        }
    }
}

impl<St, H> Worker<St, H> {
    /// A worker running `handler` on the jobs of `store`; `wake`, when given, is notified by the
    /// acceptor of the same process for each job it stores. Prefer
    /// [`Inbox::worker`](super::Inbox::worker).
    pub fn new(store: St, handler: H, wake: Option<Arc<Notify>>) -> Self {
        Worker {
            store,
            handler,
            config: WorkerConfig::default(),
            wake: wake.unwrap_or_default(),
            alerts: None,
        }
    }

    /// Tells the alerts of its store to `alerts` while it runs
    /// ([`Inbox::on_alert`](super::Inbox::on_alert)).
    pub(crate) fn alerts(mut self, alerts: Option<Arc<Alerts>>) -> Self {
        self.alerts = alerts;
        self
    }

    /// Replaces the configuration.
    pub fn config(mut self, config: WorkerConfig) -> Self {
        self.config = config;
        self
    }
}

impl<St, H, ResBody> Worker<St, H>
where
    St: InboxStore,
    H: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    /// Runs jobs until `shutdown` completes, then shuts down gracefully (see [`Worker`]).
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Worker { store, handler, config, wake, alerts } = self;
        // Alerts are told from a task of their own, stopped with the worker: a slow callback
        // delays no job, and what it had not marked told is told again at the next start.
        let _alerts = alerts.map(|alerts| {
            let (store, every, timeout) = (store.clone(), config.poll_interval, config.store_timeout);
            AbortOnDrop(tokio::spawn(async move { alerts.tell(store, every, timeout).await }))
        });
        let config = Arc::new(config);
        let concurrency = config.concurrency.max(1);
        let (stop, stopping) = watch::channel(false);
        // Set once shutdown begins: a run starts none of its jobs after that, and gives them back.
        let (shutdown_began, shutting_down) = watch::channel(false);
        let mut in_flight = JoinSet::new();
        // A slot is a handler running: freed as soon as it returns, while its settlement is
        // still on its way to the store, so that the next claim can follow the settlement into
        // the same commit (SQLite's writer runs them in order) and take the chat's next job.
        let slots = Arc::new(Semaphore::new(concurrency));
        let slot_freed = Arc::new(Notify::new());
        let mut last_claim = Instant::now();
        // Whether the last claim took runs: the worker is behind, and claims at most every
        // `InboxStore::busy_claim_interval`.
        let mut busy = false;
        let busy_claim_interval = store.busy_claim_interval();
        let mut shutdown = std::pin::pin!(shutdown);
        // Kept across the loop's rounds, and made anew as soon as it fires: a delivery another
        // process stores while a claim runs still wakes the worker after it.
        let mut stored_elsewhere = std::pin::pin!(store.stored_elsewhere());
        // Retention runs on a task of its own, stopped when shutdown begins: a long deletion
        // delays no claim.
        let retention = AbortOnDrop(tokio::spawn(retain(store.clone(), Arc::clone(&config))));
        // Every wait below is raced against the shutdown: a store call that hangs cannot hold
        // the worker past it. The loop's value is the end of the grace period.
        let grace_ends = loop {
            if busy && !busy_claim_interval.is_zero() {
                tokio::select! {
                    () = &mut shutdown => break Instant::now().checked_add(config.shutdown_grace),
                    () = tokio::time::sleep_until(last_claim + busy_claim_interval) => {}
                }
            }
            while in_flight.try_join_next().is_some() {}
            let free = slots.available_permits();
            let mut claimed_all = false;
            if free > 0 {
                // The lease runs from before the claim's round trip: an attempt that cannot renew
                // it must end a margin before it does, or another worker could take the job over
                // while it runs.
                last_claim = Instant::now();
                let leases_end = last_claim.checked_add(config.effective_lease());
                let request = ClaimRequest {
                    limit: free,
                    run: config.run_length.max(1),
                    lease: config.effective_lease(),
                    max_attempts: config.max_attempts,
                    now: SystemTime::now(),
                };
                // The claim runs on a task of its own, so that one its caller gave up on (a
                // timeout, the shutdown) still answers: what it took is then given back at once.
                let mut claiming = {
                    let store = store.clone();
                    ReleaseUnclaimed::new(
                        store.clone(),
                        tokio::spawn(async move { store.claim(request).await }),
                    )
                };
                let mut claim = std::pin::pin!(bounded(config.store_timeout, claiming.answer()));
                let claimed = tokio::select! {
                    claimed = &mut claim => claimed,
                    () = &mut shutdown => {
                        // The store may still carry the claim out: what it takes within the
                        // grace period is given back, its attempt not counted.
                        let grace_ends = Instant::now().checked_add(config.shutdown_grace);
                        if let Some(Ok(jobs)) = until(grace_ends, claim).await {
                            for job in jobs {
                                give_back(&mut in_flight, &store, &config, job);
                            }
                        }
                        break grace_ends;
                    }
                };
                match claimed {
                    Ok(jobs) => {
                        busy = jobs.len() > free;
                        let (runs, strays) = into_runs(jobs);
                        claimed_all = runs.len() == free;
                        // Only this loop takes slots, and it claimed no more runs than were free:
                        // a run without a slot, like a job claimed behind one it was not given
                        // with, is unreachable, but would be given back unrun.
                        let mut unrun = strays;
                        for run in runs {
                            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                                unrun.extend(run);
                                continue;
                            };
                            let slot = Slot { permit: Some(permit), freed: Arc::clone(&slot_freed) };
                            in_flight.spawn(run_in_order(
                                store.clone(),
                                handler.clone(),
                                run,
                                Arc::clone(&config),
                                leases_end,
                                Stops { grace_over: stopping.clone(), shutting_down: shutting_down.clone() },
                                slot,
                            ));
                        }
                        for job in unrun {
                            give_back(&mut in_flight, &store, &config, job);
                        }
                    }
                    Err(_error) => {
                        #[cfg(feature = "tracing")]
                        tracing::error!(error = %_error, "periskope inbox could not claim jobs");
                    }
                }
            }
            if claimed_all && slots.available_permits() > 0 {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => break Instant::now().checked_add(config.shutdown_grace),
                () = wake.notified() => {
                    // Deliveries are stored by the thousand a second, each waking the worker: one
                    // claim serves all those stored within a short while, instead of a claim
                    // each, which would take the store's writer from them.
                    tokio::time::sleep_until(last_claim + WAKE_COALESCING).await;
                }
                () = &mut stored_elsewhere => {
                    stored_elsewhere.set(store.stored_elsewhere());
                    tokio::time::sleep_until(last_claim + WAKE_COALESCING).await;
                }
                () = slot_freed.notified() => {}
                Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        };
        drop(retention);
        let _ = shutdown_began.send(true);
        let mut grace = std::pin::pin!(until(grace_ends, std::future::pending::<()>()));
        loop {
            tokio::select! {
                joined = in_flight.join_next() => if joined.is_none() { break },
                _ = &mut grace, if !*stop.borrow() => { let _ = stop.send(true); }
            }
        }
    }
}

/// `future`'s output, or `None` once `deadline` passed (never, without one: a grace period of
/// `Duration::MAX` is beyond what an `Instant` holds).
async fn until<T>(deadline: Option<Instant>, future: impl Future<Output = T>) -> Option<T> {
    match deadline {
        Some(deadline) => tokio::time::timeout_at(deadline, future).await.ok(),
        None => Some(future.await),
    }
}

/// `call`, or a [`InboxError::Storage`] once the store took longer than `timeout`.
pub(super) async fn bounded<T>(
    timeout: Duration,
    call: impl Future<Output = Result<T, InboxError>>,
) -> Result<T, InboxError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(InboxError::Storage(format!("the store did not answer within {timeout:?}"))))
}

/// How many jobs one retention call deletes: the deliveries stored meanwhile wait for one such
/// batch at most.
const RETENTION_BATCH: usize = 500;

/// How many times as long as a retention call the rest after it lasts: the store, and on
/// SQLite its writer, is the deliveries' at least half the time.
const RETENTION_REST: u32 = 1;

/// Retention: every minute (or the shortest retention, if shorter), the handled jobs older
/// than the retention, then the dead letters older than theirs, are deleted.
async fn retain<St: InboxStore>(store: St, config: Arc<WorkerConfig>) {
    let shortest_retention = config.retention.min(config.dead_retention.unwrap_or(Duration::MAX));
    let mut every = tokio::time::interval(
        shortest_retention.min(Duration::from_secs(60)).max(Duration::from_millis(100)),
    );
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let now = SystemTime::now();
        let before = |retention: Duration| now.checked_sub(retention).unwrap_or(SystemTime::UNIX_EPOCH);
        let handled = before(config.retention);
        let purged =
            delete_in_batches(config.store_timeout, |limit| store.purge_handled(handled, limit)).await;
        if let Err(_error) = purged {
            #[cfg(feature = "tracing")]
            tracing::error!(error = %_error, "periskope inbox could not purge handled jobs");
        }
        let Some(dead_retention) = config.dead_retention else { continue };
        let died = before(dead_retention);
        if let Err(_error) =
            delete_in_batches(config.store_timeout, |limit| store.purge_dead(died, limit)).await
        {
            #[cfg(feature = "tracing")]
            tracing::error!(error = %_error, "periskope inbox could not purge dead letters");
        }
    }
}

/// Calls `delete` with [`RETENTION_BATCH`] until it deletes fewer, each call bounded by
/// `timeout` and [paced](super::paced) by [`RETENTION_REST`], so that each batch's writes
/// reach the disk before the next one's.
async fn delete_in_batches<F>(timeout: Duration, mut delete: impl FnMut(usize) -> F) -> Result<(), InboxError>
where
    F: Future<Output = Result<u64, InboxError>>,
{
    loop {
        if paced(bounded(timeout, delete(RETENTION_BATCH)), RETENTION_REST).await? < RETENTION_BATCH as u64 {
            return Ok(());
        }
    }
}

/// A claim running on a task of its own. Awaited through [`ReleaseUnclaimed::answer`]; dropped
/// before it answered (its caller timed out, or gave up at shutdown), what the claim took is
/// released as soon as it answers, its attempt not counted, instead of staying claimed until
/// its lease ends.
struct ReleaseUnclaimed<St: InboxStore> {
    store: St,
    claim: Option<JoinHandle<Result<Vec<ClaimedJob>, InboxError>>>,
}

impl<St: InboxStore> ReleaseUnclaimed<St> {
    fn new(store: St, claim: JoinHandle<Result<Vec<ClaimedJob>, InboxError>>) -> Self {
        ReleaseUnclaimed { store, claim: Some(claim) }
    }

    /// The claim's answer; once taken, nothing is released on drop.
    async fn answer(&mut self) -> Result<Vec<ClaimedJob>, InboxError> {
        let Some(claim) = self.claim.as_mut() else { return Ok(Vec::new()) };
        let answer = claim.await;
        self.claim = None;
        answer.unwrap_or_else(|_| {
            Err(InboxError::Storage("the claim's task ended without an answer".to_owned()))
        })
    }
}

impl<St: InboxStore> Drop for ReleaseUnclaimed<St> {
    fn drop(&mut self) {
        let Some(claim) = self.claim.take() else { return };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return claim.abort() };
        let store = self.store.clone();
        runtime.spawn(async move {
            if let Ok(Ok(jobs)) = claim.await {
                for job in jobs {
                    let _ = store.release(job.lease(), SystemTime::now()).await;
                }
            }
        });
    }
}

/// Aborts a task when dropped: the handler's when its attempt is (worker dropped, timeout,
/// shutdown), an alert callback's when the alert task stops.
pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Gives `job` back unrun, its attempt not counted, on a task of `in_flight`.
fn give_back<St: InboxStore>(
    in_flight: &mut JoinSet<()>,
    store: &St,
    config: &Arc<WorkerConfig>,
    job: ClaimedJob,
) {
    let (store, config) = (store.clone(), Arc::clone(config));
    in_flight.spawn(async move {
        settle(&store, &config, job.lease(), &job.event, Outcome::Released, None).await;
    });
}

/// The signals a run watches: the end of the shutdown's grace period, which stops the handler
/// running, and the shutdown's start, after which no job of the run starts.
struct Stops {
    grace_over: watch::Receiver<bool>,
    shutting_down: watch::Receiver<bool>,
}

/// The claimed jobs as runs, each in order ([`ClaimedJob::follows`]), and the strays: jobs
/// claimed behind one that is not the last of a run in this answer, which no store hands out,
/// and which are given back unrun rather than run out of order.
fn into_runs(jobs: Vec<ClaimedJob>) -> (Vec<Vec<ClaimedJob>>, Vec<ClaimedJob>) {
    let mut runs: Vec<Vec<ClaimedJob>> = Vec::new();
    let mut strays = Vec::new();
    let mut run_ending_with: HashMap<JobId, usize> = HashMap::new();
    for job in jobs {
        let index = match job.follows {
            None => {
                runs.push(Vec::new());
                runs.len() - 1
            }
            Some(previous) => match run_ending_with.remove(&previous) {
                Some(index) => index,
                None => {
                    strays.push(job);
                    continue;
                }
            },
        };
        run_ending_with.insert(job.id, index);
        runs[index].push(job);
    }
    (runs, strays)
}

/// Runs a run's jobs one after the other in one slot, each as soon as the one before it was
/// handled: that one's settlement goes to the store while the next runs, so that a chat with a
/// backlog is not held to one job per commit. Once a job is not handled (it failed, timed out,
/// or was stopped), or shutdown began, the rest are given back unrun, after its settlement.
/// The slot is freed when the last handler returns.
async fn run_in_order<St, H, ResBody>(
    store: St,
    handler: H,
    run: Vec<ClaimedJob>,
    config: Arc<WorkerConfig>,
    lease_ends: Option<Instant>,
    stops: Stops,
    slot: Slot,
) where
    St: InboxStore,
    H: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    let mut slot = Some(slot);
    let mut settling = JoinSet::new();
    let mut jobs = run.into_iter().peekable();
    while let Some(job) = jobs.next() {
        let (lease, event) = (job.lease(), job.event.clone());
        let outcome =
            run_attempt(&store, handler.clone(), job, &config, lease_ends, stops.grace_over.clone()).await;
        let handled = matches!(outcome, Some(Outcome::Handled));
        if handled && jobs.peek().is_some() && !*stops.shutting_down.borrow() {
            let (store, config) = (store.clone(), Arc::clone(&config));
            settling
                .spawn(async move { settle(&store, &config, lease, &event, Outcome::Handled, None).await });
            continue;
        }
        // The run ends here. Its jobs behind this one are given back once this one's
        // settlement is recorded, in order, so that they stay behind it.
        match outcome {
            Some(outcome) => settle(&store, &config, lease, &event, outcome, slot.take()).await,
            None => drop(slot.take()),
        }
        for unrun in jobs.by_ref() {
            settle(&store, &config, unrun.lease(), &unrun.event, Outcome::Released, None).await;
        }
    }
    while settling.join_next().await.is_some() {}
}

/// Runs one job's attempt in its span, renewing its lease; returns how it ended, or `None` when
/// its lease was lost (another claim may have taken the job over: nothing is settled).
async fn run_attempt<St, H, ResBody>(
    store: &St,
    mut handler: H,
    job: ClaimedJob,
    config: &WorkerConfig,
    lease_ends: Option<Instant>,
    mut stopping: watch::Receiver<bool>,
) -> Option<Outcome>
where
    St: InboxStore,
    H: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    let lease = job.lease();
    let event = job.event.clone();
    let kind = EventKind::from_name(&event);
    // The lease runs from before the claim's round trip. A claim that answered so late that
    // less than the margin is left gives its job back unrun.
    let Some(lease_ends) = lease_ends.map_or(Some(None), |ends| {
        (ends.saturating_duration_since(Instant::now()) > LEASE_MARGIN).then_some(Some(ends))
    }) else {
        return Some(Outcome::Released);
    };
    // Clocks of replicas differ: a receipt stamped ahead of this clock waited nothing.
    let waited = SystemTime::now().duration_since(job.received_at).unwrap_or_default();
    if job.attempt == 1 {
        metrics::first_attempt_waited(kind, waited);
    }
    // The attempt's span, which the handler runs in: its own spans nest under it. It names the
    // job by the inbox's id only, never by Periskope's ids (they hold phone numbers).
    #[cfg(feature = "tracing")]
    let span = tracing::info_span!(
        "periskope.attempt",
        "otel.kind" = "consumer",
        // OpenTelemetry's messaging conventions, never `messaging.message.id`: Periskope's ids
        // hold phone numbers.
        "messaging.system" = "periskope_inbox",
        "messaging.operation.type" = "process",
        "messaging.operation.name" = "process",
        job_id = lease.id,
        attempt = lease.attempt,
        event_kind = kind.as_str(),
        waited_ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX),
        outcome = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    #[cfg(feature = "opentelemetry")]
    super::trace_context::link_attempt(&span, job.traceparent.as_deref(), lease.attempt);
    let started = Instant::now();
    let outcome = match handler_request(job, config.max_attempts) {
        Err(reason) => Outcome::Failed(reason),
        Ok(request) => {
            let handling = async move {
                poll_fn(|cx| handler.poll_ready(cx)).await.map_err(Into::into)?;
                handler.call(request).await.map_err(Into::into)
            };
            #[cfg(feature = "tracing")]
            let handling = tracing::Instrument::instrument(handling, span.clone());
            let mut task = AbortOnDrop(tokio::spawn(handling));
            let held = hold_lease(store, config, lease, lease_ends);
            tokio::select! {
                joined = tokio::time::timeout(config.attempt_timeout, &mut task.0) => match joined {
                    Ok(Ok(Ok(response))) => judge(response),
                    Ok(Ok(Err(error))) => Outcome::Failed(format!("the handler failed: {error}")),
                    Ok(Err(join_error)) => Outcome::Failed(match join_error.try_into_panic() {
                        Ok(panic) => format!("the handler panicked: {}", panic_message(&*panic)),
                        Err(_) => "the handler's task was cancelled".to_owned(),
                    }),
                    Err(_) => Outcome::TimedOut(config.attempt_timeout),
                },
                Ok(_) = stopping.wait_for(|stop| *stop) => Outcome::Released,
                lost = held => {
                    // The lease is gone or about to be: another claim may take the job over,
                    // so this attempt stops here and settles nothing (`task` aborts on drop).
                    #[cfg(feature = "tracing")]
                    tracing::warn!(job = lease.id, reason = lost, "periskope inbox attempt stopped: its lease could not be renewed");
                    let _ = lost;
                    metrics::attempt_ended(kind, AttemptEnd::Abandoned, started.elapsed());
                    #[cfg(feature = "tracing")]
                    record_end(&span, AttemptEnd::Abandoned, started.elapsed());
                    return None;
                }
            }
        }
    };
    metrics::attempt_ended(kind, outcome.metric(), started.elapsed());
    #[cfg(feature = "tracing")]
    record_end(&span, outcome.metric(), started.elapsed());
    Some(outcome)
}

/// A handler's slot in the worker's concurrency: freed, and the worker told, on drop.
struct Slot {
    permit: Option<OwnedSemaphorePermit>,
    freed: Arc<Notify>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.permit.take();
        self.freed.notify_one();
    }
}

/// Records how the attempt ended on its span.
#[cfg(feature = "tracing")]
fn record_end(span: &tracing::Span, end: AttemptEnd, ran: Duration) {
    span.record("outcome", end.as_str());
    span.record("duration_ms", u64::try_from(ran.as_millis()).unwrap_or(u64::MAX));
}

/// Renews `lease` every third of the lease while the attempt runs (and once more a margin
/// before it ends, when a claim answered late); returns, with why, once the lease is lost
/// (another claim took the job over) or renewals failed until a margin before it ends, so that
/// the attempt stops before its lease does. Without a lease end (a lease beyond what an
/// `Instant` holds), it only renews.
async fn hold_lease<St: InboxStore>(
    store: &St,
    config: &WorkerConfig,
    lease: Lease,
    mut lease_ends: Option<Instant>,
) -> &'static str {
    let every = config.effective_lease() / 3;
    loop {
        let deadline = lease_ends.map(|ends| ends.checked_sub(LEASE_MARGIN).unwrap_or(ends));
        let next = Instant::now().checked_add(every);
        match (deadline, next) {
            (Some(deadline), Some(next)) => tokio::time::sleep_until(deadline.min(next)).await,
            (Some(at), None) | (None, Some(at)) => tokio::time::sleep_until(at).await,
            // A lease of no limit needs no renewal.
            (None, None) => std::future::pending().await,
        }
        let asked = Instant::now();
        let until = saturating_add(SystemTime::now(), config.effective_lease());
        let left = lease_ends.map_or(every, |ends| ends.saturating_duration_since(asked));
        match bounded(config.store_timeout.min(every).min(left), store.renew(lease, until)).await {
            Ok(true) => lease_ends = asked.checked_add(config.effective_lease()),
            Ok(false) => return "another claim holds its job",
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "periskope inbox could not renew a lease");
                if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                    return "its lease ends and could not be renewed";
                }
            }
        }
    }
}

/// The request the handler gets: `POST` on the path the delivery arrived on, the body as
/// received, and the event, raw body and attempt in its extensions. A body that no longer
/// decodes (it was verified and decoded when stored, so only a different version of this crate
/// could refuse it) fails the attempt.
fn handler_request(job: ClaimedJob, max_attempts: u32) -> Result<Request<Full<Bytes>>, String> {
    let event = WebhookEvent::decode(job.body.clone())
        .map_err(|error| format!("the stored body no longer decodes: {}", error.code()))?;
    let path = Uri::try_from(job.path).map_err(|_| "the stored path is not a request path".to_owned())?;
    let mut request = Request::new(Full::new(job.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = path;
    let extensions = request.extensions_mut();
    extensions.insert(event);
    extensions.insert(RawBody(job.body));
    extensions.insert(Attempt {
        job: job.id,
        number: job.attempt,
        fencing_token: job.fencing_token,
        max_attempts,
        key: job.key,
        signing_key: job.signing_key,
        received_at: job.received_at,
    });
    Ok(request)
}

fn judge<B>(response: Response<B>) -> Outcome {
    if response.status().is_success() {
        return Outcome::Handled;
    }
    match response.extensions().get::<HandlerError>() {
        Some(failure) => Outcome::Failed(match failure.source() {
            Some(cause) => format!("{failure}: {cause}"),
            None => failure.to_string(),
        }),
        None => Outcome::Failed(format!("the handler answered {}", response.status())),
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Records `outcome` in the store. `slot`, the attempt's, is freed once the call is on its way
/// (a SQL store queues it when the call is made), before its answer.
async fn settle<St: InboxStore>(
    store: &St,
    config: &WorkerConfig,
    lease: Lease,
    event: &str,
    outcome: Outcome,
    slot: Option<Slot>,
) {
    let now = SystemTime::now();
    let timeout = config.store_timeout;
    let settled = match outcome {
        Outcome::Handled => {
            let call = store.complete(lease, now);
            drop(slot);
            bounded(timeout, call).await
        }
        Outcome::Released => {
            let call = store.release(lease, now);
            drop(slot);
            bounded(timeout, call).await
        }
        Outcome::Failed(error) => fail(store, config, lease, event, error, now, slot).await,
        Outcome::TimedOut(after) => {
            let error = format!("the attempt timed out after {after:?}");
            fail(store, config, lease, event, error, now, slot).await
        }
    };
    if let Err(_error) = settled {
        // The job stays claimed; it is retried once its lease expires.
        #[cfg(feature = "tracing")]
        tracing::error!(error = %_error, "periskope inbox could not record an attempt");
    }
}

/// Records a failed attempt: the job is retried after its backoff, or becomes a dead letter
/// after its last attempt.
async fn fail<St: InboxStore>(
    store: &St,
    config: &WorkerConfig,
    lease: Lease,
    event: &str,
    error: String,
    now: SystemTime,
    slot: Option<Slot>,
) -> Result<(), InboxError> {
    let retry_at =
        (lease.attempt < config.max_attempts).then(|| saturating_add(now, config.backoff(lease.attempt)));
    let call = store.fail(lease, error, retry_at);
    drop(slot);
    bounded(config.store_timeout, call).await?;
    let kind = EventKind::from_name(event);
    if retry_at.is_some() {
        metrics::retry_scheduled(kind);
    } else {
        metrics::dead_letter(kind);
        super::log_dead_letter(event, lease.id, lease.attempt);
    }
    Ok(())
}

impl<St, H, ResBody> Worker<St, H>
where
    St: InboxStore,
    H: Service<Request<Full<Bytes>>, Response = Response<ResBody>> + Clone + Send + 'static,
    H::Future: Send + 'static,
    H::Error: Into<BoxError>,
    ResBody: Send + 'static,
{
    /// Runs the worker on a task of the current tokio runtime until [`WorkerHandle::shutdown`]
    /// (or the handle's drop) tells it to stop.
    pub fn spawn(self) -> WorkerHandle {
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(self.run(async move {
            // A dropped handle stops the worker too.
            let _ = stopped.await;
        }));
        WorkerHandle { stop, task }
    }

    /// Runs jobs until none is pending or running, then returns: a test stores deliveries, runs
    /// this, and checks what the handlers did, without sleeping. A job that keeps failing is
    /// retried after its backoff until it is a dead letter, so keep the backoff short in tests.
    pub async fn run_until_idle(self) {
        let store = self.store.clone();
        self.run(async move {
            loop {
                if let Ok(stats) = store.stats(SystemTime::now()).await
                    && stats.queue_depth() == 0
                {
                    return;
                }
                tokio::time::sleep(IDLE_POLL).await;
            }
        })
        .await;
    }
}

/// How often [`Worker::run_until_idle`] looks at the queue.
const IDLE_POLL: Duration = Duration::from_millis(5);

/// A worker running on its own task, from [`Worker::spawn`].
///
/// Dropping the handle stops the worker as [`WorkerHandle::shutdown`] does, without waiting
/// for it.
#[derive(Debug)]
pub struct WorkerHandle {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl WorkerHandle {
    /// Stops claiming jobs, gives those in flight [`WorkerConfig::shutdown_grace`] to finish,
    /// releases the others, and returns once the worker has stopped. An error means the
    /// worker's task panicked or was cancelled.
    pub async fn shutdown(self) -> Result<(), tokio::task::JoinError> {
        let WorkerHandle { stop, task } = self;
        let _ = stop.send(());
        task.await
    }
}
