//! Signed deliveries on a fixed schedule, as Periskope sends them, each timed from when it was
//! due to its `200`: a stall of the inbox delays every delivery due during it, and counts for
//! each. A benchmark that includes this file includes `unique` (and so `support`) too.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::signature::SIGNATURE_HEADER;
use tokio::sync::Semaphore;

use crate::unique::UniqueMessages;

/// Deliveries per second, sent whatever the answers.
pub const DELIVERY_RATE: u32 = 500;

/// At most this many deliveries wait for their answer at once (a stall of several seconds
/// would otherwise open thousands of connections); one due beyond them waits for a place, and
/// its time still counts from when it was due.
const MAX_IN_FLIGHT: usize = 512;

type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Posts one delivery signed with `key`; panics unless it is answered `200`.
async fn deliver(client: &HttpClient, url: &str, key: &str, body: Bytes) {
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, periskope_webhook::testing::signature(key, &body))
        .body(Full::new(body))
        .expect("a delivery");
    let response = client.request(request).await.expect("an answer to a delivery");
    let status = response.status();
    response.into_body().collect().await.expect("the answer's body");
    assert_eq!(status, StatusCode::OK, "a delivery was refused");
}

/// How many deliveries the schedule sends in `duration`.
pub fn deliveries_in(duration: Duration) -> u32 {
    (duration.as_secs_f64() * f64::from(DELIVERY_RATE)) as u32
}

/// Sends at least `deliveries` deliveries to `url`, [`DELIVERY_RATE`] a second, and goes on
/// while `more` says so; the time of each, from when it was due to its `200`, sorted.
pub async fn deliver_on_schedule(
    url: &str,
    key: &'static str,
    messages: &Arc<UniqueMessages>,
    deliveries: u32,
    more: impl Fn() -> bool,
) -> Vec<Duration> {
    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let period = Duration::from_secs(1) / DELIVERY_RATE;
    let start = tokio::time::Instant::now();
    let mut sent = Vec::new();
    for n in 0.. {
        if n >= deliveries && !more() {
            break;
        }
        let due = start + period * n;
        tokio::time::sleep_until(due).await;
        let place = Arc::clone(&in_flight).acquire_owned().await.expect("the semaphore stays open");
        let (client, url, body) = (client.clone(), url.to_owned(), messages.next());
        sent.push(tokio::spawn(async move {
            deliver(&client, &url, key, body).await;
            drop(place);
            due.elapsed()
        }));
    }
    let mut times = Vec::with_capacity(sent.len());
    for delivery in sent {
        times.push(delivery.await.expect("a delivery"));
    }
    times.sort();
    times
}

/// The `quantile` (0 to 1) of `sorted`, which is not empty.
pub fn quantile(sorted: &[Duration], quantile: f64) -> Duration {
    sorted[((sorted.len() as f64 * quantile) as usize).min(sorted.len() - 1)]
}
