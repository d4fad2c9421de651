//! The `metrics` feature: what the layer records, counted by `metrics-util`'s debugging
//! recorder, matches what was sent: each delivery by kind and outcome, each rejection by code,
//! and one histogram entry per answer, body read, verification and decode.
#![cfg(feature = "metrics")]

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use periskope_webhook::dedup::{Dedup, MemoryStore};
use periskope_webhook::metrics::{
    BODY_BYTES, DECODE_SECONDS, DELIVERIES_TOTAL, REJECTIONS_TOTAL, RESPONSE_SECONDS, VERIFY_SECONDS,
};
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};
use periskope_webhook::{EventKind, PeriskopeWebhookLayer, WebhookEvent};
use tower::{Layer, ServiceExt, service_fn};

const KEY: &str = "peri_metrics-test-0000-4000-8000-000000000000";

/// Every delivery fixture, compact (as Periskope sends it), with its kind.
fn deliveries() -> Vec<(EventKind, Bytes)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/deliveries");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.ends_with(".envelope.json") || name.starts_with("field-observed.")
        })
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let pretty: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let body = Bytes::from(serde_json::to_vec(&pretty).unwrap());
            (WebhookEvent::decode(body.clone()).unwrap().kind(), body)
        })
        .collect()
}

fn signed(body: &Bytes, key: &str) -> Request<Full<Bytes>> {
    Request::post("/webhooks/periskope")
        .header(SIGNATURE_HEADER, sign(&SigningKey::new(key).unwrap(), body))
        .body(Full::new(body.clone()))
        .unwrap()
}

/// A metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// Counter values by series, and the number of entries of each histogram.
fn read(snapshotter: &Snapshotter) -> (BTreeMap<Series, u64>, BTreeMap<String, usize>) {
    let (mut counters, mut histograms) = (BTreeMap::new(), BTreeMap::new());
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        let mut labels: Vec<(String, String)> =
            key.labels().map(|label| (label.key().to_owned(), label.value().to_owned())).collect();
        labels.sort();
        match value {
            DebugValue::Counter(count) => {
                counters.insert((key.name().to_owned(), labels), count);
            }
            DebugValue::Histogram(values) => {
                *histograms.entry(key.name().to_owned()).or_default() += values.len();
            }
            DebugValue::Gauge(_) => {}
        }
    }
    (counters, histograms)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<_> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    labels.sort();
    labels
}

#[test]
fn counts_match_what_was_sent() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();

    let deliveries = deliveries();
    let statuses = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let handler = service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
            });
            let store = MemoryStore::new(1_000, Duration::from_secs(60));
            let service = PeriskopeWebhookLayer::new(KEY)
                .filter_events(|kind: EventKind| kind != EventKind::OrgPhoneQr)
                .deduplicate(Dedup::new(store))
                .layer(handler);
            let mut statuses = Vec::new();
            let mut send = async |request: Request<Full<Bytes>>| {
                statuses.push(service.clone().oneshot(request).await.unwrap().status());
            };
            for (_, body) in &deliveries {
                send(signed(body, KEY)).await;
            }
            // Once more: answered by de-duplication.
            send(signed(&deliveries[0].1, KEY)).await;
            // Refused: a forged signature (twice), none, a GET, signed but not JSON.
            send(signed(&deliveries[0].1, "peri_not-the-key")).await;
            send(signed(&deliveries[1].1, "peri_not-the-key")).await;
            send(Request::post("/").body(Full::new(deliveries[0].1.clone())).unwrap()).await;
            send(Request::get("/").body(Full::<Bytes>::default()).unwrap()).await;
            send(signed(&Bytes::from_static(b"{not json"), KEY)).await;
            statuses
        })
    });
    let n = deliveries.len();
    assert!(statuses[..=n].iter().all(|status| *status == StatusCode::OK), "{statuses:?}");

    let mut expected = BTreeMap::new();
    for (kind, _) in &deliveries {
        let outcome = if *kind == EventKind::OrgPhoneQr { "ignored" } else { "handled" };
        *expected
            .entry((DELIVERIES_TOTAL.to_owned(), labels(&[("kind", kind.as_str()), ("outcome", outcome)])))
            .or_default() += 1;
    }
    let first = deliveries[0].0.as_str();
    expected.insert((DELIVERIES_TOTAL.to_owned(), labels(&[("kind", first), ("outcome", "duplicate")])), 1);
    for (code, count) in [
        ("signature_mismatch", 2),
        ("signature_missing", 1),
        ("method_not_allowed", 1),
        ("malformed_json", 1),
    ] {
        expected.insert((REJECTIONS_TOTAL.to_owned(), labels(&[("code", code)])), count);
    }
    let (counters, histograms) = read(&snapshotter);
    assert_eq!(counters, expected);

    // Every request was answered; every POST's body was read (all but the GET); the signed ones
    // verified (deliveries, the duplicate, the non-JSON body); and every verified delivery the
    // filter let through decoded.
    let ignored = deliveries.iter().filter(|(kind, _)| *kind == EventKind::OrgPhoneQr).count();
    assert!(ignored > 0);
    let expected_histograms = BTreeMap::from([
        (RESPONSE_SECONDS.to_owned(), n + 6),
        (BODY_BYTES.to_owned(), n + 5),
        (VERIFY_SECONDS.to_owned(), n + 2),
        (DECODE_SECONDS.to_owned(), n + 1 - ignored),
    ]);
    assert_eq!(histograms, expected_histograms);
}

#[test]
fn labels_never_carry_an_unknown_event_name() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let body = Bytes::from_static(br#"{"event":"contact.919289665999","data":{"phone":"919289665999"}}"#);
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let handler = service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
            });
            let service = PeriskopeWebhookLayer::new(KEY).layer(handler);
            assert_eq!(service.oneshot(signed(&body, KEY)).await.unwrap().status(), StatusCode::OK);
        })
    });
    let (counters, _) = read(&snapshotter);
    let expected = (DELIVERIES_TOTAL.to_owned(), labels(&[("kind", "unknown"), ("outcome", "handled")]));
    assert_eq!(counters, BTreeMap::from([(expected, 1)]));
}

/// The inbox gauges read the store: three deliveries stored, one of them claimed and failed for
/// good, leave a queue of two, no attempt on it, one dead letter, and a pending job with an age.
#[cfg(feature = "inbox")]
#[test]
fn inbox_gauges_match_the_store() {
    use periskope_webhook::dedup::{EventKeys, KeyFn};
    use periskope_webhook::inbox::{ClaimRequest, InboxStore, NewDelivery, SqliteStore, record_metrics};
    use periskope_webhook::metrics::{
        INBOX_ATTEMPTS, INBOX_DEAD_LETTERS, INBOX_OLDEST_PENDING_SECONDS, INBOX_QUEUE_DEPTH,
    };
    use std::time::SystemTime;

    let dir = std::env::temp_dir().join(format!("periskope-metrics-inbox-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = SqliteStore::open(dir.join("inbox.db")).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let received = SystemTime::now() - Duration::from_secs(30);
    runtime.block_on(async {
        for id in ["m1", "m2", "m3"] {
            let body =
                format!(r#"{{"event":"message.created","data":{{"message_id":"{id}","chat_id":"c{id}"}}}}"#);
            let event = WebhookEvent::decode(Bytes::from(body)).unwrap();
            store
                .insert(NewDelivery::new(&event, &EventKeys::default().key(&event), received))
                .await
                .unwrap();
        }
        let claimed = store.claim(ClaimRequest::new(1, Duration::from_secs(60), 1)).await.unwrap();
        assert_eq!(claimed.len(), 1);
        store.fail(claimed[0].lease(), "gave up".to_owned(), None).await.unwrap();
    });

    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || runtime.block_on(record_metrics(&store))).unwrap();
    let gauges: BTreeMap<String, f64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            DebugValue::Gauge(value) => Some((key.key().name().to_owned(), value.into_inner())),
            _ => None,
        })
        .collect();
    assert_eq!(gauges[INBOX_QUEUE_DEPTH], 2.0);
    assert_eq!(gauges[INBOX_ATTEMPTS], 0.0);
    assert_eq!(gauges[INBOX_DEAD_LETTERS], 1.0);
    assert!(gauges[INBOX_OLDEST_PENDING_SECONDS] >= 29.0, "{gauges:?}");
    drop(store);
    std::fs::remove_dir_all(&dir).unwrap();
}
