//! De-duplication cost per delivery: one claim plus its settlement, in the same run.
//!
//! `cargo bench --bench dedup`. `MemoryStore` driven by one task, and by 64 concurrent tasks
//! on a two-thread runtime (the per-delivery time should stay within 2x of one task's); then
//! `RedisStore` on a `redis-server` the bench starts on 127.0.0.1 (skipped, with a note,
//! when `redis-server` is not installed), by one task and by 64.

#[allow(dead_code)] // Only `complete`: the memory store answers at once.
#[path = "support/drive.rs"]
mod drive;
#[allow(dead_code)]
#[path = "../tests/common/redis.rs"]
mod redis_server;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use drive::complete;
use periskope_webhook::dedup::{Claim, DedupKey, DedupStore, Lease, MemoryStore, RedisStore};
use redis_server::RedisServer;
use tokio::runtime::Runtime;

const TASKS: u64 = 64;

/// A key no earlier iteration used, as a new delivery's would be.
fn next_key(counter: &AtomicU64) -> DedupKey {
    DedupKey::new(format!("message.created|{}", counter.fetch_add(1, Ordering::Relaxed)))
}

async fn deliver<St: DedupStore>(store: &St, counter: &AtomicU64) {
    match store.claim(&next_key(counter)).await {
        Ok(Claim::New(lease)) => lease.settle(true).await.expect("settled"),
        _ => panic!("a new key is claimed"),
    }
}

/// `iterations` deliveries spread over [`TASKS`] tasks on `runtime`; the wall time.
fn concurrent<St>(runtime: &Runtime, store: &St, counter: &Arc<AtomicU64>, iterations: u64) -> Duration
where
    St: DedupStore + Send + Sync + 'static,
    St::ClaimFuture: Send,
    St::Lease: Send,
    <St::Lease as Lease>::SettleFuture: Send,
{
    let started = Instant::now();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (store, counter) = (store.clone(), counter.clone());
                let share = iterations / TASKS + u64::from(task < iterations % TASKS);
                tokio::spawn(async move {
                    for _ in 0..share {
                        deliver(&store, &counter).await;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("the task finishes");
        }
    });
    started.elapsed()
}

fn bench_dedup(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let counter = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("claim+settle");
    group.throughput(Throughput::Elements(1));

    let memory = MemoryStore::new(100_000, Duration::from_secs(24 * 60 * 60));
    group.bench_function("memory, 1 task", |b| {
        b.iter(|| match complete(memory.claim(&next_key(&counter))) {
            Ok(Claim::New(lease)) => complete(lease.settle(true)).expect("settled"),
            _ => panic!("a new key is claimed"),
        })
    });
    group.bench_function("memory, 64 tasks", |b| {
        b.iter_custom(|iterations| concurrent(&runtime, &memory, &counter, iterations))
    });

    match RedisServer::start() {
        None => eprintln!("redis-server not installed: the RedisStore rows are skipped"),
        Some(server) => {
            let redis = runtime.block_on(RedisStore::connect(&server.url())).expect("connect");
            group.bench_function("redis loopback, 1 task", |b| {
                b.iter_custom(|iterations| {
                    let started = Instant::now();
                    runtime.block_on(async {
                        for _ in 0..iterations {
                            deliver(&redis, &counter).await;
                        }
                    });
                    started.elapsed()
                })
            });
            group.bench_function("redis loopback, 64 tasks", |b| {
                b.iter_custom(|iterations| concurrent(&runtime, &redis, &counter, iterations))
            });
            drop(server);
        }
    }
    group.finish();
}

criterion_group!(benches, bench_dedup);
criterion_main!(benches);
