//! `inbox console`: the library's operator console for one inbox, on loopback, behind a fresh
//! random token.

use std::net::SocketAddr;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::ConsoleStore;
use serde_json::json;
use tokio::net::TcpListener;

use crate::output::{Failure, Output};

/// Serves the console for `store` on `addr` until Ctrl-C. The first line printed is the URL to
/// open, with the token; the console keeps it in a cookie and drops it from the address bar.
pub async fn serve<St>(
    store: St,
    read_only: Option<&str>,
    addr: SocketAddr,
    output: &Output,
) -> Result<(), Failure>
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    let token = fresh_token()?;
    let console = Console::new(store).bearer_token(token.as_str()).read_only(read_only.is_some());
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| Failure::io(format_args!("listening on {addr}"), error))?;
    let local = listener.local_addr().map_err(|error| Failure::io("reading the bound address", error))?;
    let url = format!("http://{local}/?token={token}");
    output.line(&url, json!({ "type": "console", "url": url, "read_only": read_only.is_some() }));
    if let Some(why) = read_only {
        output.note(format_args!("read-only: {why}"), json!({ "type": "read_only", "reason": why }));
    }
    if !local.ip().is_loopback() {
        output.note(
            format_args!("the console is reachable from other hosts on {local}: anyone with the URL sees customer messages"),
            json!({ "type": "warning", "reason": "not loopback" }),
        );
    }
    let shutdown = tokio::signal::ctrl_c();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                // A connection reset before it was accepted, or no file descriptor left: the
                // listener is fine, so go on after a pause that avoids a busy loop.
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return Ok(()),
        };
        let console = console.clone();
        tokio::spawn(async move {
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(console))
                .await;
        });
    }
}

fn fresh_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|error| Failure::Error(format!("no randomness for the console's token: {error}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
