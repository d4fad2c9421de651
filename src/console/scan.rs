//! The jobs a filter selects, page by page and batch by batch.
//!
//! The store applies every condition it can. One it cannot: while ids are masked, the text
//! condition (`q=`) must match the masked key and error, or a search could tell one hidden
//! digit from another and rebuild a phone number a few requests at a time. The console then
//! reads the store's jobs a batch at a time and keeps those whose masked text matches, with the
//! same mask the page shows ([`mask_phone_digits`]).
//!
//! Bulk actions go batch by batch too, newest first, each batch one store call over the ids it
//! selected (the other conditions checked again as it is applied), so that a purge of a
//! million jobs never holds the store's writer for long.

use std::future::Future;

use super::filter::Filter;
use crate::inbox::{ConsoleStore, InboxError, JobFilter, JobId, JobSummary};
use crate::redact::mask_phone_digits;

/// Jobs read per store call while scanning, and changed per store call by a bulk action.
pub(super) const BATCH: usize = 1000;

/// What a filter selects, split into the store's part and the console's.
pub(super) struct Selected {
    in_store: JobFilter,
    masked_text: Option<String>,
}

impl Selected {
    /// The jobs `filter` selects, its text matched against masked text unless `show_ids`.
    pub(super) fn new(filter: &Filter, show_ids: bool) -> Selected {
        Selected {
            in_store: filter.job_filter(show_ids),
            masked_text: filter.text.clone().filter(|_| !show_ids),
        }
    }

    fn keeps(&self, job: &JobSummary) -> bool {
        self.masked_text.as_deref().is_none_or(|needle| {
            mask_phone_digits(&job.key).contains(needle)
                || job.last_error.as_deref().is_some_and(|error| mask_phone_digits(error).contains(needle))
        })
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
            let mut filter = self.in_store.clone().limit(read);
            filter.before = cursor;
            let jobs = store.search(filter).await?;
            let exhausted = jobs.len() < read;
            cursor = jobs.last().map(|job| job.id);
            found.extend(jobs.into_iter().filter(|job| self.keeps(job)));
            if found.len() >= limit || exhausted {
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
        self.each_batch(store, |ids| {
            let batch = ids.len() as u64;
            async move { Ok(batch) }
        })
        .await
    }

    /// Applies `act` to the selected jobs a batch at a time: it gets the store's filter narrowed
    /// to the batch's ids and says how many jobs it changed. Returns the sum.
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
        self.each_batch(store, |ids| {
            let mut batch = self.in_store.clone();
            batch.ids = Some(ids);
            act(batch)
        })
        .await
    }

    /// Calls `each` with the ids of every non-empty batch of selected jobs, newest first, and
    /// sums what it returns.
    async fn each_batch<St, Each, Done>(&self, store: &St, mut each: Each) -> Result<u64, InboxError>
    where
        St: ConsoleStore,
        Each: FnMut(Vec<JobId>) -> Done,
        Done: Future<Output = Result<u64, InboxError>>,
    {
        let mut total = 0;
        let mut cursor = None;
        loop {
            let mut filter = self.in_store.clone().limit(BATCH);
            filter.before = cursor;
            let jobs = store.search(filter).await?;
            let Some(last) = jobs.last() else { return Ok(total) };
            cursor = Some(last.id);
            let ids: Vec<JobId> = jobs.iter().filter(|job| self.keeps(job)).map(|job| job.id).collect();
            if !ids.is_empty() {
                total += each(ids).await?;
            }
            if jobs.len() < BATCH {
                return Ok(total);
            }
        }
    }
}
