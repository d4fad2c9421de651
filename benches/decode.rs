//! Typed decode against `serde_json::Value` on the same bytes, in the same run.
//!
//! `cargo bench --bench decode`. The typed side is what the middleware does per request:
//! `WebhookEvent::decode` (UTF-8 check, one-pass typed decode, the owned handle).

mod support;

use std::hint::black_box;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use periskope_webhook::drift::Drift;
use periskope_webhook::event::{Event, WebhookEvent};

/// A group chat.created with `members` members, built from the chat fixture's member shape.
fn large_group_chat(members: usize) -> Vec<u8> {
    let mut members_map = serde_json::Map::new();
    for i in 0..members {
        let id = format!("91{:010}@c.us", 9_000_000_000u64 + i as u64);
        members_map.insert(
            id.clone(),
            serde_json::json!({
                "org_id": "2997dd64-89bf-48d3-9a22-b314fca017e5",
                "chat_id": "120363297269676566@g.us",
                "is_admin": i % 50 == 0,
                "org_phone": "918527184400@c.us",
                "contact_id": id,
                "is_internal": false,
                "contact_name": format!("Member {i}"),
                "contact_color": "#B4876E",
                "contact_image": format!("https://storage.googleapis.com/periskope-images/2997dd64-89bf-48d3-9a22-b314fca017e5%2F{id}.jpg?timestamp=1737689973340"),
                "is_super_admin": false
            }),
        );
    }
    let body = serde_json::json!({
        "event": "chat.created",
        "data": {
            "org_id": "2997dd64-89bf-48d3-9a22-b314fca017e5",
            "chat_id": "120363297269676566@g.us",
            "members": members_map,
            "is_muted": false,
            "chat_name": "Large group",
            "chat_type": "group",
            "org_phone": "918527184400@c.us",
            "created_at": "2025-01-18T14:51:03+00:00",
            "updated_at": "2025-01-27T11:08:10.696758+00:00",
            "member_count": members
        },
        "org_id": "2997dd64-89bf-48d3-9a22-b314fca017e5",
        "timestamp": "2025-01-20T07:51:48.209+00:00"
    });
    serde_json::to_vec(&body).expect("serialises")
}

fn bench_decode(c: &mut Criterion) {
    let bodies = [
        ("message.created", support::compact("message.created.envelope.json")),
        ("ticket.created", support::compact("ticket.created.envelope.json")),
        ("reaction.created", support::compact("reaction.created.envelope.json")),
        ("chat.created/1500-members", large_group_chat(1500)),
    ];
    for (name, body) in bodies {
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
    let bodies = [
        ("message.created", support::compact("message.created.envelope.json")),
        ("ticket.created", support::compact("ticket.created.envelope.json")),
        ("reaction.created", support::compact("reaction.created.envelope.json")),
        ("chat.created/1500-members", large_group_chat(1500)),
    ];
    println!("interleaved, fastest of 100 batches: body, Value, WebhookEvent::decode, ratio");
    for (name, body) in bodies {
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
        println!("{name}: {:.2} us, {:.2} us, {:.2}x", value * 1e6, typed * 1e6, value / typed);
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).warm_up_time(std::time::Duration::from_millis(500)).measurement_time(std::time::Duration::from_secs(2));
    targets = bench_decode, bench_drift, interleaved_ratios
}
criterion_main!(benches);
