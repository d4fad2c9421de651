//! The middleware's cost per request against the work it cannot avoid, in the same run.
//!
//! `cargo bench --bench layer`. On the same compact message.created body: the request through
//! the layer and a no-op inner service; through a layer whose filter refuses the event
//! (answered without typing its data); through a layer with closure policies; through the
//! inner service alone; HMAC-SHA256 verification of the body; decoding the body. The layer's
//! own cost is `layer - inner alone`, to be compared with `hmac + decode`.
//!
//! `cargo bench --bench layer --features metrics` adds the request through the layer with its
//! metrics recorded by the Prometheus exporter, against the plain measurement of the same run.

#[path = "support/drive.rs"]
mod drive;
#[allow(dead_code)] // The bodies are shared; this benchmark uses one of them.
mod support;

use std::convert::Infallible;
use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use http::{Request, Response};
use http_body_util::Full;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, SigningKeys, sign};
use periskope_webhook::{EventKind, IgnoredEvent, KindSet, PeriskopeWebhookLayer, Rejection, WebhookEvent};
use tower::{Layer, service_fn};

use drive::call;

const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";

fn bench_layer(c: &mut Criterion) {
    let body = Bytes::from(support::compact("message.created.envelope.json"));
    let signature = sign(&SigningKey::new(KEY).expect("non-empty"), &body);
    let request = || {
        Request::post("/webhooks/periskope")
            .header("content-type", "application/json")
            .header(SIGNATURE_HEADER, signature.as_str())
            .body(Full::new(body.clone()))
            .expect("valid request")
    };
    let noop = service_fn(|request: Request<Full<Bytes>>| async move {
        black_box(&request);
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let mut inner_alone = noop;
    let mut layered = PeriskopeWebhookLayer::new(KEY).layer(noop);
    assert_eq!(call(&mut layered, request()).status(), 200);
    let mut filtered = PeriskopeWebhookLayer::new(KEY).filter_events(KindSet::empty()).layer(noop);
    assert!(call(&mut filtered, request()).extensions().get::<IgnoredEvent>().is_some());
    // The filter and rejection policies are called through a pointer: a closure costs the same.
    let mut with_policies = PeriskopeWebhookLayer::new(KEY)
        .filter_events(|kind: EventKind| kind.is_known())
        .on_rejection(|rejection: &Rejection| rejection.status())
        .layer(noop);
    assert_eq!(call(&mut with_policies, request()).status(), 200);
    let keys = SigningKeys::new(KEY).expect("non-empty");

    let mut group = c.benchmark_group(format!("layer/message.created ({} bytes)", body.len()));
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("inner service alone", |b| b.iter(|| call(&mut inner_alone, request())));
    group.bench_function("through the layer", |b| b.iter(|| call(&mut layered, request())));
    // With the `metrics` feature the plain measurement above records into the facade's no-op
    // recorder; this one into the Prometheus exporter's, as an application would.
    #[cfg(feature = "metrics")]
    {
        let prometheus = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
        group.bench_function("through the layer, metrics recorded by Prometheus", |b| {
            metrics::with_local_recorder(&prometheus, || b.iter(|| call(&mut layered, request())))
        });
        // The same two, interleaved: batches alternate and the fastest of each counts, which is
        // steadier than one measurement after the other on a shared machine.
        let (mut plain, mut recorded) = (f64::MAX, f64::MAX);
        for _ in 0..200 {
            let start = std::time::Instant::now();
            for _ in 0..200 {
                call(&mut layered, request());
            }
            plain = plain.min(start.elapsed().as_secs_f64() / 200.0);
            let start = std::time::Instant::now();
            metrics::with_local_recorder(&prometheus, || {
                for _ in 0..200 {
                    call(&mut layered, request());
                }
            });
            recorded = recorded.min(start.elapsed().as_secs_f64() / 200.0);
        }
        println!(
            "interleaved, fastest of 200 batches: through the layer {:.2} us, with metrics recorded by \
             Prometheus {:.2} us: +{:.2} us ({:.1}%)",
            plain * 1e6,
            recorded * 1e6,
            (recorded - plain) * 1e6,
            (recorded / plain - 1.0) * 100.0
        );
    }
    group.bench_function("through the layer, kind filtered out", |b| {
        b.iter(|| call(&mut filtered, request()))
    });
    group.bench_function("through the layer, closure filter and rejection", |b| {
        b.iter(|| call(&mut with_policies, request()))
    });
    group.bench_function("hmac-sha256 verify", |b| {
        b.iter(|| keys.verify(black_box(signature.as_bytes()), black_box(&body)).expect("verifies"))
    });
    group.bench_function("decode", |b| {
        b.iter(|| WebhookEvent::decode(black_box(body.clone())).expect("decodes"))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_layer
}
criterion_main!(benches);
