//! Three replicas (this executable started as servers: see `replica`) on one PostgreSQL queue,
//! under SIGKILLs, SIGSTOPs longer than the lease, and immediate restarts of the server, all at
//! once. Once the faults stop and the queue drains:
//! - each kind of fault was injected;
//! - every delivery answered 2xx was handled, and no job is left pending, running or dead;
//! - a delivery handled again has a fault between its two handlings that explains it;
//! - a chat's deliveries ran in the order they were acknowledged: when one was acknowledged
//!   before another of its chat was sent, its handler started first.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use periskope_webhook::WebhookEvent;
use periskope_webhook::dedup::{EventKeys, KeyFn};
use periskope_webhook::inbox::{InboxStats, InboxStore, JobSummary, ListQuery, PostgresStore};

use crate::common::postgres::OwnCluster;
use crate::replica::{self, AttemptLine, Edge};
use crate::support::{self, Duplicates, Explanation, Fault, Load, Replicas, Rng, Run, Sent};

const REPLICAS: usize = 3;
const COPIES: usize = 2;
/// The replicas' lease: the shortest a worker takes, so that the pauses below outlast it.
const LEASE_MS: u64 = 3000;
/// How long the handler works on each job.
const HANDLER_MS: &str = "5";
/// The deliveries go to this many chats, in turn.
const CHATS: usize = 16;
const KINDS: [&str; 3] = ["SIGKILL and restart", "SIGSTOP past the lease", "pg_ctl restart -m immediate"];
const KILL: usize = 0;
const STOP: usize = 1;
/// How long the queue may take to drain once the faults stopped.
const DRAIN_LIMIT: Duration = Duration::from_secs(90);

/// Copy `copy` of delivery `n`: a `message.created` in chat `n % CHATS`, through org phone
/// `copy`.
fn body(n: usize, copy: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","org_id":"org-chaos","org_phone":"phone-{copy}","data":{{"message_id":"chaos-{n}","chat_id":"chat-{}","org_phone":"phone-{copy}","body":"hello {n}"}}}}"#,
        n % CHATS
    ))
}

/// One call of a replica's handler: an attempt at a job, from its lines.
struct HandlerCall {
    /// Which run of which replica made it.
    incarnation: usize,
    delivery: usize,
    started: AttemptLine,
    /// Its last line, and when the test read it; `None` while it runs, or when its replica was
    /// killed first.
    ended: Option<(AttemptLine, Instant)>,
}

impl HandlerCall {
    /// When the test read the line saying the handler returned, if it did.
    fn returned(&self) -> Option<Instant> {
        self.ended.as_ref().filter(|(line, _)| line.edge == Edge::Returned).map(|(_, read)| *read)
    }
}

/// Every handler call the replicas printed, in the order each replica made them.
fn handler_calls(replicas: &Replicas) -> Vec<HandlerCall> {
    let mut calls = Vec::new();
    let mut index: HashMap<(usize, u64), usize> = HashMap::new();
    for line in replicas.lines() {
        // The rest is the test harness's own output.
        let Some(attempt) = AttemptLine::parse(&line.text) else { continue };
        let key = (line.incarnation, attempt.call);
        if attempt.edge == Edge::Started {
            let delivery = attempt.message.strip_prefix("chaos-").and_then(|n| n.parse().ok());
            let delivery = delivery.unwrap_or_else(|| panic!("not a delivery of this test: {:?}", line.text));
            index.insert(key, calls.len());
            calls.push(HandlerCall {
                incarnation: line.incarnation,
                delivery,
                started: attempt,
                ended: None,
            });
        } else {
            let call = index.get(&key).unwrap_or_else(|| panic!("an end without a start: {:?}", line.text));
            calls[*call].ended = Some((attempt, line.at));
        }
    }
    calls
}

/// Each delivery's handler calls that returned, in the order the test read their lines.
fn handlings(calls: &[HandlerCall], deliveries: usize) -> Vec<Vec<&HandlerCall>> {
    let mut handled: Vec<Vec<&HandlerCall>> = (0..deliveries).map(|_| Vec::new()).collect();
    for call in calls.iter().filter(|call| call.returned().is_some()) {
        handled[call.delivery].push(call);
    }
    handled.iter_mut().for_each(|calls| calls.sort_by_key(|call| call.returned()));
    handled
}

/// Pairs of handler calls of one chat, of different jobs, that ran at once although the store
/// accepted both: each returned under the fencing token that settled its job (`settled_by`:
/// each job's final claim counter). A paused attempt whose lease ran out overlaps the next one
/// as expected, and is refused when it settles, so it is not counted.
fn overlapping<'a>(
    calls: &'a [HandlerCall],
    settled_by: &HashMap<i64, u64>,
) -> Vec<(&'a HandlerCall, &'a HandlerCall)> {
    let accepted: Vec<&HandlerCall> = calls
        .iter()
        .filter(|call| {
            call.returned().is_some() && settled_by.get(&call.started.job) == Some(&call.started.token)
        })
        .collect();
    let mut by_chat: HashMap<&str, Vec<&HandlerCall>> = HashMap::new();
    for call in accepted {
        by_chat.entry(call.started.chat.as_str()).or_default().push(call);
    }
    let mut overlaps = Vec::new();
    for calls in by_chat.values_mut() {
        calls.sort_by_key(|call| call.started.at);
        for pair in calls.windows(2) {
            let ended = pair[0].ended.as_ref().map(|(line, _)| line.at).expect("a call that returned");
            if pair[1].started.at < ended && pair[0].started.job != pair[1].started.job {
                overlaps.push((pair[0], pair[1]));
            }
        }
    }
    overlaps
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
}

impl Explanation for Again {
    const ALL: &'static [Again] = &[Again::Killed, Again::Paused, Again::ServerRestart];

    fn description(self) -> &'static str {
        match self {
            Again::Killed => "by a replica killed before settling",
            Again::Paused => "around a pause",
            Again::ServerRestart => "around a server restart",
        }
    }
}

/// How long after a handling its completion may still be on its way.
const SETTLE_MARGIN: Duration = Duration::from_secs(2);

fn why_again(
    replicas: &Replicas,
    restarts: &[(Instant, Instant)],
    first: &HandlerCall,
    then: &HandlerCall,
) -> Option<Again> {
    let (first_at, then_at) = (first.returned()?, then.returned()?);
    if replicas.killed_at(first.incarnation).is_some_and(|killed| (first_at..=then_at).contains(&killed)) {
        Some(Again::Killed)
    } else if [first.incarnation, then.incarnation]
        .iter()
        .any(|incarnation| replicas.paused_between(*incarnation, first_at, then_at))
    {
        Some(Again::Paused)
    } else if restarts.iter().any(|(began, ready)| {
        first_at + SETTLE_MARGIN >= *began && first_at <= *ready + SETTLE_MARGIN && then_at >= *began
    }) {
        Some(Again::ServerRestart)
    } else {
        None
    }
}

/// Pairs of deliveries `(a, b)` of one chat where `a` was acknowledged before `b` was sent, both
/// handlers started, and `b`'s started first (`started[n]`: when delivery `n`'s handler first
/// started); and how many such pairs there were in all, in order or not.
fn out_of_order(sent: &[Sent], started: &[Option<Duration>]) -> (usize, Vec<(usize, usize)>) {
    let (mut pairs, mut reversed) = (0, Vec::new());
    for (b, b_started) in started.iter().enumerate() {
        let Some(b_started) = b_started else { continue };
        for a in (b % CHATS..sent.len()).step_by(CHATS) {
            let (Some(acknowledged), Some(a_started)) = (sent[a].acknowledged_at, started[a]) else {
                continue;
            };
            if acknowledged < sent[b].sent_at {
                pairs += 1;
                if a_started >= *b_started {
                    reversed.push((a, b));
                }
            }
        }
    }
    (pairs, reversed)
}

#[tokio::test(flavor = "multi_thread")]
async fn inbox_replicas_on_postgres_hold_under_compound_faults() {
    let Some(cluster) = OwnCluster::start().map(Arc::new) else { return };
    let (seed, duration) = (support::seed(), support::load_duration());
    println!("chaos inbox: seed {seed} (replay with PERISKOPE_CHAOS_SEED={seed})");
    let program = std::env::current_exe().expect("the test executable");
    let lease = LEASE_MS.to_string();
    let replicas = Replicas::start(
        program,
        &replica::ARGS,
        &[
            (replica::DATABASE, &cluster.url()),
            (replica::LEASE_MS, &lease),
            (replica::HANDLER_MS, HANDLER_MS),
        ],
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
    let acknowledged: Vec<usize> = (0..sent.len()).filter(|n| sent[*n].acknowledged()).collect();

    let store = PostgresStore::connect_with(&cluster.url(), 1).await.expect("connect to the queue");
    let drained = Instant::now() + DRAIN_LIMIT;
    let mut stats: Option<InboxStats> = None;
    loop {
        let calls = handler_calls(&replicas);
        let handled = handlings(&calls, sent.len());
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

    let calls = handler_calls(&replicas);
    let handled = handlings(&calls, sent.len());
    let restarts = restarts.lock().unwrap().clone();
    let duplicates = Duplicates::explain(&handled, |first: &&HandlerCall, then| {
        why_again(&replicas, &restarts, first, then)
    });
    let mut first_started: Vec<Option<Duration>> = vec![None; sent.len()];
    for call in &calls {
        let first = &mut first_started[call.delivery];
        *first = Some(first.map_or(call.started.at, |at| at.min(call.started.at)));
    }
    let (pairs, reversed) = out_of_order(&sent, &first_started);
    let (database, connection) =
        tokio_postgres::connect(&cluster.url(), tokio_postgres::NoTls).await.expect("connect to the queue");
    tokio::spawn(connection);
    let settled_by: HashMap<i64, u64> = database
        .query("SELECT id, claims FROM periskope_inbox_jobs WHERE state = 'done'", &[])
        .await
        .expect("the jobs' claim counters")
        .iter()
        .map(|row| (row.get::<_, i64>(0), row.get::<_, i64>(1).unsigned_abs()))
        .collect();
    let overlaps = overlapping(&calls, &settled_by);
    println!(
        "chaos inbox: {} jobs settled by the attempt that handled them; {} pairs of one chat's ran at once",
        settled_by.len(),
        overlaps.len()
    );
    let run = Run {
        test: "inbox",
        seed,
        duration,
        kinds: &KINDS,
        injected: &injected,
        skipped,
        copies: COPIES,
        sent: &sent,
        handled: handled.iter().map(Vec::len).collect(),
        duplicates,
    };
    println!("{}", run.summary());
    println!(
        "chaos inbox: {pairs} pairs of a chat's deliveries, one acknowledged before the other was sent; {} of \
         them started in the other order",
        reversed.len()
    );
    if !run.duplicates.unexplained().is_empty() {
        let jobs = store.list(ListQuery::new(None, sent.len() + 100)).await.expect("list the jobs");
        let job_of: HashMap<&str, &JobSummary> = jobs.iter().map(|job| (job.key.as_str(), job)).collect();
        for n in run.duplicates.unexplained() {
            let event = WebhookEvent::decode(body(*n, 0)).expect("a delivery");
            let job = job_of.get(EventKeys::default().key(&event).as_str());
            let handlings: Vec<String> = handled[*n]
                .iter()
                .map(|call| {
                    let at = call.returned().expect("a handling returned") - started;
                    format!("run {} (attempt {}) at {at:?}", call.incarnation, call.started.number)
                })
                .collect();
            println!(
                "chaos inbox: delivery {n} handled by {} after the start; its job: {:?} attempts, last error {:?}",
                handlings.join(", "),
                job.map(|job| job.attempts),
                job.and_then(|job| job.last_error.as_deref()),
            );
        }
    }
    let stats = stats.expect("the queue's counts");
    println!("chaos inbox: the queue at the end: {stats:?}");

    run.assert_held();
    assert_eq!(
        (stats.pending, stats.running, stats.dead),
        (0, 0, 0),
        "seed {seed}: jobs left pending, running or dead {DRAIN_LIMIT:?} after the faults stopped"
    );
    assert!(pairs > 0, "seed {seed}: no pair of a chat's deliveries to check the order on");
    assert!(!settled_by.is_empty(), "seed {seed}: no handled job to check exclusion on");
    let report_overlaps: Vec<String> =
        overlaps.iter().take(10).map(|(a, b)| format!("{} and {}", a.started, b.started)).collect();
    assert!(
        overlaps.is_empty(),
        "seed {seed}: {} pairs of one chat's accepted attempts ran at once: {}",
        overlaps.len(),
        report_overlaps.join("; ")
    );
    let report: Vec<String> = reversed
        .iter()
        .take(20)
        .map(|(a, b)| {
            let acknowledged = sent[*a].acknowledged_at.expect("acknowledged") - started;
            let lag = first_started[*a].expect("started") - first_started[*b].expect("started");
            format!(
                "delivery {a}, acknowledged at {acknowledged:?}, started {lag:?} after delivery {b}, sent at {:?}",
                sent[*b].sent_at - started
            )
        })
        .collect();
    assert!(
        reversed.is_empty(),
        "seed {seed}: {} of {pairs} pairs of a chat's deliveries started out of the order they were \
         acknowledged in: {}",
        reversed.len(),
        report.join("; ")
    );
}
