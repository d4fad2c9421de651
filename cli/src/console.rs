//! `inbox console`: the library's operator console for one inbox, on loopback, behind a fresh
//! random token, opened by a one-time link.

use std::net::SocketAddr;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use periskope_webhook::console::Console;
use periskope_webhook::inbox::ConsoleStore;
use serde_json::json;
use tokio::net::TcpListener;

use crate::output::{Failure, Output};

/// How long the printed link's code signs a browser in: long enough to click it, short enough
/// that the copy a browser's history keeps is spent.
const CODE_LIFETIME: Duration = Duration::from_secs(300);

/// Serves the console for `store` on `addr` until Ctrl-C, for loopback hosts and
/// `allowed_hosts`. The first line printed is the link to open, with a one-time code; the
/// second, the token for the sign-in form and for scripts.
pub async fn serve<St>(
    store: St,
    read_only: Option<&str>,
    addr: SocketAddr,
    allowed_hosts: &[String],
    output: &Output,
) -> Result<(), Failure>
where
    St: ConsoleStore + Clone + Send + Sync + 'static,
{
    if let Some(host) = allowed_hosts.iter().find(|host| !is_host(host)) {
        return Err(Failure::Error(format!(
            "--allowed-host {host:?}: give a host name, `name` or `name:port`"
        )));
    }
    let token = fresh_token()?;
    let console = Console::new(store)
        .bearer_token(token.as_str())
        .mount_path("/")
        .allowed_hosts(allowed_hosts)
        .read_only(read_only.is_some());
    let code = console
        .sign_in_code(CODE_LIFETIME)
        .ok_or_else(|| Failure::Error("no randomness for the console's sign-in code".to_owned()))?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|error| Failure::io(format_args!("listening on {addr}"), error))?;
    let local = listener.local_addr().map_err(|error| Failure::io("reading the bound address", error))?;
    let url = format!("http://{local}/?code={code}");
    output.line(
        format_args!("{url}\ntoken (for the sign-in form, or `Authorization: Bearer`): {token}"),
        json!({ "type": "console", "url": url, "token": token, "read_only": read_only.is_some() }),
    );
    if let Some(why) = read_only {
        output.note(format_args!("read-only: {why}"), json!({ "type": "read_only", "reason": why }));
    }
    if !local.ip().is_loopback() {
        let hosts = if allowed_hosts.is_empty() {
            "it answers loopback host names only: add --allowed-host NAME for the name others use".to_owned()
        } else {
            format!("it answers loopback host names and {}", allowed_hosts.join(", "))
        };
        output.note(
            format_args!("the console is reachable from other hosts on {local}: anyone with the token sees customer messages; {hosts}"),
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
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(console))
                .await;
        });
    }
}

/// Whether `host` reads as `name` or `name:port` (the console refuses anything else at start).
fn is_host(host: &str) -> bool {
    !host.is_empty() && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte))
}

fn fresh_token() -> Result<String, Failure> {
    let mut bytes = [0u8; 24];
    getrandom::fill(&mut bytes)
        .map_err(|error| Failure::Error(format!("no randomness for the console's token: {error}")))?;
    Ok(bytes.iter().map(|byte| format!("{byte:02x}")).collect())
}
