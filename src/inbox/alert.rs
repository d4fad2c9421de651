//! [`Alert`]s: a dead letter, a full store or a backlog, told to a callback of yours
//! ([`Inbox::on_alert`](super::Inbox::on_alert)) off the worker's path, without an exporter.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use periskope_webhook::inbox::{Alert, Inbox, SqliteStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let inbox = Inbox::new(SqliteStore::open("periskope-inbox.db")?)
//!     .backlog_alert_after(Duration::from_secs(10 * 60))
//!     .on_alert(|alert: Alert| async move {
//!         // Post it to Slack, page someone. An error has a dead letter's alert told again.
//!         eprintln!("periskope inbox: {alert}");
//!         Ok::<_, std::io::Error>(())
//!     });
//! // The worker built from this inbox tells the alerts; its acceptor reports a full store.
//! # let _ = inbox;
//! # Ok(())
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use super::worker::{AbortOnDrop, bounded};
use super::{InboxStore, JobId};
use crate::event::EventKind;
use crate::redact::mask_phone_digits;
use crate::response::BoxError;

/// Something an operator should hear about, told to [`OnAlert`].
///
/// No alert holds a phone number, a chat or message id, or a body: a dead letter's last error
/// has its phone numbers masked ([`mask_phone_digits`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Alert {
    /// A job became a dead letter: told at least once for each time a job dies, across crashes
    /// and restarts (the store remembers which deaths were told).
    DeadLetter {
        /// The job's event kind.
        kind: EventKind,
        /// The job.
        job: JobId,
        /// The attempts it had.
        attempts: u32,
        /// Its last error, phone numbers masked.
        last_error: Option<String>,
    },
    /// The store refused a delivery because it is full (`503 inbox_full`): told once, and again
    /// only after a delivery was stored since.
    StoreFull,
    /// The oldest pending or running job is older than the backlog age
    /// ([`Inbox::backlog_alert_after`](super::Inbox::backlog_alert_after)): told once when the
    /// age is crossed.
    Backlog {
        /// The oldest pending or running job's age when it was seen.
        oldest_pending: Duration,
    },
    /// The backlog told by [`Alert::Backlog`] cleared: the oldest job is younger than the age
    /// again, or none is left.
    BacklogCleared,
}

impl fmt::Display for Alert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Alert::DeadLetter { kind, job, attempts, last_error } => {
                write!(f, "job {job} ({}) became a dead letter after {attempts} attempts", kind.as_str())?;
                match last_error {
                    Some(error) => write!(f, ": {error}"),
                    None => Ok(()),
                }
            }
            Alert::StoreFull => f.write_str("the inbox is full: new deliveries are refused (503)"),
            Alert::Backlog { oldest_pending } => {
                write!(f, "the oldest pending job is {} s old", oldest_pending.as_secs())
            }
            Alert::BacklogCleared => f.write_str("the backlog cleared"),
        }
    }
}

/// Tells an [`Alert`]: [`Inbox::on_alert`](super::Inbox::on_alert).
///
/// Implemented for closures `Fn(Alert) -> impl Future<Output = Result<(), E>>`. Each alert is
/// told on a task of its own, one at a time, by the worker's alert task: a slow, failing or
/// panicking callback delays no job. One that has not answered after 30 s counts as failed.
/// An alert that fails is told again: a dead letter's on the next round, a full store's while
/// the store stays full; a backlog's crossing or clearing while it still holds.
pub trait OnAlert: Send + Sync + 'static {
    /// Tells `alert`; an error means it was not told.
    fn on_alert(&self, alert: Alert) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>>;
}

impl<F, Fut, E> OnAlert for F
where
    F: Fn(Alert) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<BoxError>,
{
    fn on_alert(&self, alert: Alert) -> Pin<Box<dyn Future<Output = Result<(), BoxError>> + Send>> {
        let told = self(alert);
        Box::pin(async move { told.await.map_err(Into::into) })
    }
}

/// The age of the oldest pending job past which [`Alert::Backlog`] is told, by default.
pub(crate) const DEFAULT_BACKLOG_AGE: Duration = Duration::from_secs(10 * 60);

/// How long one callback may take before it counts as failed.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest pause between two backlog checks (each reads the store's counts).
const MAX_BACKLOG_CHECK: Duration = Duration::from_secs(30);

/// How many dead letters one round reads.
const DEAD_LETTERS_PER_ROUND: usize = 100;

/// The store is not known to be full.
const NOT_FULL: u8 = 0;
/// The store refused a delivery as full, not told yet.
const FULL_UNTOLD: u8 = 1;
/// The store is full, and that was told.
const FULL_TOLD: u8 = 2;

/// What an [`Inbox`](super::Inbox)'s acceptor and worker share for alerts.
pub(crate) struct Alerts {
    on_alert: Arc<dyn OnAlert>,
    backlog_age: Duration,
    full: AtomicU8,
    wake: Notify,
}

impl fmt::Debug for Alerts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Alerts").field("backlog_age", &self.backlog_age).finish_non_exhaustive()
    }
}

impl Alerts {
    pub(crate) fn new(on_alert: Arc<dyn OnAlert>, backlog_age: Duration) -> Self {
        Alerts { on_alert, backlog_age, full: AtomicU8::new(NOT_FULL), wake: Notify::new() }
    }

    /// The callback, for the same alerts with another backlog age.
    pub(crate) fn on_alert(&self) -> Arc<dyn OnAlert> {
        Arc::clone(&self.on_alert)
    }

    /// The acceptor's store refused a delivery as full.
    pub(crate) fn store_full(&self) {
        if self.full.compare_exchange(NOT_FULL, FULL_UNTOLD, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.wake.notify_one();
        }
    }

    /// The acceptor stored a delivery: a later refusal is a new [`Alert::StoreFull`].
    pub(crate) fn stored(&self) {
        if self.full.load(Ordering::Acquire) != NOT_FULL {
            self.full.store(NOT_FULL, Ordering::Release);
        }
    }

    /// Tells the alerts of `store`, every `every` and whenever the acceptor finds it full, until
    /// dropped (the worker's [`run`](super::Worker::run) runs it on a task of its own). A
    /// dead letter is marked told only once its callback answered `Ok`: an alert cut off by a
    /// crash or a shutdown is told again.
    pub(crate) async fn tell<St: InboxStore>(&self, store: St, every: Duration, store_timeout: Duration) {
        let backlog_every = (self.backlog_age / 10).min(MAX_BACKLOG_CHECK).max(every);
        let mut backlogged = false;
        let mut backlog_checked: Option<tokio::time::Instant> = None;
        loop {
            if self.full.compare_exchange(FULL_UNTOLD, FULL_TOLD, Ordering::AcqRel, Ordering::Acquire).is_ok()
                && !self.told(Alert::StoreFull).await
            {
                let _ =
                    self.full.compare_exchange(FULL_TOLD, FULL_UNTOLD, Ordering::AcqRel, Ordering::Acquire);
            }
            self.tell_dead_letters(&store, store_timeout).await;
            if backlog_checked.is_none_or(|checked| checked.elapsed() >= backlog_every) {
                backlog_checked = Some(tokio::time::Instant::now());
                match bounded(store_timeout, store.stats(SystemTime::now())).await {
                    Ok(stats) => {
                        let oldest = stats.oldest_pending_age;
                        let over = oldest.is_some_and(|age| age > self.backlog_age);
                        if over != backlogged {
                            let alert = match oldest.filter(|_| over) {
                                Some(oldest_pending) => Alert::Backlog { oldest_pending },
                                None => Alert::BacklogCleared,
                            };
                            if self.told(alert).await {
                                backlogged = over;
                            }
                        }
                    }
                    Err(_error) => {
                        #[cfg(feature = "tracing")]
                        tracing::warn!(error = %_error, "periskope inbox could not read its backlog for alerts");
                    }
                }
            }
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(every) => {}
            }
        }
    }

    async fn tell_dead_letters<St: InboxStore>(&self, store: &St, store_timeout: Duration) {
        let dead = match bounded(store_timeout, store.unalerted_dead_letters(DEAD_LETTERS_PER_ROUND)).await {
            Ok(dead) => dead,
            Err(_error) => {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, "periskope inbox could not read dead letters for alerts");
                return;
            }
        };
        for letter in dead {
            let alert = Alert::DeadLetter {
                kind: EventKind::from_name(&letter.event),
                job: letter.id,
                attempts: letter.attempts,
                last_error: letter.last_error.as_deref().map(mask_phone_digits),
            };
            // The next round tells it, and those after it, again.
            if !self.told(alert).await {
                return;
            }
            if let Err(_error) =
                bounded(store_timeout, store.mark_alerted(letter.id, letter.fencing_token)).await
            {
                #[cfg(feature = "tracing")]
                tracing::warn!(error = %_error, job = letter.id, "periskope inbox could not record an alert as told");
            }
        }
    }

    /// Runs the callback on a task of its own (a panic fails this alert only); whether it
    /// answered `Ok` in time.
    async fn told(&self, alert: Alert) -> bool {
        let mut callback = AbortOnDrop(tokio::spawn(self.on_alert.on_alert(alert)));
        match tokio::time::timeout(CALLBACK_TIMEOUT, &mut callback.0).await {
            Ok(Ok(Ok(()))) => true,
            _answer => {
                #[cfg(feature = "tracing")]
                match _answer {
                    Ok(Ok(Err(error))) => tracing::warn!(
                        error = %mask_phone_digits(&error.to_string()),
                        "periskope inbox alert callback failed; the alert is told again"
                    ),
                    Ok(Err(_)) => {
                        tracing::warn!("periskope inbox alert callback panicked; the alert is told again")
                    }
                    _ => tracing::warn!(
                        "periskope inbox alert callback took too long; the alert is told again"
                    ),
                }
                false
            }
        }
    }
}

/// A dead letter whose death was not yet told ([`InboxStore::unalerted_dead_letters`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnalertedDeadLetter {
    /// The job.
    pub id: JobId,
    /// The job's claim counter when it died: [`InboxStore::mark_alerted`] records it, so that
    /// the job's next death (after a retry, under a later claim) is told again.
    pub fencing_token: u64,
    /// The event name.
    pub event: String,
    /// The attempts it had.
    pub attempts: u32,
    /// Its last error, as stored (it can hold phone numbers).
    pub last_error: Option<String>,
}

impl UnalertedDeadLetter {
    /// A dead letter as the stores read it.
    pub(crate) fn new(
        id: JobId,
        fencing_token: u64,
        event: String,
        attempts: u32,
        last_error: Option<String>,
    ) -> Self {
        UnalertedDeadLetter { id, fencing_token, event, attempts, last_error }
    }
}
