//! What the layer counts for deliveries the acceptor answers (feature `metrics`), read with
//! `metrics-util`'s debugging recorder: a stored delivery is `handled`, a copy already stored is
//! `duplicate`, a full file is `full` and a failing store is `unavailable`.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::Full;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use periskope_webhook::PeriskopeWebhookLayer;
use periskope_webhook::inbox::{Inbox, InboxStore, PostgresStore, SqliteStore};
use periskope_webhook::metrics::DELIVERIES_TOTAL;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};
use tower::{Layer, ServiceExt};

use crate::common::KEY;
use crate::common::postgres::cluster;
use crate::support::{TempDir, chat_message};

fn signed(body: &Bytes) -> Request<Full<Bytes>> {
    Request::post(crate::common::PATH)
        .header(SIGNATURE_HEADER, sign(&SigningKey::new(KEY).unwrap(), body))
        .body(Full::new(body.clone()))
        .unwrap()
}

/// Sends `body` through the layer and `inbox`'s acceptor; the status.
async fn deliver<St: InboxStore>(inbox: &Inbox<St>, body: &Bytes) -> StatusCode {
    let service = PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor());
    service.oneshot(signed(body)).await.unwrap().status()
}

/// The deliveries counter by `outcome` (every delivery here is a `message.created`).
fn outcomes(snapshotter: &Snapshotter) -> BTreeMap<String, u64> {
    let mut outcomes = BTreeMap::new();
    for (key, _, _, value) in snapshotter.snapshot().into_vec() {
        let key = key.key();
        if key.name() != DELIVERIES_TOTAL {
            continue;
        }
        let label =
            |name: &str| key.labels().find(|label| label.key() == name).map(|label| label.value().to_owned());
        assert_eq!(label("kind").as_deref(), Some("message.created"));
        if let DebugValue::Counter(count) = value {
            outcomes.insert(label("outcome").unwrap(), count);
        }
    }
    outcomes
}

#[test]
fn stored_duplicate_and_full_deliveries_are_told_apart() {
    let dir = TempDir::new("metrics");
    let inbox = Inbox::new(SqliteStore::options().max_size(128 * 1024).open(dir.db()).unwrap());
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let padding = "x".repeat(2000);
    let stored = metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let first = chat_message("c", "first");
            assert_eq!(deliver(&inbox, &first).await, StatusCode::OK);
            assert_eq!(deliver(&inbox, &first).await, StatusCode::OK);
            for n in 0..500 {
                let body = Bytes::from(format!(
                    r#"{{"event":"message.created","data":{{"message_id":"m{n}","body":"{padding}"}}}}"#
                ));
                if deliver(&inbox, &body).await == StatusCode::SERVICE_UNAVAILABLE {
                    return n + 1;
                }
            }
            panic!("the capped file never filled")
        })
    });
    let expected = BTreeMap::from([
        ("duplicate".to_owned(), 1),
        ("full".to_owned(), 1),
        ("handled".to_owned(), stored as u64),
    ]);
    assert_eq!(outcomes(&snapshotter), expected);
}

#[test]
fn a_delivery_the_store_refuses_is_counted_unavailable() {
    let Some(cluster) = cluster() else { return };
    let database = cluster.database();
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    metrics::with_local_recorder(&recorder, || {
        runtime.block_on(async {
            let inbox = Inbox::new(PostgresStore::connect_with(&database.url(), 1).await.unwrap());
            assert_eq!(deliver(&inbox, &chat_message("c", "before")).await, StatusCode::OK);
            // From now on the server refuses every new row.
            let (admin, connection) =
                tokio_postgres::connect(&database.url(), tokio_postgres::NoTls).await.unwrap();
            tokio::spawn(connection);
            admin
                .batch_execute(
                    "ALTER TABLE periskope_inbox_jobs ADD CONSTRAINT refuse_all CHECK (false) NOT VALID",
                )
                .await
                .unwrap();
            assert_eq!(deliver(&inbox, &chat_message("c", "after")).await, StatusCode::SERVICE_UNAVAILABLE);
        })
    });
    let expected = BTreeMap::from([("handled".to_owned(), 1), ("unavailable".to_owned(), 1)]);
    assert_eq!(outcomes(&snapshotter), expected);
}
