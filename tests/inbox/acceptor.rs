//! The acceptor behind the layer, over real HTTP on 127.0.0.1: 200 only once stored, duplicates
//! answered 200 without a second job, 503 when storage fails and nothing acknowledged that is
//! not stored.

use http::StatusCode;
use periskope_webhook::PeriskopeWebhookLayer;
use periskope_webhook::inbox::{Inbox, InboxStore, JobState, ListQuery, SqliteStore};
use tower::Layer;

use crate::common::{self, KEY, OTHER_KEY, Server, Stack, client, send, signed};
use crate::support::{TempDir, chat_message, key_of};

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

#[tokio::test]
async fn storage_failure_answers_503_and_every_200_is_stored() {
    let dir = TempDir::new("full");
    // A 96 KiB cap fills after a few dozen 2 KB deliveries.
    let store = SqliteStore::options().max_size(96 * 1024).open(dir.db()).unwrap();
    let server = serve(store.clone()).await;
    let client = client();
    let padding = "x".repeat(2000);
    let mut acknowledged = Vec::new();
    let mut refused = 0;
    for n in 0..300 {
        let body = format!(
            r#"{{"event":"message.created","data":{{"message_id":"m{n}","chat_id":"c","body":"{padding}"}}}}"#
        );
        let key = key_of(&body.clone().into());
        let reply = send(&client, signed(&server.url, KEY, body)).await;
        match reply.status {
            StatusCode::OK => {
                reply.assert(StatusCode::OK, "accepted");
                acknowledged.push(key);
            }
            _ => {
                reply.assert(StatusCode::SERVICE_UNAVAILABLE, "inbox_unavailable");
                assert_eq!(reply.headers.get("retry-after").map(|v| v.as_bytes()), Some(&b"5"[..]));
                refused += 1;
                if refused == 3 {
                    break;
                }
            }
        }
    }
    assert_eq!(refused, 3, "the capped file never filled");
    assert!(!acknowledged.is_empty());
    let stored: Vec<String> =
        store.list(ListQuery::new(None, 1000)).await.unwrap().into_iter().map(|job| job.key).collect();
    assert_eq!(stored, acknowledged, "exactly the acknowledged deliveries are stored");

    // Once space is freed, deliveries are accepted again.
    let purged = store.purge(periskope_webhook::inbox::Selection::State(JobState::Pending)).await.unwrap();
    assert_eq!(purged as usize, acknowledged.len());
    let body = chat_message("c", "after-purge");
    send(&client, signed(&server.url, KEY, body)).await.assert(StatusCode::OK, "accepted");
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
