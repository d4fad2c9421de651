//! The durable inbox (`periskope_webhook::inbox`) on its embedded SQLite store: the store's
//! operations, the acceptor over real HTTP on 127.0.0.1, the worker's retries, leases, ordering
//! and shutdown, bad storage, and a crash test that SIGKILLs the `inbox` example.

mod acceptor;
#[path = "../common/mod.rs"]
mod common;
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
mod sqlite_reads;
mod store;
mod support;
mod worker;
