//! [`Counted`]: an inbox store that counts the worker's calls, for the draining and retention
//! figures.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use periskope_webhook::inbox::{
    ClaimRequest, ClaimedJob, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobSummary, Lease,
    ListQuery, NewDelivery, Selection, UnalertedDeadLetter,
};

/// What a store answered: claims that took jobs, the jobs they took, the time claims took
/// (those that found nothing included), settlements, and the handled jobs retention deleted.
#[derive(Debug, Default)]
pub struct Calls {
    claims: AtomicU64,
    claimed: AtomicU64,
    claiming_nanos: AtomicU64,
    all_claims: AtomicU64,
    settlements: AtomicU64,
    purged_handled: AtomicU64,
}

/// A reading of [`Calls`].
#[derive(Clone, Copy, Debug)]
pub struct CallCounts {
    /// Claims that took at least one job.
    pub claims: u64,
    /// Jobs they took.
    pub claimed: u64,
    /// The mean time of a claim, those that found nothing included.
    pub mean_claim: Duration,
    pub settlements: u64,
    /// Handled jobs deleted by retention.
    pub purged_handled: u64,
}

impl Calls {
    pub fn read(&self) -> CallCounts {
        let read = |count: &AtomicU64| count.load(Ordering::Relaxed);
        CallCounts {
            claims: read(&self.claims),
            claimed: read(&self.claimed),
            mean_claim: Duration::from_nanos(read(&self.claiming_nanos) / read(&self.all_claims).max(1)),
            settlements: read(&self.settlements),
            purged_handled: read(&self.purged_handled),
        }
    }
}

/// `St`, counting its claims and settlements in `calls`.
#[derive(Clone)]
pub struct Counted<St> {
    pub store: St,
    pub calls: Arc<Calls>,
}

impl<St: InboxStore> Counted<St> {
    pub fn new(store: St) -> Self {
        Counted { store, calls: Arc::default() }
    }

    /// `call`, counted as a settlement once answered. The store is called before this returns,
    /// as the worker expects: a SQL store queues the call when it is made.
    fn settled<'a>(
        &self,
        call: impl Future<Output = Result<(), InboxError>> + Send + 'a,
    ) -> impl Future<Output = Result<(), InboxError>> + Send + 'a {
        let calls = Arc::clone(&self.calls);
        async move {
            let result = call.await;
            calls.settlements.fetch_add(1, Ordering::Relaxed);
            result
        }
    }
}

impl<St: InboxStore> InboxStore for Counted<St> {
    type InsertFuture = St::InsertFuture;

    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture {
        self.store.insert(delivery)
    }

    async fn claim(&self, request: ClaimRequest) -> Result<Vec<ClaimedJob>, InboxError> {
        let started = Instant::now();
        let jobs = self.store.claim(request).await?;
        let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.calls.claiming_nanos.fetch_add(took, Ordering::Relaxed);
        self.calls.all_claims.fetch_add(1, Ordering::Relaxed);
        if !jobs.is_empty() {
            self.calls.claims.fetch_add(1, Ordering::Relaxed);
            self.calls.claimed.fetch_add(jobs.len() as u64, Ordering::Relaxed);
        }
        Ok(jobs)
    }

    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.settled(self.store.complete(lease, now))
    }

    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.settled(self.store.fail(lease, error, retry_at))
    }

    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.settled(self.store.release(lease, now))
    }

    fn renew(
        &self,
        lease: Lease,
        until: SystemTime,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.store.renew(lease, until)
    }

    fn holds(&self, lease: Lease) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.store.holds(lease)
    }

    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        self.store.list(query)
    }

    fn get(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, InboxError>> + Send {
        self.store.get(id)
    }

    fn retry(
        &self,
        selection: Selection,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.store.retry(selection, now)
    }

    fn purge(&self, selection: Selection) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.store.purge(selection)
    }

    fn purge_handled(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let (calls, purge) = (Arc::clone(&self.calls), self.store.purge_handled(before, limit));
        async move {
            let deleted = purge.await?;
            calls.purged_handled.fetch_add(deleted, Ordering::Relaxed);
            Ok(deleted)
        }
    }

    fn purge_dead(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.store.purge_dead(before, limit)
    }

    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send {
        self.store.stats(now)
    }

    fn unalerted_dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<UnalertedDeadLetter>, InboxError>> + Send {
        self.store.unalerted_dead_letters(limit)
    }

    fn stored_elsewhere(&self) -> impl Future<Output = ()> + Send {
        self.store.stored_elsewhere()
    }

    fn busy_claim_interval(&self) -> std::time::Duration {
        self.store.busy_claim_interval()
    }

    fn mark_alerted(
        &self,
        job: JobId,
        fencing_token: u64,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.store.mark_alerted(job, fencing_token)
    }
}
