//! `forward`: Periskope's real-time events (the SDK's socket.io connection) posted to a local
//! endpoint as signed webhook deliveries, so that a laptop sees real events without a tunnel.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::redact::mask_phone_digits;
use periskope_webhook::signature::sign;
use periskope_webhook::testing::compact_json;
use periskope_webhook::{SigningKey, WebhookEvent};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::key::KeyArgs;
use crate::listen::Capture;
use crate::output::{Failure, Output};
use crate::send::{self, Answer};
use crate::socketio::{self, ConnectError};
use crate::trigger::{Precision, format_time, fresh_micros};
use crate::webhooks::{ApiArgs, ApiKey, tls_config};

/// The longest wait between two connection attempts.
const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(30);

/// Receive your organisation's events from Periskope's real-time API, as Periskope's SDK does
/// (socket.io over WebSocket, with the API key and a phone), and POST each one to URL as a
/// signed webhook delivery: `{"event", "data", "org_id", "timestamp"}`, compact, signed with the
/// signing key exactly as `send` signs. Your endpoint's signature check, decoding and handler run
/// as they do in production, with no tunnel.
///
/// The bodies are built from the socket's payload, so they are not byte for byte Periskope's
/// webhook deliveries: no `previous_attributes`, and the timestamp is the time of forwarding.
///
/// Prints one line per event (status, event, ids with phone digits masked, latency). A non-2xx
/// answer is retried with backoff, then reported, and forwarding goes on. A lost connection is
/// retried with backoff. A refused API key or phone exits 2. Ctrl-C stops.
#[derive(Args, Debug)]
pub struct ForwardArgs {
    /// Where to POST each event, e.g. http://127.0.0.1:3000/webhooks/periskope (plain HTTP).
    #[arg(long, value_name = "URL", value_parser = send::parse_url)]
    to: Uri,

    #[command(flatten)]
    api: ApiArgs,

    /// The org phone whose events to receive, as Periskope's console shows it (e.g.
    /// 919876543210). Repeatable: one connection per phone. PERISKOPE_PHONE may hold several,
    /// comma-separated.
    #[arg(
        long = "phone",
        value_name = "PHONE",
        env = "PERISKOPE_PHONE",
        value_delimiter = ',',
        required = true
    )]
    phones: Vec<String>,

    #[command(flatten)]
    key: KeyArgs,

    /// Forward only these event names (comma-separated); by default every event, including
    /// names this program does not know.
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    events: Vec<String>,

    /// How many times a delivery not answered 2xx is sent again, with growing pauses.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=100))]
    retries: u32,

    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    timeout: u64,

    /// Print ids in full; by default every phone number (seven digits or more) is printed as `*`.
    #[arg(long)]
    show_ids: bool,

    /// Save each delivery in DIR before posting it, as `listen --save` does: the body exactly
    /// as sent (NNNNNN-EVENT.json) and its headers (NNNNNN-EVENT.headers.json, without the
    /// signature), to replay with `send`.
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,
}

/// An event received on one phone's connection.
struct Received {
    phone: String,
    event: socketio::Event,
}

pub fn forward(args: ForwardArgs, output: &Output) -> Result<(), Failure> {
    let signing_key = args.key.signing_key(output)?;
    let api_key = Arc::new(args.api.api_key(output)?);
    let tls = tls_config()?;
    let capture = args.save.as_deref().map(Capture::open).transpose()?;
    if args.phones.iter().any(|phone| phone.trim().is_empty()) {
        return Err(Failure::Error("--phone: a phone cannot be empty".to_owned()));
    }
    let forwarder = Forwarder {
        client: Client::builder(TokioExecutor::new()).build_http(),
        to: args.to.clone(),
        key: signing_key,
        names: args.events.clone(),
        retries: args.retries,
        timeout: Duration::from_secs(args.timeout),
        show_ids: args.show_ids,
        capture,
        output: *output,
    };
    crate::block_on(run(args, forwarder, api_key, tls, *output))?
}

async fn run(
    args: ForwardArgs,
    forwarder: Forwarder,
    api_key: Arc<ApiKey>,
    tls: Arc<rustls::ClientConfig>,
    output: Output,
) -> Result<(), Failure> {
    let url = socketio::endpoint(args.api.origin().as_str());
    // Bounded: a slow endpoint holds back reading, not memory.
    let (events, mut received) = mpsc::channel::<Received>(1024);
    let mut connections = JoinSet::new();
    for phone in &args.phones {
        let connection = Connection {
            url: url.clone(),
            phone: phone.trim().to_owned(),
            api_key: Arc::clone(&api_key),
            tls: Arc::clone(&tls),
            events: events.clone(),
            show_ids: args.show_ids,
            output,
        };
        connections.spawn(connection.keep_up());
    }
    drop(events);
    // A task of its own: its end (every connection gone) says nothing of why they went, which
    // the connections' results say.
    let forwarding = tokio::spawn(async move {
        while let Some(event) = received.recv().await {
            forwarder.forward(event).await;
        }
    });
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    let ended = loop {
        tokio::select! {
            ended = connections.join_next() => match ended {
                Some(Ok(Err(failure))) => break Err(failure),
                Some(Err(error)) => break Err(Failure::Error(format!("a connection task failed: {error}"))),
                Some(Ok(Ok(()))) => {}
                None => break Ok(()),
            },
            _ = &mut shutdown => break Ok(()),
        }
    };
    forwarding.abort();
    ended
}

/// One phone's connection, kept up until the server refuses it.
struct Connection {
    url: String,
    phone: String,
    api_key: Arc<ApiKey>,
    tls: Arc<rustls::ClientConfig>,
    events: mpsc::Sender<Received>,
    show_ids: bool,
    output: Output,
}

impl Connection {
    async fn keep_up(self) -> Result<(), Failure> {
        let phone = if self.show_ids { self.phone.clone() } else { mask_phone_digits(&self.phone) };
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, self.api_key.bearer()?);
        let phone_header = HeaderValue::try_from(&self.phone)
            .map_err(|_| Failure::Error(format!("--phone {phone}: not a value a header can carry")))?;
        headers.insert("x-phone", phone_header);
        let mut delay = Duration::from_secs(1);
        loop {
            let reason = match socketio::connect(&self.url, headers.clone(), Arc::clone(&self.tls)).await {
                Err(ConnectError::Refused(message)) => {
                    let message = message
                        .map(|message| self.api_key.redact(&plain(&message)))
                        .filter(|message| !message.is_empty())
                        .map(|message| format!(" ({message})"))
                        .unwrap_or_default();
                    return Err(Failure::Error(format!(
                        "Periskope refused the connection for phone {phone}{message}: check the API key and the phone"
                    )));
                }
                Err(ConnectError::Failed(reason)) => {
                    format!("cannot connect: {}", self.api_key.redact(&reason))
                }
                Ok(mut socket) => {
                    delay = Duration::from_secs(1);
                    self.output.line(
                        format_args!("connected as phone {phone}; forwarding its events"),
                        json!({ "type": "connected", "phone": phone }),
                    );
                    let reason = loop {
                        match socket.next_event().await {
                            Ok(event) => {
                                let received = Received { phone: self.phone.clone(), event };
                                if self.events.send(received).await.is_err() {
                                    return Ok(());
                                }
                            }
                            Err(reason) => break reason,
                        }
                    };
                    format!("connection lost: {}", self.api_key.redact(&reason))
                }
            };
            self.output.line(
                format_args!("phone {phone}: {reason}; retrying in {} s", delay.as_secs()),
                json!({ "type": "disconnected", "phone": phone, "reason": reason, "retry_in_seconds": delay.as_secs() }),
            );
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(MAX_RECONNECT_DELAY);
        }
    }
}

/// A server's message as printable text: control characters dropped, 100 characters at most.
fn plain(message: &str) -> String {
    message.chars().filter(|c| !c.is_control()).take(100).collect()
}

/// Posts each event to the endpoint, one after the other, in the order they came.
struct Forwarder {
    client: Client<HttpConnector, Full<Bytes>>,
    to: Uri,
    key: SigningKey,
    names: Vec<String>,
    retries: u32,
    timeout: Duration,
    show_ids: bool,
    capture: Option<Capture>,
    output: Output,
}

impl Forwarder {
    async fn forward(&self, received: Received) {
        let name = &received.event.name;
        if !self.names.is_empty() && !self.names.contains(name) {
            return;
        }
        let body = Bytes::from(envelope(name, received.event.data.get(), fresh_micros()));
        let signature = sign(&self.key, &body);
        self.save(name, &body);
        let ids = self.ids(&body);
        let phone = if self.show_ids { received.phone.clone() } else { mask_phone_digits(&received.phone) };
        let started = Instant::now();
        let mut pause = Duration::from_millis(500);
        let mut attempts = 0;
        let answer = loop {
            attempts += 1;
            let answer =
                send::post(&self.client, self.to.clone(), body.clone(), &signature, self.timeout).await;
            let done = matches!(answer, Answer::Status(status, _) if status.is_success());
            if done || attempts > self.retries {
                break answer;
            }
            let what = describe(&answer);
            self.output.note(
                format_args!("{what} {name}: trying again in {} ms", pause.as_millis()),
                json!({ "type": "retry", "event": name, "answer": what, "attempt": attempts, "retry_in_millis": pause.as_millis() as u64 }),
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(MAX_RECONNECT_DELAY);
        };
        let millis = started.elapsed().as_millis() as u64;
        let (status, code, error) = match &answer {
            Answer::Status(status, code) => (Some(status.as_u16()), code.clone(), None),
            Answer::Failed(reason) | Answer::Unreachable(reason) => (None, None, Some(reason.clone())),
        };
        let delivered = status.is_some_and(|status| (200..300).contains(&status));
        let mut text = format!("{:<5} {name}", describe(&answer));
        for (label, id) in &ids {
            text.push_str(&format!(" {label}={id}"));
        }
        text.push_str(&format!("  {millis} ms"));
        if let Some(code) = &code {
            text.push_str(&format!("  {code}"));
        }
        if !delivered {
            text.push_str(&format!("  GAVE UP after {attempts} attempts"));
            if let Some(reason) = &error {
                text.push_str(&format!(": {reason}"));
            }
        }
        self.output.line(
            text,
            json!({
                "type": "forwarded",
                "event": name,
                "phone": phone,
                "status": status,
                "code": code,
                "error": error,
                "delivered": delivered,
                "attempts": attempts,
                "ids": ids.iter().map(|(label, id)| (label.to_string(), json!(id))).collect::<serde_json::Map<_, _>>(),
                "millis": millis,
            }),
        );
    }

    /// Keeps the delivery in the `--save` directory; a failure is said, and forwarding goes on.
    fn save(&self, name: &str, body: &[u8]) {
        let Some(capture) = &self.capture else { return };
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let signature = "signed by `periskope-webhook forward` with the signing key";
        if let Err(error) = capture.save(name, body, &headers, self.to.path(), signature) {
            self.output.note(
                format_args!("{name}: NOT SAVED ({error})"),
                json!({ "type": "save_error", "event": name, "error": error.to_string() }),
            );
        }
    }

    /// The delivery's main ids, as `listen` prints them.
    fn ids(&self, body: &Bytes) -> Vec<(&'static str, String)> {
        let Ok(delivery) = WebhookEvent::decode(body.clone()) else { return Vec::new() };
        crate::listen::main_ids(delivery.event())
            .into_iter()
            .map(|(label, id)| (label, if self.show_ids { id.to_owned() } else { mask_phone_digits(id) }))
            .collect()
    }
}

/// The status of an answer, or `error` when there was none.
fn describe(answer: &Answer) -> String {
    match answer {
        Answer::Status(status, _) => status.as_u16().to_string(),
        Answer::Failed(_) | Answer::Unreachable(_) => "error".to_owned(),
    }
}

/// The webhook body for event `name` with payload `data` (JSON text), at `micros` since the
/// Unix epoch: `{"event","data","org_id","timestamp"}` in Periskope's order, compact; `org_id`
/// is the payload's, and absent when the payload has none.
fn envelope(name: &str, data: &str, micros: u64) -> Vec<u8> {
    let org_id = serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|data| data.get("org_id")?.as_str().map(str::to_owned));
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
    }

    #[test]
    fn server_messages_are_one_short_line() {
        assert_eq!(plain("bad\nkey\u{7}"), "badkey");
        assert_eq!(plain(&"x".repeat(500)).len(), 100);
    }
}
