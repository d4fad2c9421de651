//! `webhooks`: Periskope's webhook subscriptions through its REST API (`ORIGIN/v1/webhooks`),
//! and what `forward` shares with it: the API origin, the API key and TLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Subcommand};
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use crate::output::{Failure, Output};

/// The `User-Agent` of every request to Periskope's API: `periskope-webhook/VERSION`.
pub const USER_AGENT_VALUE: &str = concat!("periskope-webhook/", env!("CARGO_PKG_VERSION"));

/// Periskope's API, as its SDK reaches it.
const DEFAULT_API_URL: &str = "https://api.periskope.app";

/// Where Periskope's API is and the key that opens it.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// Periskope's API origin, e.g. https://api-staging.periskope.app or a local stand-in. A
    /// trailing /v1 is dropped, as Periskope's SDK drops it.
    #[arg(long, value_name = "ORIGIN", default_value = DEFAULT_API_URL, value_parser = parse_origin, global = true)]
    api_url: Origin,

    /// A file holding the API key of Periskope's console (Settings → API); whitespace around it
    /// is ignored, and a warning is printed if other users can read it. Without it, the PERISKOPE_API_KEY environment variable. Never printed.
    #[arg(long, value_name = "FILE", global = true)]
    api_key_file: Option<PathBuf>,
}

/// An API origin without a trailing `/` or `/v1`: `https://api.periskope.app`.
#[derive(Clone, Debug)]
pub struct Origin(String);

impl Origin {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn parse_origin(text: &str) -> Result<Origin, String> {
    let uri: http::Uri = text.parse().map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err("expected an http:// or https:// origin, e.g. https://api.periskope.app".to_owned());
    }
    if uri.query().is_some() {
        return Err("an origin has no query".to_owned());
    }
    let mut origin = text.trim_end_matches('/');
    origin = origin.strip_suffix("/v1").unwrap_or(origin).trim_end_matches('/');
    Ok(Origin(origin.to_owned()))
}

/// The API key: its `Debug` shows nothing of it.
pub struct ApiKey(String);

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(***)")
    }
}

impl ApiKey {
    /// The `Authorization` value, marked sensitive.
    pub fn bearer(&self) -> Result<HeaderValue, Failure> {
        let mut value = HeaderValue::try_from(format!("Bearer {}", self.0))
            .map_err(|_| Failure::Error("the API key holds characters a header cannot carry".to_owned()))?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// `text` with every occurrence of the key replaced by `***`.
    pub fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

impl ApiArgs {
    pub fn origin(&self) -> &Origin {
        &self.api_url
    }

    /// The key, from the file if one was named, else from `PERISKOPE_API_KEY`.
    pub fn api_key(&self, output: &Output) -> Result<ApiKey, Failure> {
        let key = match &self.api_key_file {
            Some(path) => crate::secret::read_file(path, "the API key", output)?,
            None => std::env::var("PERISKOPE_API_KEY").map_err(|_| {
                Failure::Error("no API key: pass --api-key-file FILE or set PERISKOPE_API_KEY".to_owned())
            })?,
        };
        Ok(ApiKey(crate::secret::not_blank(key, "the API key")?))
    }
}

/// TLS as `forward` and `webhooks` use it: rustls with the ring provider and Mozilla's roots
/// compiled in, so that nothing depends on the system's OpenSSL or certificate store.
pub fn tls_config() -> Result<Arc<rustls::ClientConfig>, Failure> {
    let roots = rustls::RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|error| Failure::Error(format!("setting up TLS: {error}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Manage the webhook subscriptions of your Periskope organisation through Periskope's REST API
/// (ORIGIN/v1/webhooks), with the API key as a Bearer token. Prints a table, or one JSON object
/// per subscription with --json.
#[derive(Args, Debug)]
pub struct WebhooksArgs {
    #[command(flatten)]
    api: ApiArgs,

    /// Seconds to wait for each answer.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=3600), global = true)]
    timeout: u64,

    #[command(subcommand)]
    command: WebhooksCommand,
}

#[derive(Subcommand, Debug)]
enum WebhooksCommand {
    /// List the subscriptions.
    List {
        /// Only the subscriptions to this event name.
        #[arg(long, value_name = "NAME")]
        event: Option<String>,
        /// Only the subscriptions that post to this URL.
        #[arg(long, value_name = "URL")]
        url: Option<String>,
    },
    /// Show one subscription.
    Get {
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: String,
    },
    /// Subscribe URL to the given events (one subscription per event).
    Create {
        /// Where Periskope posts: a public http:// or https:// URL.
        #[arg(long, value_name = "URL", value_parser = parse_hook_url)]
        url: String,
        /// The event names, comma-separated: message.created,reaction.created
        #[arg(long, value_name = "NAMES", value_delimiter = ',', required = true, value_parser = parse_event_name)]
        events: Vec<String>,
    },
    /// Change a subscription: its URL, its event, or whether it is subscribed.
    Update {
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: String,
        /// The new URL.
        #[arg(long, value_name = "URL", value_parser = parse_hook_url)]
        url: Option<String>,
        /// The new event name.
        #[arg(long, value_name = "NAME", value_parser = parse_event_name)]
        event: Option<String>,
        /// Pause (false) or resume (true) deliveries.
        #[arg(long, value_name = "BOOL")]
        subscribed: Option<bool>,
    },
    /// Delete a subscription, after a confirmation on a terminal.
    Delete {
        #[arg(value_name = "ID", value_parser = parse_id)]
        id: String,
        /// Delete without asking: needed when standard input is not a terminal (scripts).
        #[arg(long)]
        yes: bool,
    },
}

/// A subscription id, which goes into the path: letters, digits, `-` and `_` only.
fn parse_id(text: &str) -> Result<String, String> {
    let plain = !text.is_empty()
        && text.len() <= 128
        && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_'));
    if plain {
        Ok(text.to_owned())
    } else {
        Err("expected a subscription id such as 0ef25935-0b78-4660-beeb-f17311793305".to_owned())
    }
}

fn parse_hook_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|error| format!("not a URL: {error}"))?;
    if matches!(uri.scheme_str(), Some("http" | "https")) && uri.authority().is_some() {
        Ok(text.to_owned())
    } else {
        Err("expected an http:// or https:// URL".to_owned())
    }
}

fn parse_event_name(text: &str) -> Result<String, String> {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || matches!(byte, b'.' | b'_'));
    if plain {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not an event name such as message.created"))
    }
}

pub fn webhooks(args: WebhooksArgs, output: &Output) -> Result<(), Failure> {
    let key = args.api.api_key(output)?;
    let api = Api::new(args.api.origin(), key, Duration::from_secs(args.timeout))?;
    crate::block_on(async {
        match args.command {
            WebhooksCommand::List { event, url } => {
                let mut query = Vec::new();
                if let Some(event) = &event {
                    query.push(format!("integration_name={}", percent_encode(event)));
                }
                if let Some(url) = &url {
                    query.push(format!("hook_url={}", percent_encode(url)));
                }
                let path = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
                let answer = api.call(Method::GET, &path, None).await?;
                print_rows(&rows(answer), output);
                Ok(())
            }
            WebhooksCommand::Get { id } => {
                let answer = api.call(Method::GET, &format!("/{id}"), None).await?;
                print_rows(&rows(answer), output);
                Ok(())
            }
            WebhooksCommand::Create { url, events } => {
                warn_of_names(&events, output);
                warn_of_loopback(&url, output);
                // One name as a string, several as a list: the SDK's `integrationName`.
                let names = match events.as_slice() {
                    [one] => json!(one),
                    many => json!(many),
                };
                let body = json!({ "hookUrl": url, "integrationName": names });
                let answer = api.call(Method::POST, "", Some(body)).await?;
                print_rows(&rows(answer), output);
                Ok(())
            }
            WebhooksCommand::Update { id, url, event, subscribed } => {
                warn_of_names(event.as_slice(), output);
                if let Some(url) = &url {
                    warn_of_loopback(url, output);
                }
                let mut body = serde_json::Map::new();
                if let Some(url) = url {
                    body.insert("hookUrl".to_owned(), json!(url));
                }
                if let Some(event) = event {
                    body.insert("integrationName".to_owned(), json!(event));
                }
                if let Some(subscribed) = subscribed {
                    body.insert("isSubscribed".to_owned(), json!(subscribed));
                }
                if body.is_empty() {
                    return Err(Failure::Error(
                        "nothing to change: pass --url, --event or --subscribed".to_owned(),
                    ));
                }
                let answer = api.call(Method::PATCH, &format!("/{id}"), Some(Value::Object(body))).await?;
                print_rows(&rows(answer), output);
                Ok(())
            }
            WebhooksCommand::Delete { id, yes } => {
                if !yes && !confirmed(&format!("Delete the webhook subscription {id}?"))? {
                    return Err(Failure::Error("not deleted: the deletion was not confirmed".to_owned()));
                }
                api.call(Method::DELETE, &format!("/{id}"), None).await?;
                output.line(format_args!("deleted {id}"), json!({ "type": "deleted", "id": id }));
                Ok(())
            }
        }
    })?
}

/// Warns about each name that is not an event kind's: Periskope would post nothing for it.
fn warn_of_names(names: &[String], output: &Output) {
    for name in names {
        if let Err(reason) = crate::event_names::check(name) {
            output.warn("unknown_event_name", format_args!("{reason} (subscribing all the same)"));
        }
    }
}

/// Warns when `url` names this machine: Periskope's servers cannot reach it there.
fn warn_of_loopback(url: &str, output: &Output) {
    let Some(host) = url.parse::<http::Uri>().ok().and_then(|uri| uri.host().map(str::to_owned)) else {
        return;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host.to_ascii_lowercase().ends_with(".localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback() || ip.is_unspecified());
    if loopback {
        output.warn(
            "loopback_url",
            format_args!(
                "{host} is this machine: Periskope's servers cannot post there. Use a tunnel's \
                 public URL, or `periskope-webhook forward` to receive events locally"
            ),
        );
    }
}

/// Asks `question` on the terminal and reads the answer: `true` for y or yes. Without a
/// terminal on standard input, refuses: a script must say `--yes`.
fn confirmed(question: &str) -> Result<bool, Failure> {
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::Error(
            "standard input is not a terminal, so the deletion cannot be confirmed: pass --yes".to_owned(),
        ));
    }
    let mut stderr = std::io::stderr().lock();
    write!(stderr, "{question} [y/N] ")
        .and_then(|()| stderr.flush())
        .map_err(|error| Failure::io("asking for confirmation", error))?;
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer).map_err(|error| Failure::io("reading the confirmation", error))?;
    Ok(matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes"))
}

/// The subscriptions in an answer: a list, a list under `data`, or one object.
fn rows(answer: Value) -> Vec<Value> {
    match answer {
        Value::Array(rows) => rows,
        Value::Object(mut object) => match object.remove("data") {
            Some(Value::Array(rows)) => rows,
            Some(data) => {
                object.insert("data".to_owned(), data);
                vec![Value::Object(object)]
            }
            None => vec![Value::Object(object)],
        },
        Value::Null => Vec::new(),
        other => vec![other],
    }
}

/// A table (id, event, subscribed, URL) or, with `--json`, one object per subscription.
fn print_rows(rows: &[Value], output: &Output) {
    let text = |row: &Value, field: &str| match &row[field] {
        Value::String(text) => text.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    if !output.json() {
        output.line(format_args!("{:<36}  {:<32}  {:<10}  URL", "ID", "EVENT", "SUBSCRIBED"), Value::Null);
    }
    for row in rows {
        output.line(
            format_args!(
                "{:<36}  {:<32}  {:<10}  {}",
                text(row, "id"),
                text(row, "integration_name"),
                text(row, "is_subscribed"),
                text(row, "hook_url")
            ),
            json!({ "type": "webhook", "webhook": row }),
        );
    }
}

/// Periskope's REST API at one origin, with one key.
struct Api {
    client:
        Client<hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>, Full<Bytes>>,
    base: String,
    key: ApiKey,
    timeout: Duration,
}

impl Api {
    fn new(origin: &Origin, key: ApiKey, timeout: Duration) -> Result<Self, Failure> {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls_config()?))
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Api { client, base: format!("{}/v1/webhooks", origin.as_str()), key, timeout })
    }

    /// `method` on `/v1/webhooks` + `suffix`, with `body` as JSON; the answer's JSON (null
    /// when it has none).
    async fn call(&self, method: Method, suffix: &str, body: Option<Value>) -> Result<Value, Failure> {
        let url = format!("{}{suffix}", self.base);
        let mut request = Request::builder()
            .method(method.clone())
            .uri(&url)
            .header(AUTHORIZATION, self.key.bearer()?)
            .header(ACCEPT, "application/json")
            .header(USER_AGENT, USER_AGENT_VALUE);
        let body = match body {
            Some(body) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(body.to_string())
            }
            None => Bytes::new(),
        };
        let request = request
            .body(Full::new(body))
            .map_err(|error| Failure::Error(format!("cannot build the request to {url}: {error}")))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|error| {
                Failure::Error(format!(
                    "cannot reach {}: {}",
                    self.base,
                    self.key.redact(&crate::send::chain(&error))
                ))
            })?;
            let status = response.status();
            let body = Limited::new(response.into_body(), 4 * 1024 * 1024)
                .collect()
                .await
                .map_err(|error| Failure::Error(format!("reading the answer of {url}: {error}")))?
                .to_bytes();
            Ok::<_, Failure>((status, body))
        };
        let (status, body) = tokio::time::timeout(self.timeout, exchange).await.map_err(|_| {
            Failure::Error(format!("{method} {url}: no answer within {} s", self.timeout.as_secs()))
        })??;
        if !status.is_success() {
            return Err(self.refusal(&method, &url, status, &body));
        }
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&body).map_err(|_| Failure::Answer {
            code: "not_json",
            message: format!("{method} {url}: the API answered {status} with a body that is not JSON"),
        })
    }

    /// The failure for a non-2xx answer, with its status and the API's own short message, if
    /// any: a refused key is a setup error (exit 2), any other answer an unexpected one (exit 1,
    /// after one line that says so).
    fn refusal(&self, method: &Method, url: &str, status: StatusCode, body: &[u8]) -> Failure {
        let message = serde_json::from_slice::<Value>(body).ok().and_then(|answer| {
            ["message", "error"].iter().find_map(|field| answer.get(field)?.as_str().map(str::to_owned))
        });
        let message = message
            .map(|message| {
                let line: String = message.chars().filter(|c| !c.is_control()).take(200).collect();
                format!(": {}", self.key.redact(&line))
            })
            .unwrap_or_default();
        if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
            return Failure::Error(format!(
                "{method} {url}: the API refused the API key ({status}){message}"
            ));
        }
        Failure::Answer {
            code: "api_error",
            message: format!("{method} {url}: the API answered {status}{message}"),
        }
    }
}

/// `text` percent-encoded for a query value: unreserved characters kept, every other byte
/// written `%XX`.
fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_drop_a_trailing_v1_as_the_sdk_does() {
        for (given, origin) in [
            ("https://api.periskope.app", "https://api.periskope.app"),
            ("https://api.periskope.app/", "https://api.periskope.app"),
            ("https://api-staging.periskope.app/v1", "https://api-staging.periskope.app"),
            ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
        ] {
            assert_eq!(parse_origin(given).unwrap().as_str(), origin);
        }
        assert!(parse_origin("api.periskope.app").is_err());
        assert!(parse_origin("ftp://api.periskope.app").is_err());
    }

    #[test]
    fn ids_and_query_values_cannot_change_the_path() {
        assert!(parse_id("0ef25935-0b78-4660-beeb-f17311793305").is_ok());
        assert!(parse_id("../webhooks").is_err());
        assert!(parse_id("a?b").is_err());
        assert_eq!(percent_encode("https://x.test/a?b=c&d"), "https%3A%2F%2Fx.test%2Fa%3Fb%3Dc%26d");
    }

    #[test]
    fn the_key_is_never_shown() {
        let key = ApiKey("secret-api-key".to_owned());
        assert_eq!(format!("{key:?}"), "ApiKey(***)");
        assert_eq!(key.redact("bad key secret-api-key here"), "bad key *** here");
        assert!(key.bearer().unwrap().is_sensitive());
    }

    #[test]
    fn answers_give_their_rows() {
        assert_eq!(rows(json!([{ "id": "a" }, { "id": "b" }])).len(), 2);
        assert_eq!(rows(json!({ "data": [{ "id": "a" }] })), vec![json!({ "id": "a" })]);
        assert_eq!(rows(json!({ "id": "a" })), vec![json!({ "id": "a" })]);
        assert!(rows(Value::Null).is_empty());
    }
}
