//! Leases seen from the worker: a claim whose answer comes back late (a slow database, a
//! starved process) past its lease's margin gives its jobs back unrun; a long handler keeps its
//! job by renewing the lease; a worker that cannot renew drops its handler before the lease
//! ends and settles nothing, leaving the job to the next claim; a worker behind a backlog
//! claims at most every `busy_claim_interval`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use periskope_webhook::inbox::{
    ClaimRequest, ClaimedJob, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobState, JobSummary,
    Lease, ListQuery, MemoryInboxStore, NewDelivery, Selection, UnalertedDeadLetter, Worker,
};
use periskope_webhook::{EventRouter, WebhookEvent};

use crate::common::within;
use crate::support::{chat_message, delivery};

/// A store whose claims answer `delay_ms` after they were carried out, and whose renewals fail
/// (the store cannot be reached) while `renewals_fail` is set.
#[derive(Clone)]
struct SlowClaims {
    inner: MemoryInboxStore,
    delay_ms: Arc<AtomicU64>,
    /// Jobs the inner store handed out, answered or not.
    claimed: Arc<AtomicUsize>,
    renewals: Arc<AtomicUsize>,
    /// Jobs given back.
    releases: Arc<AtomicUsize>,
    renewals_fail: Arc<AtomicBool>,
    /// What [`InboxStore::busy_claim_interval`] answers.
    busy_interval: Duration,
    /// When each claim was carried out, and how many jobs it took.
    claims: Arc<std::sync::Mutex<Vec<(Instant, usize)>>>,
}

impl SlowClaims {
    fn new(delay_ms: u64) -> SlowClaims {
        SlowClaims {
            inner: MemoryInboxStore::new(),
            delay_ms: Arc::new(AtomicU64::new(delay_ms)),
            claimed: Arc::default(),
            renewals: Arc::default(),
            releases: Arc::default(),
            renewals_fail: Arc::default(),
            busy_interval: Duration::ZERO,
            claims: Arc::default(),
        }
    }
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
        let (counted, claims) = (Arc::clone(&self.claimed), Arc::clone(&self.claims));
        async move {
            let claimed = inner.claim(request).await;
            let took = claimed.as_ref().map_or(0, Vec::len);
            counted.fetch_add(took, Ordering::SeqCst);
            claims.lock().unwrap().push((Instant::now(), took));
            tokio::time::sleep(delay).await;
            claimed
        }
    }

    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.inner.complete(lease, now)
    }

    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.inner.fail(lease, error, retry_at)
    }

    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.releases.fetch_add(1, Ordering::SeqCst);
        self.inner.release(lease, now)
    }

    fn renew(
        &self,
        lease: Lease,
        until: SystemTime,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.renewals.fetch_add(1, Ordering::SeqCst);
        let (inner, fail) = (self.inner.clone(), self.renewals_fail.load(Ordering::SeqCst));
        async move {
            if fail {
                return Err(InboxError::Storage("the store cannot be reached".to_owned()));
            }
            inner.renew(lease, until).await
        }
    }

    fn busy_claim_interval(&self) -> Duration {
        self.busy_interval
    }

    fn holds(&self, lease: Lease) -> impl Future<Output = Result<bool, InboxError>> + Send {
        self.inner.holds(lease)
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

    fn purge_handled(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.inner.purge_handled(before, limit)
    }

    fn purge_dead(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        self.inner.purge_dead(before, limit)
    }

    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send {
        self.inner.stats(now)
    }

    fn unalerted_dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<UnalertedDeadLetter>, InboxError>> + Send {
        self.inner.unalerted_dead_letters(limit)
    }

    fn mark_alerted(
        &self,
        job: JobId,
        fencing_token: u64,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.inner.mark_alerted(job, fencing_token)
    }
}

/// A handler that counts its calls and its futures dropped before they finished, and takes
/// `run_for`.
fn counted_handler(run_for: Duration) -> (EventRouter, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let (calls, dropped) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (counter, drops) = (Arc::clone(&calls), Arc::clone(&dropped));
    let handler = EventRouter::new().fallback(move |_event: WebhookEvent| {
        counter.fetch_add(1, Ordering::SeqCst);
        let unfinished = DropCounter(Some(Arc::clone(&drops)));
        async move {
            let mut unfinished = unfinished;
            tokio::time::sleep(run_for).await;
            unfinished.0 = None;
            Ok::<_, std::io::Error>(())
        }
    });
    (handler, calls, dropped)
}

/// Counts a drop unless disarmed (`None`): a handler future dropped before it finished.
struct DropCounter(Option<Arc<AtomicUsize>>);

impl Drop for DropCounter {
    fn drop(&mut self) {
        if let Some(count) = &self.0 {
            count.fetch_add(1, Ordering::SeqCst);
        }
    }
}

fn config() -> periskope_webhook::inbox::WorkerConfig {
    let mut config = crate::support::fast();
    config.lease = Duration::from_secs(3);
    config.attempt_timeout = Duration::from_secs(30);
    config
}

#[tokio::test]
async fn a_claim_answered_past_its_lease_margin_gives_its_job_back_unrun() {
    // The lease is 3 s and must keep a 1 s margin: a claim answered after 2.2 s has none left.
    let store = SlowClaims::new(2200);
    store.insert(delivery(chat_message("c", "m"))).await.unwrap();
    let (handler, calls, _) = counted_handler(Duration::ZERO);
    let worker = Worker::new(store.clone(), handler, None).config(config()).spawn();
    within("the store hands the job out", async {
        while store.claimed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The worker may claim the job again at once, and that claim is late too: the shutdown
    // gives it back as well.
    within("the late claim gives the job back", async {
        while store.releases.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    worker.shutdown().await.unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no attempt starts past its lease's margin");
    let job = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    assert_eq!((job.state, job.attempts), (JobState::Pending, 0), "given back, not counted");
}

/// A worker behind a backlog (its claims take runs) claims at most every
/// `busy_claim_interval`, and still handles the whole backlog.
#[tokio::test]
async fn a_worker_behind_claims_at_most_every_busy_claim_interval() {
    let mut store = SlowClaims::new(0);
    store.busy_interval = Duration::from_millis(300);
    for n in 0..9 {
        store.insert(delivery(chat_message("c", &format!("m{n}")))).await.unwrap();
    }
    let (handler, calls, _) = counted_handler(Duration::ZERO);
    let mut config = config();
    (config.concurrency, config.run_length) = (1, 3);
    let worker = Worker::new(store.clone(), handler, None).config(config).spawn();
    within("the backlog is handled", async {
        while calls.load(Ordering::SeqCst) < 9 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    worker.shutdown().await.unwrap();
    let claims = store.claims.lock().unwrap().clone();
    let taking: Vec<usize> = claims.iter().map(|(_, took)| *took).filter(|took| *took > 0).collect();
    assert_eq!(taking, [3, 3, 3], "runs of three, one slot");
    for pair in claims.windows(2) {
        let ((before, took), (after, _)) = (pair[0], pair[1]);
        if took > 1 {
            assert!(after - before >= Duration::from_millis(300), "a claim after one that took a run waits");
        }
    }
}

#[tokio::test]
async fn a_long_handler_keeps_its_job_by_renewing_its_lease() {
    // The claim answers with 1.5 s of its 3 s lease left; the handler takes 4 s.
    let store = SlowClaims::new(1500);
    store.insert(delivery(chat_message("c", "m"))).await.unwrap();
    let (handler, calls, dropped) = counted_handler(Duration::from_secs(4));
    let worker = Worker::new(store.clone(), handler, None).config(config()).spawn();
    within("the job is handled", async {
        while store.list(ListQuery::new(Some(JobState::Done), 1)).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    worker.shutdown().await.unwrap();
    assert_eq!((calls.load(Ordering::SeqCst), dropped.load(Ordering::SeqCst)), (1, 0));
    assert!(store.renewals.load(Ordering::SeqCst) >= 2, "renewed every third of the lease");
    let job = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    assert_eq!(job.attempts, 1, "one attempt, never taken over");
}

#[tokio::test]
async fn a_worker_that_cannot_renew_drops_its_handler_before_the_lease_ends_and_settles_nothing() {
    let store = SlowClaims::new(0);
    store.renewals_fail.store(true, Ordering::SeqCst);
    store.insert(delivery(chat_message("c", "m"))).await.unwrap();
    let (handler, calls, dropped) = counted_handler(Duration::from_secs(60));
    let worker = Worker::new(store.clone(), handler, None).config(config()).spawn();
    within("the handler is dropped", async {
        while dropped.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let job = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    assert_eq!(
        (job.state, job.attempts),
        (JobState::Running, 1),
        "not settled: the next claim takes it over"
    );
    assert!(job.lease_until.unwrap() > SystemTime::now(), "dropped before its lease ended");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert!(store.renewals.load(Ordering::SeqCst) >= 1, "it tried");
    worker.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_claim_its_worker_gave_up_on_is_released_when_it_answers() {
    // The first claim answers after 1 s, past the worker's 300 ms store timeout; the next ones
    // at once.
    let store = SlowClaims::new(1000);
    store.insert(delivery(chat_message("c", "m"))).await.unwrap();
    let (handler, calls, _) = counted_handler(Duration::ZERO);
    let mut config = config();
    config.store_timeout = Duration::from_millis(300);
    config.lease = Duration::from_secs(60);
    let worker = Worker::new(store.clone(), handler, None).config(config).spawn();
    within("the store hands the job out", async {
        while store.claimed.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    store.delay_ms.store(0, Ordering::SeqCst);
    within("the job is handled", async {
        while store.list(ListQuery::new(Some(JobState::Done), 1)).await.unwrap().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    worker.shutdown().await.unwrap();
    let job = store.list(ListQuery::new(None, 1)).await.unwrap().remove(0);
    // Kept by the claim nobody waited for, it would have waited out its 60 s lease and counted
    // a second attempt.
    assert_eq!(
        (job.attempts, calls.load(Ordering::SeqCst)),
        (1, 1),
        "the abandoned claim was given back uncounted"
    );
    assert_eq!(store.claimed.load(Ordering::SeqCst), 2, "claimed twice: once given up on, once run");
}
