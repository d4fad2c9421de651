//! `forward`: Periskope's real-time events (the SDK's socket.io connection) posted to a local
//! endpoint as signed webhook deliveries, so that a laptop sees real events without a tunnel.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderMap, HeaderValue, StatusCode, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::redact::mask_phone_digits;
use periskope_webhook::signature::sign;
use periskope_webhook::testing::compact_json;
use periskope_webhook::{SigningKey, WebhookEvent};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::delivery::LINES_SUFFIX;
use crate::key::KeyArgs;
use crate::listen::{Capture, clock};
use crate::output::{Failure, Output};
use crate::send::{self, Answer};
use crate::socketio::{self, ConnectError};
use crate::trigger::{Precision, format_time, fresh_micros};
use crate::webhooks::{ApiArgs, ApiKey, USER_AGENT_VALUE, tls_config};

/// The longest wait between two connection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// How many received events may wait for the endpoint: a slow endpoint holds back reading, not
/// memory.
const QUEUE: usize = 1024;

/// Receive your organisation's events from Periskope's real-time API, as Periskope's SDK does
/// (socket.io over WebSocket, with the API key and a phone), and POST each one to URL as a
/// signed webhook delivery: `{"event", "data", "org_id", "timestamp"}`, compact, signed with the
/// signing key exactly as `send` signs. Your endpoint's signature check, decoding and handler run
/// as they do in production, with no tunnel.
///
/// The bodies are built from the socket's payload, so they are not byte for byte Periskope's
/// webhook deliveries: no `previous_attributes`, and the timestamp is the time of receipt.
///
/// Prints one line per event (time, status, event, target, ids with phone digits masked,
/// latency). An answer that may change (5xx, 408, 429, no answer) is retried with backoff; any
/// other 4xx is not. An event given up on is kept, one compact body a line, in
/// periskope-undelivered-TIME.jsonl (in the current directory, or the --save directory), which
/// `send` resends as it is. Ctrl-C (or SIGTERM) stops: the events not yet delivered are kept
/// the same way, and the exit status is 130 if any was kept; a second one stops without waiting
/// for the delivery in flight. A refused API key or phone, or an --api-url that is not Periskope's
/// real-time API, exits 2.
#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Where to POST each event, e.g. http://127.0.0.1:3000/webhooks/periskope (plain HTTP).
    #[arg(long, value_name = "URL", value_parser = send::parse_url)]
    to: Uri,

    #[command(flatten)]
    api: ApiArgs,

    /// The org phone whose events to receive, as Periskope's console shows it (e.g.
    /// 919876543210). Repeatable: one connection per phone, named in messages by its position
    /// in this list. PERISKOPE_PHONE may hold several, comma-separated.
    #[arg(
        long = "phone",
        value_name = "PHONE",
        env = "PERISKOPE_PHONE",
        hide_env_values = true,
        value_delimiter = ',',
        required = true
    )]
    phones: Vec<String>,

    #[command(flatten)]
    key: KeyArgs,

    /// Forward only these event names (comma-separated); `*`, or no --events, forwards every
    /// event, including names this program does not know. An unknown name is refused.
    #[arg(long, value_name = "NAMES", value_delimiter = ',', value_parser = parse_event_selector)]
    events: Vec<String>,

    /// How many times a delivery is sent again after an answer that may change (5xx, 408, 429,
    /// no answer), with growing pauses. Other 4xx answers are not retried.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,

    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    /// Print ids in full; by default every phone number (seven digits or more) is printed as `*`.
    #[arg(long)]
    show_ids: bool,

    /// Save each event in DIR when it is received, as `listen --save` does: the body exactly as
    /// it is sent (NNNNNN-EVENT.json) and its headers (NNNNNN-EVENT.headers.json, without the
    /// signature), to replay with `send`. The file of undelivered events goes there too.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
}

/// `*` or the name of an event kind.
fn parse_event_selector(text: &str) -> Result<String, String> {
    if text == "*" {
        return Ok(text.to_owned());
    }
    crate::event_names::check(text).map(str::to_owned)
}

/// A received event, ready to post: its phone's position in `--phone`'s list, its name, and the
/// signed body.
#[derive(Clone)]
struct Pending {
    phone: usize,
    name: String,
    body: Bytes,
}

pub fn forward(args: ForwardArgs, output: &Output) -> Result<(), Failure> {
    let signing_key = args.key.signing_key(output)?;
    let api_key = Arc::new(args.api.api_key(output)?);
    let tls = tls_config()?;
    let capture = args.save.as_deref().map(Capture::open).transpose()?.map(Arc::new);
    if args.phones.iter().any(|phone| phone.trim().is_empty()) {
        return Err(Failure::Error("--phone: a phone cannot be empty".to_owned()));
    }
    let phones = Phones {
        phones: args.phones.iter().map(|phone| phone.trim().to_owned()).collect(),
        show_ids: args.show_ids,
    };
    let undelivered_dir = args.save.clone().unwrap_or_else(|| PathBuf::from("."));
    let forwarder = Forwarder {
        client: Client::builder(TokioExecutor::new()).build_http(),
        to: args.to.clone(),
        key: signing_key,
        retries: args.retries,
        timeout: Duration::from_secs(args.timeout),
        phones: phones.clone(),
        output: *output,
    };
    let receiving = Receiving {
        url: socketio::endpoint(args.api.origin().as_str()),
        origin: args.api.origin().as_str().to_owned(),
        to: args.to.to_string(),
        to_path: args.to.path().to_owned(),
        api_key,
        tls,
        names: if args.events.iter().any(|name| name == "*") { Vec::new() } else { args.events.clone() },
        capture,
        phones,
        output: *output,
    };
    crate::block_on(run(receiving, forwarder, Undelivered::new(&undelivered_dir, &args.to), *output))?
}

/// The phones of `--phone`, and how messages name them.
#[derive(Clone)]
struct Phones {
    phones: Vec<String>,
    show_ids: bool,
}

impl Phones {
    /// `phone *`, or `phone 2 of 3 (*)` when there are several: the number itself masked whole
    /// unless `--show-ids`.
    fn label(&self, index: usize) -> String {
        let number = &self.phones[index];
        let number = if self.show_ids { number.clone() } else { mask_phone_digits(number) };
        if self.phones.len() == 1 {
            format!("phone {number}")
        } else {
            format!("phone {} of {} ({number})", index + 1, self.phones.len())
        }
    }

    /// The phone for JSON lines: its position (from 1) and its number, masked unless `--show-ids`.
    fn json(&self, index: usize) -> (usize, String) {
        let number = &self.phones[index];
        (index + 1, if self.show_ids { number.clone() } else { mask_phone_digits(number) })
    }
}

/// Where events come from, and what is done with them on receipt.
struct Receiving {
    url: String,
    origin: String,
    to: String,
    /// The path of `to`, which `--save` records as the request's.
    to_path: String,
    api_key: Arc<ApiKey>,
    tls: Arc<rustls::ClientConfig>,
    /// The names to forward; empty: every one.
    names: Vec<String>,
    capture: Option<Arc<Capture>>,
    phones: Phones,
    output: Output,
}

/// How forwarding ended.
enum Ended {
    /// Every connection ended on its own, or an undelivered event could not be kept.
    Closed,
    /// Ctrl-C, once or twice.
    Interrupted,
    Failed(Failure),
}

async fn run(
    receiving: Receiving,
    forwarder: Forwarder,
    mut undelivered: Undelivered,
    output: Output,
) -> Result<(), Failure> {
    let mut interrupts = Interrupts::new()?;
    let (events, mut received) = mpsc::channel::<Pending>(QUEUE);
    let (stop, stopping) = watch::channel(false);
    let receiving = Arc::new(receiving);
    let mut connections = JoinSet::new();
    for phone in 0..receiving.phones.phones.len() {
        connections.spawn(keep_up(Arc::clone(&receiving), phone, events.clone()));
    }
    drop(events);
    // The event being delivered, kept apart from its future so that it is not lost with it.
    type Delivering<'f> = Pin<Box<dyn Future<Output = Outcome> + Send + 'f>>;
    let mut in_flight: Option<(Pending, Delivering<'_>)> = None;
    let mut interrupted = false;
    let ended = loop {
        tokio::select! {
            () = interrupts.next() => {
                if interrupted || in_flight.is_none() {
                    break Ended::Interrupted;
                }
                interrupted = true;
                let _ = stop.send(true);
                connections.abort_all();
                output.note(
                    format_args!(
                        "{} stopping: waiting for the answer to the delivery in flight (at most {} s); Ctrl-C again to stop now",
                        clock(),
                        forwarder.timeout.as_secs()
                    ),
                    json!({ "type": "stopping", "time": clock() }),
                );
            }
            outcome = async { in_flight.as_mut().expect("polled only when some").1.as_mut().await }, if in_flight.is_some() => {
                let (pending, _) = in_flight.take().expect("polled only when some");
                if !matches!(outcome, Outcome::Delivered) {
                    if !undelivered.keep(&pending) {
                        break Ended::Closed;
                    }
                    output.note(
                        format_args!("{} {}: kept in {}", clock(), pending.name, undelivered.path.display()),
                        json!({ "type": "kept", "time": clock(), "event": pending.name, "file": undelivered.path.display().to_string() }),
                    );
                }
                if interrupted {
                    break Ended::Interrupted;
                }
            }
            pending = received.recv(), if in_flight.is_none() && !interrupted => match pending {
                Some(pending) => {
                    let delivering = Box::pin(forwarder.forward(pending.clone(), stopping.clone()));
                    in_flight = Some((pending, delivering));
                }
                None => break Ended::Closed,
            },
            ended = connections.join_next(), if !connections.is_empty() && !interrupted => match ended {
                Some(Ok(Err(failure))) => break Ended::Failed(failure),
                Some(Err(error)) if !error.is_cancelled() => {
                    break Ended::Failed(Failure::Error(format!("a connection task failed: {error}")));
                }
                _ => {}
            },
        }
    };
    let interrupted_at_end = matches!(ended, Ended::Interrupted);
    // Every connection stopped; one that ended on its own may say why (a refused key).
    connections.abort_all();
    let mut failure = match ended {
        Ended::Failed(failure) => Some(failure),
        Ended::Closed | Ended::Interrupted => None,
    };
    while let Some(result) = connections.join_next().await {
        let why = match result {
            Ok(Err(why)) => why,
            Err(error) if !error.is_cancelled() => {
                Failure::Error(format!("a connection task failed: {error}"))
            }
            _ => continue,
        };
        failure.get_or_insert(why);
    }
    // What was received and not delivered: the delivery in flight, then the queue in order.
    let mut left: Vec<Pending> = in_flight.take().map(|(pending, _)| pending).into_iter().collect();
    received.close();
    while let Ok(pending) = received.try_recv() {
        left.push(pending);
    }
    for pending in &left {
        undelivered.keep(pending);
    }
    let kept = undelivered.report(&output);
    if let Some(lost) = undelivered.lost() {
        return Err(lost);
    }
    match (failure, interrupted_at_end) {
        (Some(failure), _) => Err(failure),
        (None, true) if kept > 0 => Err(Failure::Interrupted),
        (None, _) => Ok(()),
    }
}

/// Ctrl-C (SIGINT), and on Unix SIGTERM too, each one: streams, so that one that comes while
/// the first is handled is not missed.
struct Interrupts {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(not(unix))]
    interrupt: tokio::signal::windows::CtrlC,
}

impl Interrupts {
    fn new() -> Result<Self, Failure> {
        let failed = |error| Failure::io("listening for Ctrl-C", error);
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Interrupts {
                interrupt: signal(SignalKind::interrupt()).map_err(failed)?,
                terminate: signal(SignalKind::terminate()).map_err(failed)?,
            })
        }
        #[cfg(not(unix))]
        Ok(Interrupts { interrupt: tokio::signal::windows::ctrl_c().map_err(failed)? })
    }

    async fn next(&mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        self.interrupt.recv().await;
    }
}

/// One phone's connection, kept up until the server refuses it or it is cancelled; each event
/// it receives is filtered, built into its delivery, saved with `--save`, and queued.
async fn keep_up(
    receiving: Arc<Receiving>,
    phone: usize,
    events: mpsc::Sender<Pending>,
) -> Result<(), Failure> {
    let label = receiving.phones.label(phone);
    let (position, number) = receiving.phones.json(phone);
    let output = receiving.output;
    let mut headers = HeaderMap::new();
    headers.insert(AUTHORIZATION, receiving.api_key.bearer()?);
    headers.insert(USER_AGENT, HeaderValue::from_static(USER_AGENT_VALUE));
    let phone_header = HeaderValue::try_from(&receiving.phones.phones[phone])
        .map_err(|_| Failure::Error(format!("--phone: {label} is not a value a header can carry")))?;
    headers.insert("x-phone", phone_header);
    let mut delay = Duration::from_secs(1);
    let mut ever_connected = false;
    loop {
        let reason = match socketio::connect(&receiving.url, headers.clone(), Arc::clone(&receiving.tls))
            .await
        {
            Err(ConnectError::Refused(message)) => {
                let message = message
                    .map(|message| receiving.api_key.redact(&plain(&message)))
                    .filter(|message| !message.is_empty())
                    .map(|message| format!(" ({message})"))
                    .unwrap_or_default();
                return Err(Failure::Error(format!(
                    "Periskope refused the connection for {label}{message}: check the API key and the phone"
                )));
            }
            Err(ConnectError::NotSocketIo(status)) if !ever_connected => {
                return Err(Failure::Error(format!(
                    "{} is not Periskope's real-time API: it answered the WebSocket upgrade with {status}; \
                     check --api-url (default https://api.periskope.app)",
                    receiving.origin
                )));
            }
            Err(ConnectError::NotSocketIo(reason) | ConnectError::Failed(reason)) => {
                format!("cannot connect to {}: {}", receiving.origin, receiving.api_key.redact(&reason))
            }
            Ok(mut socket) => {
                delay = Duration::from_secs(1);
                ever_connected = true;
                output.line(
                    format_args!(
                        "{} connected to {} as {label}: forwarding its events to {}; Ctrl-C stops",
                        clock(),
                        receiving.origin,
                        receiving.to
                    ),
                    json!({ "type": "connected", "time": clock(), "phone": number, "phone_position": position, "to": receiving.to }),
                );
                let reason = loop {
                    // A place in the queue first, then the next event: an event read from the
                    // socket is queued at once, so that stopping this task never drops one.
                    let Ok(place) = events.reserve().await else { return Ok(()) };
                    match socket.next_event().await {
                        Ok(event) => {
                            if let Some(pending) = receiving.receive(phone, event) {
                                place.send(pending);
                            }
                        }
                        Err(reason) => break reason,
                    }
                };
                format!("connection to {} lost: {}", receiving.origin, receiving.api_key.redact(&reason))
            }
        };
        output.line(
            format_args!("{} {label}: {reason}; retrying in {} s", clock(), delay.as_secs()),
            json!({ "type": "disconnected", "time": clock(), "phone": number, "phone_position": position, "reason": reason, "retry_in_seconds": delay.as_secs() }),
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(MAX_RECONNECT_DELAY);
    }
}

impl Receiving {
    /// The delivery for `event`, saved with `--save` as it is received; `None` when `--events`
    /// leaves it out.
    fn receive(&self, phone: usize, event: socketio::Event) -> Option<Pending> {
        let name = event.name;
        if !self.names.is_empty() && !self.names.contains(&name) {
            return None;
        }
        let body = Bytes::from(envelope(&name, event.data.get(), fresh_micros()));
        if let Some(capture) = &self.capture {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let signature = "signed by `periskope-webhook forward` with the signing key";
            if let Err(error) = capture.save(&name, &body, &headers, &self.to_path, signature) {
                self.output.note(
                    format_args!("{} {name}: NOT SAVED ({error})", clock()),
                    json!({ "type": "save_error", "time": clock(), "event": name, "error": error.to_string() }),
                );
            }
        }
        Some(Pending { phone, name, body })
    }
}

/// A server's message as printable text: control characters dropped, 100 characters at most.
fn plain(message: &str) -> String {
    message.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// What became of one delivery.
enum Outcome {
    Delivered,
    /// Refused for good, retried to the limit, or stopped (Ctrl-C, SIGTERM) before a 2xx.
    NotDelivered,
}

/// Posts each event to the endpoint, one after the other, in the order they came.
struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    to: Uri,
    key: SigningKey,
    retries: u32,
    timeout: Duration,
    phones: Phones,
    output: Output,
}

impl Forwarder {
    /// Delivers `pending`, retrying answers that may change until `--retries` runs out or
    /// `stopping` turns true, and prints the result.
    async fn forward(&self, pending: Pending, mut stopping: watch::Receiver<bool>) -> Outcome {
        let name = &pending.name;
        let signature = sign(&self.key, &pending.body);
        let ids = self.ids(&pending.body);
        let (position, number) = self.phones.json(pending.phone);
        let started = Instant::now();
        let mut pause = Duration::from_millis(500);
        let mut attempts = 0;
        let (answer, why) = loop {
            attempts += 1;
            let answer =
                send::post(&self.client, self.to.clone(), pending.body.clone(), &signature, self.timeout)
                    .await;
            let said = Said::of(&answer);
            if said.delivered() {
                break (answer, None);
            }
            if said.permanent() {
                break (answer, Some("refused for good: not retried".to_owned()));
            }
            if attempts > self.retries {
                break (answer, Some(format!("gave up after {attempts} attempts")));
            }
            if *stopping.borrow() {
                break (answer, Some("stopped".to_owned()));
            }
            self.output.note(
                format_args!(
                    "{} {} {name} -> {}: trying again in {} ms (attempt {attempts} of {}){}",
                    clock(),
                    said.text(),
                    self.to,
                    pause.as_millis(),
                    self.retries + 1,
                    said.hint()
                ),
                json!({
                    "type": "retry",
                    "time": clock(),
                    "event": name,
                    "to": self.to.to_string(),
                    "phone": number,
                    "phone_position": position,
                    "status": said.status,
                    "code": said.code,
                    "reason": said.reason,
                    "attempt": attempts,
                    "retry_in_millis": pause.as_millis() as u64,
                }),
            );
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = stopping.wait_for(|stop| *stop) => break (answer, Some("stopped".to_owned())),
            }
            pause = (pause * 2).min(MAX_RECONNECT_DELAY);
        };
        let said = Said::of(&answer);
        let millis = started.elapsed().as_millis() as u64;
        let mut text = format!("{} {:<5} {name} -> {}", clock(), said.status_text(), self.to);
        if self.phones.phones.len() > 1 {
            text.push_str(&format!(" ({})", self.phones.label(pending.phone)));
        }
        for (label, id) in &ids {
            text.push_str(&format!(" {label}={id}"));
        }
        text.push_str(&format!("  {millis} ms"));
        if let Some(why) = &why {
            text.push_str(&format!("  NOT DELIVERED, {why}: {}{}", said.text(), said.hint()));
        } else if let Some(code) = &said.code {
            text.push_str(&format!("  {code}"));
        }
        self.output.line(
            text,
            json!({
                "type": "forwarded",
                "time": clock(),
                "event": name,
                "to": self.to.to_string(),
                "phone": number,
                "phone_position": position,
                "status": said.status,
                "code": said.code,
                "reason": said.reason,
                "delivered": why.is_none(),
                "gave_up": why,
                "attempts": attempts,
                "ids": ids.iter().map(|(label, id)| (label.to_string(), json!(id))).collect::<serde_json::Map<_, _>>(),
                "millis": millis,
            }),
        );
        if why.is_none() { Outcome::Delivered } else { Outcome::NotDelivered }
    }

    /// The delivery's main ids, as `listen` prints them.
    fn ids(&self, body: &Bytes) -> Vec<(&'static str, String)> {
        let Ok(delivery) = WebhookEvent::decode(body.clone()) else { return Vec::new() };
        crate::listen::main_ids(delivery.event())
            .into_iter()
            .map(|(label, id)| {
                (label, if self.phones.show_ids { id.to_owned() } else { mask_phone_digits(id) })
            })
            .collect()
    }
}

/// What an answer said: its status, the short `code` of its body, and the reason (the status's
/// own words, or why there was no answer).
struct Said {
    status: Option<u16>,
    code: Option<String>,
    reason: String,
}

impl Said {
    fn of(answer: &Answer) -> Self {
        match answer {
            Answer::Status(status, code) => Said {
                status: Some(status.as_u16()),
                code: code.clone(),
                reason: status.canonical_reason().unwrap_or("unknown status").to_owned(),
            },
            Answer::Failed(reason) => {
                Said { status: None, code: Some("no_answer".to_owned()), reason: reason.clone() }
            }
            Answer::Unreachable(reason) => {
                Said { status: None, code: Some("unreachable".to_owned()), reason: reason.clone() }
            }
        }
    }

    fn delivered(&self) -> bool {
        self.status.is_some_and(|status| (200..300).contains(&status))
    }

    /// A 4xx other than 408 (timeout) and 429 (too many requests): the same body would be
    /// refused again.
    fn permanent(&self) -> bool {
        self.status.is_some_and(|status| {
            (400..500).contains(&status)
                && status != StatusCode::REQUEST_TIMEOUT.as_u16()
                && status != StatusCode::TOO_MANY_REQUESTS.as_u16()
        })
    }

    /// The status, or `error` when there was no answer.
    fn status_text(&self) -> String {
        self.status.map_or_else(|| "error".to_owned(), |status| status.to_string())
    }

    /// `503 Service Unavailable (code: x)`, or `error (code: unreachable): reason`.
    fn text(&self) -> String {
        let code = self.code.as_deref().map(|code| format!(" (code: {code})")).unwrap_or_default();
        match self.status {
            Some(status) => format!("{status} {}{code}", self.reason),
            None => format!("error{code}: {}", self.reason),
        }
    }

    /// What to do about a code whose cause is known.
    fn hint(&self) -> &'static str {
        match self.code.as_deref() {
            Some("signature_mismatch") => {
                "; the app checks signatures with another signing key than this one: give both the same key"
            }
            _ => "",
        }
    }
}

/// The file of events not delivered, in the current directory or the `--save` one: one compact
/// body a line, which `send` resends as it is. Created at the first such event, mode 0600.
struct Undelivered {
    path: PathBuf,
    file: Option<File>,
    count: usize,
    /// The events that could not be written, and the first reason.
    lost: usize,
    error: Option<std::io::Error>,
    to: String,
}

impl Undelivered {
    fn new(dir: &Path, to: &Uri) -> Self {
        let micros = fresh_micros();
        let time = format_time(micros, Precision::Seconds);
        // 2025-01-20T07:51:48+00:00 → 20250120-075148
        let stamp: String = time[..19].chars().filter(char::is_ascii_digit).collect();
        let name = format!("periskope-undelivered-{}-{}{LINES_SUFFIX}", &stamp[..8], &stamp[8..]);
        Undelivered { path: dir.join(name), file: None, count: 0, lost: 0, error: None, to: to.to_string() }
    }

    /// Appends the event's body and syncs it; `false` when it could not be written, which
    /// [`Undelivered::lost`] reports.
    fn keep(&mut self, pending: &Pending) -> bool {
        let mut line = pending.body.to_vec();
        line.push(b'\n');
        let written = self.open().and_then(|file| {
            file.write_all(&line)?;
            file.sync_data()
        });
        match written {
            Ok(()) => self.count += 1,
            Err(error) => {
                self.lost += 1;
                self.error.get_or_insert(error);
            }
        }
        self.error.is_none()
    }

    /// The file, created at the first call: a new one, never another run's (started in the
    /// same second), which takes the next free name (`...-2.jsonl`).
    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.is_none() {
            let mut options = std::fs::OpenOptions::new();
            options.append(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let first = self.path.clone();
            let mut number = 1;
            let file = loop {
                match options.open(&self.path) {
                    Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists && number < 100 => {
                        number += 1;
                        let stem = first.file_stem().unwrap_or_default().to_string_lossy();
                        self.path = first.with_file_name(format!("{stem}-{number}{LINES_SUFFIX}"));
                    }
                    opened => break opened?,
                }
            };
            self.file = Some(file);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// The failure that says how many events could not be kept, and why; `None` if none.
    fn lost(&self) -> Option<Failure> {
        let error = self.error.as_ref()?;
        Some(Failure::Error(format!(
            "{} event{} not delivered could not be kept in {}, and {} lost: {error}",
            self.lost,
            if self.lost == 1 { "" } else { "s" },
            self.path.display(),
            if self.lost == 1 { "is" } else { "are" }
        )))
    }

    /// Prints how many events were kept, where, and the command that resends them; returns the
    /// count.
    fn report(&self, output: &Output) -> usize {
        if self.count == 0 {
            return 0;
        }
        let file = self.path.display();
        let command = format!("periskope-webhook send {} {file}", self.to);
        output.line(
            format_args!(
                "{} {} event{} not delivered, kept in {file}; resend with: {command}",
                clock(),
                self.count,
                if self.count == 1 { "" } else { "s" }
            ),
            json!({ "type": "undelivered", "time": clock(), "count": self.count, "file": file.to_string(), "command": command }),
        );
        self.count
    }
}

/// The webhook body for event `name` with payload `data` (JSON text), at `micros` since the
/// Unix epoch: `{"event","data","org_id","timestamp"}` in Periskope's order, compact. `org_id`
/// is where the payload carries it: its own, or else that of an object in it (a ticket event's
/// `ticket` or `chat`); absent when it has none.
fn envelope(name: &str, data: &str, micros: u64) -> Vec<u8> {
    let org_id = serde_json::from_str::<Value>(data).ok().and_then(|data| org_id(&data));
    let mut body = format!(
        "{{\"event\":{},\"data\":{}",
        json!(name),
        String::from_utf8_lossy(&compact_json(data.as_bytes()))
    );
    if let Some(org_id) = org_id {
        body.push_str(&format!(",\"org_id\":{}", json!(org_id)));
    }
    body.push_str(&format!(",\"timestamp\":{}}}", json!(format_time(micros, Precision::Millis))));
    body.into_bytes()
}

/// The payload's `org_id`, or the first one of its objects.
fn org_id(data: &Value) -> Option<String> {
    let own = |value: &Value| value.get("org_id")?.as_str().map(str::to_owned);
    own(data).or_else(|| data.as_object()?.values().find_map(own))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_wrap_the_payload_in_periskopes_order() {
        let micros = 1_737_359_508_209_000;
        let body = envelope("message.created", "{ \"org_id\": \"org-1\", \"body\": \"a  b\" }", micros);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"event":"message.created","data":{"org_id":"org-1","body":"a  b"},"org_id":"org-1","timestamp":"2025-01-20T07:51:48.209+00:00"}"#
        );
        let body = envelope("contact.merged", r#"{"contact_id":"x"}"#, micros);
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"event":"contact.merged","data":{"contact_id":"x"},"timestamp":"2025-01-20T07:51:48.209+00:00"}"#
        );
        let body =
            envelope("ticket.updated", r#"{"ticket":{"org_id":"org-2"},"chat":{"org_id":"org-2"}}"#, micros);
        assert!(String::from_utf8(body).unwrap().contains(r#"},"org_id":"org-2","timestamp""#));
    }

    #[test]
    fn only_answers_that_may_change_are_retried() {
        let said = |status: u16| Said::of(&Answer::Status(StatusCode::from_u16(status).unwrap(), None));
        for status in [400, 401, 404, 405, 413, 422] {
            assert!(said(status).permanent(), "{status}");
        }
        for status in [408, 429, 500, 503] {
            assert!(!said(status).permanent() && !said(status).delivered(), "{status}");
        }
        assert!(!Said::of(&Answer::Failed("timeout".to_owned())).permanent());
        let mismatch =
            Said::of(&Answer::Status(StatusCode::UNAUTHORIZED, Some("signature_mismatch".to_owned())));
        assert_eq!(mismatch.text(), "401 Unauthorized (code: signature_mismatch)");
        assert!(mismatch.hint().contains("signing key"));
    }

    #[test]
    fn undelivered_events_never_go_into_another_runs_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut undelivered = Undelivered::new(dir.path(), &"http://127.0.0.1:3000/x".parse().unwrap());
        let taken = undelivered.path.clone();
        std::fs::write(&taken, "another run's\n").unwrap();
        let pending = Pending { phone: 0, name: "note.created".to_owned(), body: Bytes::from_static(b"{}") };
        assert!(undelivered.keep(&pending) && undelivered.keep(&pending));
        assert_eq!(std::fs::read_to_string(&taken).unwrap(), "another run's\n");
        assert!(undelivered.path.to_string_lossy().ends_with("-2.jsonl"), "{}", undelivered.path.display());
        assert_eq!(std::fs::read_to_string(&undelivered.path).unwrap(), "{}\n{}\n");
        assert!(undelivered.lost().is_none());

        let mut nowhere =
            Undelivered::new(&dir.path().join("missing"), &"http://127.0.0.1:3000/x".parse().unwrap());
        assert!(!nowhere.keep(&pending) && !nowhere.keep(&pending));
        let Some(Failure::Error(lost)) = nowhere.lost() else { panic!("the events are said to be lost") };
        assert!(lost.starts_with("2 events not delivered could not be kept in "), "{lost}");
    }

    #[test]
    fn server_messages_are_one_short_line() {
        assert_eq!(plain("bad\nkey\u{7}"), "badkey");
        assert_eq!(plain(&"x".repeat(500)).len(), 100);
    }
}
