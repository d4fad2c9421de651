//! Three replicas of the `inbox` example on one PostgreSQL, under SIGKILLs, SIGSTOPs longer
//! than the lease, and immediate restarts of the server, all at once. Once the faults stop and
//! the queue drains: every delivery answered 2xx was handled, and no job is left pending,
//! running or dead. How many were handled twice is printed, each with the fault that explains
//! it.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use periskope_webhook::WebhookEvent;
use periskope_webhook::dedup::{EventKeys, KeyFn};
use periskope_webhook::inbox::{InboxStats, InboxStore, JobSummary, ListQuery, PostgresStore};

use crate::common::postgres::OwnCluster;
use crate::support::{self, Fault, Line, Load, Replicas, Rng};

const REPLICAS: usize = 3;
const COPIES: usize = 2;
/// The replicas' lease (`INBOX_LEASE_MS`); each attempt may run for half of it.
const LEASE_MS: u64 = 2000;
const KINDS: [&str; 3] = ["SIGKILL and restart", "SIGSTOP past the lease", "pg_ctl restart -m immediate"];
const KILL: usize = 0;
const STOP: usize = 1;
/// How long the queue may take to drain once the faults stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Copy `copy` of delivery `n`: a `message.created` in one of 16 chats (so that per-chat
/// ordering is exercised), through org phone `copy`.
fn body(n: usize, copy: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","org_id":"org-chaos","org_phone":"phone-{copy}","data":{{"message_id":"chaos-{n}","chat_id":"chat-{}","org_phone":"phone-{copy}","body":"hello {n}"}}}}"#,
        n % 16
    ))
}

/// Why a delivery was handled again: a fault between its two handlings that explains it.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Again {
    /// The first ran on a replica SIGKILLed before the second: its job was never completed.
    Killed,
    /// One of the two ran on a replica paused in between: the first's lease ran out before it
    /// completed, or the second was a paused attempt finishing late.
    Paused,
    /// The server restarted after the first, close enough that completing it could fail.
    ServerRestart,
    /// None of the faults: an attempt that outlived its lease on a busy machine.
    Otherwise,
}

/// How long after a handling its completion may still be on its way.
const SETTLE_MARGIN: Duration = Duration::from_secs(2);

fn why_again(replicas: &Replicas, restarts: &[(Instant, Instant)], first: &Line, then: &Line) -> Again {
    let between = first.at..=then.at;
    if replicas.killed_at(first.incarnation).is_some_and(|killed| between.contains(&killed)) {
        Again::Killed
    } else if [first.incarnation, then.incarnation]
        .iter()
        .any(|incarnation| replicas.paused_between(*incarnation, first.at, then.at))
    {
        Again::Paused
    } else if restarts.iter().any(|(began, ready)| {
        first.at + SETTLE_MARGIN >= *began && first.at <= *ready + SETTLE_MARGIN && then.at >= *began
    }) {
        Again::ServerRestart
    } else {
        Again::Otherwise
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn inbox_replicas_on_postgres_hold_under_compound_faults() {
    let Some(cluster) = OwnCluster::start().map(Arc::new) else { return };
    let (seed, duration) = (support::seed(), support::load_duration());
    println!("chaos inbox: seed {seed} (replay with PERISKOPE_CHAOS_SEED={seed})");
    let program = crate::process::example_binary(Path::new(env!("CARGO_MANIFEST_DIR")), "inbox");
    let lease = LEASE_MS.to_string();
    let replicas = Replicas::start(
        program,
        &[("PERISKOPE_INBOX", &cluster.url()), ("INBOX_LEASE_MS", &lease), ("HANDLER_DELAY_MS", "5")],
        REPLICAS,
    );

    // Each restart of the server: from `pg_ctl restart` until it accepted connections again.
    let restarts: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let faults = support::schedule(&mut Rng::new(seed), KINDS.len(), duration);
    let injector = {
        let (replicas, cluster) = (Arc::clone(&replicas), Arc::clone(&cluster));
        let restarts = Arc::clone(&restarts);
        // One restart at a time.
        let restarting = Mutex::new(());
        tokio::task::spawn_blocking(move || {
            support::inject(&faults, KINDS.len(), |fault: Fault| {
                let mut rng = Rng::new(fault.seed);
                let slot = rng.below(REPLICAS);
                match fault.kind {
                    KILL => replicas.kill_and_restart(slot, rng.millis(0, 500)),
                    STOP => replicas.pause(slot, rng.millis(LEASE_MS + 500, LEASE_MS + 1500)),
                    _ => match restarting.try_lock() {
                        Ok(_restarting) => {
                            let began = Instant::now();
                            cluster.restart_immediately();
                            restarts.lock().unwrap().push((began, Instant::now()));
                            true
                        }
                        Err(_) => false,
                    },
                }
            })
        })
    };
    let load = Load { senders: 6, copies: COPIES, duration };
    let started = Instant::now();
    let sent = support::send_load(replicas.urls(), load, body).await;
    let (injected, skipped) = injector.await.expect("the faults");

    // Which delivery each copy's digest belongs to; the example prints the digest of the copy
    // it stored.
    let delivery_of: HashMap<&str, usize> = sent
        .iter()
        .enumerate()
        .flat_map(|(n, delivery)| delivery.digests.iter().map(move |digest| (digest.as_str(), n)))
        .collect();
    // Each delivery's handlings, in the order they were printed.
    let handled = || {
        let mut handled: Vec<Vec<Line>> = (0..sent.len()).map(|_| Vec::new()).collect();
        for line in replicas.lines() {
            let digest = line.text.strip_prefix("processed message.created ").unwrap_or_else(|| {
                panic!("unexpected line {:?}", line.text);
            });
            handled[delivery_of[digest]].push(line);
        }
        handled.iter_mut().for_each(|lines| lines.sort_by_key(|line| line.at));
        handled
    };
    let acknowledged: Vec<usize> = (0..sent.len()).filter(|n| sent[*n].acknowledged).collect();

    let store = PostgresStore::connect_with(&cluster.url(), 1).await.expect("connect to the queue");
    let drained = Instant::now() + DRAIN_LIMIT;
    let mut stats: Option<InboxStats> = None;
    loop {
        let handled = handled();
        let all_handled = acknowledged.iter().all(|n| !handled[*n].is_empty());
        // A connection the restarts broke is opened again by the next call.
        if let Ok(now) = store.stats(SystemTime::now()).await {
            let idle = now.pending == 0 && now.running == 0;
            stats = Some(now);
            if idle && all_handled {
                break;
            }
        }
        if Instant::now() > drained {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let handled = handled();
    let lost: Vec<usize> = acknowledged.iter().copied().filter(|n| handled[*n].is_empty()).collect();
    let handled_count = handled.iter().filter(|lines| !lines.is_empty()).count();
    let restarts = restarts.lock().unwrap().clone();
    let mut again: HashMap<Again, usize> = HashMap::new();
    let mut unexplained = Vec::new();
    for (n, lines) in handled.iter().enumerate() {
        for pair in lines.windows(2) {
            let why = why_again(&replicas, &restarts, &pair[0], &pair[1]);
            if why == Again::Otherwise {
                unexplained.push((n, pair[0].clone(), pair[1].clone()));
            }
            *again.entry(why).or_default() += 1;
        }
    }
    let twice: usize = again.values().sum();
    let count = |why| again.get(&why).copied().unwrap_or(0);
    let faults: Vec<String> = KINDS.iter().zip(&injected).map(|(kind, n)| format!("{n} {kind}")).collect();
    println!(
        "chaos inbox: seed {seed}, {} s, faults: {} ({skipped} skipped: their target was under a fault); \
         {} deliveries ({COPIES} copies each), {} answered 2xx, {handled_count} handled, {twice} handled twice \
         ({} by a replica killed before settling, {} around a pause, {} around a server restart, {} otherwise)",
        duration.as_secs(),
        faults.join(", "),
        sent.len(),
        acknowledged.len(),
        count(Again::Killed),
        count(Again::Paused),
        count(Again::ServerRestart),
        count(Again::Otherwise),
    );
    if !unexplained.is_empty() {
        let jobs = store.list(ListQuery::new(None, sent.len() + 100)).await.expect("list the jobs");
        let job_of: HashMap<&str, &JobSummary> = jobs.iter().map(|job| (job.key.as_str(), job)).collect();
        for (n, first, then) in &unexplained {
            let event = WebhookEvent::decode(body(*n, 0)).expect("a delivery");
            let job = job_of.get(EventKeys::default().key(&event).as_str());
            println!(
                "chaos inbox: delivery {n} handled by run {} at {:?} and by run {} at {:?} after the start; \
                 its job: {:?} attempts, last error {:?}",
                first.incarnation,
                first.at - started,
                then.incarnation,
                then.at - started,
                job.map(|job| job.attempts),
                job.and_then(|job| job.last_error.as_deref()),
            );
        }
    }
    let stats = stats.expect("the queue's counts");
    println!("chaos inbox: the queue at the end: {stats:?}");

    assert!(
        acknowledged.len() >= 20,
        "too little traffic to test anything: {} acknowledged",
        acknowledged.len()
    );
    assert!(
        lost.is_empty(),
        "seed {seed}: {} deliveries answered 2xx were never handled (deliveries {:?})",
        lost.len(),
        &lost[..lost.len().min(20)]
    );
    assert_eq!(
        (stats.pending, stats.running, stats.dead),
        (0, 0, 0),
        "seed {seed}: jobs left pending, running or dead {DRAIN_LIMIT:?} after the faults stopped"
    );
}
