//! The acceptor behind the layer, over real HTTP on 127.0.0.1: 200 only once stored, duplicates
//! answered 200 without a second job, 503 when storage fails and nothing acknowledged that is
//! not stored.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use periskope_webhook::inbox::{Inbox, InboxStore, JobState, ListQuery, SqliteStore};
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent};
use tokio::sync::oneshot;
use tower::Layer;

use crate::common::{self, KEY, OTHER_KEY, Server, Stack, client, send, signed, within};
use crate::support::{TempDir, all_in, chat_message, fast, key_of, wait_for_jobs};

async fn serve(store: SqliteStore) -> Server {
    let inbox = Inbox::new(store);
    common::serve(Stack::Axum, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor())).await
}

#[tokio::test]
async fn a_verified_delivery_is_stored_once_and_a_forged_one_never() {
    let dir = TempDir::new("accept");
    let store = SqliteStore::open(dir.db()).unwrap();
    let server = serve(store.clone()).await;
    let client = client();
    let body = chat_message("c1", "m1");

    send(&client, signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "accepted");
    send(&client, signed(&server.url, KEY, body.clone())).await.assert(StatusCode::OK, "duplicate");
    let forged = chat_message("c1", "forged");
    send(&client, signed(&server.url, OTHER_KEY, forged))
        .await
        .assert(StatusCode::UNAUTHORIZED, "signature_mismatch");

    let jobs = store.list(ListQuery::new(None, 10)).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    let record = store.get(jobs[0].id).await.unwrap().unwrap();
    assert_eq!((record.body, record.summary.state), (body, JobState::Pending));
    assert_eq!(record.signing_key.as_deref(), Some("key-0"));
    server.stop().await;
}

/// A file at its `max_size` refuses new deliveries with `503 inbox_full` (Periskope retries
/// them), still answers copies of stored ones as duplicates, and still lets the worker drain it;
/// handled jobs keep their de-duplication window (the file stays full until retention purges
/// them), then deliveries are accepted again. Every `200` is stored.
#[tokio::test]
async fn a_full_file_refuses_deliveries_until_handled_jobs_are_purged() {
    let dir = TempDir::new("full");
    // A 160 KiB cap (the empty schema takes about 70 KiB) fills after a few dozen 2 KB deliveries.
    let store = SqliteStore::options().max_size(160 * 1024).open(dir.db()).unwrap();
    let inbox = Inbox::new(store.clone());
    let server = common::serve(Stack::Axum, PeriskopeWebhookLayer::new(KEY).layer(inbox.acceptor())).await;
    let client = client();
    let padding = "x".repeat(2000);
    let padded = |n: usize| {
        Bytes::from(format!(
            r#"{{"event":"message.created","data":{{"message_id":"m{n}","chat_id":"c{n}","body":"{padding}"}}}}"#
        ))
    };
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 0..300 {
        let body = padded(n);
        let reply = send(&client, signed(&server.url, KEY, body.clone())).await;
        match reply.status {
            StatusCode::OK => {
                reply.assert(StatusCode::OK, "accepted");
                acknowledged.push(key_of(&body));
            }
            _ => {
                reply.assert(StatusCode::SERVICE_UNAVAILABLE, "inbox_full");
                assert_eq!(reply.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"60"[..]));
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "the capped file never filled");
    assert!(acknowledged.len() > 10, "{} deliveries fill 160 KiB", acknowledged.len());
    let stored: Vec<String> =
        store.list(ListQuery::new(None, 1000)).await.unwrap().into_iter().map(|job| job.key).collect();
    assert_eq!(stored, acknowledged, "exactly the acknowledged deliveries are stored");
    // A copy of a stored delivery is still a duplicate, not a refusal.
    send(&client, signed(&server.url, KEY, padded(0))).await.assert(StatusCode::OK, "duplicate");

    // The worker drains the full file; handled jobs keep their de-duplication window.
    let handler = EventRouter::new()
        .on_message_created(|_: WebhookEvent| async { Ok::<_, std::convert::Infallible>(()) });
    let (stop, stopped) = oneshot::channel::<()>();
    let worker = tokio::spawn(inbox.worker(handler).config(fast()).run(async {
        let _ = stopped.await;
    }));
    wait_for_jobs(&store, "the full file is drained", all_in(JobState::Done)).await;
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    send(&client, signed(&server.url, KEY, padded(1000)))
        .await
        .assert(StatusCode::SERVICE_UNAVAILABLE, "inbox_full");
    send(&client, signed(&server.url, KEY, padded(1))).await.assert(StatusCode::OK, "duplicate");

    // Retention purges the handled jobs: deliveries are accepted again.
    let mut config = fast();
    config.retention = Duration::from_millis(1);
    let (stop, stopped) = oneshot::channel::<()>();
    let handler = EventRouter::new()
        .on_message_created(|_: WebhookEvent| async { Ok::<_, std::convert::Infallible>(()) });
    let worker = tokio::spawn(inbox.worker(handler).config(config).run(async {
        let _ = stopped.await;
    }));
    wait_for_jobs(&store, "retention purges the handled jobs", |jobs| jobs.is_empty()).await;
    send(&client, signed(&server.url, KEY, padded(1000))).await.assert(StatusCode::OK, "accepted");
    let _ = stop.send(());
    within("worker stops", worker).await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn without_the_layer_the_acceptor_stores_nothing() {
    let dir = TempDir::new("nolayer");
    let store = SqliteStore::open(dir.db()).unwrap();
    let inbox = Inbox::new(store.clone());
    let server = common::serve(Stack::Axum, inbox.acceptor()).await;
    let reply = send(&client(), signed(&server.url, KEY, chat_message("c", "m"))).await;
    reply.assert(StatusCode::INTERNAL_SERVER_ERROR, "periskope_layer_missing");
    assert!(store.list(ListQuery::new(None, 10)).await.unwrap().is_empty());
    server.stop().await;
}
