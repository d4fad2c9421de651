//! The order and exclusion contract of `InboxStore` (its documentation, "Order and exclusion"),
//! one generic suite run on the memory, SQLite and PostgreSQL stores alike. Each case gets
//! several instances of one store: clones of the memory store and of the SQLite store (one
//! writer owns a file), and separate connections to one PostgreSQL database.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use periskope_webhook::inbox::{ClaimRequest, ClaimedJob, ConsoleStore, JobId, JobState, Selection};
use tokio::sync::Barrier;

use crate::common::within;
use crate::support::{chat_message, delivery, message_id};

/// Claimers racing in the concurrent cases.
pub const CLAIMERS: usize = 4;

fn claim_at(limit: usize, now: SystemTime) -> ClaimRequest {
    let mut request = ClaimRequest::new(limit, Duration::from_secs(60), 1000);
    request.now = now;
    request
}

fn chat_of(job: &ClaimedJob) -> String {
    let body: serde_json::Value = serde_json::from_slice(&job.body).unwrap();
    body["data"]["chat_id"].as_str().unwrap().to_owned()
}

/// What the claimers saw: the job of each chat that runs now, the jobs each chat ran in order,
/// and every violation of the contract.
#[derive(Default)]
struct Ledger {
    running: HashMap<String, JobId>,
    ran: HashMap<String, Vec<JobId>>,
    violations: Vec<String>,
}

impl Ledger {
    fn started(&mut self, job: &ClaimedJob) {
        let chat = chat_of(job);
        if let Some(other) = self.running.insert(chat.clone(), job.id) {
            self.violations.push(format!("chat {chat}: job {} claimed while job {other} runs", job.id));
        }
    }

    /// No violation was seen, `jobs` jobs ran, and each chat's ran in the order they were
    /// stored.
    fn assert_each_ran_once_in_order(&self, jobs: usize) {
        assert!(self.violations.is_empty(), "{:#?}", self.violations);
        assert_eq!(self.ran.values().map(Vec::len).sum::<usize>(), jobs, "every job ran once");
        for (chat, ran) in &self.ran {
            assert!(ran.windows(2).all(|pair| pair[0] < pair[1]), "chat {chat} ran out of order: {ran:?}");
        }
    }

    /// Called before the job is settled: once settled, its chat's next job may be claimed.
    fn finished(&mut self, job: &ClaimedJob) {
        let chat = chat_of(job);
        self.running.remove(&chat);
        self.ran.entry(chat).or_default().push(job.id);
    }
}

/// Stores `per_chat` jobs in each of `chats` chats (`c0`...), taking the chats in turn.
async fn store_chats<St: ConsoleStore>(store: &St, chats: usize, per_chat: usize) {
    for n in 0..per_chat {
        for chat in 0..chats {
            store
                .insert(delivery(chat_message(&format!("c{chat}"), &format!("c{chat}-m{n}"))))
                .await
                .unwrap();
        }
    }
}

/// Four claimers, each with its own store instance, start together behind a barrier and drain
/// 8 chats of 25 jobs each, failing every fifth attempt once (a retry due at once). No chat
/// ever has two jobs claimed at once, and each chat's jobs finish in the order they were stored.
pub async fn concurrent_claimers_run_a_chat_one_job_at_a_time_in_order<St: ConsoleStore>(stores: Vec<St>) {
    let (chats, per_chat) = (8, 25);
    store_chats(&stores[0], chats, per_chat).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let barrier = Arc::new(Barrier::new(stores.len()));
    let mut claimers = Vec::new();
    for (index, store) in stores.into_iter().enumerate() {
        let (ledger, barrier) = (Arc::clone(&ledger), Arc::clone(&barrier));
        claimers.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut idle_rounds = 0;
            let mut attempts = 0usize;
            while idle_rounds < 50 {
                let jobs = store.claim(claim_at(3, SystemTime::now())).await.unwrap();
                if jobs.is_empty() {
                    idle_rounds += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle_rounds = 0;
                for job in &jobs {
                    ledger.lock().unwrap().started(job);
                }
                tokio::task::yield_now().await;
                for job in jobs {
                    attempts += 1;
                    if (attempts + index).is_multiple_of(5) && job.attempt == 1 {
                        ledger.lock().unwrap().running.remove(&chat_of(&job));
                        store.fail(job.lease(), "once".to_owned(), Some(SystemTime::now())).await.unwrap();
                    } else {
                        ledger.lock().unwrap().finished(&job);
                        store.complete(job.lease(), SystemTime::now()).await.unwrap();
                    }
                }
            }
        }));
    }
    for claimer in claimers {
        within("a claimer drains its share", claimer).await.unwrap();
    }
    ledger.lock().unwrap().assert_each_ran_once_in_order(chats * per_chat);
}

/// A dead job holds nothing back; retried, it waits while a later job of its chat runs. A
/// replayed job waits the same way.
pub async fn a_retried_or_replayed_job_waits_while_its_chat_runs<St: ConsoleStore>(stores: Vec<St>) {
    let store = &stores[0];
    for id in ["m1", "m2", "m3"] {
        store.insert(delivery(chat_message("c", id))).await.unwrap();
    }
    let now = SystemTime::now();
    let first = store.claim(claim_at(10, now)).await.unwrap().remove(0);
    store.fail(first.lease(), "down".to_owned(), None).await.unwrap();
    let second = store.claim(claim_at(10, now)).await.unwrap();
    assert_eq!(
        second.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(),
        ["m2"],
        "a dead job holds nothing back"
    );

    assert_eq!(store.retry(Selection::Job(first.id), now).await.unwrap(), 1);
    for other in &stores {
        assert!(
            other.claim(claim_at(10, now)).await.unwrap().is_empty(),
            "the retried m1 waits while m2 runs"
        );
    }
    store.complete(second[0].lease(), now).await.unwrap();
    let retried = store.claim(claim_at(10, now)).await.unwrap();
    assert_eq!(
        retried.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(),
        ["m1"],
        "then it runs first"
    );
    store.complete(retried[0].lease(), now).await.unwrap();

    let third = store.claim(claim_at(10, now)).await.unwrap().remove(0);
    assert_eq!(message_id(&third.body), "m3");
    assert!(store.replay(second[0].id, now).await.unwrap());
    for other in &stores {
        assert!(
            other.claim(claim_at(10, now)).await.unwrap().is_empty(),
            "the replayed m2 waits while m3 runs"
        );
    }
    store.complete(third.lease(), now).await.unwrap();
    let replayed = store.claim(claim_at(10, now)).await.unwrap();
    assert_eq!(replayed.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m2"]);
}

/// Retries, replays and purges race with four claimers: whatever they interleave with, no
/// chat has two jobs claimed at once, and the counts the store keeps agree with its jobs.
pub async fn retry_replay_and_purge_racing_claims_never_break_exclusion<St: ConsoleStore>(stores: Vec<St>) {
    let chats = 4;
    for n in 0..30 {
        for chat in 0..chats {
            stores[0]
                .insert(delivery(chat_message(&format!("r{chat}"), &format!("r{chat}-m{n}"))))
                .await
                .unwrap();
        }
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let barrier = Arc::new(Barrier::new(stores.len() + 1));
    let operator = {
        let (store, barrier) = (stores[0].clone(), Arc::clone(&barrier));
        tokio::spawn(async move {
            barrier.wait().await;
            let mut purged = 0;
            for round in 0..40 {
                let now = SystemTime::now();
                store.retry(Selection::State(JobState::Dead), now).await.unwrap();
                let done =
                    store.search(periskope_webhook::inbox::JobFilter::default().limit(1000)).await.unwrap();
                if let Some(job) = done.iter().find(|job| job.state == JobState::Done) {
                    store.replay(job.id, now).await.unwrap();
                }
                if round % 10 == 9
                    && let Some(job) = done.iter().find(|job| job.state == JobState::Pending)
                {
                    purged += store.purge(Selection::Job(job.id)).await.unwrap();
                }
                tokio::task::yield_now().await;
            }
            purged
        })
    };
    let counted = stores[0].clone();
    let mut claimers = Vec::new();
    for store in stores {
        let (ledger, barrier) = (Arc::clone(&ledger), Arc::clone(&barrier));
        claimers.push(tokio::spawn(async move {
            barrier.wait().await;
            for round in 0..200u32 {
                let jobs = store.claim(claim_at(2, SystemTime::now())).await.unwrap();
                for job in &jobs {
                    ledger.lock().unwrap().started(job);
                }
                tokio::task::yield_now().await;
                for job in jobs {
                    ledger.lock().unwrap().finished(&job);
                    if round.is_multiple_of(3) {
                        // A dead letter for the operator to retry.
                        store.fail(job.lease(), "down".to_owned(), None).await.unwrap();
                    } else {
                        store.complete(job.lease(), SystemTime::now()).await.unwrap();
                    }
                }
            }
        }));
    }
    let purged = within("the operator's rounds", operator).await.unwrap();
    for claimer in claimers {
        within("a claimer's rounds", claimer).await.unwrap();
    }
    {
        let ledger = ledger.lock().unwrap();
        assert!(ledger.violations.is_empty(), "{:#?}", ledger.violations);
        // Every job the operator did not purge ran, once at least.
        let ran = ledger.ran.values().map(Vec::len).sum::<usize>() as u64;
        assert!(ran >= 120 - purged, "the claimers ran {ran} jobs, {purged} of 120 purged");
    }

    let jobs = counted.search(periskope_webhook::inbox::JobFilter::default().limit(1000)).await.unwrap();
    let count = |state: JobState| jobs.iter().filter(|job| job.state == state).count() as u64;
    let queued_attempts: u64 = jobs
        .iter()
        .filter(|job| matches!(job.state, JobState::Pending | JobState::Running))
        .map(|job| u64::from(job.attempts))
        .sum();
    let stats = counted.stats(SystemTime::now()).await.unwrap();
    assert_eq!(
        (stats.pending, stats.running, stats.done, stats.dead, stats.attempts_in_queue),
        (
            count(JobState::Pending),
            count(JobState::Running),
            count(JobState::Done),
            count(JobState::Dead),
            queued_attempts
        ),
        "the counts agree with the jobs"
    );
}

/// An expired lease is taken over under a new fencing token; the late claim can neither renew
/// nor settle, even when a release put the attempt number back where it was.
pub async fn a_late_attempt_is_fenced_off_by_its_token<St: ConsoleStore>(stores: Vec<St>) {
    let store = &stores[0];
    store.insert(delivery(chat_message("c", "m1"))).await.unwrap();
    let start = SystemTime::now();
    let first = store.claim(claim_at(10, start)).await.unwrap().remove(0);
    assert!(store.holds(first.lease()).await.unwrap());
    let later = start + Duration::from_secs(61);
    let second = store.claim(claim_at(10, later)).await.unwrap().remove(0);
    assert!(second.fencing_token > first.fencing_token);
    assert!(!store.holds(first.lease()).await.unwrap(), "taken over");
    assert!(!store.renew(first.lease(), later + Duration::from_secs(600)).await.unwrap());

    // A release takes the attempt back: the next claim counts attempt 2 again, under a new token.
    store.release(second.lease(), later).await.unwrap();
    let third = store.claim(claim_at(10, later)).await.unwrap().remove(0);
    assert_eq!(third.attempt, second.attempt, "the same attempt number as the released claim");
    assert!(third.fencing_token > second.fencing_token);
    store.complete(second.lease(), later).await.unwrap();
    store.fail(first.lease(), "late".to_owned(), None).await.unwrap();
    let job = store.get(third.id).await.unwrap().unwrap().summary;
    assert_eq!(job.state, JobState::Running, "late settlements changed nothing");
    assert!(store.holds(third.lease()).await.unwrap());
    store.complete(third.lease(), later).await.unwrap();
    assert_eq!(store.get(third.id).await.unwrap().unwrap().summary.state, JobState::Done);
}

/// A renewed lease keeps its job past the first lease's end; a job's chat stays busy with it.
pub async fn a_renewed_lease_keeps_its_job<St: ConsoleStore>(stores: Vec<St>) {
    let store = &stores[0];
    store.insert(delivery(chat_message("c", "m1"))).await.unwrap();
    store.insert(delivery(chat_message("c", "m2"))).await.unwrap();
    let start = SystemTime::now();
    let first = store.claim(claim_at(10, start)).await.unwrap().remove(0);
    assert!(store.renew(first.lease(), start + Duration::from_secs(300)).await.unwrap());
    store.retry(Selection::State(JobState::Pending), start).await.unwrap();
    for other in &stores {
        assert!(
            other.claim(claim_at(10, start + Duration::from_secs(200))).await.unwrap().is_empty(),
            "past the first lease, within the renewed one: nothing of the chat is claimed"
        );
    }
    let taken = store.claim(claim_at(10, start + Duration::from_secs(301))).await.unwrap();
    assert_eq!(taken.iter().map(|job| job.id).collect::<Vec<_>>(), [first.id], "taken over once it expired");
}

/// However a chat's first job leaves the queue (handled, dead, purged, or dead once its last
/// lease expires), the chat goes on with its next job, even after claims have passed over
/// hundreds of its jobs waiting behind a running one; jobs of no chat run beside it.
pub async fn a_chat_goes_on_however_its_first_job_leaves_the_queue<St: ConsoleStore>(stores: Vec<St>) {
    let store = &stores[0];
    const WAITING: usize = 300;
    for index in 0..WAITING {
        store.insert(delivery(chat_message("busy", &format!("m{index}")))).await.unwrap();
    }
    // Claims run a little ahead of the clock, so that the job of no chat stored below is due.
    let start = SystemTime::now() + Duration::from_secs(10);
    let mut request = ClaimRequest::new(4, Duration::from_secs(60), 2);
    request.now = start;
    let first = store.claim(request).await.unwrap();
    assert_eq!(first.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m0"]);
    // Claims pass over the jobs waiting behind m0; a job of no chat is still found among them.
    for _ in 0..WAITING / 64 {
        assert!(store.claim(request).await.unwrap().is_empty(), "the chat waits while m0 runs");
    }
    let unordered = r#"{"event":"message.created","data":{"message_id":"free"},"org_id":"org-1"}"#;
    store.insert(delivery(bytes::Bytes::from_static(unordered.as_bytes()))).await.unwrap();
    let free = store.claim(request).await.unwrap();
    assert_eq!(
        free.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(),
        ["free"],
        "a job of no chat runs beside the busy chat"
    );
    store.complete(free[0].lease(), start).await.unwrap();

    // Handled: m1 is next.
    store.complete(first[0].lease(), start).await.unwrap();
    let next = store.claim(request).await.unwrap();
    assert_eq!(next.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m1"]);
    // Dead: m2 is next.
    store.fail(next[0].lease(), "down".to_owned(), None).await.unwrap();
    let next = store.claim(request).await.unwrap();
    assert_eq!(next.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m2"]);
    // Purged while running: m3 is next.
    assert_eq!(store.purge(Selection::Job(next[0].id)).await.unwrap(), 1);
    let next = store.claim(request).await.unwrap();
    assert_eq!(next.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m3"]);
    // Its lease expires twice (two attempts allowed): the claim after the second makes it a dead
    // letter, and the next one goes on with m4.
    let mut later = request;
    later.now = start + Duration::from_secs(61);
    let again = store.claim(later).await.unwrap();
    assert_eq!(
        again.iter().map(|job| (message_id(&job.body), job.attempt)).collect::<Vec<_>>(),
        [("m3".to_owned(), 2)]
    );
    later.now = start + Duration::from_secs(122);
    assert!(store.claim(later).await.unwrap().is_empty(), "m3 becomes a dead letter");
    let next = store.claim(later).await.unwrap();
    assert_eq!(next.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m4"]);
    assert_eq!(store.get(again[0].id).await.unwrap().unwrap().summary.state, JobState::Dead);
    // Purged while pending, behind nothing: m5 is next once m4 is handled.
    let stored = store.list(periskope_webhook::inbox::ListQuery::new(None, 20)).await.unwrap();
    let m5 = stored.iter().find(|job| job.key.ends_with(":m5")).expect("m5 is stored").id;
    assert_eq!(store.purge(Selection::Job(m5)).await.unwrap(), 1);
    store.complete(next[0].lease(), later.now).await.unwrap();
    let next = store.claim(later).await.unwrap();
    assert_eq!(next.iter().map(|job| message_id(&job.body)).collect::<Vec<_>>(), ["m6"]);
}

/// `(message id, attempt, the message id it follows)` of each claimed job.
fn runs_of(jobs: &[ClaimedJob]) -> Vec<(String, u32, Option<String>)> {
    let ids: HashMap<JobId, String> = jobs.iter().map(|job| (job.id, message_id(&job.body))).collect();
    jobs.iter()
        .map(|job| (message_id(&job.body), job.attempt, job.follows.map(|id| ids[&id].clone())))
        .collect()
}

fn started(id: &str) -> (String, u32, Option<String>) {
    (id.to_owned(), 1, None)
}

fn following(id: &str, attempt: u32, previous: &str) -> (String, u32, Option<String>) {
    (id.to_owned(), attempt, Some(previous.to_owned()))
}

/// A claim with runs takes, behind each chat's first job, its next jobs in order, up to the
/// run's length; the chat is held until the whole run is settled. The jobs that follow are
/// counted when settled: given back unrun, they are uncounted. A job that was attempted is
/// claimed alone, and so is a job of no chat.
pub async fn a_run_takes_a_chats_next_jobs_and_holds_the_chat_until_it_ends<St: ConsoleStore>(
    stores: Vec<St>,
) {
    let store = &stores[0];
    for id in ["m0", "m1", "m2", "m3", "m4", "m5"] {
        store.insert(delivery(chat_message("c", id))).await.unwrap();
    }
    for id in ["d0", "d1"] {
        store.insert(delivery(chat_message("d", id))).await.unwrap();
    }
    let now = SystemTime::now();
    let runs = |limit| claim_at(limit, now).runs_of(4);
    let claimed = store.claim(runs(10)).await.unwrap();
    assert_eq!(
        runs_of(&claimed),
        [
            started("m0"),
            following("m1", 1, "m0"),
            following("m2", 1, "m1"),
            following("m3", 1, "m2"),
            started("d0"),
            following("d1", 1, "d0"),
        ]
    );
    let stats = store.stats(now).await.unwrap();
    assert_eq!((stats.running, stats.attempts_in_queue), (6, 2), "only the first jobs are counted yet");
    let lease = |id: &str| claimed.iter().find(|job| message_id(&job.body) == id).unwrap().lease();
    for other in &stores {
        assert!(other.claim(runs(10)).await.unwrap().is_empty(), "m4 waits behind the run");
    }
    store.complete(lease("m0"), now).await.unwrap();
    store.complete(lease("m1"), now).await.unwrap();
    for other in &stores {
        assert!(other.claim(runs(10)).await.unwrap().is_empty(), "the run still holds its chat");
    }
    // m2 fails: the worker gives m3 back unrun, and m2 is retried alone.
    store.fail(lease("m2"), "down".to_owned(), Some(now)).await.unwrap();
    store.release(lease("m3"), now).await.unwrap();
    let retried = store.claim(runs(10)).await.unwrap();
    assert_eq!(runs_of(&retried), [("m2".to_owned(), 2, None)], "a job attempted before runs alone");
    store.complete(retried[0].lease(), now).await.unwrap();
    let next = store.claim(runs(10)).await.unwrap();
    assert_eq!(
        runs_of(&next),
        [started("m3"), following("m4", 1, "m3"), following("m5", 1, "m4")],
        "m3 was given back uncounted"
    );
    for job in &next {
        store.complete(job.lease(), now).await.unwrap();
    }
    let attempts = |id: &str| {
        let stores = store.clone();
        let id = id.to_owned();
        async move {
            let jobs = stores.list(periskope_webhook::inbox::ListQuery::new(None, 20)).await.unwrap();
            jobs.into_iter().find(|job| job.key.ends_with(&format!(":{id}"))).unwrap()
        }
    };
    for (id, count) in [("m0", 1), ("m1", 1), ("m2", 2), ("m3", 1), ("m5", 1)] {
        let job = attempts(id).await;
        assert_eq!((job.state, job.attempts), (JobState::Done, count), "{id}");
    }
    let stats = store.stats(now).await.unwrap();
    // d0 and d1 still run: d1, which follows, is not counted yet.
    assert_eq!((stats.done, stats.running, stats.pending, stats.attempts_in_queue), (6, 2, 0, 1));
}

/// A run whose worker died is taken over once its lease expires: its first job alone, its
/// attempt counted again, then the jobs it never reached, as a run of their own, counted once.
pub async fn a_run_whose_worker_died_is_taken_over_in_order<St: ConsoleStore>(stores: Vec<St>) {
    let store = &stores[0];
    for id in ["m0", "m1", "m2"] {
        store.insert(delivery(chat_message("c", id))).await.unwrap();
    }
    let start = SystemTime::now();
    let claimed = store.claim(claim_at(10, start).runs_of(8)).await.unwrap();
    assert_eq!(runs_of(&claimed), [started("m0"), following("m1", 1, "m0"), following("m2", 1, "m1")]);
    let later = start + Duration::from_secs(61);
    let taken_over = stores[1].claim(claim_at(10, later).runs_of(8)).await.unwrap();
    assert_eq!(runs_of(&taken_over), [("m0".to_owned(), 2, None)]);
    assert!(!store.holds(claimed[0].lease()).await.unwrap(), "the dead worker's m0 is fenced off");
    store.complete(taken_over[0].lease(), later).await.unwrap();
    let rest = stores[2].claim(claim_at(10, later).runs_of(8)).await.unwrap();
    assert_eq!(runs_of(&rest), [started("m1"), following("m2", 1, "m1")]);
    for job in &claimed {
        assert!(!store.holds(job.lease()).await.unwrap(), "the dead worker's run is fenced off");
        store.complete(job.lease(), later).await.unwrap();
    }
    for job in &rest {
        assert!(store.holds(job.lease()).await.unwrap(), "the late settlements changed nothing");
    }
}

/// Four claimers with runs drain 8 chats of 25 jobs, each run's jobs settled in order, the run
/// given back from its first failure on (every fifth first attempt fails once): no chat is
/// held by two claims at once, and each chat's jobs are handled in the order they were stored.
pub async fn concurrent_claimers_with_runs_keep_each_chat_in_order<St: ConsoleStore>(stores: Vec<St>) {
    let (chats, per_chat) = (8, 25);
    store_chats(&stores[0], chats, per_chat).await;
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let barrier = Arc::new(Barrier::new(stores.len()));
    let mut claimers = Vec::new();
    for (index, store) in stores.into_iter().enumerate() {
        let (ledger, barrier) = (Arc::clone(&ledger), Arc::clone(&barrier));
        claimers.push(tokio::spawn(async move {
            barrier.wait().await;
            let mut idle_rounds = 0;
            let mut attempts = 0usize;
            while idle_rounds < 50 {
                let jobs = store.claim(claim_at(3, SystemTime::now()).runs_of(6)).await.unwrap();
                if jobs.is_empty() {
                    idle_rounds += 1;
                    tokio::task::yield_now().await;
                    continue;
                }
                idle_rounds = 0;
                // A run holds its chat: its first job stands for it in the ledger.
                for job in jobs.iter().filter(|job| job.follows.is_none()) {
                    ledger.lock().unwrap().started(job);
                }
                tokio::task::yield_now().await;
                let mut stopped: Vec<String> = Vec::new();
                for (position, job) in jobs.iter().enumerate() {
                    let chat = chat_of(job);
                    // Once the run's last job is settled, its chat may be claimed again.
                    if !jobs[position + 1..].iter().any(|next| next.follows == Some(job.id)) {
                        ledger.lock().unwrap().running.remove(&chat);
                    }
                    if stopped.contains(&chat) {
                        store.release(job.lease(), SystemTime::now()).await.unwrap();
                        continue;
                    }
                    attempts += 1;
                    if (attempts + index).is_multiple_of(5) && job.attempt == 1 {
                        store.fail(job.lease(), "once".to_owned(), Some(SystemTime::now())).await.unwrap();
                        stopped.push(chat);
                        continue;
                    }
                    ledger.lock().unwrap().ran.entry(chat).or_default().push(job.id);
                    store.complete(job.lease(), SystemTime::now()).await.unwrap();
                }
            }
        }));
    }
    for claimer in claimers {
        within("a claimer drains its share", claimer).await.unwrap();
    }
    ledger.lock().unwrap().assert_each_ran_once_in_order(chats * per_chat);
}

/// A run stops before the bodies of the jobs that follow its first pass `MAX_RUN_BYTES`, so
/// that a worker's memory stays bounded whatever its backlog.
pub async fn a_run_holds_a_bounded_amount_of_bodies<St: ConsoleStore>(stores: Vec<St>) {
    let store = &stores[0];
    let text = "x".repeat(periskope_webhook::inbox::MAX_RUN_BYTES * 2 / 5);
    for n in 0..5 {
        let body = format!(
            r#"{{"event":"message.created","data":{{"message_id":"m{n}","chat_id":"c","body":"{text}"}},"org_id":"org-1"}}"#
        );
        store.insert(delivery(bytes::Bytes::from(body))).await.unwrap();
    }
    let claimed = store.claim(claim_at(10, SystemTime::now()).runs_of(32)).await.unwrap();
    assert_eq!(
        runs_of(&claimed),
        [started("m0"), following("m1", 1, "m0"), following("m2", 1, "m1")],
        "two bodies of two fifths of the bound follow; a third would pass it"
    );
}
