//! The `periskope.delivery` span (feature `tracing`), over HTTP on 127.0.0.1: one per request,
//! with the event kind, the index of the key that verified it, the body's size and the
//! answer's status, or the code of the layer's own answer; the inner service runs inside it.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use periskope_webhook::PeriskopeWebhookLayer;
use periskope_webhook::signature::SigningKeys;
use tower::{Layer, service_fn};

use crate::common::spans::Spans;
use crate::common::{self, KEY, OTHER_KEY, Stack, client, message, send, signed};

#[tokio::test]
async fn each_request_runs_in_a_delivery_span() {
    let (spans, _guard) = Spans::start();
    let handler = service_fn(|_: Request<Full<Bytes>>| async {
        tracing::info_span!("crm.call").in_scope(|| {});
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    // The second key verifies: its index is 1.
    let keys = SigningKeys::new("peri_retired-key").unwrap().with_key(KEY).unwrap();
    let server = common::serve(Stack::Hyper, PeriskopeWebhookLayer::with_keys(keys).layer(handler)).await;
    Spans::listen_everywhere();
    let client = client();
    let body = message("m1");
    assert_eq!(send(&client, signed(&server.url, KEY, body.clone())).await.status, StatusCode::OK);
    send(&client, signed(&server.url, OTHER_KEY, message("m2")))
        .await
        .assert(StatusCode::UNAUTHORIZED, "signature_mismatch");
    server.stop().await;

    let seen = spans.seen();
    let deliveries: Vec<_> = seen.iter().filter(|span| span.name == "periskope.delivery").collect();
    assert_eq!(deliveries.len(), 2, "{seen:#?}");
    let field = |span: usize, name: &str| deliveries[span].fields.get(name).cloned();
    let body_bytes = body.len().to_string();
    assert_eq!(
        ["event_kind", "key_index", "body_bytes", "status", "code"].map(|name| field(0, name)),
        [
            Some("message.created".to_owned()),
            Some("1".to_owned()),
            Some(body_bytes),
            Some("200".to_owned()),
            None
        ],
    );
    assert_eq!(
        ["event_kind", "key_index", "status", "code"].map(|name| field(1, name)),
        [None, None, Some("401".to_owned()), Some("signature_mismatch".to_owned())],
    );
    let handler_spans: Vec<_> = seen.iter().filter(|span| span.name == "crm.call").collect();
    assert_eq!(handler_spans.len(), 1, "{seen:#?}");
    assert_eq!(handler_spans[0].parent, Some("periskope.delivery"));
}
