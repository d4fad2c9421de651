//! A Periskope-like sender: signs delivery files and POSTs them, as Periskope would.
//!
//! ```text
//! cargo run --example send [-- [--url URL] [--key KEY] [--tamper] [FILES...]]
//! ```
//!
//! Each file is sent as compact JSON (whitespace outside strings removed, key order kept, which
//! is what Periskope's `JSON.stringify` produces), signed with HMAC-SHA256 in the
//! `x-periskope-signature` header, and one line is printed: `STATUS  event-name  file`.
//!
//! - `--url`: default `http://127.0.0.1:3000/webhooks/periskope`, where the server examples listen.
//! - `--key`: default `PERISKOPE_SIGNING_KEY`, or Periskope's public demo key.
//! - `--tamper`: also send each body with one byte changed under the original signature; the
//!   server must answer 401.
//! - `FILES`: default every delivery fixture in `tests/fixtures`.
//!
//! Exits non-zero if a delivery was not answered 2xx (or a tampered one not 401).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use http::{Request, StatusCode, header};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use periskope_webhook::event::Event;
use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, sign};

const DEMO_KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
const USAGE: &str = "usage: cargo run --example send [-- [--url URL] [--key KEY] [--tamper] [FILES...]]";

struct Args {
    url: String,
    key: String,
    tamper: bool,
    files: Vec<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        url: "http://127.0.0.1:3000/webhooks/periskope".to_owned(),
        key: std::env::var("PERISKOPE_SIGNING_KEY").unwrap_or_else(|_| DEMO_KEY.to_owned()),
        tamper: false,
        files: Vec::new(),
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        match arg.as_str() {
            "--url" => args.url = argv.next().ok_or("--url needs a value")?,
            "--key" => args.key = argv.next().ok_or("--key needs a value")?,
            "--tamper" => args.tamper = true,
            "-h" | "--help" => return Err(USAGE.to_owned()),
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}\n{USAGE}")),
            file => args.files.push(file.into()),
        }
    }
    if args.files.is_empty() {
        args.files = delivery_fixtures().map_err(|error| format!("reading tests/fixtures: {error}"))?;
    }
    Ok(args)
}

/// Every delivery in `tests/fixtures`: the envelopes and the field-observed variants.
fn delivery_fixtures() -> std::io::Result<Vec<PathBuf>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        if name.ends_with(".envelope.json")
            || (name.starts_with("field-observed.") && name.ends_with(".json"))
        {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

/// Removes the whitespace outside strings, keeping everything else byte for byte.
fn compact(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else if byte.is_ascii_whitespace() {
            continue;
        } else if byte == b'"' {
            in_string = true;
        }
        out.push(byte);
    }
    out
}

/// The body with one byte changed: the first lowercase letter past the middle, upper-cased.
fn tampered(body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    let middle = body.len() / 2;
    let at = body[middle..].iter().position(u8::is_ascii_lowercase).map_or(middle, |i| middle + i);
    body[at] ^= 0x20;
    body
}

async fn post(
    client: &Client<HttpConnector, Full<Bytes>>,
    url: &str,
    body: Vec<u8>,
    signature: &str,
) -> Result<StatusCode, String> {
    let request = Request::post(url)
        .header(header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature)
        .body(Full::new(Bytes::from(body)))
        .map_err(|error| format!("bad request: {error}"))?;
    match tokio::time::timeout(Duration::from_secs(10), client.request(request)).await {
        Ok(Ok(response)) => Ok(response.status()),
        Ok(Err(error)) => Err(format!("request failed: {error:?}")),
        Err(_) => Err("no response within 10 s".to_owned()),
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let Ok(key) = SigningKey::new(&args.key) else {
        eprintln!("the signing key is empty");
        return ExitCode::from(2);
    };
    let client = Client::builder(TokioExecutor::new()).build_http();
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));

    let mut failures = 0;
    for path in &args.files {
        let shown = path.strip_prefix(manifest_dir).unwrap_or(path).display();
        let body = match std::fs::read(path) {
            Ok(json) if serde_json::from_slice::<serde::de::IgnoredAny>(&json).is_ok() => compact(&json),
            Ok(_) => {
                eprintln!("ERR  not JSON  {shown}");
                failures += 1;
                continue;
            }
            Err(error) => {
                eprintln!("ERR  {error}  {shown}");
                failures += 1;
                continue;
            }
        };
        let name = Event::from_slice(&body).map_or_else(|_| "?".to_owned(), |event| event.name().to_owned());
        let signature = sign(&key, &body);

        let mut sends = vec![(body.clone(), "")];
        if args.tamper {
            sends.push((tampered(&body), " (tampered, same signature)"));
        }
        for (body, note) in sends {
            let genuine = note.is_empty();
            match post(&client, &args.url, body, &signature).await {
                Ok(status) => {
                    println!("{}  {name}  {shown}{note}", status.as_u16());
                    let expected =
                        if genuine { status.is_success() } else { status == StatusCode::UNAUTHORIZED };
                    failures += usize::from(!expected);
                }
                Err(error) => {
                    println!("ERR  {name}  {shown}{note}: {error}");
                    failures += 1;
                }
            }
        }
    }
    if failures > 0 {
        eprintln!("{failures} unexpected answer(s)");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vector is `JSON.stringify` of the reaction fixture, signed.
    #[test]
    fn compact_matches_json_stringify() {
        let vector: serde_json::Value =
            serde_json::from_str(include_str!("../tests/fixtures/signature-test-vector.json")).unwrap();
        let fixture = include_bytes!("../tests/fixtures/reaction.created.envelope.json");
        let body = compact(fixture);
        assert_eq!(std::str::from_utf8(&body).unwrap(), vector["body"].as_str().unwrap());
        let key = SigningKey::new(vector["signing_key"].as_str().unwrap()).unwrap();
        assert_eq!(sign(&key, &body), vector["expected_signature_hex"].as_str().unwrap());
    }

    #[test]
    fn compact_keeps_strings() {
        let json = br#"{ "a" : "x \" y\\", "b" : [ 1 , "  " ] }"#;
        assert_eq!(compact(json), br#"{"a":"x \" y\\","b":[1,"  "]}"#);
    }

    #[test]
    fn tampering_changes_exactly_one_byte() {
        let body = compact(include_bytes!("../tests/fixtures/message.created.envelope.json"));
        let changed = tampered(&body);
        assert_eq!(body.iter().zip(&changed).filter(|(a, b)| a != b).count(), 1);
    }
}
