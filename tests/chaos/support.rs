//! What both chaos tests share: the knobs and the seeded random source, replicas of a server
//! that can be killed, paused and restarted, the load of copied and retried deliveries, the
//! schedule of faults, and the checks of what came of it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::BodyExt;
use sha2::{Digest, Sha256};
use tokio::task::JoinSet;

use crate::common::{self, HttpClient, KEY};

/// How long a replica may take to print where it listens.
const START_WAIT: Duration = Duration::from_secs(20);
/// How long a replica that cannot start (its store is down) is started again before the test
/// gives up.
const RESTART_LIMIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// Knobs and the random source

/// `PERISKOPE_CHAOS_SECS`: how long the load runs (default 15 s).
pub fn load_duration() -> Duration {
    let secs = match std::env::var("PERISKOPE_CHAOS_SECS") {
        Ok(value) => {
            value.parse().unwrap_or_else(|_| panic!("PERISKOPE_CHAOS_SECS={value:?}: a whole number"))
        }
        Err(_) => 15,
    };
    Duration::from_secs(secs)
}

/// `PERISKOPE_CHAOS_SEED`, or a random seed.
pub fn seed() -> u64 {
    match std::env::var("PERISKOPE_CHAOS_SEED") {
        Ok(value) => {
            value.parse().unwrap_or_else(|_| panic!("PERISKOPE_CHAOS_SEED={value:?}: a whole number"))
        }
        Err(_) => RandomState::new().build_hasher().finish(),
    }
}

/// SplitMix64: a whole run's faults follow from its seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound`.
    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// A duration between `low` and `high` milliseconds.
    pub fn millis(&mut self, low: u64, high: u64) -> Duration {
        Duration::from_millis(low + self.next_u64() % (high - low + 1))
    }
}

/// The first 16 hex digits of the SHA-256 of `body`: how the examples tag what they handled.
pub fn short_digest(body: &[u8]) -> String {
    Sha256::digest(body).iter().take(8).map(|byte| format!("{byte:02x}")).collect()
}

// ---------------------------------------------------------------------------------------------
// Replicas

/// One line a replica printed.
#[derive(Clone, Debug)]
pub struct Line {
    /// Which run of which replica printed it (each start is a new incarnation).
    pub incarnation: usize,
    /// When the test read it.
    pub at: Instant,
    pub text: String,
}

pub type Lines = Arc<Mutex<Vec<Line>>>;

/// One run of an example; SIGKILLed when dropped.
struct Process {
    child: Child,
    addr: SocketAddr,
    incarnation: usize,
}

impl Process {
    /// Starts `program` with `args` and `env` on a free port; `Err` when it exits (e.g. its
    /// store is down) or says nothing before it listens.
    fn start(
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        incarnation: usize,
        lines: &Lines,
    ) -> Result<Process, String> {
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(name, value)| (name, value)))
            .env("ADDR", "127.0.0.1:0")
            .env("PERISKOPE_SIGNING_KEY", KEY)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|error| format!("cannot start {}: {error}", program.display()))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (listening, addr) = mpsc::channel();
        let lines = Arc::clone(lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(text) = line else { break };
                // Within the line: a replica run by the test harness prints it after the
                // harness's `test <name> ... `.
                match text.split_once("listening on http://") {
                    Some((_, addr)) => drop(listening.send(addr.parse::<SocketAddr>().expect("an address"))),
                    None => lines.lock().unwrap().push(Line { incarnation, at: Instant::now(), text }),
                }
            }
        });
        match addr.recv_timeout(START_WAIT) {
            Ok(addr) => Ok(Process { child, addr, incarnation }),
            Err(error) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("{} did not start: {error}", program.display()))
            }
        }
    }

    fn kill(&mut self) {
        // `Child::kill` is SIGKILL, which ends a stopped process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn signal(&self, signal: &str) {
        let status =
            Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("run kill");
        assert!(status.success(), "kill {signal} failed");
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Replicas of one server, each in a slot that a load balancer sends to.
pub struct Replicas {
    program: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    slots: Vec<Mutex<Process>>,
    /// The URL of each slot's current run.
    urls: Arc<RwLock<Vec<String>>>,
    lines: Lines,
    next_incarnation: AtomicUsize,
    /// Slots under a fault right now; one is always left alone.
    faulted: AtomicUsize,
    /// Each SIGKILLed incarnation, and when.
    killed: Mutex<HashMap<usize, Instant>>,
    /// Each pause: the incarnation, from its SIGSTOP until its SIGCONT.
    paused: Mutex<Vec<(usize, Instant, Instant)>>,
}

impl Replicas {
    /// Starts `count` replicas of `program` with `args` and `env`, one after the other.
    pub fn start(program: PathBuf, args: &[&str], env: &[(&str, &str)], count: usize) -> Arc<Replicas> {
        let args: Vec<String> = args.iter().map(|arg| (*arg).to_owned()).collect();
        let env: Vec<(String, String)> =
            env.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
        let lines = Lines::default();
        let processes: Vec<Process> = (0..count)
            .map(|incarnation| {
                Process::start(&program, &args, &env, incarnation, &lines)
                    .unwrap_or_else(|error| panic!("{error}"))
            })
            .collect();
        let urls = processes.iter().map(|process| url(process.addr)).collect();
        Arc::new(Replicas {
            program,
            args,
            env,
            slots: processes.into_iter().map(Mutex::new).collect(),
            urls: Arc::new(RwLock::new(urls)),
            lines,
            next_incarnation: AtomicUsize::new(count),
            faulted: AtomicUsize::new(0),
            killed: Mutex::default(),
            paused: Mutex::default(),
        })
    }

    pub fn urls(&self) -> Arc<RwLock<Vec<String>>> {
        Arc::clone(&self.urls)
    }

    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }

    /// When `incarnation` was SIGKILLed, if it was.
    pub fn killed_at(&self, incarnation: usize) -> Option<Instant> {
        self.killed.lock().unwrap().get(&incarnation).copied()
    }

    /// Whether `incarnation` was paused at some time between `from` and `to`.
    pub fn paused_between(&self, incarnation: usize, from: Instant, to: Instant) -> bool {
        self.paused.lock().unwrap().iter().any(|(paused, stopped, continued)| {
            *paused == incarnation && *stopped <= to && *continued >= from
        })
    }

    /// SIGKILLs the replica in `preferred` (or the next one not under a fault), waits `down`,
    /// and starts it again on a new port, as many times as it takes while its store is down;
    /// `false` when every other replica is under a fault.
    pub fn kill_and_restart(&self, preferred: usize, down: Duration) -> bool {
        let Some((slot, mut process)) = self.take_one(preferred) else { return false };
        process.kill();
        self.killed.lock().unwrap().insert(process.incarnation, Instant::now());
        std::thread::sleep(down);
        let deadline = Instant::now() + RESTART_LIMIT;
        *process = loop {
            let incarnation = self.next_incarnation.fetch_add(1, Ordering::Relaxed);
            match Process::start(&self.program, &self.args, &self.env, incarnation, &self.lines) {
                Ok(started) => break started,
                Err(error) => {
                    assert!(
                        Instant::now() < deadline,
                        "a replica did not start again within {RESTART_LIMIT:?}: {error}"
                    );
                    std::thread::sleep(Duration::from_millis(200));
                }
            }
        };
        self.urls.write().unwrap()[slot] = url(process.addr);
        drop(process);
        self.faulted.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// SIGSTOPs the replica in `preferred` (or the next one not under a fault) for `pause`,
    /// then SIGCONTs it; `false` when every other replica is under a fault.
    pub fn pause(&self, preferred: usize, pause: Duration) -> bool {
        let Some((_, process)) = self.take_one(preferred) else { return false };
        process.signal("-STOP");
        let stopped = Instant::now();
        std::thread::sleep(pause);
        process.signal("-CONT");
        self.paused.lock().unwrap().push((process.incarnation, stopped, Instant::now()));
        drop(process);
        self.faulted.fetch_sub(1, Ordering::SeqCst);
        true
    }

    /// A slot for a fault, starting at `preferred`, leaving at least one replica alone.
    fn take_one(&self, preferred: usize) -> Option<(usize, MutexGuard<'_, Process>)> {
        let count = self.slots.len();
        self.faulted
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| (n + 1 < count).then_some(n + 1))
            .ok()?;
        let taken = (0..count)
            .map(|offset| (preferred + offset) % count)
            .find_map(|slot| self.slots[slot].try_lock().ok().map(|process| (slot, process)));
        if taken.is_none() {
            self.faulted.fetch_sub(1, Ordering::SeqCst);
        }
        taken
    }
}

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}{}", common::PATH)
}

// ---------------------------------------------------------------------------------------------
// The load

/// How long a sender waits for one answer (a paused replica gives none).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times a sender sends one copy before it gives up on it.
const ATTEMPTS: usize = 12;
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The shape of the load.
pub struct Load {
    /// Senders at once, each sending one delivery (all its copies) at a time.
    pub senders: usize,
    /// Copies of each delivery, the first of each sent to a different replica.
    pub copies: usize,
    /// How long senders start new deliveries.
    pub duration: Duration,
}

/// What became of one delivery.
#[derive(Clone, Debug)]
pub struct Sent {
    /// The digest of each copy's body (copies may differ, as Periskope's per-phone copies do).
    pub digests: Vec<String>,
    /// When its copies were first sent.
    pub sent_at: Instant,
    /// When the first 2xx answer to one of its copies was received.
    pub acknowledged_at: Option<Instant>,
    /// Some copy was answered `200 duplicate`.
    pub duplicate: bool,
}

impl Sent {
    /// Some copy was answered 2xx.
    pub fn acknowledged(&self) -> bool {
        self.acknowledged_at.is_some()
    }
}

/// Sends deliveries `0, 1, 2, …` (copy `c` of delivery `n` is `body(n, c)`) to the replicas
/// at `urls` for the load's duration, and returns what became of each, in order.
///
/// Each copy goes first to replica `(n + c) % replicas` and is retried as a webhook sender
/// retries: on a non-2xx answer, a broken connection or no answer within 2 s, after a backoff
/// (50 ms doubling up to 1 s), at most 12 times; a load balancer sends each retry to the next
/// replica.
pub async fn send_load(
    urls: Arc<RwLock<Vec<String>>>,
    load: Load,
    body: fn(usize, usize) -> Bytes,
) -> Vec<Sent> {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut senders = JoinSet::new();
    for _ in 0..load.senders {
        let (next, urls) = (Arc::clone(&next), Arc::clone(&urls));
        let (copies, duration) = (load.copies, load.duration);
        senders.spawn(async move {
            let client = common::client();
            let mut sent = Vec::new();
            while started.elapsed() < duration {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let bodies: Vec<Bytes> = (0..copies).map(|copy| body(n, copy)).collect();
                let mut delivery = Sent {
                    digests: bodies.iter().map(|body| short_digest(body)).collect(),
                    sent_at: Instant::now(),
                    acknowledged_at: None,
                    duplicate: false,
                };
                let mut answers = JoinSet::new();
                for (copy, body) in bodies.into_iter().enumerate() {
                    answers.spawn(send_copy(client.clone(), Arc::clone(&urls), n + copy, body));
                }
                while let Some(answer) = answers.join_next().await {
                    if let Some((code, at)) = answer.expect("a copy's sender") {
                        delivery.acknowledged_at =
                            Some(delivery.acknowledged_at.map_or(at, |first| first.min(at)));
                        delivery.duplicate |= code == "duplicate";
                    }
                }
                sent.push((n, delivery));
            }
            sent
        });
    }
    let mut sent = Vec::new();
    while let Some(deliveries) = senders.join_next().await {
        sent.extend(deliveries.expect("a sender"));
    }
    sent.sort_by_key(|(n, _)| *n);
    sent.into_iter().map(|(_, delivery)| delivery).collect()
}

/// Sends one copy until it is answered 2xx (then returns the answer's `code`, and when it was
/// received) or the attempts run out.
async fn send_copy(
    client: HttpClient,
    urls: Arc<RwLock<Vec<String>>>,
    first: usize,
    body: Bytes,
) -> Option<(String, Instant)> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 0..ATTEMPTS {
        let url = {
            let urls = urls.read().unwrap();
            urls[(first + attempt) % urls.len()].clone()
        };
        let exchange = async {
            let response = client.request(common::signed(&url, KEY, body.clone())).await.ok()?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await.ok()?.to_bytes();
            Some(common::Reply { status: parts.status, headers: parts.headers, body })
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(Some(reply)) if reply.status.is_success() => return Some((reply.code(), Instant::now())),
            _ => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Faults

/// One fault of the schedule.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    /// When it starts, from the start of the load.
    pub at: Duration,
    /// Which kind (an index into the test's kinds).
    pub kind: usize,
    /// Where its own random choices come from (a replica, a duration).
    pub seed: u64,
}

/// Faults from 1 s into the load until 1 s before its end, 0.3 to 1.5 s apart: first one of
/// each of the `kinds`, in a random order, then kinds at random.
pub fn schedule(rng: &mut Rng, kinds: usize, duration: Duration) -> Vec<Fault> {
    let mut first: Vec<usize> = (0..kinds).collect();
    for i in (1..kinds).rev() {
        first.swap(i, rng.below(i + 1));
    }
    let last = duration.saturating_sub(Duration::from_secs(1));
    let mut faults = Vec::new();
    let mut at = Duration::from_secs(1);
    while faults.len() < kinds || at <= last {
        let kind = first.get(faults.len()).copied().unwrap_or_else(|| rng.below(kinds));
        faults.push(Fault { at, kind, seed: rng.next_u64() });
        at += rng.millis(300, 1500);
    }
    faults
}

/// Starts each fault at its time on a thread of its own, so that they overlap, with `inject`
/// (which says whether it could inject it); returns how many of each kind were injected, and
/// how many were skipped because what they would hit was under a fault already.
pub fn inject(faults: &[Fault], kinds: usize, inject: impl Fn(Fault) -> bool + Sync) -> (Vec<usize>, usize) {
    let started = Instant::now();
    let injected = std::thread::scope(|scope| {
        let running: Vec<_> = faults
            .iter()
            .map(|fault| {
                std::thread::sleep((started + fault.at).saturating_duration_since(Instant::now()));
                let inject = &inject;
                (fault.kind, scope.spawn(move || inject(*fault)))
            })
            .collect();
        running.into_iter().map(|(kind, thread)| (kind, thread.join().expect("a fault"))).collect::<Vec<_>>()
    });
    let mut by_kind = vec![0; kinds];
    let mut skipped = 0;
    for (kind, done) in injected {
        if done {
            by_kind[kind] += 1;
        } else {
            skipped += 1;
        }
    }
    (by_kind, skipped)
}

// ---------------------------------------------------------------------------------------------
// What both tests check

/// The faults a test puts a delivery's second handling down to.
pub trait Explanation: Copy + Eq + Hash + 'static {
    /// Every one, in the order the summary lists them.
    const ALL: &'static [Self];

    /// How the summary counts it: `"{count} {description}"`.
    fn description(self) -> &'static str;
}

/// The deliveries handled again, by the fault that explains each handling after the first.
pub struct Duplicates<E> {
    explained: HashMap<E, usize>,
    /// A delivery for each handling that no fault explains.
    unexplained: Vec<usize>,
}

impl<E: Explanation> Duplicates<E> {
    /// Puts each handling of a delivery but its first (`handled[n]` holds delivery `n`'s, in the
    /// order they happened) down to `explain(previous, handling)`: the fault between the two,
    /// if one explains it.
    pub fn explain<H>(handled: &[Vec<H>], explain: impl Fn(&H, &H) -> Option<E>) -> Duplicates<E> {
        let mut duplicates = Duplicates { explained: HashMap::new(), unexplained: Vec::new() };
        for (n, handlings) in handled.iter().enumerate() {
            for pair in handlings.windows(2) {
                match explain(&pair[0], &pair[1]) {
                    Some(explanation) => *duplicates.explained.entry(explanation).or_default() += 1,
                    None => duplicates.unexplained.push(n),
                }
            }
        }
        duplicates
    }

    pub fn count(&self, explanation: E) -> usize {
        self.explained.get(&explanation).copied().unwrap_or(0)
    }

    pub fn unexplained(&self) -> &[usize] {
        &self.unexplained
    }
}

/// What a run did and what came of it, as both tests check it.
pub struct Run<'a, E> {
    /// `inbox` or `dedup`.
    pub test: &'static str,
    pub seed: u64,
    pub duration: Duration,
    /// The fault kinds' names, and how many of each were injected and skipped.
    pub kinds: &'a [&'static str],
    pub injected: &'a [usize],
    pub skipped: usize,
    pub copies: usize,
    pub sent: &'a [Sent],
    /// How many times each delivery was handled.
    pub handled: Vec<usize>,
    pub duplicates: Duplicates<E>,
}

impl<E: Explanation> Run<'_, E> {
    /// One line of figures for the log.
    pub fn summary(&self) -> String {
        let faults: Vec<String> =
            self.kinds.iter().zip(self.injected).map(|(kind, count)| format!("{count} {kind}")).collect();
        let acknowledged = self.sent.iter().filter(|delivery| delivery.acknowledged()).count();
        let duplicate = self.sent.iter().filter(|delivery| delivery.duplicate).count();
        let handled = self.handled.iter().filter(|count| **count > 0).count();
        let again: usize = self.handled.iter().map(|count| count.saturating_sub(1)).sum();
        let mut explained = String::new();
        for explanation in E::ALL {
            let _ =
                write!(explained, "{} {}, ", self.duplicates.count(*explanation), explanation.description());
        }
        format!(
            "chaos {}: seed {}, {} s, faults: {} ({} skipped: their target was under a fault); {} deliveries \
             ({} copies each), {acknowledged} answered 2xx ({duplicate} of them `duplicate`), {handled} \
             handled, {again} handled again ({explained}{} with no fault to explain it)",
            self.test,
            self.seed,
            self.duration.as_secs(),
            faults.join(", "),
            self.skipped,
            self.sent.len(),
            self.copies,
            self.duplicates.unexplained.len(),
        )
    }

    /// Asserts what holds under every fault: enough traffic to tell, each kind of fault
    /// injected, every delivery answered 2xx (`duplicate` included) handled, and each handling
    /// after a delivery's first explained by a fault.
    pub fn assert_held(&self) {
        let seed = self.seed;
        let acknowledged: Vec<usize> =
            (0..self.sent.len()).filter(|n| self.sent[*n].acknowledged()).collect();
        assert!(
            acknowledged.len() >= 20,
            "seed {seed}: too little traffic to test anything: {} acknowledged",
            acknowledged.len()
        );
        for (kind, count) in self.kinds.iter().zip(self.injected) {
            assert!(*count > 0, "seed {seed}: no {kind} was injected ({} faults skipped)", self.skipped);
        }
        let lost: Vec<usize> = acknowledged.into_iter().filter(|n| self.handled[*n] == 0).collect();
        let lost_duplicates = lost.iter().filter(|n| self.sent[**n].duplicate).count();
        assert!(
            lost.is_empty(),
            "seed {seed}: {} deliveries answered 2xx ({lost_duplicates} of them `duplicate`) were never handled \
             (deliveries {:?})",
            lost.len(),
            &lost[..lost.len().min(20)]
        );
        let unexplained = &self.duplicates.unexplained;
        assert!(
            unexplained.is_empty(),
            "seed {seed}: {} handlings came again with no fault between them and the one before to explain it \
             (deliveries {:?})",
            unexplained.len(),
            &unexplained[..unexplained.len().min(20)]
        );
    }
}
