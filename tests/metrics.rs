//! The `metrics` feature: what the layer records, counted by `metrics-util`'s debugging
//! recorder, matches what was sent: each delivery by kind and outcome, each rejection by code,
//! and one histogram entry per answer, body read, verification and decode. And the shipped
//! Prometheus rules and Grafana dashboard (`docs/observability/`) query what the Prometheus
//! exporter renders after real traffic through the layer and the inbox, each metric with the
//! type [`metrics::ALL`](periskope_webhook::metrics::ALL) gives it.
#![cfg(feature = "metrics")]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use periskope_webhook::dedup::{Dedup, MemoryStore};
use periskope_webhook::metrics::{
    ALL, BODY_BYTES, DECODE_SECONDS, DELIVERIES_TOTAL, Metric, MetricType, REJECTIONS_TOTAL,
    RESPONSE_SECONDS, VERIFY_SECONDS,
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

/// The metric names `text` (a rules file, a dashboard) queries: every `periskope_webhook_...`
/// word.
fn queried_names(text: &str) -> BTreeSet<String> {
    let prefix = "periskope_webhook_";
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find(prefix) {
        let word = &rest[at..];
        let end = word
            .find(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(word.len());
        names.insert(word[..end].to_owned());
        rest = &word[end..];
    }
    names
}

/// The entry of `ALL` a queried series belongs to: the metric itself, or a histogram's
/// `_bucket`, `_sum` or `_count`.
fn listed_metric(series: &str) -> Option<&'static Metric> {
    ALL.iter().find(|metric| metric.name == series).or_else(|| {
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|suffix| series.strip_suffix(suffix))?;
        ALL.iter().find(|metric| metric.name == base && metric.metric_type == MetricType::Histogram)
    })
}

/// Real traffic over HTTP on 127.0.0.1 through the layer and the inbox's acceptor, a worker
/// that handles, retries and gives up, and the inbox gauges; then the Prometheus exporter's
/// output, configured from `ALL` alone, holds every metric of `ALL` with its type and only its
/// labels, every series the shipped rules and dashboard query, and nothing `ALL` does not list;
/// and the dashboard shows every metric.
#[cfg(feature = "inbox")]
#[test]
fn the_shipped_rules_and_dashboard_query_what_the_exporter_renders() {
    use std::convert::Infallible;

    use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};
    use periskope_webhook::inbox::{Attempt, Inbox, SqliteStore, WorkerConfig, record_metrics};
    use periskope_webhook::metrics::histogram_buckets;

    use common::{OTHER_KEY, Stack, client, fixture, send, signed};

    let mut builder = PrometheusBuilder::new();
    for (name, buckets) in histogram_buckets() {
        builder = builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), buckets).unwrap();
    }
    let recorder = builder.build_recorder();
    let prometheus = recorder.handle();
    let dir = std::env::temp_dir().join(format!("periskope-metrics-shipped-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // One thread runs the server, the client and the worker, so all of them record into the
    // local recorder.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let reaction = fixture("reaction.created.envelope.json");
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let inbox = Inbox::new(SqliteStore::open(dir.join("inbox.db")).unwrap());
            let server =
                common::serve(Stack::Axum, PeriskopeWebhookLayer::new(common::KEY).layer(inbox.acceptor()))
                    .await;
            let client = client();
            for body in [common::message("m1"), reaction.clone(), fixture("ticket.created.envelope.json")] {
                send(&client, signed(&server.url, common::KEY, body))
                    .await
                    .assert(StatusCode::OK, "accepted");
            }
            send(&client, signed(&server.url, OTHER_KEY, common::message("m2")))
                .await
                .assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
            server.stop().await;

            // A reaction fails its first attempt and is retried; a ticket fails every attempt.
            let handler = service_fn(|request: Request<Full<Bytes>>| async move {
                let kind = request.extensions().get::<WebhookEvent>().unwrap().kind();
                let attempt = request.extensions().get::<Attempt>().unwrap().number();
                let fails = match kind {
                    EventKind::ReactionCreated => attempt == 1,
                    EventKind::TicketCreated => true,
                    _ => false,
                };
                let status = if fails { StatusCode::INTERNAL_SERVER_ERROR } else { StatusCode::OK };
                Ok::<_, Infallible>(
                    Response::builder().status(status).body(Full::<Bytes>::default()).unwrap(),
                )
            });
            let mut config = WorkerConfig::default();
            config.max_attempts = 2;
            config.backoff_base = Duration::from_millis(5);
            config.backoff_max = Duration::from_millis(5);
            config.poll_interval = Duration::from_millis(10);
            inbox.worker(handler).config(config).run_until_idle().await;
            record_metrics(inbox.store()).await.unwrap();
        })
    });
    let rendered = prometheus.render();

    // What the exporter rendered: each metric's type, and each series line.
    let types: BTreeMap<&str, &str> = rendered
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|line| line.split_once(' '))
        .filter(|(name, _)| name.starts_with("periskope_webhook_"))
        .collect();
    let listed: BTreeMap<&str, &str> =
        ALL.iter().map(|metric| (metric.name, metric.metric_type.as_str())).collect();
    assert_eq!(types, listed, "{rendered}");
    for line in rendered.lines().filter(|line| line.starts_with("periskope_webhook_")) {
        let series = &line[..line.find(['{', ' ']).unwrap()];
        let metric = listed_metric(series).unwrap_or_else(|| panic!("not listed: {line}"));
        let labels = line.split_once('{').map_or("", |(_, labels)| labels.split_once('}').unwrap().0);
        for label in labels.split(',').filter(|label| !label.is_empty()) {
            let name = label.split_once('=').unwrap().0;
            assert!(
                metric.labels.contains(&name) || name == "le",
                "{name} is not a label of {}: {line}",
                metric.name
            );
        }
    }
    for (series, value) in [
        ("periskope_webhook_deliveries_total{kind=\"message.created\",outcome=\"handled\"}", "1"),
        ("periskope_webhook_rejections_total{code=\"signature_mismatch\"}", "1"),
        ("periskope_webhook_inbox_retries_total{kind=\"reaction.created\"}", "1"),
        ("periskope_webhook_inbox_dead_letters_total{kind=\"ticket.created\"}", "1"),
        ("periskope_webhook_inbox_attempt_seconds_count{kind=\"reaction.created\",outcome=\"failed\"}", "1"),
        ("periskope_webhook_inbox_attempt_seconds_count{kind=\"reaction.created\",outcome=\"handled\"}", "1"),
        ("periskope_webhook_inbox_attempt_seconds_count{kind=\"ticket.created\",outcome=\"failed\"}", "2"),
        ("periskope_webhook_inbox_wait_seconds_count{kind=\"ticket.created\"}", "1"),
        ("periskope_webhook_response_seconds_count", "4"),
        ("periskope_webhook_inbox_queue_depth", "0"),
        ("periskope_webhook_inbox_dead_letters", "1"),
    ] {
        assert!(
            rendered.lines().any(|line| line == format!("{series} {value}")),
            "{series} {value} in:\n{rendered}"
        );
    }
    // No label carries what the bodies hold.
    let reaction_json: serde_json::Value = serde_json::from_slice(&reaction).unwrap();
    let chat = reaction_json["data"]["chat_id"].as_str().unwrap();
    assert!(!rendered.contains(chat.split('@').next().unwrap()), "{rendered}");

    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/observability");
    let rules = std::fs::read_to_string(root.join("prometheus-rules.yml")).unwrap();
    let dashboard = std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    for (file, text) in [("prometheus-rules.yml", &rules), ("grafana-dashboard.json", &dashboard)] {
        let queried = queried_names(text);
        assert!(!queried.is_empty(), "{file} queries nothing");
        for series in queried {
            assert!(listed_metric(&series).is_some(), "{file} queries {series}, which ALL does not list");
            assert!(
                rendered.lines().any(|line| line.starts_with(&format!("{series}{{"))
                    || line.starts_with(&format!("{series} "))),
                "{file} queries {series}, which the exporter did not render"
            );
        }
    }
    let shown: BTreeSet<&str> = queried_names(&dashboard)
        .iter()
        .filter_map(|series| listed_metric(series))
        .map(|metric| metric.name)
        .collect();
    let emitted: BTreeSet<&str> = types.keys().copied().collect();
    assert_eq!(shown, emitted, "the dashboard shows every metric the crate emits");
    std::fs::remove_dir_all(&dir).unwrap();
}
