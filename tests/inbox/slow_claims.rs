//! A claim whose answer comes back late (a slow database, a starved process): the attempt ends
//! a margin before the lease does, so that no other worker can take the job over while it
//! runs; a claim slower than the lease gives its jobs back unrun.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use periskope_webhook::inbox::{
    ClaimRequest, ClaimedJob, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobState, JobSummary,
    Lease, ListQuery, MemoryInboxStore, NewDelivery, Selection, Worker,
};
use periskope_webhook::{EventRouter, WebhookEvent};
use tokio::sync::mpsc;

use crate::common::within;
use crate::support::{chat_message, delivery};

/// A store whose claims answer `delay_ms` after they were carried out, and which reports how
/// the worker settles each job it claimed.
#[derive(Clone)]
struct SlowClaims {
    inner: MemoryInboxStore,
    delay_ms: Arc<AtomicU64>,
    settled: mpsc::UnboundedSender<Settled>,
}

/// How the worker settled a claimed job.
#[derive(Debug, PartialEq)]
enum Settled {
    Completed,
    Failed,
    Released,
}

impl InboxStore for SlowClaims {
    type InsertFuture = <MemoryInboxStore as InboxStore>::InsertFuture;

    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture {
        self.inner.insert(delivery)
    }

    fn claim(
        &self,
        request: ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, InboxError>> + Send {
        let (inner, delay) =
            (self.inner.clone(), Duration::from_millis(self.delay_ms.load(Ordering::SeqCst)));
        async move {
            let claimed = inner.claim(request).await;
            tokio::time::sleep(delay).await;
            claimed
        }
    }

    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        let _ = self.settled.send(Settled::Completed);
        self.inner.complete(lease, now)
    }

    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        let _ = self.settled.send(Settled::Failed);
        self.inner.fail(lease, error, retry_at)
    }

    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        let _ = self.settled.send(Settled::Released);
        self.inner.release(lease, now)
    }

    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        self.inner.list(query)
    }

    fn get(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, InboxError>> + Send {
        self.inner.get(id)
    }

    fn retry(
        &self,
        selection: Selection,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.inner.retry(selection, now)
    }

    fn purge(&self, selection: Selection) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.inner.purge(selection)
    }

    fn purge_handled(&self, before: SystemTime) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.inner.purge_handled(before)
    }

    fn purge_dead(&self, before: SystemTime) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.inner.purge_dead(before)
    }

    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send {
        self.inner.stats(now)
    }
}

#[tokio::test]
async fn an_attempt_never_outlives_its_lease_however_late_the_claim_answers() {
    let (settled, mut settlements) = mpsc::unbounded_channel();
    let store =
        SlowClaims { inner: MemoryInboxStore::new(), delay_ms: Arc::new(AtomicU64::new(700)), settled };
    store.insert(delivery(chat_message("c", "m"))).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&calls);
    // The handler takes longer than what is left of the lease after a slow claim.
    let slow = EventRouter::new().fallback(move |_event: WebhookEvent| {
        counter.fetch_add(1, Ordering::SeqCst);
        async {
            tokio::time::sleep(Duration::from_millis(400)).await;
            Ok::<_, std::io::Error>(())
        }
    });
    let mut config = crate::support::fast();
    config.lease = Duration::from_millis(1500);
    config.attempt_timeout = Duration::from_millis(450);
    // The lease is 1.5 s; an attempt must end 1 s before it: 0.5 s after the claim started.

    // Claims answered after 0.7 s: nothing is left of the attempt's time, the job goes back.
    let worker = Worker::new(store.clone(), slow.clone(), None).config(config.clone()).spawn();
    let first = within("the worker settles the job it claimed", settlements.recv()).await;
    assert_eq!(first, Some(Settled::Released), "a claim answered after the attempt's end gives its job back");
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no attempt starts after its lease's end");
    worker.shutdown().await.unwrap();
    let job = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0), "given back, not counted");

    // Answered after 0.3 s: 0.2 s are left, less than the handler needs, so the attempt fails
    // at the lease's margin instead of running into another worker's takeover.
    store.delay_ms.store(300, Ordering::SeqCst);
    config.max_attempts = 1;
    let worker = Worker::new(store.clone(), slow, None).config(config).spawn();
    within("the attempt ends", async {
        while store.list(ListQuery::new(Some(JobState::Dead), 1)).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    worker.shutdown().await.unwrap();
    let dead = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    assert!(dead.last_error.unwrap().contains("at the end of its lease"));
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}
