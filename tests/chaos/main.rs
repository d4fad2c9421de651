//! Chaos: faults that come together, on real processes over loopback HTTP.
//!
//! - `inbox`: three replicas (`replica`: this executable serving what the `inbox` example
//!   serves, its handler logging each attempt) share one PostgreSQL, while replicas are
//!   SIGKILLed and restarted, SIGSTOPped for longer than their lease, and the server is
//!   restarted with `pg_ctl restart -m immediate`.
//! - `dedup`: two replicas of the `axum` example de-duplicate in one Redis, while replicas are
//!   SIGKILLed and restarted and Redis crashes and comes back.
//!
//! Each delivery is sent as copies to different replicas (as Periskope sends one per org
//! phone), each copy retried as a webhook sender retries. The faults are drawn from a seed:
//!
//! ```text
//! PERISKOPE_CHAOS_SECS=300 PERISKOPE_CHAOS_SEED=42 cargo test -p periskope-webhook \
//!     --all-features --test chaos -- --nocapture
//! ```
//!
//! `PERISKOPE_CHAOS_SECS` is how long the load runs (default 15 s per test), and
//! `PERISKOPE_CHAOS_SEED` replays a run (default: a random seed, printed). Each test prints a
//! summary line. Without PostgreSQL or Redis a test is skipped with the reason printed, unless
//! `PERISKOPE_REQUIRE_SERVERS=1`, under which it fails.

#[path = "../common/mod.rs"]
mod common;
mod dedup;
mod inbox;
// Only `example_binary` is used: the replicas' lines are read by `support`.
#[allow(dead_code)]
#[path = "../common/process.rs"]
mod process;
// Only the durable server is used here.
#[allow(dead_code)]
#[path = "../common/redis.rs"]
mod redis_server;
mod replica;
mod support;
