//! What only the layer suite needs beyond `tests/common`: the signature test vector, a
//! reference HMAC from python3, and bodies of an exact length.

use std::io::Write as _;
use std::process::{Command, Stdio};

use bytes::Bytes;
use serde_json::Value;

pub use crate::common::*;

/// The signature test vector: (key, body, expected signature).
pub fn test_vector() -> (String, Bytes, String) {
    let json: Value = serde_json::from_slice(&fixture("signature-test-vector.json")).expect("JSON");
    let text = |field: &str| json[field].as_str().unwrap_or_else(|| panic!("{field}")).to_owned();
    (text("signing_key"), Bytes::from(text("body")), text("expected_signature_hex"))
}

/// HMAC-SHA256 of `body` under `key`, lowercase hex, computed by python3's `hmac` module.
pub fn python_hmac(key: &str, body: &[u8]) -> String {
    const SCRIPT: &str = "import hmac, hashlib, sys\n\
        key = sys.argv[1].encode('utf-8')\n\
        body = sys.stdin.buffer.read()\n\
        sys.stdout.write(hmac.new(key, body, hashlib.sha256).hexdigest())\n";
    let mut child = Command::new("python3")
        .arg("-c")
        .arg(SCRIPT)
        .arg(key)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    child.stdin.take().expect("stdin").write_all(body).expect("write to python3");
    let output = child.wait_with_output().expect("python3 finishes");
    assert!(output.status.success(), "python3 failed: {}", String::from_utf8_lossy(&output.stderr));
    let hex = String::from_utf8(output.stdout).expect("hex");
    assert_eq!(hex.len(), 64, "{hex}");
    hex
}

/// A `message.created` delivery whose body is exactly `len` bytes.
pub fn message_of_len(len: usize) -> Bytes {
    let head = r#"{"event":"message.created","data":{"body":""#;
    let tail = r#""}}"#;
    let fill = len.checked_sub(head.len() + tail.len()).expect("long enough");
    let body = format!("{head}{}{tail}", "x".repeat(fill));
    assert_eq!(body.len(), len);
    Bytes::from(body)
}
