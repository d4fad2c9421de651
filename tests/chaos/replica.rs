//! The inbox test's replica: this test executable, started again as a server. It serves what the
//! `inbox` example serves on PostgreSQL (the acceptor and a worker sharing one queue), with a
//! handler that prints a line when each attempt starts and when it ends, so that the test can
//! check the order of a chat's jobs.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use periskope_webhook::inbox::{Attempt, Inbox, PostgresStore, WorkerConfig, ordering_key};
use periskope_webhook::{PeriskopeWebhookLayer, WebhookEvent};
use tower::service_fn;

use crate::common::{KEY, PATH};

/// The queue's PostgreSQL URL.
pub const DATABASE: &str = "PERISKOPE_CHAOS_REPLICA_DATABASE";
/// The worker's lease in milliseconds; each attempt may run for half of it.
pub const LEASE_MS: &str = "PERISKOPE_CHAOS_REPLICA_LEASE_MS";
/// How long the handler works on each job, in milliseconds.
pub const HANDLER_MS: &str = "PERISKOPE_CHAOS_REPLICA_HANDLER_MS";

/// The arguments that start this executable as a replica (with the variables above set).
pub const ARGS: [&str; 5] =
    ["--ignored", "--exact", "replica::inbox_replica", "--nocapture", "--test-threads=1"];

/// Serves until killed; does nothing without its environment.
#[test]
#[ignore = "a server process started by the inbox chaos test"]
fn inbox_replica() {
    let Ok(database) = std::env::var(DATABASE) else { return };
    let millis = |name: &str| Duration::from_millis(std::env::var(name).unwrap().parse().unwrap());
    let (lease, handler_time) = (millis(LEASE_MS), millis(HANDLER_MS));
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(serve(&database, lease, handler_time));
}

async fn serve(database: &str, lease: Duration, handler_time: Duration) {
    let store = PostgresStore::connect(database).await.unwrap_or_else(|error| {
        // While the server restarts: the test starts this replica again.
        eprintln!("cannot connect: {error}");
        std::process::exit(1)
    });
    let inbox = Inbox::new(store);
    let mut config = WorkerConfig::default();
    config.lease = lease;
    config.attempt_timeout = lease / 2;
    let calls = Arc::new(AtomicU64::new(0));
    let handler = service_fn(move |request: Request<Full<Bytes>>| {
        let call = calls.fetch_add(1, Ordering::Relaxed);
        async move {
            let started = AttemptLine::new(call, &request);
            started.print();
            let mut ended = EndsWhenDropped(started.with_edge(Edge::Dropped));
            tokio::time::sleep(handler_time).await;
            ended.0.edge = Edge::Returned;
            Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
        }
    });
    let _worker = inbox.worker(handler).config(config).spawn();
    let app = Router::new().route_service(PATH, PeriskopeWebhookLayer::new(KEY).service(inbox.acceptor()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("listening on http://{}", listener.local_addr().unwrap());
    axum::serve(listener, app).await.unwrap();
}

/// Prints the attempt's last line when the handler's future is done with: returned, or dropped
/// by the worker (at the attempt's timeout) before it returned.
struct EndsWhenDropped(AttemptLine);

impl Drop for EndsWhenDropped {
    fn drop(&mut self) {
        self.0.at = since_epoch();
        self.0.print();
    }
}

/// What a line says of an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    /// The handler started.
    Started,
    /// The handler returned (and answered `200`).
    Returned,
    /// The handler's future was dropped before it returned.
    Dropped,
}

impl Edge {
    const ALL: [Edge; 3] = [Edge::Started, Edge::Returned, Edge::Dropped];

    fn name(self) -> &'static str {
        match self {
            Edge::Started => "started",
            Edge::Returned => "returned",
            Edge::Dropped => "dropped",
        }
    }
}

/// One line of the handler's log:
/// `attempt <edge> call=<n> job=<id> number=<n> token=<n> chat=<ordering key> message=<id> at_us=<µs>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptLine {
    pub edge: Edge,
    /// The handler's calls in this process, numbered from 0: an attempt's start and end share it.
    pub call: u64,
    pub job: i64,
    /// The attempt's number, as the worker counts it.
    pub number: u32,
    /// The attempt's fencing token.
    pub token: u64,
    /// The job's ordering key.
    pub chat: String,
    pub message: String,
    /// When, on the system clock: one clock for every process of the machine.
    pub at: Duration,
}

impl AttemptLine {
    fn new(call: u64, request: &Request<Full<Bytes>>) -> AttemptLine {
        let attempt = request.extensions().get::<Attempt>().expect("the worker's attempt");
        let event = request.extensions().get::<WebhookEvent>().expect("the stored event").event();
        let message = event.message().and_then(|message| message.message_id.as_deref());
        AttemptLine {
            edge: Edge::Started,
            call,
            job: attempt.job(),
            number: attempt.number(),
            token: attempt.fencing_token(),
            chat: ordering_key(event).expect("a chat's message"),
            message: message.expect("a message id").to_owned(),
            at: since_epoch(),
        }
    }

    fn with_edge(&self, edge: Edge) -> AttemptLine {
        AttemptLine { edge, ..self.clone() }
    }

    fn print(&self) {
        println!("{self}");
    }

    /// The line `text`, when it is one of the handler's.
    pub fn parse(text: &str) -> Option<AttemptLine> {
        fn bad(text: &str) -> ! {
            panic!("a bad attempt line: {text:?}")
        }
        let mut words = text.strip_prefix("attempt ")?.split(' ');
        let edge = words.next().and_then(|name| Edge::ALL.into_iter().find(|edge| edge.name() == name));
        let mut field = |name: &str| match words.next().and_then(|word| word.split_once('=')) {
            Some((key, value)) if key == name => value,
            _ => bad(text),
        };
        let line = AttemptLine {
            edge: edge.unwrap_or_else(|| bad(text)),
            call: field("call").parse().unwrap_or_else(|_| bad(text)),
            job: field("job").parse().unwrap_or_else(|_| bad(text)),
            number: field("number").parse().unwrap_or_else(|_| bad(text)),
            token: field("token").parse().unwrap_or_else(|_| bad(text)),
            chat: field("chat").to_owned(),
            message: field("message").to_owned(),
            at: Duration::from_micros(field("at_us").parse().unwrap_or_else(|_| bad(text))),
        };
        match words.next() {
            None => Some(line),
            Some(_) => bad(text),
        }
    }
}

impl fmt::Display for AttemptLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let AttemptLine { edge, call, job, number, token, chat, message, at } = self;
        let at = at.as_micros();
        write!(
            f,
            "attempt {} call={call} job={job} number={number} token={token} chat={chat} message={message} at_us={at}",
            edge.name()
        )
    }
}

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("a clock after 1970")
}
