//! A Periskope webhook server with the durable inbox: each verified delivery is stored in a
//! SQLite file before the `200`, and a worker handles it from there, with retries.
//!
//! ```text
//! cargo run --example inbox        # terminal 1: stores into ./periskope-inbox.db
//! cargo run -p periskope-webhook-cli -- send --key peri_ea194594-c433-4ea7-8c94-af9e63c5df47 \
//!     http://127.0.0.1:3000/webhooks/periskope tests/fixtures/deliveries   # terminal 2: every sample, signed
//! ```
//!
//! - `PERISKOPE_INBOX`: the inbox file (default `periskope-inbox.db` in the current directory),
//!   or a `postgres://` URL or `host=... password=...` connection string: then several copies
//!   of this server share one queue.
//! - `ADDR`, `PERISKOPE_SIGNING_KEY`: as in the other examples.
//! - `HANDLER_DELAY_MS`: how long the handler works on each delivery (default 0).
//! - `INBOX_LEASE_MS`: how long a claimed job is held before another worker may take it over
//!   (default 60 s); each attempt may run for half of it.
//! - `INBOX_SHUTDOWN_GRACE_MS`: on Ctrl-C or SIGTERM, how long jobs in flight may finish before
//!   they are given back for the next run (default 10 s).
//! - `INBOX_MAX_ATTEMPTS`: attempts before a job becomes a dead letter (default 8).
//! - `HANDLER_FAIL_FILE`: while this file exists, the handler fails every event whose name is
//!   one of its lines, so that dead letters, and "fix the cause, then retry", can be tried.
//! - `CONSOLE_TOKEN`: serves the [console](periskope_webhook::console) at `/console`, for
//!   requests with this bearer token (at least 16 bytes), and browsers that sign in with it.
//!
//! Its log (a dead letter is an ERROR line) goes to standard error. For each delivery handled
//! successfully it prints exactly one line,
//! `processed <event name> <first 16 hex digits of the SHA-256 of the body>`. Stopped (Ctrl-C,
//! SIGTERM, or killed) and restarted on the same file, it resumes the jobs it had not finished.

// Only the configuration helpers are used: the handler prints its own line.
#[allow(dead_code)]
mod support;

use std::fmt::Write as _;
use std::time::Duration;

use axum::Router;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::{ConsoleStore, Inbox, PostgresStore, SqliteStore, WorkerConfig};
use periskope_webhook::redact::StoreLocation;
use periskope_webhook::{EventRouter, PeriskopeWebhookLayer, WebhookEvent, shutdown_signal};
use sha2::{Digest, Sha256};

/// The first 16 hex digits of the SHA-256 of `body`.
fn short_digest(body: &[u8]) -> String {
    Sha256::digest(body).iter().take(8).fold(String::with_capacity(16), |mut hex, byte| {
        let _ = write!(hex, "{byte:02x}");
        hex
    })
}

/// A whole number of milliseconds from the environment, if set.
fn millis(name: &str) -> Option<Duration> {
    let value = std::env::var(name).ok()?;
    match value.parse::<u64>() {
        Ok(ms) => Some(Duration::from_millis(ms)),
        Err(_) => exit(&format!("{name} must be a whole number of milliseconds")),
    }
}

#[tokio::main]
async fn main() {
    // The inbox logs through `tracing`: a job that becomes a dead letter is an ERROR line, here
    // on standard error (standard output has one line per handled delivery).
    tracing_subscriber::fmt().with_writer(std::io::stderr).init();
    let location = std::env::var("PERISKOPE_INBOX").unwrap_or_else(|_| "periskope-inbox.db".to_owned());
    let mut config = WorkerConfig::default();
    if let Some(lease) = millis("INBOX_LEASE_MS") {
        config.lease = lease;
        config.attempt_timeout = lease / 2;
    }
    if let Some(grace) = millis("INBOX_SHUTDOWN_GRACE_MS") {
        config.shutdown_grace = grace;
    }
    if let Ok(attempts) = std::env::var("INBOX_MAX_ATTEMPTS") {
        config.max_attempts =
            attempts.parse().unwrap_or_else(|_| exit("INBOX_MAX_ATTEMPTS must be a whole number"));
    }
    // Never printed whole: a PostgreSQL URL or connection string can hold a password.
    match StoreLocation::parse(&location).unwrap_or_else(|error| exit(&error.to_string())) {
        StoreLocation::Postgres(database) => {
            let store =
                PostgresStore::connect(&database).await.unwrap_or_else(|error| exit(&error.to_string()));
            serve(Inbox::new(store), config).await;
        }
        StoreLocation::File(path) => {
            let store = SqliteStore::open(&path).unwrap_or_else(|error| exit(&error.to_string()));
            serve(Inbox::new(store), config).await;
        }
    }
}

/// Whether `HANDLER_FAIL_FILE` names a file that exists and lists `event` on a line.
fn told_to_fail(event: &str) -> bool {
    let Some(file) = std::env::var_os("HANDLER_FAIL_FILE") else { return false };
    std::fs::read_to_string(file).is_ok_and(|names| names.lines().any(|name| name.trim() == event))
}

async fn serve<St: ConsoleStore + Clone + Send + Sync + 'static>(inbox: Inbox<St>, config: WorkerConfig) {
    let delay = millis("HANDLER_DELAY_MS").unwrap_or(Duration::ZERO);
    let events = EventRouter::new().fallback(move |event: WebhookEvent| async move {
        tokio::time::sleep(delay).await;
        if told_to_fail(event.name()) {
            return Err(format!("HANDLER_FAIL_FILE lists {}", event.name()));
        }
        println!("processed {} {}", event.name(), short_digest(event.body()));
        Ok(())
    });

    let worker = inbox.worker(events).config(config).spawn();
    let shutdown = shutdown_signal();

    // No `.deduplicate(...)`: the inbox stores each occurrence once.
    let layer = PeriskopeWebhookLayer::new(support::signing_key());
    let mut app = Router::new().route_service(support::PATH, layer.service(inbox.acceptor()));
    let console_token = std::env::var("CONSOLE_TOKEN").ok().filter(|token| !token.is_empty());
    if let Some(token) = &console_token {
        if token.len() < 16 {
            exit("CONSOLE_TOKEN must be at least 16 bytes long");
        }
        let console = Console::new(inbox.store().clone()).bearer_token(token.as_str()).mount_path("/console");
        app = app.nest_service("/console", console);
    }
    let listener = tokio::net::TcpListener::bind(support::addr())
        .await
        .unwrap_or_else(|error| exit(&format!("cannot listen on {}: {error}", support::addr())));
    match listener.local_addr() {
        Ok(addr) => {
            println!("listening on http://{addr}");
            if console_token.is_some() {
                println!("console on http://{addr}/console (sign in with CONSOLE_TOKEN)");
            }
        }
        Err(error) => exit(&error.to_string()),
    }
    // Ctrl-C or SIGTERM: first stop accepting and answer the requests in flight, then give the
    // worker's jobs in flight their grace and release the rest.
    if let Err(error) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        eprintln!("server error: {error}");
    }
    if let Err(error) = worker.shutdown().await {
        exit(&format!("the worker failed: {error}"));
    }
}

fn exit(message: &str) -> ! {
    eprintln!("error: {message}");
    std::process::exit(1)
}
