//! Two replicas of the `axum` example de-duplicating in one Redis (`REDIS_URL`), while replicas
//! are SIGKILLed and restarted and Redis crashes and comes back (its writes are on disk before
//! they are answered, so it comes back with what it had). "Handled" is counted from the
//! example's `handled <event> <digest> <outcome>` lines.
//!
//! Invariants: each kind of fault was injected; every delivery answered 2xx, `duplicate`
//! included, was handled; and a delivery is handled twice only when
//! - one of the two ran while Redis could not answer (`store_unavailable`: forwarded so as not
//!   to lose it), or
//! - the first ran on a replica that was SIGKILLed before the second ran (in flight there: its
//!   claim was never settled), at most as many per kill as requests can be in flight, or
//! - Redis crashed between the two, within [`OUTAGE_MARGIN`] of the first, so that settling
//!   the first could fail.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::redis_server::RedisServer;
use crate::support::{self, Duplicates, Explanation, Fault, Line, Load, Replicas, Rng, Run};

const REPLICAS: usize = 2;
const COPIES: usize = 2;
const SENDERS: usize = 6;
/// The replicas' claim lease in Redis (`REDIS_LEASE_MS`): how long a killed replica's claim
/// holds back the next copy.
const LEASE_MS: &str = "2000";
const KINDS: [&str; 2] = ["SIGKILL and restart of a replica", "SIGKILL and restart of Redis"];
const KILL: usize = 0;
/// Around a Redis outage, how early and how late a handled delivery may have had its settling
/// fail: the store's call timeout (1 s) and a second for a loaded machine.
const OUTAGE_MARGIN: Duration = Duration::from_secs(2);

/// Copy `copy` of delivery `n`, through org phone `copy`: the copies differ in their bytes and
/// share one de-duplication key (the message id).
fn body(n: usize, copy: usize) -> Bytes {
    Bytes::from(format!(
        r#"{{"event":"message.created","org_id":"org-chaos","org_phone":"phone-{copy}","data":{{"message_id":"chaos-{n}","chat_id":"chat-{}","org_phone":"phone-{copy}","body":"hello {n}"}}}}"#,
        n % 16
    ))
}

/// One `handled` line: which delivery, on which run of a replica, when, and with what
/// de-duplication outcome.
struct Handling {
    delivery: usize,
    line: Line,
    store_unavailable: bool,
}

/// Why a delivery was handled again.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Again {
    StoreUnavailable,
    KilledInFlight,
    AroundRedisCrash,
}

impl Explanation for Again {
    const ALL: &'static [Again] = &[Again::StoreUnavailable, Again::KilledInFlight, Again::AroundRedisCrash];

    fn description(self) -> &'static str {
        match self {
            Again::StoreUnavailable => "while Redis could not answer",
            Again::KilledInFlight => "in flight on a killed replica",
            Again::AroundRedisCrash => "settling around a Redis crash",
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_replicas_on_redis_hold_under_compound_faults() {
    let Some(redis) = RedisServer::start_durable() else { return };
    let (seed, duration) = (support::seed(), support::load_duration());
    println!("chaos dedup: seed {seed} (replay with PERISKOPE_CHAOS_SEED={seed})");
    let redis_url = redis.url();
    let redis = Arc::new(Mutex::new(redis));
    let program = crate::process::example_binary(Path::new(env!("CARGO_MANIFEST_DIR")), "axum");
    let replicas =
        Replicas::start(program, &[], &[("REDIS_URL", &redis_url), ("REDIS_LEASE_MS", LEASE_MS)], REPLICAS);

    // Each Redis outage: from its kill until it answered again.
    let outages: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let faults = support::schedule(&mut Rng::new(seed), KINDS.len(), duration);
    let injector = {
        let (replicas, redis, outages) = (Arc::clone(&replicas), Arc::clone(&redis), Arc::clone(&outages));
        tokio::task::spawn_blocking(move || {
            support::inject(&faults, KINDS.len(), |fault: Fault| {
                let mut rng = Rng::new(fault.seed);
                let slot = rng.below(REPLICAS);
                if fault.kind == KILL {
                    return replicas.kill_and_restart(slot, rng.millis(0, 500));
                }
                let Ok(mut server) = redis.try_lock() else { return false };
                server.kill();
                let down = Instant::now();
                std::thread::sleep(rng.millis(200, 1500));
                server.start_again();
                outages.lock().unwrap().push((down, Instant::now()));
                true
            })
        })
    };
    let load = Load { senders: SENDERS, copies: COPIES, duration };
    let sent = support::send_load(replicas.urls(), load, body).await;
    let (injected, skipped) = injector.await.expect("the faults");

    let delivery_of: HashMap<&str, usize> = sent
        .iter()
        .enumerate()
        .flat_map(|(n, delivery)| delivery.digests.iter().map(move |digest| (digest.as_str(), n)))
        .collect();
    let handlings = || -> Vec<Handling> {
        replicas
            .lines()
            .into_iter()
            .filter_map(|line| {
                let rest = line.text.strip_prefix("handled message.created ")?;
                let (digest, outcome) =
                    rest.split_once(' ').unwrap_or_else(|| panic!("a bad line {:?}", line.text));
                assert!(
                    matches!(outcome, "new" | "store_unavailable"),
                    "unexpected outcome in {:?}",
                    line.text
                );
                let store_unavailable = outcome == "store_unavailable";
                Some(Handling { delivery: delivery_of[digest], line, store_unavailable })
            })
            .collect()
    };
    let acknowledged: Vec<usize> = (0..sent.len()).filter(|n| sent[*n].acknowledged()).collect();
    // Each line is printed before its answer is sent; the test reads them on other threads.
    let all_read = Instant::now() + Duration::from_secs(10);
    let mut handled: Vec<Vec<Handling>> = (0..sent.len()).map(|_| Vec::new()).collect();
    loop {
        handled.iter_mut().for_each(Vec::clear);
        for handling in handlings() {
            handled[handling.delivery].push(handling);
        }
        if acknowledged.iter().all(|n| !handled[*n].is_empty()) || Instant::now() > all_read {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    handled.iter_mut().for_each(|handlings| handlings.sort_by_key(|handling| handling.line.at));

    let outages = outages.lock().unwrap().clone();
    // Redis crashed after the first handling and before the second, close enough to the
    // first that settling it could have failed.
    let crash_between = |first: Instant, then: Instant| {
        outages
            .iter()
            .any(|(down, up)| first + OUTAGE_MARGIN >= *down && first <= *up + OUTAGE_MARGIN && then >= *down)
    };
    let duplicates = Duplicates::explain(&handled, |first: &Handling, then: &Handling| {
        if first.store_unavailable || then.store_unavailable {
            Some(Again::StoreUnavailable)
        } else if replicas
            .killed_at(first.line.incarnation)
            .is_some_and(|killed| (first.line.at..=then.line.at).contains(&killed))
        {
            Some(Again::KilledInFlight)
        } else if crash_between(first.line.at, then.line.at) {
            Some(Again::AroundRedisCrash)
        } else {
            None
        }
    });
    let killed_in_flight = duplicates.count(Again::KilledInFlight);
    let run = Run {
        test: "dedup",
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

    run.assert_held();
    // A kill cuts short at most the requests in flight on that replica.
    let in_flight_bound = injected[KILL] * SENDERS * COPIES;
    assert!(
        killed_in_flight <= in_flight_bound,
        "seed {seed}: {killed_in_flight} handled again after a kill, more than {in_flight_bound} requests could \
         be in flight"
    );
}
