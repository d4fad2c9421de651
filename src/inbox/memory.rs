//! [`MemoryInboxStore`]: an inbox in memory, for tests (features `inbox` and `testing`).
//!
//! ```
//! use periskope_webhook::inbox::{Inbox, InboxStore, MemoryInboxStore};
//! use periskope_webhook::{EventRouter, WebhookEvent};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let inbox = Inbox::new(MemoryInboxStore::new());
//! // ... send signed deliveries through `inbox.acceptor()` behind the layer ...
//! inbox.worker(EventRouter::new()).run_until_idle().await;
//! assert_eq!(inbox.store().stats(std::time::SystemTime::now()).await.unwrap().queue_depth(), 0);
//! # }
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::{Future, Ready, ready};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::queries::{AttemptOutcome, AttemptRecord, ConsoleStore, DeadLetters, JobFilter, MinuteCounts};
use super::{
    ClaimRequest, ClaimedJob, InboxError, InboxStats, InboxStore, JobId, JobRecord, JobState, JobSummary,
    LEASE_EXPIRED, Lease, ListQuery, MAX_ERROR_LEN, MAX_RUN_BYTES, NewDelivery, Selection, Stored,
    UnalertedDeadLetter, bounded_error, log_dead_letter, saturating_add,
};

/// An [`InboxStore`] that keeps its jobs in this process's memory.
///
/// **Not durable**: everything is gone with the process, so it is for tests (unit tests of
/// handlers behind the inbox, with [`Worker::run_until_idle`](super::Worker::run_until_idle)),
/// never for production. It follows the same rules as the durable stores: one job per
/// de-duplication key, leases, attempts, per-chat order, dead letters. Clones share the jobs.
#[derive(Clone, Debug, Default)]
pub struct MemoryInboxStore {
    jobs: Arc<Mutex<Jobs>>,
}

#[derive(Debug, Default)]
struct Jobs {
    by_id: BTreeMap<JobId, Job>,
    by_key: HashMap<String, JobId>,
    last_id: JobId,
}

#[derive(Debug)]
struct Job {
    delivery: NewDelivery,
    state: JobState,
    attempts: u32,
    /// Claims counted so far: the fencing token of the latest.
    claims: u64,
    last_error: Option<String>,
    run_at: SystemTime,
    lease_until: Option<SystemTime>,
    handled_at: Option<SystemTime>,
    dead_at: Option<SystemTime>,
    /// The claim counter under which its death was told ([`InboxStore::mark_alerted`]).
    alerted_claims: Option<u64>,
    /// The last [`ATTEMPTS_KEPT`] attempts, oldest first.
    history: VecDeque<AttemptRecord>,
}

/// How many attempts of each job the history keeps, as the durable stores do by default.
const ATTEMPTS_KEPT: usize = 10;

impl Job {
    fn summary(&self, id: JobId) -> JobSummary {
        JobSummary {
            id,
            event: self.delivery.event.clone(),
            key: self.delivery.key.clone(),
            state: self.state,
            attempts: self.attempts,
            last_error: self.last_error.clone(),
            received_at: self.delivery.received_at,
            run_at: self.run_at,
            lease_until: self.lease_until,
            handled_at: self.handled_at,
        }
    }

    fn is_due(&self, now: SystemTime) -> bool {
        match self.state {
            JobState::Pending => self.run_at <= now,
            JobState::Running => self.lease_until.is_none_or(|until| until <= now),
            JobState::Done | JobState::Dead => false,
        }
    }

    /// Leases the job to a claim, as attempt `attempts + 1` (counted by the caller for the
    /// first job of a run, at settlement for the jobs that follow it).
    fn lease_to(&mut self, id: JobId, request: &ClaimRequest, follows: Option<JobId>) -> ClaimedJob {
        self.state = JobState::Running;
        self.claims += 1;
        self.lease_until = Some(saturating_add(request.now, request.lease));
        if self.history.len() == ATTEMPTS_KEPT {
            self.history.pop_front();
        }
        self.history.push_back(AttemptRecord {
            number: self.attempts + 1,
            started_at: request.now,
            duration: None,
            outcome: AttemptOutcome::Running,
            error: None,
        });
        ClaimedJob {
            id,
            attempt: self.attempts + 1,
            fencing_token: self.claims,
            event: self.delivery.event.clone(),
            key: self.delivery.key.clone(),
            body: self.delivery.body.clone(),
            signing_key: self.delivery.signing_key.clone(),
            received_at: self.delivery.received_at,
            path: self.delivery.path.clone(),
            traceparent: self.delivery.traceparent.clone(),
            follows,
        }
    }

    fn is_queued(&self) -> bool {
        matches!(self.state, JobState::Pending | JobState::Running)
    }

    /// Whether `lease` is the claim that holds this job now.
    fn held_by(&self, lease: Lease) -> bool {
        self.state == JobState::Running && self.claims == lease.token
    }

    /// Ends the running attempt in the history.
    fn end_attempt(&mut self, outcome: AttemptOutcome, at: SystemTime, error: Option<String>) {
        if let Some(attempt) =
            self.history.back_mut().filter(|attempt| attempt.outcome == AttemptOutcome::Running)
        {
            attempt.outcome = outcome;
            attempt.duration = Some(at.duration_since(attempt.started_at).unwrap_or(Duration::ZERO));
            attempt.error = error;
        }
    }

    fn matches(&self, id: JobId, filter: &JobFilter) -> bool {
        let received = self.delivery.received_at;
        let chat = self.delivery.ordering_key.as_deref().and_then(|key| key.strip_prefix("chat|"));
        filter.state.is_none_or(|state| self.state == state)
            && filter.event.as_deref().is_none_or(|event| self.delivery.event == event)
            && filter.chat.as_deref().is_none_or(|wanted| chat == Some(wanted))
            && filter.received_from.is_none_or(|from| received >= from)
            && filter.received_until.is_none_or(|until| received < until)
            && filter.text.as_deref().is_none_or(|text| {
                self.delivery.key.contains(text)
                    || self.last_error.as_deref().is_some_and(|error| error.contains(text))
            })
            && filter.ids.as_ref().is_none_or(|ids| ids.contains(&id))
            && filter.before.is_none_or(|before| id < before)
    }
}

impl MemoryInboxStore {
    /// An empty inbox.
    pub fn new() -> Self {
        MemoryInboxStore::default()
    }

    fn jobs(&self) -> MutexGuard<'_, Jobs> {
        // A panic while the lock was held cannot leave a job half-written: every change below
        // is a single assignment or a whole insertion.
        self.jobs.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Applies `change` to the job `lease` holds, if it still holds it.
    fn settle(&self, lease: Lease, change: impl FnOnce(&mut Job)) -> Ready<Result<(), InboxError>> {
        if let Some(job) = self.jobs().by_id.get_mut(&lease.id).filter(|job| job.held_by(lease)) {
            job.attempts = lease.attempt;
            change(job);
            job.lease_until = None;
        }
        ready(Ok(()))
    }
}

fn selected(selection: Selection, id: JobId, job: &Job) -> bool {
    match selection {
        Selection::Job(wanted) => id == wanted,
        Selection::State(state) => job.state == state,
    }
}

impl InboxStore for MemoryInboxStore {
    type InsertFuture = Ready<Result<Stored, InboxError>>;

    fn insert(&self, delivery: NewDelivery) -> Self::InsertFuture {
        let mut jobs = self.jobs();
        if jobs.by_key.contains_key(&delivery.key) {
            return ready(Ok(Stored::Duplicate));
        }
        jobs.last_id += 1;
        let id = jobs.last_id;
        jobs.by_key.insert(delivery.key.clone(), id);
        let run_at = delivery.received_at;
        let job = Job {
            delivery,
            state: JobState::Pending,
            attempts: 0,
            claims: 0,
            alerted_claims: None,
            last_error: None,
            run_at,
            lease_until: None,
            handled_at: None,
            dead_at: None,
            history: VecDeque::new(),
        };
        jobs.by_id.insert(id, job);
        ready(Ok(Stored::New))
    }

    fn claim(
        &self,
        request: ClaimRequest,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, InboxError>> + Send {
        let mut jobs = self.jobs();
        // A chat is busy while one of its jobs is running, and holds back its later jobs while
        // an earlier one is queued: decided on the jobs as they are before this claim.
        let mut first_queued: HashMap<&str, JobId> = HashMap::new();
        let mut running: Vec<&str> = Vec::new();
        for (id, job) in jobs.by_id.iter().filter(|(_, job)| job.is_queued()) {
            if let Some(chat) = job.delivery.ordering_key.as_deref() {
                first_queued.entry(chat).or_insert(*id);
                if job.state == JobState::Running && !job.is_due(request.now) {
                    running.push(chat);
                }
            }
        }
        let due: Vec<JobId> =
            jobs.by_id
                .iter()
                .filter(|(id, job)| {
                    job.is_due(request.now)
                        && job.delivery.ordering_key.as_deref().is_none_or(|chat| {
                            first_queued.get(chat) == Some(*id) && !running.contains(&chat)
                        })
                })
                .map(|(id, _)| *id)
                .take(request.limit)
                .collect();
        let mut claimed = Vec::with_capacity(due.len());
        for id in due {
            let Some(job) = jobs.by_id.get_mut(&id) else { continue };
            job.end_attempt(AttemptOutcome::Abandoned, request.now, None);
            if job.attempts >= request.max_attempts {
                job.state = JobState::Dead;
                job.lease_until = None;
                job.dead_at = Some(request.now);
                log_dead_letter(&job.delivery.event, id, job.attempts);
                job.last_error = Some(match job.last_error.take() {
                    Some(error) => format!("{error}; {LEASE_EXPIRED}"),
                    None => LEASE_EXPIRED.to_owned(),
                });
                continue;
            }
            let never_attempted = job.attempts == 0;
            claimed.push(job.lease_to(id, &request, None));
            job.attempts += 1;
            let Some(chat) = job.delivery.ordering_key.clone().filter(|_| never_attempted) else { continue };
            // The run: the chat's next queued jobs, while each is due and never attempted.
            let mut follows = id;
            let mut bytes = 0;
            let followers: Vec<JobId> = jobs
                .by_id
                .range(id + 1..)
                .filter(|(_, job)| job.is_queued() && job.delivery.ordering_key.as_deref() == Some(&chat))
                .take(request.run.saturating_sub(1))
                .take_while(|(_, job)| {
                    bytes += job.delivery.body.len();
                    job.is_due(request.now)
                        && job.attempts == 0
                        && job.attempts < request.max_attempts
                        && bytes <= MAX_RUN_BYTES
                })
                .map(|(id, _)| *id)
                .collect();
            for follower in followers {
                let Some(job) = jobs.by_id.get_mut(&follower) else { continue };
                job.end_attempt(AttemptOutcome::Abandoned, request.now, None);
                claimed.push(job.lease_to(follower, &request, Some(follows)));
                follows = follower;
            }
        }
        ready(Ok(claimed))
    }

    fn complete(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.settle(lease, |job| {
            job.state = JobState::Done;
            job.handled_at = Some(now);
            job.end_attempt(AttemptOutcome::Handled, now, None);
        })
    }

    fn fail(
        &self,
        lease: Lease,
        error: String,
        retry_at: Option<SystemTime>,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.settle(lease, |job| {
            let error = bounded_error(error, MAX_ERROR_LEN);
            job.end_attempt(AttemptOutcome::Failed, SystemTime::now(), Some(error.clone()));
            job.last_error = Some(error);
            match retry_at {
                Some(at) => {
                    job.state = JobState::Pending;
                    job.run_at = at;
                }
                None => {
                    job.state = JobState::Dead;
                    job.dead_at = Some(SystemTime::now());
                }
            }
        })
    }

    fn release(&self, lease: Lease, now: SystemTime) -> impl Future<Output = Result<(), InboxError>> + Send {
        self.settle(lease, |job| {
            job.end_attempt(AttemptOutcome::Released, now, None);
            job.state = JobState::Pending;
            job.attempts = lease.attempt.saturating_sub(1);
            job.run_at = now;
        })
    }

    fn renew(
        &self,
        lease: Lease,
        until: SystemTime,
    ) -> impl Future<Output = Result<bool, InboxError>> + Send {
        let mut jobs = self.jobs();
        let job = jobs.by_id.get_mut(&lease.id).filter(|job| job.held_by(lease));
        ready(Ok(job.map(|job| job.lease_until = Some(until)).is_some()))
    }

    fn holds(&self, lease: Lease) -> impl Future<Output = Result<bool, InboxError>> + Send {
        ready(Ok(self.jobs().by_id.get(&lease.id).is_some_and(|job| job.held_by(lease))))
    }

    fn list(&self, query: ListQuery) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        let jobs = self.jobs();
        let after = query.after.unwrap_or(0);
        let listed = jobs
            .by_id
            .range(after.saturating_add(1)..)
            .filter(|(_, job)| query.state.is_none_or(|state| job.state == state))
            .take(query.effective_limit())
            .map(|(id, job)| job.summary(*id))
            .collect();
        ready(Ok(listed))
    }

    fn get(&self, id: JobId) -> impl Future<Output = Result<Option<JobRecord>, InboxError>> + Send {
        let record = self.jobs().by_id.get(&id).map(|job| JobRecord {
            summary: job.summary(id),
            body: Bytes::clone(&job.delivery.body),
            signing_key: job.delivery.signing_key.clone(),
            ordering_key: job.delivery.ordering_key.clone(),
            path: job.delivery.path.clone(),
        });
        ready(Ok(record))
    }

    fn retry(
        &self,
        selection: Selection,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let mut changed = 0;
        for (id, job) in self.jobs().by_id.iter_mut() {
            if matches!(job.state, JobState::Pending | JobState::Dead) && selected(selection, *id, job) {
                job.state = JobState::Pending;
                job.attempts = 0;
                job.run_at = now;
                job.lease_until = None;
                job.dead_at = None;
                changed += 1;
            }
        }
        ready(Ok(changed))
    }

    fn purge(&self, selection: Selection) -> impl Future<Output = Result<u64, InboxError>> + Send {
        ready(Ok(remove(&mut self.jobs(), |id, job| selected(selection, id, job))))
    }

    fn purge_handled(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        ready(Ok(remove_at_most(&mut self.jobs(), limit, |_, job| {
            job.state == JobState::Done && job.handled_at.is_some_and(|handled| handled < before)
        })))
    }

    fn purge_dead(
        &self,
        before: SystemTime,
        limit: usize,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        ready(Ok(remove_at_most(&mut self.jobs(), limit, |_, job| {
            job.state == JobState::Dead && job.dead_at.is_some_and(|died| died < before)
        })))
    }

    fn stats(&self, now: SystemTime) -> impl Future<Output = Result<InboxStats, InboxError>> + Send {
        let jobs = self.jobs();
        let mut stats = InboxStats::default();
        let mut oldest: Option<SystemTime> = None;
        for job in jobs.by_id.values() {
            match job.state {
                JobState::Pending => stats.pending += 1,
                JobState::Running => stats.running += 1,
                JobState::Done => stats.done += 1,
                JobState::Dead => stats.dead += 1,
            }
            if job.is_queued() {
                stats.attempts_in_queue += u64::from(job.attempts);
                let received = job.delivery.received_at;
                oldest = Some(oldest.map_or(received, |oldest| oldest.min(received)));
            }
        }
        stats.oldest_pending_age =
            oldest.map(|received| now.duration_since(received).unwrap_or(Duration::ZERO));
        ready(Ok(stats))
    }

    fn unalerted_dead_letters(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<UnalertedDeadLetter>, InboxError>> + Send {
        let jobs = self.jobs();
        let dead = jobs
            .by_id
            .iter()
            .filter(|(_, job)| job.state == JobState::Dead && job.alerted_claims != Some(job.claims))
            .take(limit)
            .map(|(id, job)| {
                UnalertedDeadLetter::new(
                    *id,
                    job.claims,
                    job.delivery.event.clone(),
                    job.attempts,
                    job.last_error.clone(),
                )
            })
            .collect();
        ready(Ok(dead))
    }

    fn mark_alerted(
        &self,
        job: JobId,
        fencing_token: u64,
    ) -> impl Future<Output = Result<(), InboxError>> + Send {
        if let Some(job) = self.jobs().by_id.get_mut(&job) {
            job.alerted_claims = Some(fencing_token);
        }
        ready(Ok(()))
    }
}

impl ConsoleStore for MemoryInboxStore {
    fn search(&self, filter: JobFilter) -> impl Future<Output = Result<Vec<JobSummary>, InboxError>> + Send {
        let jobs = self.jobs();
        let found = jobs
            .by_id
            .iter()
            .rev()
            .filter(|(id, job)| job.matches(**id, &filter))
            .take(filter.effective_limit())
            .map(|(id, job)| job.summary(*id))
            .collect();
        ready(Ok(found))
    }

    fn count(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let filter = JobFilter { before: None, ..filter };
        let count = self.jobs().by_id.iter().filter(|(id, job)| job.matches(**id, &filter)).count();
        ready(Ok(count as u64))
    }

    fn attempts(&self, id: JobId) -> impl Future<Output = Result<Vec<AttemptRecord>, InboxError>> + Send {
        let history = self.jobs().by_id.get(&id).map(|job| job.history.iter().cloned().collect());
        ready(Ok(history.unwrap_or_default()))
    }

    fn per_minute(
        &self,
        since: SystemTime,
        now: SystemTime,
    ) -> impl Future<Output = Result<Vec<MinuteCounts>, InboxError>> + Send {
        let first = minute_of(since);
        let mut minutes: Vec<MinuteCounts> = (0..=minute_of(now).saturating_sub(first))
            .map(|offset| MinuteCounts::new(minute_start(first + offset)))
            .collect();
        let mut count = |at: SystemTime, field: fn(&mut MinuteCounts) -> &mut u64| {
            if at >= since
                && at <= now
                && let Some(minute) = minutes.get_mut((minute_of(at) - first) as usize)
            {
                *field(minute) += 1;
            }
        };
        for job in self.jobs().by_id.values() {
            count(job.delivery.received_at, |minute| &mut minute.received);
            for attempt in &job.history {
                let Some(ended) = attempt.duration.map(|duration| attempt.started_at + duration) else {
                    continue;
                };
                match attempt.outcome {
                    AttemptOutcome::Handled => count(ended, |minute| &mut minute.handled),
                    AttemptOutcome::Failed => count(ended, |minute| &mut minute.failed),
                    _ => {}
                }
            }
        }
        ready(Ok(minutes))
    }

    fn dead_letters_by_event(
        &self,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<DeadLetters>, InboxError>> + Send {
        let jobs = self.jobs();
        // Per event name: how many dead letters, and the most recent one (when it died, its id).
        let mut by_event: HashMap<&str, (u64, &Job, (SystemTime, JobId))> = HashMap::new();
        for (id, job) in jobs.by_id.iter().filter(|(_, job)| job.state == JobState::Dead) {
            let died = (job.dead_at.unwrap_or(job.delivery.received_at), *id);
            let entry = by_event.entry(job.delivery.event.as_str()).or_insert((0, job, died));
            entry.0 += 1;
            if entry.2 < died {
                (entry.1, entry.2) = (job, died);
            }
        }
        let mut letters: Vec<DeadLetters> = by_event
            .into_iter()
            .map(|(event, (count, latest, _))| DeadLetters {
                event: event.to_owned(),
                count,
                latest_error: latest.last_error.clone(),
            })
            .collect();
        letters.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.event.cmp(&b.event)));
        letters.truncate(limit);
        ready(Ok(letters))
    }

    fn replay(&self, id: JobId, now: SystemTime) -> impl Future<Output = Result<bool, InboxError>> + Send {
        let replayed = match self.jobs().by_id.get_mut(&id).filter(|job| job.state == JobState::Done) {
            Some(job) => {
                job.state = JobState::Pending;
                job.attempts = 0;
                job.run_at = now;
                job.handled_at = None;
                true
            }
            None => false,
        };
        ready(Ok(replayed))
    }

    fn retry_matching(
        &self,
        filter: JobFilter,
        now: SystemTime,
    ) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let filter = JobFilter { before: None, ..filter };
        let mut changed = 0;
        for (id, job) in self.jobs().by_id.iter_mut() {
            if matches!(job.state, JobState::Pending | JobState::Dead) && job.matches(*id, &filter) {
                job.state = JobState::Pending;
                job.attempts = 0;
                job.run_at = now;
                job.lease_until = None;
                job.dead_at = None;
                changed += 1;
            }
        }
        ready(Ok(changed))
    }

    fn purge_matching(&self, filter: JobFilter) -> impl Future<Output = Result<u64, InboxError>> + Send {
        let filter = JobFilter { before: None, ..filter };
        ready(Ok(remove(&mut self.jobs(), |id, job| job.matches(id, &filter))))
    }
}

/// Whole minutes since the Unix epoch.
fn minute_of(time: SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH).map_or(0, |since| since.as_secs() / 60)
}

fn minute_start(minute: u64) -> SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(minute * 60)
}

/// Deletes the jobs `doomed` picks, and their keys; returns how many.
fn remove(jobs: &mut Jobs, doomed: impl Fn(JobId, &Job) -> bool) -> u64 {
    remove_at_most(jobs, usize::MAX, doomed)
}

/// Removes the first `limit` jobs, by id, that `doomed` selects; returns how many.
fn remove_at_most(jobs: &mut Jobs, limit: usize, doomed: impl Fn(JobId, &Job) -> bool) -> u64 {
    let ids: Vec<JobId> =
        jobs.by_id.iter().filter(|(id, job)| doomed(**id, job)).map(|(id, _)| *id).take(limit).collect();
    for id in &ids {
        if let Some(job) = jobs.by_id.remove(id) {
            jobs.by_key.remove(&job.delivery.key);
        }
    }
    ids.len() as u64
}
