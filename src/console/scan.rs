//! The jobs a filter selects, page by page and batch by batch.
//!
//! The store applies every condition it can. One it cannot: while ids are masked, the text
//! condition (`q=`) must match the masked key and error, or a search could tell one hidden
//! digit from another and rebuild a phone number a few requests at a time. The store then
//! searches the masked text step by step ([`ConsoleStore::search_masked`]), each step a short
//! read of at most [`BATCH`] jobs, so that other reads (and a bulk action's) run in between,
//! one step at a time per console, each followed by a pause ([`MASKED_STEP_REST`]).
//!
//! Bulk actions go batch by batch too, newest first: each step's jobs are changed
//! [`ACTION_BATCH`] at a time, one store call over the ids it selected (the other conditions
//! checked again as it is applied), each followed by a pause three times as long as the call
//! took, so that a purge of a million jobs holds the store's writer (and writes to its disk)
//! at most about a quarter of the time, and the deliveries queued behind it never wait for
//! more than one short call.

use std::future::Future;

use tokio::sync::Semaphore;

use super::filter::Filter;
use crate::inbox::{ConsoleStore, InboxError, JobFilter, JobId, JobSummary, paced};

/// Jobs looked at per store call while reading a page, a count or a bulk action's jobs.
const BATCH: usize = 1000;

/// Jobs a bulk action changes per store call. On SQLite a call holds the writer, and the
/// deliveries queued behind it, for as long as it runs: at about 13 µs a purged job
/// (`docs/PERFORMANCE.md`), 0.65 ms, and its sync. On a busy 2 vCPU machine, calls of 25 and
/// 50 jobs took 3.8 ms (most of it the sync), of 100 jobs 7.5 ms.
const ACTION_BATCH: usize = 50;

/// What a filter selects, split into the store's conditions and the masked text.
pub(super) struct Selected<'a> {
    in_store: JobFilter,
    masked_text: Option<String>,
    /// The console's turns for the steps of masked searches ([`MASKED_STEPS_AT_ONCE`]).
    masked_turns: &'a Semaphore,
}

/// How many steps of masked searches a console runs at once: one, each followed by a pause
/// [`MASKED_STEP_REST`] times as long, so that its searches take at most about a third of a
/// core (on SQLite, its read connection's) however many run, and the deliveries keep the rest.
pub(super) const MASKED_STEPS_AT_ONCE: usize = 1;

/// How many times as long as a masked search's step the pause after it lasts. On a busy
/// 2 vCPU machine, the deliveries' p99 beside four searches was 31 to 50 ms with pauses as
/// long as the steps, 4 to 29 ms with pauses twice as long (`docs/PERFORMANCE.md`).
const MASKED_STEP_REST: u32 = 2;

/// How many times as long as a bulk action's store call the pause after it lasts: the writer
/// is the deliveries' at least three quarters of the time. A purge writes some 13 KB of WAL a
/// job, which the deliveries' syncs wait behind; with pauses only as long as the calls, their
/// p99 beside a purge was 2.2 to 5.9 times that of deliveries alone (`docs/PERFORMANCE.md`).
const ACTION_REST: u32 = 3;

/// One store call's worth of selected jobs, and where the next one starts (`None`: no job is
/// left).
struct Step {
    jobs: Vec<JobSummary>,
    next: Option<JobId>,
}

impl<'a> Selected<'a> {
    /// The jobs `filter` selects, its text matched against masked text unless `show_ids`, the
    /// masked search's steps taking turns on `masked_turns`.
    pub(super) fn new(filter: &Filter, show_ids: bool, masked_turns: &'a Semaphore) -> Selected<'a> {
        Selected {
            in_store: filter.job_filter(show_ids),
            masked_text: filter.text.clone().filter(|_| !show_ids),
            masked_turns,
        }
    }

    /// The selected jobs among the `limit` newest older than `before` that the store's
    /// conditions select.
    async fn step<St: ConsoleStore>(
        &self,
        store: &St,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Step, InboxError> {
        let mut filter = self.in_store.clone().limit(limit);
        filter.before = before;
        match &self.masked_text {
            Some(text) => {
                let Ok(_turn) = self.masked_turns.acquire().await else {
                    return Err(InboxError::Storage("the console's masked searches stopped".to_owned()));
                };
                let step = paced(store.search_masked(filter, text.clone()), MASKED_STEP_REST).await?;
                Ok(Step { jobs: step.found, next: step.next })
            }
            None => {
                let jobs = store.search(filter).await?;
                let next = jobs.last().map(|job| job.id).filter(|_| jobs.len() == limit);
                Ok(Step { jobs, next })
            }
        }
    }

    /// Up to `limit` selected jobs older than `before`, newest first.
    pub(super) async fn page<St: ConsoleStore>(
        &self,
        store: &St,
        before: Option<JobId>,
        limit: usize,
    ) -> Result<Vec<JobSummary>, InboxError> {
        let read = if self.masked_text.is_some() { BATCH } else { limit };
        let mut found = Vec::with_capacity(limit);
        let mut cursor = before;
        loop {
            let step = self.step(store, cursor, read).await?;
            found.extend(step.jobs);
            cursor = step.next;
            if found.len() >= limit || cursor.is_none() {
                found.truncate(limit);
                return Ok(found);
            }
        }
    }

    /// How many jobs are selected.
    pub(super) async fn count<St: ConsoleStore>(&self, store: &St) -> Result<u64, InboxError> {
        if self.masked_text.is_none() {
            return store.count(self.in_store.clone()).await;
        }
        let mut count = 0;
        let mut cursor = None;
        loop {
            let step = self.step(store, cursor, BATCH).await?;
            count += step.jobs.len() as u64;
            cursor = step.next;
            if cursor.is_none() {
                return Ok(count);
            }
        }
    }

    /// Applies `act` to the selected jobs, [`ACTION_BATCH`] at a time, newest first: it gets
    /// the store's filter narrowed to the batch's ids and says how many jobs it changed.
    /// Returns the sum.
    pub(super) async fn in_batches<St, Act, Changed>(
        &self,
        store: &St,
        mut act: Act,
    ) -> Result<u64, InboxError>
    where
        St: ConsoleStore,
        Act: FnMut(JobFilter) -> Changed,
        Changed: Future<Output = Result<u64, InboxError>>,
    {
        let mut total = 0;
        let mut cursor = None;
        loop {
            let step = self.step(store, cursor, BATCH).await?;
            let ids: Vec<JobId> = step.jobs.iter().map(|job| job.id).collect();
            for batch in ids.chunks(ACTION_BATCH) {
                let mut filter = self.in_store.clone();
                filter.ids = Some(batch.to_vec());
                total += paced(act(filter), ACTION_REST).await?;
            }
            cursor = step.next;
            if cursor.is_none() {
                return Ok(total);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::Poll;
    use std::time::SystemTime;

    use bytes::Bytes;

    use super::*;
    use crate::inbox::{InboxStore, MemoryInboxStore, NewDelivery};

    /// A store of `jobs` pending jobs keyed `job-0` to `job-{jobs - 1}`.
    async fn store_of(jobs: usize) -> MemoryInboxStore {
        let store = MemoryInboxStore::new();
        for n in 0..jobs {
            let delivery = NewDelivery {
                key: format!("job-{n}"),
                event: "message.created".to_owned(),
                ordering_key: None,
                body: Bytes::from_static(b"{}"),
                signing_key: None,
                received_at: SystemTime::now(),
                path: "/".to_owned(),
                traceparent: None,
            };
            store.insert(delivery).await.unwrap();
        }
        store
    }

    fn text(text: &str) -> Filter {
        Filter { text: Some(text.to_owned()), ..Filter::default() }
    }

    #[tokio::test]
    async fn a_bulk_action_changes_every_selected_job_a_batch_per_store_call() {
        let store = store_of(2345).await;
        let turns = Semaphore::new(MASKED_STEPS_AT_ONCE);
        let mut batches = Vec::new();
        let purged = Selected::new(&text("job-"), false, &turns)
            .in_batches(&store, |batch| {
                batches.push(batch.ids.as_ref().map_or(usize::MAX, Vec::len));
                store.purge_matching(batch)
            })
            .await
            .unwrap();
        assert_eq!(purged, 2345);
        assert_eq!(batches.len(), 47, "{batches:?}");
        assert!(batches.iter().all(|&batch| batch <= ACTION_BATCH), "{batches:?}");
        assert_eq!(store.count(JobFilter::default()).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn masked_steps_wait_for_their_turn_and_searches_of_shown_ids_do_not() {
        let store = store_of(3).await;
        let turns = Semaphore::new(MASKED_STEPS_AT_ONCE);
        let taken = turns.try_acquire().unwrap();

        let shown = Selected::new(&text("job-1"), true, &turns).page(&store, None, 50).await.unwrap();
        assert_eq!(shown.len(), 1, "the store searches the text itself");
        let masked = Selected::new(&text("job-1"), false, &turns);
        let mut page = pin!(masked.page(&store, None, 50));
        let first_poll = std::future::poll_fn(|context| Poll::Ready(page.as_mut().poll(context))).await;
        assert!(first_poll.is_pending(), "another masked step holds the turn");
        drop(taken);
        assert_eq!(page.await.unwrap().len(), 1);
    }
}
