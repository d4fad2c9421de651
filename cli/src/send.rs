//! `send`: POST delivery files to a webhook endpoint, signed as Periskope signs them.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::header::CONTENT_TYPE;
use http::{Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::SigningKey;
use periskope_webhook::signature::{SIGNATURE_HEADER, sign};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::delivery::{self, Delivery};
use crate::key::KeyArgs;
use crate::output::{Failure, Output};

/// POST deliveries to URL as Periskope does: compact JSON, signed with the key in
/// `x-periskope-signature`, `Content-Type: application/json`. Each answer is printed, then a
/// count per status; the exit status is 1 if any answer is not 2xx (401 for `--tamper` copies)
/// or does not come in time, and 2 if a connection could not be made (refused, unknown host).
///
/// PATH is a delivery file, `-` for standard input, or a directory: its `.json` files that are
/// deliveries (objects with `event` or `event_type`) are sent in name order, and the others
/// skipped with a note. A directory written by `listen --save` replays what was received.
#[derive(Args, Debug)]
pub struct SendArgs {
    #[command(flatten)]
    key: KeyArgs,

    /// Where to POST, e.g. http://127.0.0.1:3000/webhooks/periskope (plain HTTP).
    #[arg(value_name = "URL", value_parser = parse_url)]
    url: Uri,

    /// Delivery files, `-` for standard input, directories of them, or directories written by
    /// `listen --save`.
    #[arg(value_name = "PATH|-", required = true)]
    paths: Vec<PathBuf>,

    /// How many requests may wait for an answer at once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1024))]
    concurrency: u32,

    /// Start at most N requests per second (default: as fast as answers come).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rate: Option<u32>,

    /// Send every delivery N times.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    repeat: u32,

    /// Also send each delivery with one body byte changed under the original signature; the
    /// server must answer those copies 401.
    #[arg(long)]
    tamper: bool,

    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,
}

pub(crate) fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text.parse().map_err(|error| format!("not a URL: {error}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => Ok(uri),
        (Some("https"), _) => Err("https is not supported: send to the plain-HTTP address the TLS proxy or \
                                   tunnel forwards to"
            .to_owned()),
        _ => {
            Err("expected an http:// URL with a host, e.g. http://127.0.0.1:3000/webhooks/periskope"
                .to_owned())
        }
    }
}

/// One request to make: a delivery, genuine or tampered with.
#[derive(Clone)]
struct Job {
    delivery: Arc<Delivery>,
    body: Bytes,
    signature: Arc<str>,
    tampered: bool,
}

impl Job {
    fn expected(&self, status: StatusCode) -> bool {
        if self.tampered { status == StatusCode::UNAUTHORIZED } else { status.is_success() }
    }
}

/// What came back for one request.
pub(crate) enum Answer {
    /// The status, and the answer's `code` when it is a short machine-readable one.
    Status(StatusCode, Option<String>),
    /// No answer: the reason.
    Failed(String),
    /// No connection to the server (refused, unknown host): a network setup error, the reason.
    Unreachable(String),
}

pub fn send(args: SendArgs, output: &Output) -> Result<(), Failure> {
    let key = args.key.signing_key(output)?;
    let deliveries = delivery::load(&args.paths, output)?;
    if deliveries.is_empty() {
        return Err(Failure::Error("no deliveries to send under the given paths".to_owned()));
    }
    let plan = Plan {
        url: args.url,
        concurrency: args.concurrency,
        rate: args.rate,
        repeat: args.repeat,
        tamper: args.tamper,
        timeout: args.timeout,
    };
    deliver(deliveries, &key, &plan, output)
}

/// How deliveries are sent: `send`'s options, which `trigger` shares.
pub(crate) struct Plan {
    pub url: Uri,
    pub concurrency: u32,
    pub rate: Option<u32>,
    pub repeat: u32,
    pub tamper: bool,
    /// Seconds to wait for each answer.
    pub timeout: u64,
}

/// Signs and sends `deliveries` as `plan` says, printing each answer and then the summary; the
/// exit status is `send`'s.
pub(crate) fn deliver(
    deliveries: Vec<Delivery>,
    key: &SigningKey,
    plan: &Plan,
    output: &Output,
) -> Result<(), Failure> {
    let mut once = Vec::new();
    for delivery in deliveries.into_iter().map(Arc::new) {
        let signature: Arc<str> = sign(key, &delivery.body).into();
        let body = Bytes::from(delivery.body.clone());
        if plan.tamper {
            let copy = Bytes::from(tampered(&body));
            once.push(Job {
                delivery: Arc::clone(&delivery),
                body,
                signature: Arc::clone(&signature),
                tampered: false,
            });
            once.push(Job { delivery, body: copy, signature, tampered: true });
        } else {
            once.push(Job { delivery, body, signature, tampered: false });
        }
    }
    let jobs = std::iter::repeat_n(once, plan.repeat as usize).flatten().collect();
    crate::block_on(run(jobs, plan, output))?
}

async fn run(jobs: Vec<Job>, args: &Plan, output: &Output) -> Result<(), Failure> {
    let concurrency = args.concurrency as usize;
    let client: Client<HttpConnector, Full<Bytes>> =
        Client::builder(TokioExecutor::new()).pool_max_idle_per_host(concurrency).build_http();
    let timeout = Duration::from_secs(args.timeout);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut ticker = args.rate.map(|rate| {
        let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker
    });
    let mut report = Report::new(jobs.len(), args.url.clone(), output);
    let mut tasks = JoinSet::new();
    for job in jobs {
        if let Some(ticker) = ticker.as_mut() {
            ticker.tick().await;
        }
        let slot = Arc::clone(&slots).acquire_owned().await.map_err(|_| Failure::Error("closed".into()))?;
        let (client, url) = (client.clone(), args.url.clone());
        tasks.spawn(async move {
            let started = Instant::now();
            let answer = post(&client, url, job.body.clone(), &job.signature, timeout).await;
            drop(slot);
            (job, answer, started.elapsed())
        });
        while let Some(done) = tasks.try_join_next() {
            report.record(done);
        }
    }
    while let Some(done) = tasks.join_next().await {
        report.record(done);
    }
    report.finish()
}

/// POSTs `body` with its `signature` as Periskope does, and waits at most `timeout` for the answer.
pub(crate) async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: Uri,
    body: Bytes,
    signature: &str,
    timeout: Duration,
) -> Answer {
    let request = Request::post(url)
        .header(CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(body));
    let request = match request {
        Ok(request) => request,
        Err(error) => return Answer::Failed(format!("cannot build the request: {error}")),
    };
    let exchange = async {
        let response = client.request(request).await.map_err(|error| {
            let reason = chain(&error);
            if error.is_connect() { Answer::Unreachable(reason) } else { Answer::Failed(reason) }
        })?;
        let status = response.status();
        // Read the answer (so that the connection can be reused), but not an unbounded one.
        let body = Limited::new(response.into_body(), 64 * 1024).collect().await.map(|body| body.to_bytes());
        Ok::<_, Answer>(Answer::Status(status, body.ok().as_deref().and_then(answer_code)))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer) | Err(answer)) => answer,
        Err(_) => Answer::Failed(format!("no answer within {} s", timeout.as_secs())),
    }
}

/// An error and its sources, as one line: `client error (Connect): tcp connect error: ...`.
/// A cause whose text is already in the line (errors that print their source as part of their
/// own message) is written once.
pub(crate) fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

/// The `code` of a JSON answer such as the layer's rejections, if it is a short snake_case word
/// (anything else the server said is not repeated).
fn answer_code(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = value.get("code")?.as_str()?;
    let plain = code.len() <= 64 && code.bytes().all(|byte| byte.is_ascii_lowercase() || byte == b'_');
    plain.then(|| code.to_owned())
}

/// The body with one byte changed: the first lowercase ASCII letter past the middle,
/// upper-cased, so that the copy is still the same JSON shape.
fn tampered(body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    let middle = body.len() / 2;
    if let Some(at) = body[middle..].iter().position(u8::is_ascii_lowercase).map(|i| middle + i) {
        body[at] ^= 0x20;
    } else if let Some(last) = body.last_mut() {
        *last ^= 0x01;
    }
    body
}

/// Goes back to the start of the terminal's line and erases it.
const CLEAR_LINE: &str = "\r\x1b[2K";

/// How far a run is, as the last line of a terminal's standard error, redrawn in place.
struct Progress {
    total: usize,
    sent: usize,
    started: Instant,
}

impl Progress {
    /// Replaces the progress line with `above` (whole lines, or nothing), then the progress line.
    fn draw(&self, above: &str) {
        let seconds = self.started.elapsed().as_secs_f64();
        let rate = if seconds > 0.0 { self.sent as f64 / seconds } else { 0.0 };
        let (sent, total) = (self.sent, self.total);
        let _ = write!(
            std::io::stderr().lock(),
            "{CLEAR_LINE}{above}{sent}/{total} sent, {rate:.0}/s, {seconds:.0} s"
        );
    }
}

/// Prints each answer as it comes and counts them.
struct Report<'o> {
    output: &'o Output,
    progress: Option<Progress>,
    statuses: BTreeMap<String, usize>,
    unexpected: usize,
    /// Why the first request that could not connect failed: the run is a setup error.
    unreachable: Option<String>,
    /// Where the requests went, for the line that says it could not be reached.
    url: Uri,
    started: Instant,
}

impl<'o> Report<'o> {
    fn new(total: usize, url: Uri, output: &'o Output) -> Self {
        let terminal = std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
        let progress =
            (terminal && !output.json()).then(|| Progress { total, sent: 0, started: Instant::now() });
        Report {
            output,
            progress,
            statuses: BTreeMap::new(),
            unexpected: 0,
            unreachable: None,
            url,
            started: Instant::now(),
        }
    }

    fn record(&mut self, done: Result<(Job, Answer, Duration), tokio::task::JoinError>) {
        let (job, answer, elapsed) = match done {
            Ok(done) => done,
            Err(error) => {
                self.unexpected += 1;
                *self.statuses.entry("error".to_owned()).or_default() += 1;
                self.print(
                    format!("ERR  a request task failed: {error}"),
                    json!({ "type": "error", "message": error.to_string() }),
                );
                return;
            }
        };
        let delivery = &job.delivery;
        let copy = if job.tampered { " (tampered)" } else { "" };
        let millis = elapsed.as_millis() as u64;
        let (status, code, expected, error) = match &answer {
            Answer::Status(status, code) => {
                (Some(status.as_u16()), code.clone(), job.expected(*status), None)
            }
            Answer::Failed(reason) => (None, None, false, Some(reason.clone())),
            Answer::Unreachable(reason) => {
                self.unreachable.get_or_insert_with(|| reason.clone());
                (None, None, false, Some(reason.clone()))
            }
        };
        let key = status.map_or_else(|| "error".to_owned(), |status| status.to_string());
        *self.statuses.entry(key.clone()).or_default() += 1;
        self.unexpected += usize::from(!expected);
        let mut text = format!("{key:<5} {}  {}{copy}", delivery.name, delivery.source);
        if let Some(code) = &code {
            text.push_str(&format!("  {code}"));
        }
        if let Some(reason) = &error {
            text.push_str(&format!(": {reason}"));
        } else if !expected {
            text.push_str(if job.tampered { "  UNEXPECTED: wanted 401" } else { "  UNEXPECTED: wanted 2xx" });
        }
        self.print(
            text,
            json!({
                "type": "answer",
                "status": status,
                "code": code,
                "error": error,
                "event": delivery.name,
                "file": delivery.source,
                "tampered": job.tampered,
                "expected": expected,
                "millis": millis,
            }),
        );
        if let Some(progress) = &mut self.progress {
            progress.sent += 1;
            progress.draw("");
        }
    }

    fn print(&self, text: String, object: serde_json::Value) {
        match &self.progress {
            Some(progress) => progress.draw(&format!("{text}\n")),
            None => self.output.line(text, object),
        }
    }

    fn finish(self) -> Result<(), Failure> {
        if self.progress.is_some() {
            let _ = write!(std::io::stderr().lock(), "{CLEAR_LINE}");
        }
        let requests: usize = self.statuses.values().sum();
        let seconds = self.started.elapsed().as_secs_f64();
        let counts: Vec<String> =
            self.statuses.iter().map(|(status, count)| format!("{count} x {status}")).collect();
        let verdict = match self.unexpected {
            0 => "every answer as expected".to_owned(),
            n => format!("{n} unexpected"),
        };
        self.output.line(
            format_args!(
                "sent {requests} request{} in {seconds:.2} s: {}; {verdict}",
                if requests == 1 { "" } else { "s" },
                counts.join(", ")
            ),
            json!({
                "type": "summary",
                "requests": requests,
                "statuses": self.statuses,
                "unexpected": self.unexpected,
                "seconds": seconds,
            }),
        );
        if let Some(reason) = self.unreachable {
            return Err(Failure::Error(format!("cannot connect to {}: {reason}", self.url)));
        }
        if self.unexpected == 0 { Ok(()) } else { Err(Failure::Unexpected) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tampering_changes_exactly_one_byte() {
        for body in [&br#"{"event":"message.created","data":{"body":"hello"}}"#[..], b"{}", b"1"] {
            let changed = tampered(body);
            assert_eq!(changed.len(), body.len());
            assert_eq!(body.iter().zip(&changed).filter(|(a, b)| a != b).count(), 1, "{body:?}");
        }
    }

    #[test]
    fn each_cause_is_written_once() {
        #[derive(Debug)]
        struct Wrapper(std::io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "tcp connect error: {}", self.0)
            }
        }
        impl std::error::Error for Wrapper {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let error = Wrapper(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert_eq!(chain(&error), "tcp connect error: connection refused");
    }

    #[test]
    fn only_plain_codes_are_repeated() {
        assert_eq!(
            answer_code(br#"{"code":"signature_mismatch","message":"x"}"#).as_deref(),
            Some("signature_mismatch")
        );
        assert_eq!(answer_code(br#"{"code":"Some <b>html</b>"}"#), None);
        assert_eq!(answer_code(b"ok"), None);
    }

    #[test]
    fn urls_must_be_plain_http() {
        assert!(parse_url("http://127.0.0.1:3000/webhooks/periskope").is_ok());
        assert!(parse_url("https://example.com/hook").unwrap_err().contains("https"));
        assert!(parse_url("/webhooks/periskope").is_err());
        assert!(parse_url("not a url").is_err());
    }
}
