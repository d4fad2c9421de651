//! The durable inbox (`periskope_webhook::inbox`) on its embedded SQLite store: the store's
//! operations, the acceptor over real HTTP on 127.0.0.1, the worker's retries, leases, ordering
//! and shutdown, bad storage, and a crash test that SIGKILLs the `inbox` example.

mod acceptor;
mod alerts;
#[path = "../common/mod.rs"]
mod common;
mod conformance;
mod console_store;
mod crash;
mod memory;
#[cfg(feature = "metrics")]
mod metrics;
mod postgres;
mod postgres_worker;
// Only `example_binary` is used: the crash test reads the example's lines itself.
#[allow(dead_code)]
#[path = "../common/process.rs"]
mod process;
mod shutdown;
mod slow_claims;
mod spans;
mod sqlite_reads;
mod store;
mod support;
mod worker;

/// Runs each case of the order and exclusion contract (`conformance.rs`) on every store, with
/// [`conformance::CLAIMERS`] instances of it.
macro_rules! conformance_cases {
    ($($case:ident),* $(,)?) => {
        mod conformance_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let store = periskope_webhook::inbox::MemoryInboxStore::new();
                    crate::conformance::$case(vec![store; crate::conformance::CLAIMERS]).await;
                }
            )*
        }
        mod conformance_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    // One writer owns a file: its instances are clones sharing it.
                    let dir = crate::support::TempDir::new(stringify!($case));
                    let store = periskope_webhook::inbox::SqliteStore::open(dir.db()).unwrap();
                    crate::conformance::$case(vec![store; crate::conformance::CLAIMERS]).await;
                }
            )*
        }
        mod conformance_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let Some(cluster) = crate::common::postgres::cluster() else { return };
                    let database = cluster.database();
                    let mut stores = Vec::new();
                    for _ in 0..crate::conformance::CLAIMERS {
                        stores.push(periskope_webhook::inbox::PostgresStore::connect(&database.url()).await.unwrap());
                    }
                    crate::conformance::$case(stores).await;
                }
            )*
        }
    };
}

conformance_cases!(
    concurrent_claimers_run_a_chat_one_job_at_a_time_in_order,
    a_retried_or_replayed_job_waits_while_its_chat_runs,
    retry_replay_and_purge_racing_claims_never_break_exclusion,
    a_late_attempt_is_fenced_off_by_its_token,
    a_renewed_lease_keeps_its_job,
    a_chat_goes_on_however_its_first_job_leaves_the_queue,
    a_run_takes_a_chats_next_jobs_and_holds_the_chat_until_it_ends,
    a_run_whose_worker_died_is_taken_over_in_order,
    concurrent_claimers_with_runs_keep_each_chat_in_order,
    a_run_holds_a_bounded_amount_of_bodies,
);
