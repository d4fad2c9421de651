//! Three replicas of the `inbox` example on one PostgreSQL, under SIGKILLs, SIGSTOPs longer
//! than the lease, and immediate restarts of the server, all at once. Once the faults stop and
//! the queue drains: every delivery answered 2xx was handled, and no job is left pending,
//! running or dead. How many were handled twice is printed.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use periskope_webhook::inbox::{InboxStats, InboxStore, PostgresStore};

use crate::common::postgres::OwnCluster;
use crate::support::{self, Fault, Load, Replicas, Rng};

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

    let faults = support::schedule(&mut Rng::new(seed), KINDS.len(), duration);
    let injector = {
        let (replicas, cluster) = (Arc::clone(&replicas), Arc::clone(&cluster));
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
                            cluster.restart_immediately();
                            true
                        }
                        Err(_) => false,
                    },
                }
            })
        })
    };
    let load = Load { senders: 6, copies: COPIES, duration };
    let sent = support::send_load(replicas.urls(), load, body).await;
    let (injected, skipped) = injector.await.expect("the faults");

    // Which delivery each copy's digest belongs to; the example prints the digest of the copy
    // it stored.
    let delivery_of: HashMap<&str, usize> = sent
        .iter()
        .enumerate()
        .flat_map(|(n, delivery)| delivery.digests.iter().map(move |digest| (digest.as_str(), n)))
        .collect();
    let handled_counts = || {
        let mut counts = vec![0usize; sent.len()];
        for line in replicas.lines() {
            let digest = line.text.strip_prefix("processed message.created ").unwrap_or_else(|| {
                panic!("unexpected line {:?}", line.text);
            });
            counts[delivery_of[digest]] += 1;
        }
        counts
    };
    let acknowledged: Vec<usize> = (0..sent.len()).filter(|n| sent[*n].acknowledged).collect();

    let store = PostgresStore::connect_with(&cluster.url(), 1).await.expect("connect to the queue");
    let drained = Instant::now() + DRAIN_LIMIT;
    let mut stats: Option<InboxStats> = None;
    loop {
        let counts = handled_counts();
        let all_handled = acknowledged.iter().all(|n| counts[*n] > 0);
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

    let counts = handled_counts();
    let lost: Vec<usize> = acknowledged.iter().copied().filter(|n| counts[*n] == 0).collect();
    let handled = counts.iter().filter(|count| **count > 0).count();
    let twice: usize = counts.iter().map(|count| count.saturating_sub(1)).sum();
    let faults: Vec<String> = KINDS.iter().zip(&injected).map(|(kind, n)| format!("{n} {kind}")).collect();
    println!(
        "chaos inbox: seed {seed}, {} s, faults: {} ({skipped} skipped: their target was under a fault); \
         {} deliveries ({COPIES} copies each), {} answered 2xx, {handled} handled, {twice} handled twice",
        duration.as_secs(),
        faults.join(", "),
        sent.len(),
        acknowledged.len(),
    );
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
