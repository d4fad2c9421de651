//! A small socket.io 4 client (Engine.IO 4 over WebSocket only), enough to receive the events
//! of Periskope's real-time API as its SDK does: connect to the default namespace with headers,
//! answer the server's pings, acknowledge events that ask for it, and hand each event's name and
//! first argument on.
//!
//! Packets are text frames: an Engine.IO type digit (`0` open, `1` close, `2` ping, `3` pong,
//! `4` message, `6` noop), and in a message a socket.io type digit (`0` connect, `1` disconnect,
//! `2` event, `3` ack, `4` connect error), an optional namespace (`/name,`), an optional ack id,
//! then JSON.

use std::sync::Arc;
use std::time::Duration;

use http::HeaderMap;
use serde_json::value::RawValue;

use crate::websocket::{self, UpgradeError, WebSocket};

/// How long to wait for the server's open and connect packets.
const HANDSHAKE_LIMIT: Duration = Duration::from_secs(20);

/// Why a connection could not be made.
#[derive(Debug)]
pub enum ConnectError {
    /// The server refused the handshake: a socket.io connect error (what the SDK's
    /// `connect_error` reports), or a 401/403 answer to the WebSocket upgrade. The server's
    /// message, when it sent one.
    Refused(Option<String>),
    /// An answer to the upgrade that no socket.io server gives, such as `405` or `200`: the
    /// address is not a real-time API. The status.
    NotSocketIo(String),
    /// Anything else (no route, refused TCP connection, TLS, a server error, a timeout): worth
    /// trying again.
    Failed(String),
}

/// One event: its name and its first argument (JSON `null` when it had none).
pub struct Event {
    pub name: String,
    pub data: Box<RawValue>,
}

/// A connection to the default namespace.
pub struct Socket {
    ws: WebSocket,
    /// How long the server may stay silent: its ping interval plus its ping timeout.
    silence: Duration,
}

/// The Engine.IO WebSocket URL of `origin` (`https://host` → `wss://host/socket.io/?EIO=4&transport=websocket`).
pub fn endpoint(origin: &str) -> String {
    let origin = match origin.split_once("://") {
        Some(("https", rest)) => format!("wss://{rest}"),
        Some(("http", rest)) => format!("ws://{rest}"),
        _ => origin.to_owned(),
    };
    format!("{origin}/socket.io/?EIO=4&transport=websocket")
}

/// Connects to `url` (see [`endpoint`]) with `headers` on the upgrade request, and joins the
/// default namespace.
pub async fn connect(
    url: &str,
    headers: HeaderMap,
    tls: Arc<rustls::ClientConfig>,
) -> Result<Socket, ConnectError> {
    let ws = match tokio::time::timeout(HANDSHAKE_LIMIT, websocket::connect(url, headers, tls)).await {
        Err(_) => {
            return Err(ConnectError::Failed(format!("no answer within {} s", HANDSHAKE_LIMIT.as_secs())));
        }
        Ok(Err(UpgradeError::Answered(status))) => {
            return Err(match status.as_u16() {
                401 | 403 => ConnectError::Refused(Some(status.to_string())),
                // A timeout, a rate limit or a server error passes; the server may be fine later.
                408 | 429 | 500.. => {
                    ConnectError::Failed(format!("the server answered the upgrade with {status}"))
                }
                _ => ConnectError::NotSocketIo(status.to_string()),
            });
        }
        Ok(Err(UpgradeError::Failed(reason))) => return Err(ConnectError::Failed(reason)),
        Ok(Ok(connected)) => connected,
    };
    let mut socket = Socket { ws, silence: HANDSHAKE_LIMIT };
    tokio::time::timeout(HANDSHAKE_LIMIT, socket.handshake()).await.map_err(|_| {
        ConnectError::Failed(format!("no handshake within {} s", HANDSHAKE_LIMIT.as_secs()))
    })??;
    Ok(socket)
}

impl Socket {
    /// Reads the open packet, asks to join the default namespace, and waits for the answer.
    async fn handshake(&mut self) -> Result<(), ConnectError> {
        let failed = ConnectError::Failed;
        let open = self.text().await.map_err(failed)?;
        let parameters = open
            .strip_prefix('0')
            .and_then(|json| serde_json::from_str::<serde_json::Value>(json).ok())
            .ok_or_else(|| ConnectError::Failed("not an Engine.IO 4 server (no open packet)".to_owned()))?;
        let millis = |name: &str| parameters.get(name).and_then(serde_json::Value::as_u64).unwrap_or(25_000);
        self.silence = Duration::from_millis(millis("pingInterval") + millis("pingTimeout"));
        self.write("40").await.map_err(failed)?;
        loop {
            let packet = self.text().await.map_err(failed)?;
            match packet.as_bytes() {
                [b'2', ..] => self.write(&format!("3{}", &packet[1..])).await.map_err(failed)?,
                [b'4', b'0', ..] if namespace_and_rest(&packet[2..]).0 == "/" => return Ok(()),
                [b'4', b'4', ..] => {
                    let (namespace, json) = namespace_and_rest(&packet[2..]);
                    if namespace == "/" {
                        let message = serde_json::from_str::<serde_json::Value>(json)
                            .ok()
                            .and_then(|error| error.get("message")?.as_str().map(str::to_owned));
                        return Err(ConnectError::Refused(message));
                    }
                }
                [b'1', ..] => return Err(failed("the server closed the connection".to_owned())),
                _ => {}
            }
        }
    }

    /// The next event; `Err` with the reason when the connection is over.
    pub async fn next_event(&mut self) -> Result<Event, String> {
        loop {
            let packet = self.text().await?;
            match packet.as_bytes() {
                [b'2', ..] => self.write(&format!("3{}", &packet[1..])).await?,
                [b'1', ..] => return Err("the server closed the connection".to_owned()),
                [b'4', b'2', ..] => {
                    let (namespace, rest) = namespace_and_rest(&packet[2..]);
                    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                    let (ack, json) = rest.split_at(digits);
                    if namespace != "/" {
                        continue;
                    }
                    if !ack.is_empty() {
                        self.write(&format!("43{ack}[]")).await?;
                    }
                    if let Some(event) = event(json) {
                        return Ok(event);
                    }
                }
                [b'4', b'1', ..] if namespace_and_rest(&packet[2..]).0 == "/" => {
                    return Err("the server ended the session".to_owned());
                }
                // Noops, acks, binary events (Periskope sends JSON) and other namespaces.
                _ => {}
            }
        }
    }

    /// The next text frame, within the silence the server allows.
    async fn text(&mut self) -> Result<String, String> {
        tokio::time::timeout(self.silence, self.ws.next_text())
            .await
            .map_err(|_| format!("nothing from the server for {} s", self.silence.as_secs()))?
    }

    async fn write(&mut self, packet: &str) -> Result<(), String> {
        self.ws.send_text(packet).await
    }
}

/// The namespace of a socket.io packet (`/` when none is written) and what follows it.
fn namespace_and_rest(packet: &str) -> (&str, &str) {
    if packet.starts_with('/') {
        match packet.split_once(',') {
            Some((namespace, rest)) => (namespace, rest),
            None => (packet, ""),
        }
    } else {
        ("/", packet)
    }
}

/// An event's name and first argument from its JSON array; `None` if it is not one.
fn event(json: &str) -> Option<Event> {
    let arguments: Vec<&RawValue> = serde_json::from_str(json).ok()?;
    let name: String = serde_json::from_str(arguments.first()?.get()).ok()?;
    let data = match arguments.get(1) {
        Some(data) => (*data).to_owned(),
        None => RawValue::from_string("null".to_owned()).ok()?,
    };
    Some(Event { name, data })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_engine_io_4_websockets() {
        assert_eq!(
            endpoint("https://api.periskope.app"),
            "wss://api.periskope.app/socket.io/?EIO=4&transport=websocket"
        );
        assert_eq!(
            endpoint("http://127.0.0.1:9000"),
            "ws://127.0.0.1:9000/socket.io/?EIO=4&transport=websocket"
        );
    }

    #[test]
    fn events_give_their_name_and_first_argument() {
        let event = event(r#"["message.created",{"body":"hi","org_id":"o"},"extra"]"#).unwrap();
        assert_eq!(event.name, "message.created");
        assert_eq!(event.data.get(), r#"{"body":"hi","org_id":"o"}"#);
        assert_eq!(super::event(r#"["ping"]"#).unwrap().data.get(), "null");
        assert!(super::event(r#"[1,2]"#).is_none());
        assert!(super::event("not json").is_none());
    }

    #[test]
    fn namespaces_are_read_off_the_front() {
        assert_eq!(namespace_and_rest(r#"["a"]"#), ("/", r#"["a"]"#));
        assert_eq!(namespace_and_rest(r#"/admin,12["a"]"#), ("/admin", r#"12["a"]"#));
        assert_eq!(namespace_and_rest(r#"{"sid":"x"}"#), ("/", r#"{"sid":"x"}"#));
    }
}
