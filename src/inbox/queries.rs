//! [`ConsoleStore`]: the queries an operator's console asks of an inbox store, beyond the
//! worker's and the command line's [`InboxStore`] operations.
//!
//! ```
//! use periskope_webhook::inbox::{ConsoleStore, JobFilter, JobState, MemoryInboxStore};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let store = MemoryInboxStore::new();
//! // The newest dead letters of one event name, 50 at a time.
//! let mut filter = JobFilter::default();
//! filter.state = Some(JobState::Dead);
//! filter.event = Some("message.created".to_owned());
//! let page = store.search(filter.clone().limit(50)).await.unwrap();
//! if let Some(last) = page.last() {
//!     let _next = store.search(filter.limit(50).before(last.id)).await.unwrap();
//! }
//! # }
//! ```

use std::future::Future;
use std::time::{Duration, SystemTime};

use super::{InboxError, InboxStore, JobId, JobSummary};
use crate::redact::mask_phone_digits;

/// Which jobs [`ConsoleStore::search`] returns (newest first) and the bulk actions touch.
///
/// Every condition that is set must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct JobFilter {
    /// Only jobs in this state.
    pub state: Option<super::JobState>,
    /// Only jobs of this event name, exactly.
    pub event: Option<String>,
    /// Only jobs of this chat id (the chat part of the ordering key, exactly).
    pub chat: Option<String>,
    /// Only jobs received at or after this time.
    pub received_from: Option<SystemTime>,
    /// Only jobs received before this time.
    pub received_until: Option<SystemTime>,
    /// Only jobs whose de-duplication key or last error contains this text.
    ///
    /// No index serves it on the SQL stores, and none is needed for pages: it narrows the rows
    /// the other conditions (or, without them, the primary key walked newest first) select, and
    /// a page stops at its limit. A [`ConsoleStore::count`] by text alone reads every job.
    pub text: Option<String>,
    /// Only these jobs: a batch of a bulk action, whose other conditions are checked again as
    /// it is applied.
    pub ids: Option<Vec<JobId>>,
    /// Keyset paging: only jobs with a smaller id (the last id of the previous page).
    pub before: Option<JobId>,
    /// At most this many ([`ConsoleStore::search`] only); 50 when 0.
    pub limit: usize,
}

impl JobFilter {
    /// At most `limit` jobs.
    pub fn limit(mut self, limit: usize) -> Self {
        self.limit = limit;
        self
    }

    /// The page after the one whose last (oldest) job is `id`.
    pub fn before(mut self, id: JobId) -> Self {
        self.before = Some(id);
        self
    }

    /// The limit a store applies: 50 when 0, at most 1,000.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => 50,
            limit => limit.min(1000),
        }
    }
}

/// How one attempt ended, in a job's [attempt history](ConsoleStore::attempts).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AttemptOutcome {
    /// Still running (or its worker died: its lease tells).
    Running,
    /// The handler succeeded.
    Handled,
    /// The handler failed, panicked or timed out.
    Failed,
    /// Shutdown gave the job back before the attempt finished.
    Released,
    /// Its lease expired before it settled.
    Abandoned,
}

impl AttemptOutcome {
    /// The outcome's name: `running`, `handled`, `failed`, `released` or `abandoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Running => "running",
            AttemptOutcome::Handled => "handled",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Released => "released",
            AttemptOutcome::Abandoned => "abandoned",
        }
    }

    /// The outcome named `name`, as [`AttemptOutcome::as_str`] spells it.
    pub fn from_name(name: &str) -> Option<AttemptOutcome> {
        [
            AttemptOutcome::Running,
            AttemptOutcome::Handled,
            AttemptOutcome::Failed,
            AttemptOutcome::Released,
            AttemptOutcome::Abandoned,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == name)
    }
}

/// One attempt of a job.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AttemptRecord {
    /// The attempt's number, from 1.
    pub number: u32,
    /// When it was claimed.
    pub started_at: SystemTime,
    /// How long it ran, once it ended.
    pub duration: Option<Duration>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The error of a failed attempt.
    pub error: Option<String>,
}

/// Counts of one minute, for the console's chart.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MinuteCounts {
    /// The minute's start.
    pub minute: SystemTime,
    /// Deliveries stored in it.
    pub received: u64,
    /// Attempts that handled their job in it.
    pub handled: u64,
    /// Attempts that failed in it.
    pub failed: u64,
}

impl MinuteCounts {
    /// The minute starting at `minute`, with nothing counted yet.
    pub fn new(minute: SystemTime) -> Self {
        MinuteCounts { minute, received: 0, handled: 0, failed: 0 }
    }
}

/// The minutes of a time range (Unix milliseconds), counted from a SQL store's rows grouped by
/// minute (`time / 60000`).
pub(crate) struct MinuteTally {
    first: i64,
    minutes: Vec<MinuteCounts>,
}

impl MinuteTally {
    /// Every minute from the one holding `since` to the one holding `now`, nothing counted.
    pub(crate) fn new(since: i64, now: i64) -> Self {
        let first = since.div_euclid(60_000);
        let minutes = (first..=now.div_euclid(60_000).max(first))
            .map(|minute| MinuteCounts::new(super::from_millis(minute.saturating_mul(60_000))))
            .collect();
        MinuteTally { first, minutes }
    }

    /// Adds `count` deliveries received (`outcome` `None`), or attempts ended with `outcome`, to
    /// the `minute`th minute since the Unix epoch; a minute outside the range is left out.
    pub(crate) fn add(&mut self, minute: i64, outcome: Option<AttemptOutcome>, count: u64) {
        let index = minute.checked_sub(self.first).and_then(|index| usize::try_from(index).ok());
        let Some(entry) = index.and_then(|index| self.minutes.get_mut(index)) else { return };
        match outcome {
            None => entry.received += count,
            Some(AttemptOutcome::Handled) => entry.handled += count,
            Some(AttemptOutcome::Failed) => entry.failed += count,
            Some(_) => {}
        }
    }

    pub(crate) fn into_counts(self) -> Vec<MinuteCounts> {
        self.minutes
    }
}

/// An event name with dead letters, for the console's overview.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeadLetters {
    /// The event name.
    pub event: String,
    /// How many of its jobs are dead.
    pub count: u64,
    /// The last error of its most recent dead letter.
    pub latest_error: Option<String>,
}

/// One step of a search through masked text ([`ConsoleStore::search_masked`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MaskedStep {
    /// The jobs looked at whose masked key or last error holds the text, newest first.
    pub found: Vec<JobSummary>,
    /// Where the next step starts ([`JobFilter::before`]): the last job looked at, when the step
    /// looked at as many jobs as its limit; `None` when no job is left.
    pub next: Option<JobId>,
}

/// Whether `key` or `error`, with their phone numbers masked as a page that hides ids shows
/// them ([`mask_phone_digits`]), holds `text`.
pub(crate) fn masked_text_holds(key: &str, error: Option<&str>, text: &str) -> bool {
    mask_phone_digits(key).contains(text)
        || error.is_some_and(|error| mask_phone_digits(error).contains(text))
}

/// The queries of an operator's console: search with filters and keyset paging, attempt
/// history, per-minute activity, dead letters by event, replay and bulk actions.
///
/// Implemented by every store of this crate. Attempt histories keep the last attempts of each
/// job (10 unless the store is configured otherwise).
///
/// How many queries run at once, and beside what, is the store's:
/// - [`SqliteStore`](super::SqliteStore) runs the queries (and `get`, `list`, `stats`) on
///   read-only connections of their own, beside its writer: at most
///   [`read_connections`](super::SqliteOptions::read_connections) at once (1 by default), the
///   others waiting for a free one, and none waiting for the writer; a
///   [masked search](ConsoleStore::search_masked) masks on them too. Replay and the bulk
///   actions are writes: they run on the writer, a bulk action in a transaction of its own,
///   which holds the writer (and the deliveries queued behind it) while it runs.
/// - `PostgresStore` (feature `inbox-postgres`) runs everything on its connections
///   (`PostgresOptions::connections`, 8 by default), queries and writes alike: nothing but
///   that bounds the queries, and a delivery sent on a connection that is running a long query
///   waits for it.
pub trait ConsoleStore: InboxStore {
    /// Jobs matching `filter`, newest first, at most [`JobFilter::effective_limit`].
    fn search(&self, filter: JobFilter) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send;

    /// How many jobs match `filter` (its `before` and `limit` are ignored).
    fn count(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// One step of a search through the text a page that hides ids shows: of the
    /// [`JobFilter::effective_limit`] newest jobs matching `filter`, those whose key or last
    /// error holds `text` once its phone numbers are masked
    /// ([`mask_phone_digits`](crate::redact::mask_phone_digits)). Matching the masked text,
    /// never the stored one, a search cannot tell one hidden digit from another.
    ///
    /// No index serves it, so a search goes step by step ([`MaskedStep::next`]), each looking
    /// at a bounded number of jobs: other reads run between the steps. By default it masks
    /// the jobs [`search`](ConsoleStore::search) returns, on the caller's task;
    /// [`SqliteStore`](super::SqliteStore) masks them on its read connection, and copies out
    /// only those that match.
    fn search_masked(
        &self,
        filter: JobFilter,
        text: String,
    ) -> impl Future<Output = Result<MaskedStep, InboxError>> + Send {
        let limit = filter.effective_limit();
        let search = self.search(filter);
        async move {
            let jobs = search.await?;
            let next = jobs.last().map(|job| job.id).filter(|_| jobs.len() == limit);
            let found = jobs
                .into_iter()
                .filter(|job| masked_text_holds(&job.key, job.last_error.as_deref(), &text))
                .collect();
            Ok(MaskedStep { found, next })
        }
    }

    /// The job's last attempts, oldest first.
    fn attempts(&self, id: JobId) -> impl Future<Output = Result<Vec<AttemptRecord>, InboxError>> + Send;

    /// Received, handled and failed counts per minute from `since` to `now`, oldest first,
    /// one entry per minute (zeros included).
    fn per_minute(
        &self,
        since: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<MinuteCounts>, InboxError>> + Send;

    /// The event names with the most dead letters, most first, at most `limit`.
    fn dead_letters_by_event(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetters>, InboxError>> + Send;

    /// Runs a handled (`done`) job again: pending from `now` with its attempts reset, as
    /// [`InboxStore::retry`] does for dead letters; its attempt history is kept. Returns whether
    /// the job was done (and is now pending).
    fn replay(&self, id: JobId, now: SystemTime) -> impl Future<Output = Result<bool, InboxError>> + Send;

    /// [`InboxStore::retry`] for the pending and dead jobs matching `filter`; how many.
    fn retry_matching(
        &self,
        filter: JobFilter,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send;

    /// Deletes the jobs matching `filter`; how many.
    fn purge_matching(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send;
}
