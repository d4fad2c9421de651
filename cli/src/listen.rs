//! `listen`: a local receiver behind the real middleware, printing one line per request.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use clap::Args;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, COOKIE, PROXY_AUTHORIZATION};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use periskope_webhook::redact::mask_phone_digits;
use periskope_webhook::signature::SIGNATURE_HEADER;
use periskope_webhook::{
    DeliveryMetadata, Event, EventData, PeriskopeWebhookLayer, Rejection, SigningKeys, WebhookEvent,
};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tower::{Layer, Service, ServiceExt};

use crate::delivery::HEADERS_SUFFIX;
use crate::key::KeyArgs;
use crate::output::{Failure, Output};

/// Receive webhooks on this machine behind the real middleware, and print one line per request:
/// the status, the event, its size and main ids (phone digits masked), or the rejection code.
///
/// Point a tunnel at it to see what Periskope really sends; with --save, keep each verified
/// delivery to replay with `send` or to copy into tests as a fixture. Stop it with Ctrl-C.
#[derive(Args, Debug)]
pub struct ListenArgs {
    /// The address to listen on (port 0: any free port; the line printed first tells which).
    #[arg(long, value_name = "IP:PORT", default_value = "127.0.0.1:3000")]
    addr: SocketAddr,

    #[command(flatten)]
    key: KeyArgs,

    /// Accept deliveries without checking their signature: anyone could forge them. Only to see
    /// what arrives while no signing key is at hand.
    #[arg(long)]
    insecure: bool,

    /// The route Periskope posts to; other paths are answered 404.
    #[arg(long, value_name = "PATH", default_value = "/webhooks/periskope", value_parser = parse_path)]
    path: String,

    /// Save each verified delivery in DIR: the body exactly as received (NNNNNN-EVENT.json) and
    /// its headers (NNNNNN-EVENT.headers.json, without the signature and credentials).
    #[arg(long, value_name = "DIR")]
    save: Option<PathBuf>,

    /// Answer verified deliveries with this status instead of 200, to watch how Periskope retries.
    #[arg(long, value_name = "CODE", default_value_t = 200, value_parser = clap::value_parser!(u16).range(200..=599))]
    status: u16,

    /// Print ids in full; by default every phone number (seven digits or more, as in a WhatsApp
    /// id) is printed as `*`.
    #[arg(long)]
    show_ids: bool,
}

fn parse_path(text: &str) -> Result<String, String> {
    if text.starts_with('/') && text.parse::<http::uri::PathAndQuery>().is_ok() && !text.contains('?') {
        Ok(text.to_owned())
    } else {
        Err("expected a path such as /webhooks/periskope".to_owned())
    }
}

pub fn listen(args: ListenArgs, output: &Output) -> Result<(), Failure> {
    let layer = if args.insecure {
        PeriskopeWebhookLayer::insecure_without_verification()
    } else {
        PeriskopeWebhookLayer::with_keys(SigningKeys::from(args.key.signing_key(output)?))
    };
    let status = StatusCode::from_u16(args.status)
        .map_err(|_| Failure::Error(format!("{} is not an HTTP status", args.status)))?;
    let capture = args.save.as_deref().map(Capture::open).transpose()?.map(Arc::new);
    let receiver = Receiver { status, capture, show_ids: args.show_ids, path: Arc::from(args.path.as_str()) };
    let webhook = layer.report_drift(true).layer(receiver);
    let route = Route { path: Arc::from(args.path.as_str()), output: *output };
    crate::block_on(serve(args.addr, args.insecure, webhook, route))?
}

async fn serve<S, B>(addr: SocketAddr, insecure: bool, webhook: S, route: Route) -> Result<(), Failure>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send,
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
{
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| Failure::io(format_args!("listening on {addr}"), error))?;
    let local = listener.local_addr().map_err(|error| Failure::io("reading the bound address", error))?;
    let url = format!("http://{local}{}", route.path);
    let checking = if insecure { "NOT checking signatures (--insecure)" } else { "checking signatures" };
    route.output.line(
        format_args!("listening on {url} ({checking}); Ctrl-C stops"),
        json!({ "type": "listening", "url": url, "verify": !insecure }),
    );
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, or a connection reset before it was accepted: the
                // listener itself is fine, so go on after a pause that avoids a busy loop.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let (webhook, route) = (webhook.clone(), route.clone());
        let service = tower::service_fn(move |request: Request<Incoming>| {
            let (webhook, route) = (webhook.clone(), route.clone());
            async move { Ok::<_, Infallible>(route.answer(webhook, request).await) }
        });
        tokio::spawn(async move {
            // A connection that breaks off only ends itself.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
        });
    }
}

/// The route the webhook is on, and where each request's line goes.
#[derive(Clone)]
struct Route {
    path: Arc<str>,
    output: Output,
}

impl Route {
    async fn answer<S, B>(&self, webhook: S, request: Request<Incoming>) -> Response<Full<Bytes>>
    where
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>,
        B: hyper::body::Body<Data = Bytes>,
    {
        let time = clock();
        if request.uri().path() != &*self.path {
            let method = request.method().to_string();
            self.output.line(
                format_args!("{time} 404 {method} to another path than {}", self.path),
                json!({ "type": "not_found", "time": time, "status": 404, "method": method }),
            );
            let mut response = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *response.status_mut() = StatusCode::NOT_FOUND;
            return response;
        }
        let declared =
            request.headers().get(CONTENT_LENGTH).and_then(|value| value.to_str().ok()?.parse().ok());
        let Ok(response) = webhook.oneshot(request).await;
        let (mut parts, body) = response.into_parts();
        let body = body.collect().await.map(|body| body.to_bytes()).unwrap_or_default();
        let status = parts.status.as_u16();
        if let Some(rejection) = parts.extensions.get::<Rejection>() {
            let size = declared.map(|bytes: u64| format!(" ({bytes} B)")).unwrap_or_default();
            self.output.line(
                format_args!("{time} {status} rejected {}{size}", rejection.code()),
                json!({ "type": "rejection", "time": time, "status": status, "code": rejection.code(), "bytes": declared }),
            );
        } else if let Some(Seen { text, mut object }) = parts.extensions.remove::<Seen>() {
            object.insert("time".to_owned(), json!(time));
            object.insert("status".to_owned(), json!(status));
            self.output.line(format_args!("{time} {status} {text}"), Value::Object(object));
        }
        Response::from_parts(parts, Full::new(body))
    }
}

/// The time of day in UTC, `HH:MM:SS`: enough to tell retries apart.
pub(crate) fn clock() -> String {
    let seconds = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()) % 86_400;
    format!("{:02}:{:02}:{:02}", seconds / 3600, seconds / 60 % 60, seconds % 60)
}

/// What the receiver saw of a verified delivery: the line to print after the status.
#[derive(Clone)]
struct Seen {
    text: String,
    object: serde_json::Map<String, Value>,
}

/// The handler behind the middleware: answers every verified delivery with the chosen status,
/// after saving it, and says what it saw in the response's extensions.
#[derive(Clone)]
struct Receiver {
    status: StatusCode,
    capture: Option<Arc<Capture>>,
    show_ids: bool,
    path: Arc<str>,
}

impl<B> Service<Request<B>> for Receiver {
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = std::future::Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        std::future::ready(Ok(self.receive(&request)))
    }
}

impl Receiver {
    fn receive<B>(&self, request: &Request<B>) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from_static(b"ok\n")));
        let Some(delivery) = request.extensions().get::<WebhookEvent>() else {
            *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return response;
        };
        let metadata = request.extensions().get::<DeliveryMetadata>();
        let mut seen = describe(delivery, metadata, self.show_ids);
        *response.status_mut() = self.status;
        if let Some(capture) = &self.capture {
            let signature = match metadata.and_then(|metadata| metadata.key.as_ref()) {
                Some(key) => format!("verified with {}", crate::key::explain_label(key.id())),
                None => "not checked (--insecure)".to_owned(),
            };
            match capture.save(delivery.name(), delivery.body(), request.headers(), &self.path, &signature) {
                Ok(file) => {
                    seen.text.push_str(&format!("  saved {file}"));
                    seen.object.insert("saved".to_owned(), json!(file));
                }
                // Not kept, so not acknowledged: Periskope sends it again.
                Err(error) => {
                    seen.text.push_str(&format!("  NOT SAVED ({error}): answered 500"));
                    seen.object.insert("save_error".to_owned(), json!(error.to_string()));
                    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                }
            }
        }
        response.extensions_mut().insert(seen);
        response
    }
}

/// The line for a delivery: its name, how it decoded, its size, its main ids, its drift.
fn describe(delivery: &WebhookEvent, metadata: Option<&DeliveryMetadata>, show_ids: bool) -> Seen {
    let event = delivery.event();
    let name = event.name();
    let bytes = delivery.body().len();
    let (decoded, misfit) = match &event.data {
        EventData::Unknown { .. } => ("unknown", None),
        EventData::Undecodable { error, .. } => ("undecodable", Some(error.path().to_string())),
        _ => ("typed", None),
    };
    let mut text = match (&event.data, &misfit) {
        (EventData::Unknown { .. }, _) => format!("{name} (unknown event) {bytes} B"),
        (_, Some(path)) => format!("{name} (data does not fit at {path}) {bytes} B"),
        _ => format!("{name} {bytes} B"),
    };
    let mut ids = serde_json::Map::new();
    for (label, id) in main_ids(event) {
        let id = if show_ids { id.to_owned() } else { mask_phone_digits(id) };
        text.push_str(&format!(" {label}={id}"));
        ids.insert(label.to_owned(), json!(id));
    }
    let mut object = serde_json::Map::new();
    object.insert("type".to_owned(), json!("delivery"));
    object.insert("event".to_owned(), json!(name));
    object.insert("decoded".to_owned(), json!(decoded));
    object.insert("misfit_at".to_owned(), json!(misfit));
    object.insert("bytes".to_owned(), json!(bytes));
    object.insert("ids".to_owned(), Value::Object(ids));
    if let Some(drift) =
        metadata.and_then(|metadata| metadata.drift.as_ref()).filter(|drift| !drift.is_empty())
    {
        let values: Vec<String> =
            drift.unknown_values.iter().map(|(path, value)| format!("{path}={value}")).collect();
        text.push_str(&format!(
            "  drift: unknown fields [{}], unknown values [{}]",
            drift.unknown_fields.join(", "),
            values.join(", ")
        ));
        object.insert(
            "drift".to_owned(),
            json!({ "unknown_fields": drift.unknown_fields, "unknown_values": drift.unknown_values }),
        );
    }
    Seen { text, object }
}

/// The ids that tell a delivery apart, the organisation first; each label once.
pub(crate) fn main_ids<'e>(event: &'e Event<'_>) -> Vec<(&'static str, &'e str)> {
    let message = event.message();
    let reaction = event.reaction();
    let note = event.note();
    let chat = event.chat();
    let notification = event.chat_notification();
    let ticket = event.ticket();
    let phone = event.phone();
    let candidates = [
        ("org", event.org_id.as_deref()),
        ("chat", message.and_then(|m| m.chat_id.as_deref())),
        ("chat", reaction.and_then(|r| r.chat_id.as_deref())),
        ("chat", note.and_then(|n| n.chat_id.as_deref())),
        ("chat", chat.and_then(|c| c.chat_id.as_deref())),
        ("chat", notification.and_then(|n| n.chat_id.as_deref())),
        ("chat", ticket.and_then(|t| t.chat.as_ref()).and_then(|c| c.chat_id.as_deref())),
        ("message", message.and_then(|m| m.message_id.as_deref())),
        ("message", reaction.and_then(|r| r.message_id.as_deref())),
        ("message", note.and_then(|n| n.message_id.as_deref())),
        ("reaction", reaction.and_then(|r| r.reaction_id.as_deref())),
        ("notification", notification.and_then(|n| n.notification_id.as_deref())),
        ("ticket", ticket.and_then(|t| t.ticket.as_ref()).and_then(|t| t.ticket_id.as_deref())),
        ("phone", phone.and_then(|p| p.phone_id.as_deref())),
    ];
    let mut ids: Vec<(&'static str, &'e str)> = Vec::new();
    for (label, id) in candidates {
        if let Some(id) = id.filter(|_| !ids.iter().any(|(seen, _)| *seen == label)) {
            ids.push((label, id));
        }
    }
    ids
}

/// The directory `--save` writes to, and the number of the next delivery.
pub(crate) struct Capture {
    dir: PathBuf,
    next: AtomicU64,
}

impl Capture {
    /// Creates `dir` if needed, readable by this user only (on Unix, mode 0700, and so are
    /// missing parents); numbering goes on after the deliveries already in it. An existing
    /// directory keeps its mode: the user chose it.
    pub(crate) fn open(dir: &Path) -> Result<Self, Failure> {
        let failed =
            |error| Failure::io(format_args!("preparing the capture directory {}", dir.display()), error);
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(dir).map_err(failed)?;
        let mut last = 0;
        for entry in std::fs::read_dir(dir).map_err(failed)? {
            let name = entry.map_err(failed)?.file_name();
            let number =
                name.to_str().and_then(|name| name.split_once('-')).and_then(|(n, _)| n.parse().ok());
            last = last.max(number.unwrap_or(0));
        }
        Ok(Capture { dir: dir.to_owned(), next: AtomicU64::new(last + 1) })
    }

    /// Writes the headers, with what was done about the signature, then the body exactly as
    /// received (so that a body file always has its headers); returns the body's file name.
    pub(crate) fn save(
        &self,
        name: &str,
        body: &[u8],
        headers: &HeaderMap,
        path: &str,
        signature: &str,
    ) -> std::io::Result<String> {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let stem = format!("{number:06}-{}", file_safe(name));
        let mut kept = serde_json::Map::new();
        for (name, value) in headers {
            if [AUTHORIZATION, PROXY_AUTHORIZATION, COOKIE, SIGNATURE_HEADER].contains(name) {
                continue;
            }
            let value = String::from_utf8_lossy(value.as_bytes());
            // Repeated headers are joined as HTTP allows: `a, b`.
            let joined = match kept.remove(name.as_str()) {
                Some(Value::String(earlier)) => format!("{earlier}, {value}"),
                _ => value.into_owned(),
            };
            kept.insert(name.to_string(), Value::String(joined));
        }
        let record = json!({ "method": "POST", "path": path, "signature": signature, "headers": kept });
        let record = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
        write_private(&self.dir.join(format!("{stem}{HEADERS_SUFFIX}")), &record)?;
        write_private(&self.dir.join(format!("{stem}.json")), body)?;
        Ok(format!("{stem}.json"))
    }
}

/// Writes `bytes` to a new file at `path` that only this user can read (on Unix, mode 0600):
/// bodies and headers hold messages, names and phone numbers. An existing file is not
/// overwritten: the write fails, the delivery is answered 500, and its retry takes the next
/// number.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(bytes)
}

/// An event name as a file name part: letters, digits, `.`, `_` and `-` only, 64 at most.
fn file_safe(name: &str) -> String {
    let safe: String = name
        .chars()
        .take(64)
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    if safe.is_empty() { "unnamed".to_owned() } else { safe }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_names_become_safe_file_names() {
        assert_eq!(file_safe("message.created"), "message.created");
        assert_eq!(file_safe("../../etc/passwd"), ".._.._etc_passwd");
        assert_eq!(file_safe(""), "unnamed");
        assert_eq!(file_safe(&"x".repeat(100)).len(), 64);
    }

    #[test]
    fn paths_must_be_absolute_routes() {
        assert!(parse_path("/webhooks/periskope").is_ok());
        assert!(parse_path("webhooks").is_err());
        assert!(parse_path("/a?b=c").is_err());
    }
}
