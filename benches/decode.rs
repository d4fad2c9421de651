//! Typed decode against `serde_json::Value` on the same bytes, in the same run.
//!
//! `cargo bench --bench decode`. The typed side is what the middleware does per request:
//! `WebhookEvent::decode` (UTF-8 check, one-pass typed decode, the owned handle).

#[allow(dead_code)] // The bodies are shared; this benchmark builds them all at once.
mod support;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use periskope_webhook::drift::Drift;
use periskope_webhook::event::{Event, WebhookEvent};

fn bench_decode(c: &mut Criterion) {
    for (name, body) in support::bodies() {
        let shared = Bytes::from(body);
        println!("{name}: {} bytes", shared.len());
        assert!(WebhookEvent::decode(shared.clone()).expect("decodes").event().is_typed());
        let mut group = c.benchmark_group(format!("decode/{name}"));
        group.throughput(Throughput::Bytes(shared.len() as u64));
        group.bench_function("serde_json::Value", |b| {
            b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(&shared)).expect("parses"))
        });
        group.bench_function("WebhookEvent::decode", |b| {
            b.iter(|| WebhookEvent::decode(black_box(shared.clone())).expect("decodes"))
        });
        group.bench_function("Event::from_slice", |b| {
            b.iter(|| drop(Event::from_slice(black_box(&shared)).expect("decodes")))
        });
        group.finish();
    }
}

/// Drift reporting is a separate pass: off, decoding is exactly the code above; on, it adds
/// one tracked decode. Both measured on the same body in the same run.
fn bench_drift(c: &mut Criterion) {
    let shared = Bytes::from(support::compact("message.created.envelope.json"));
    let mut group = c.benchmark_group("drift/message.created");
    group.throughput(Throughput::Bytes(shared.len() as u64));
    group.bench_function("decode, drift off", |b| {
        b.iter(|| WebhookEvent::decode(black_box(shared.clone())).expect("decodes"))
    });
    group.bench_function("decode, drift on", |b| {
        b.iter(|| {
            let event = WebhookEvent::decode(black_box(shared.clone())).expect("decodes");
            (Drift::detect(&event), event)
        })
    });
    group.finish();
}

/// The same comparison, interleaved: batches of `Value` and typed decodes alternate, and the
/// fastest batch of each counts. On a shared machine whose speed drifts during a run, this
/// ratio is steadier than criterion's, which measures one function after the other.
fn interleaved_ratios(_: &mut Criterion) {
    // Only when measuring (`cargo bench`), and not when profiling one function
    // (`--profile-time`, e.g. under callgrind).
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|arg| arg == "--bench") || args.iter().any(|arg| arg == "--profile-time") {
        return;
    }
    println!("interleaved, fastest of 100 batches: body, bytes, Value, WebhookEvent::decode, ratio");
    for (name, body) in support::bodies() {
        let shared = Bytes::from(body);
        let batch = (200_000 / shared.len()).clamp(2, 200);
        let (mut value, mut typed) = (f64::MAX, f64::MAX);
        for _ in 0..100 {
            let start = std::time::Instant::now();
            for _ in 0..batch {
                black_box(serde_json::from_slice::<serde_json::Value>(black_box(&shared)).expect("parses"));
            }
            value = value.min(start.elapsed().as_secs_f64() / batch as f64);
            let start = std::time::Instant::now();
            for _ in 0..batch {
                black_box(WebhookEvent::decode(black_box(shared.clone())).expect("decodes"));
            }
            typed = typed.min(start.elapsed().as_secs_f64() / batch as f64);
        }
        let megabytes_per_second = |seconds: f64| shared.len() as f64 / seconds / 1e6;
        println!(
            "{name}: {} B, {:.2} us ({:.0} MB/s), {:.2} us ({:.0} MB/s), {:.2}x",
            shared.len(),
            value * 1e6,
            megabytes_per_second(value),
            typed * 1e6,
            megabytes_per_second(typed),
            value / typed
        );
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_decode, bench_drift, interleaved_ratios
}
criterion_main!(benches);
