//! A WebSocket client (RFC 6455), as much as `forward`'s socket.io connection needs: the opening
//! handshake through the HTTP client and TLS that `webhooks` uses already, then text messages
//! in both directions, pings answered, and the closing handshake. Being this small, it spares
//! an install a second HTTP handshake, TLS setup and SHA-1 stack.

use std::sync::Arc;

use bytes::Bytes;
use http::header::{
    CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, SEC_WEBSOCKET_VERSION, UPGRADE,
};
use http::{HeaderMap, Request, StatusCode, Uri};
use http_body_util::Empty;
use hyper::upgrade::Upgraded;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Why the upgrade did not happen.
#[derive(Debug)]
pub enum UpgradeError {
    /// The server answered with this status instead of `101 Switching Protocols`.
    Answered(StatusCode),
    /// Anything else: a bad URL, no connection, TLS, an answer that is not a WebSocket's.
    Failed(String),
}

/// What RFC 6455 appends to the client's key before hashing it into the server's answer.
const ACCEPT_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// Opens a WebSocket at `url` (`ws://` or `wss://`), with `headers` on the upgrade request.
pub async fn connect(
    url: &str,
    headers: HeaderMap,
    tls: Arc<rustls::ClientConfig>,
) -> Result<WebSocket, UpgradeError> {
    let failed = |what: &str, error: &dyn std::error::Error| {
        UpgradeError::Failed(format!("{what}: {}", crate::send::chain(error)))
    };
    let http_url = match url.split_once("://") {
        Some(("wss", rest)) => format!("https://{rest}"),
        Some(("ws", rest)) => format!("http://{rest}"),
        _ => return Err(UpgradeError::Failed(format!("not a ws:// or wss:// URL: {url}"))),
    };
    let uri: Uri = http_url.parse().map_err(|error| failed("not a URL", &error))?;
    let mut random = [0u8; 16];
    getrandom::fill(&mut random).map_err(|error| UpgradeError::Failed(format!("no random key: {error}")))?;
    let key = base64(&random);
    let mut request = Request::get(uri)
        .header(CONNECTION, "Upgrade")
        .header(UPGRADE, "websocket")
        .header(SEC_WEBSOCKET_VERSION, "13")
        .header(SEC_WEBSOCKET_KEY, &key)
        .body(Empty::<Bytes>::new())
        .map_err(|error| failed("cannot build the upgrade request", &error))?;
    request.headers_mut().extend(headers);

    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    // Events are small and answered at once: no waiting to fill a segment.
    http.set_nodelay(true);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(Arc::unwrap_or_clone(tls))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    let client = Client::builder(TokioExecutor::new()).build(connector);
    let response = client.request(request).await.map_err(|error| failed("cannot connect", &error))?;

    let status = response.status();
    if status != StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpgradeError::Answered(status));
    }
    let header_is = |name, value: &str| {
        response
            .headers()
            .get(name)
            .and_then(|header| header.to_str().ok())
            .is_some_and(|header| header.split(',').any(|token| token.trim().eq_ignore_ascii_case(value)))
    };
    let expected = HeaderValue::from_str(&accept(&key)).ok();
    if !header_is(UPGRADE, "websocket")
        || !header_is(CONNECTION, "upgrade")
        || response.headers().get(SEC_WEBSOCKET_ACCEPT) != expected.as_ref()
    {
        return Err(UpgradeError::Failed(
            "the server switched protocols without accepting this WebSocket key".to_owned(),
        ));
    }
    let upgraded =
        hyper::upgrade::on(response).await.map_err(|error| failed("the upgrade failed", &error))?;
    Ok(WebSocket { io: TokioIo::new(upgraded), read: Vec::new(), message: None })
}

/// The largest message kept: Periskope's events carry attachments as base64.
const MAX_MESSAGE: usize = 64 << 20;

const CONTINUATION: u8 = 0x0;
const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// An open WebSocket. Reading is cancel-safe: bytes read stay in the buffer until a whole
/// frame is there, so a caller may race [`WebSocket::next_text`] against a timeout.
pub struct WebSocket {
    io: TokioIo<Upgraded>,
    /// Bytes read and not yet taken as a frame.
    read: Vec<u8>,
    /// The data message being reassembled from its fragments: its opcode and payload so far.
    message: Option<(u8, Vec<u8>)>,
}

/// One frame as the server sent it.
struct Frame {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

impl WebSocket {
    /// The next text message; pings are answered and binary messages skipped on the way. `Err`
    /// with the reason once the connection is over or the server broke the protocol.
    pub async fn next_text(&mut self) -> Result<String, String> {
        loop {
            let frame = self.next_frame().await?;
            match frame.opcode {
                PING => self.write_frame(PONG, &frame.payload).await?,
                PONG => {}
                CLOSE => {
                    // Echo the status code, as the closing handshake asks; the answer is moot.
                    let _ = self.write_frame(CLOSE, frame.payload.get(..2).unwrap_or_default()).await;
                    return Err("the server closed the connection".to_owned());
                }
                TEXT | BINARY if self.message.is_some() => {
                    return Err("the server began a message inside another".to_owned());
                }
                CONTINUATION if self.message.is_none() => {
                    return Err("the server continued a message it had not begun".to_owned());
                }
                TEXT | BINARY | CONTINUATION => {
                    let (opcode, mut payload) = self.message.take().unwrap_or((frame.opcode, Vec::new()));
                    if payload.len() + frame.payload.len() > MAX_MESSAGE {
                        return Err(format!("the server sent a message over {} MiB", MAX_MESSAGE >> 20));
                    }
                    payload.extend_from_slice(&frame.payload);
                    match (frame.fin, opcode) {
                        (false, _) => self.message = Some((opcode, payload)),
                        (true, TEXT) => {
                            return String::from_utf8(payload)
                                .map_err(|_| "the server sent a text message that is not UTF-8".to_owned());
                        }
                        // Binary messages carry no events here.
                        (true, _) => {}
                    }
                }
                other => return Err(format!("the server sent a frame of unknown type {other}")),
            }
        }
    }

    /// Sends `text` as one text message.
    pub async fn send_text(&mut self, text: &str) -> Result<(), String> {
        self.write_frame(TEXT, text.as_bytes()).await
    }

    /// The next whole frame (RFC 6455, section 5.2), read into the buffer first.
    async fn next_frame(&mut self) -> Result<Frame, String> {
        loop {
            if let Some(frame) = take_frame(&mut self.read)? {
                return Ok(frame);
            }
            self.read.reserve(16 * 1024);
            match self.io.read_buf(&mut self.read).await {
                Ok(0) => return Err("the connection closed".to_owned()),
                Ok(_) => {}
                Err(error) => return Err(crate::send::chain(&error)),
            }
        }
    }

    /// Writes one final frame of `opcode`, masked with a fresh key as a client's must be.
    async fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<(), String> {
        let mut mask = [0u8; 4];
        getrandom::fill(&mut mask).map_err(|error| format!("no random mask: {error}"))?;
        let mut frame = Vec::with_capacity(payload.len() + 14);
        frame.push(0x80 | opcode);
        match payload.len() {
            len @ 0..=125 => frame.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().zip(mask.iter().cycle()).map(|(byte, mask)| byte ^ mask));
        self.io.write_all(&frame).await.map_err(|error| crate::send::chain(&error))?;
        self.io.flush().await.map_err(|error| crate::send::chain(&error))
    }
}

/// The first frame of `read`, taken off it, once it is all there; `Err` for a frame a server
/// must not send.
fn take_frame(read: &mut Vec<u8>) -> Result<Option<Frame>, String> {
    let [first, second, ..] = read[..] else { return Ok(None) };
    if first & 0x70 != 0 {
        return Err("the server set reserved bits no extension was agreed for".to_owned());
    }
    if second & 0x80 != 0 {
        return Err("the server masked a frame".to_owned());
    }
    let (fin, opcode) = (first & 0x80 != 0, first & 0x0F);
    let (len, header) = match second & 0x7F {
        126 => match read.get(2..4) {
            Some(len) => (u64::from(u16::from_be_bytes([len[0], len[1]])), 4),
            None => return Ok(None),
        },
        127 => match read.get(2..10).and_then(|len| <[u8; 8]>::try_from(len).ok()) {
            Some(len) => (u64::from_be_bytes(len), 10),
            None => return Ok(None),
        },
        len => (u64::from(len), 2),
    };
    if opcode >= CLOSE && (!fin || len > 125) {
        return Err("the server sent a fragmented or oversized control frame".to_owned());
    }
    let len = usize::try_from(len).ok().filter(|len| *len <= MAX_MESSAGE);
    let Some(len) = len else {
        return Err(format!("the server sent a frame over {} MiB", MAX_MESSAGE >> 20));
    };
    if read.len() < header + len {
        return Ok(None);
    }
    let payload = read[header..header + len].to_vec();
    read.drain(..header + len);
    Ok(Some(Frame { fin, opcode, payload }))
}

/// The `Sec-WebSocket-Accept` a server answers to `key`.
fn accept(key: &str) -> String {
    let mut hash = Sha1::new();
    hash.update(key.as_bytes());
    hash.update(ACCEPT_GUID.as_bytes());
    base64(&hash.finalize())
}

/// Standard base64 with padding (RFC 4648, section 4), for the handshake's two short values.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group = chunk
            .iter()
            .enumerate()
            .fold(0u32, |group, (at, byte)| group | u32::from(*byte) << (16 - 8 * at));
        for at in 0..4 {
            if at <= chunk.len() {
                text.push(char::from(ALPHABET[(group >> (18 - 6 * at)) as usize & 63]));
            } else {
                text.push('=');
            }
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_value_is_rfc_6455s() {
        // RFC 6455, section 1.3.
        assert_eq!(accept("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn frames_are_taken_once_whole() {
        // A final text frame `hi` split across two reads.
        let mut read = vec![0x81, 0x02, b'h'];
        assert!(take_frame(&mut read).unwrap().is_none());
        read.extend_from_slice(&[b'i', 0x89]);
        let frame = take_frame(&mut read).unwrap().unwrap();
        assert_eq!((frame.fin, frame.opcode, &frame.payload[..]), (true, TEXT, &b"hi"[..]));
        assert_eq!(read, [0x89]);
        // A 300-byte binary fragment, with a 16-bit length.
        let mut read = vec![0x02, 126, 0x01, 0x2C];
        read.resize(4 + 300, 7);
        let frame = take_frame(&mut read).unwrap().unwrap();
        assert_eq!((frame.fin, frame.opcode, frame.payload.len()), (false, BINARY, 300));
        assert!(read.is_empty());
    }

    #[test]
    fn frames_a_server_must_not_send_are_refused() {
        for (bytes, reason) in [
            (&[0x81, 0x82, 0, 0, 0, 0, 1, 2][..], "masked"),
            (&[0xC1, 0x00][..], "reserved"),
            (&[0x09, 0x00][..], "control"),
            (&[0x89, 126, 0, 200][..], "control"),
            (&[0x82, 127, 0x7F, 0, 0, 0, 0, 0, 0, 0][..], "MiB"),
        ] {
            let error = take_frame(&mut bytes.to_vec()).err().unwrap_or_default();
            assert!(error.contains(reason), "{bytes:?}: {error}");
        }
    }

    #[test]
    fn base64_pads_as_rfc_4648_says() {
        // RFC 4648, section 10.
        for (bytes, text) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(bytes.as_bytes()), text);
        }
    }
}
