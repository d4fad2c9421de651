//! The `signature` oracle, shared by `fuzz/fuzz_targets/signature.rs` and
//! `tests/fuzz_regressions.rs`.
//!
//! `SigningKeys::verify` and `verify_headers` never panic and answer exactly as a reference
//! built straight on `hmac`/`sha2` says; `signature::sign` agrees with that reference; the
//! correct signature always verifies (in either case, with surrounding whitespace, repeated);
//! a body with one bit flipped, a byte more or a byte less never verifies.

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderValue};
use periskope_webhook::signature::{SIGNATURE_HEADER, SignatureError, SigningKey, SigningKeys, sign};
use sha2::Sha256;

/// The key the fuzzers sign with.
pub const KEY: &[u8] = b"peri_ea194594-c433-4ea7-8c94-af9e63c5df47";

/// One fuzz case.
#[derive(Clone, Debug, Default)]
pub struct Input<'a> {
    /// Signature header values, tried one by one and then all together as repeated headers.
    pub values: Vec<Vec<u8>>,
    /// A second key for a rotation set (empty: no second key, and `SigningKey::new` refuses it).
    pub second_key: Vec<u8>,
    /// Which bit of the body to flip.
    pub flip: usize,
    /// The signed body.
    pub body: &'a [u8],
}

/// The reference HMAC-SHA256 tag of `body` under `key`.
pub fn reference_tag(key: &[u8], body: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

/// The reference decoding of a header value: 64 hex digits, ASCII whitespace around allowed.
fn reference_decode(value: &[u8]) -> Option<[u8; 32]> {
    let digits = value.trim_ascii();
    if digits.len() != 64 || !digits.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    let mut tag = [0; 32];
    for (byte, pair) in tag.iter_mut().zip(digits.chunks_exact(2)) {
        let text = std::str::from_utf8(pair).expect("hex digits are ASCII");
        *byte = u8::from_str_radix(text, 16).expect("two hex digits");
    }
    Some(tag)
}

fn hex(tag: &[u8; 32]) -> String {
    tag.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The reference signature of `body` under `key` (any key, even empty), in lowercase hex.
pub fn signature_hex(key: &[u8], body: &[u8]) -> String {
    hex(&reference_tag(key, body))
}

/// Runs every check; panics with a description on the first violation.
pub fn check(input: &Input<'_>) {
    let body = input.body;
    let first = SigningKey::new(KEY).expect("a non-empty key");
    let second = SigningKey::new(&input.second_key);
    assert_eq!(second.is_err(), input.second_key.is_empty(), "only an empty key is refused");
    let mut keys = SigningKeys::from(first.clone());
    let mut tags = vec![reference_tag(KEY, body)];
    if let Ok(second) = second {
        assert_eq!(sign(&second, body), hex(&reference_tag(&input.second_key, body)));
        keys = keys.with_key(second.with_id("rotated")).expect("a built key is not empty");
        tags.push(reference_tag(&input.second_key, body));
    }
    let expected_match = |tag: &[u8; 32]| tags.iter().position(|t| t == tag);

    // `sign` is the reference HMAC in lowercase hex.
    let correct = sign(&first, body);
    assert_eq!(correct, hex(&tags[0]), "sign() is not HMAC-SHA256 in lowercase hex");

    // Each value on its own.
    for value in &input.values {
        let result = keys.verify(value, body);
        let expected = match reference_decode(value) {
            None => Err(SignatureError::Malformed),
            Some(tag) => expected_match(&tag).ok_or(SignatureError::Mismatch),
        };
        assert_eq!(result.as_ref().map(|m| m.index()).map_err(|e| *e), expected, "verify({value:?})");
        if let Ok(matched) = result {
            assert_eq!(matched.id(), if matched.index() == 0 { "key-0" } else { "rotated" });
        }
    }

    // All values as repeated headers (those that are valid header values).
    let mut headers = HeaderMap::new();
    let mut decoded = Vec::new();
    for value in &input.values {
        if let Ok(value) = HeaderValue::from_bytes(value) {
            decoded.push(reference_decode(value.as_bytes()));
            headers.append(SIGNATURE_HEADER, value);
        }
    }
    let result = keys.verify_headers(&headers, body).map(|m| m.index());
    let valid: Vec<[u8; 32]> = decoded.iter().flatten().copied().collect();
    let any_malformed = decoded.iter().any(Option::is_none);
    let disagree = valid.windows(2).any(|pair| pair[0] != pair[1]);
    match result {
        Ok(index) => {
            assert!(!any_malformed && !disagree && !valid.is_empty(), "accepted {decoded:?}");
            assert_eq!(Some(index), expected_match(&valid[0]));
        }
        Err(SignatureError::Missing) => assert!(decoded.is_empty(), "Missing with {decoded:?}"),
        Err(SignatureError::Malformed) => assert!(any_malformed, "Malformed with {decoded:?}"),
        Err(SignatureError::Conflict) => assert!(disagree, "Conflict with {decoded:?}"),
        Err(SignatureError::Mismatch) => assert!(
            !any_malformed && !disagree && !valid.is_empty() && expected_match(&valid[0]).is_none(),
            "Mismatch with {decoded:?}"
        ),
        Err(other) => panic!("unexpected {other:?}"),
    }
    if !any_malformed && !disagree && !valid.is_empty() {
        assert!(matches!(result, Ok(_) | Err(SignatureError::Mismatch)), "{decoded:?} gave {result:?}");
    } else if any_malformed && !disagree {
        assert_eq!(result, Err(SignatureError::Malformed));
    } else if disagree && !any_malformed {
        assert_eq!(result, Err(SignatureError::Conflict));
    }

    // The correct signature always verifies, whatever its case and padding, also repeated.
    for value in [correct.clone(), correct.to_uppercase(), format!(" \t{correct}\t "), format!("{correct}\n")]
    {
        assert_eq!(keys.verify(value.as_bytes(), body).map(|m| m.index()), Ok(0), "{value:?}");
    }
    let mut headers = HeaderMap::new();
    headers.append(SIGNATURE_HEADER, HeaderValue::from_str(&correct).expect("hex"));
    assert_eq!(keys.verify_headers(&headers, body).map(|m| m.index()), Ok(0));
    headers.append(SIGNATURE_HEADER, HeaderValue::from_str(&correct.to_uppercase()).expect("hex"));
    assert_eq!(keys.verify_headers(&headers, body).map(|m| m.index()), Ok(0));

    // Any other body does not verify with it: one bit flipped, a byte more, a byte less.
    let mismatch = Err(SignatureError::Mismatch);
    let single = SigningKeys::from(first);
    let mut altered = body.to_vec();
    altered.push(input.flip as u8);
    assert_eq!(single.verify(correct.as_bytes(), &altered).map(|m| m.index()), mismatch);
    if let Some((_, shorter)) = body.split_last() {
        assert_eq!(single.verify(correct.as_bytes(), shorter).map(|m| m.index()), mismatch);
    }
    let bits = body.len() * 8;
    if bits > 0 {
        // One chosen bit always; every bit of a short body.
        let chosen = input.flip % bits;
        let every = if body.len() <= 16 { 0..bits } else { chosen..chosen + 1 };
        for bit in every {
            let mut flipped = body.to_vec();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert_eq!(
                single.verify(correct.as_bytes(), &flipped).map(|m| m.index()),
                mismatch,
                "bit {bit} flipped still verifies"
            );
            let mut headers = HeaderMap::new();
            headers.append(SIGNATURE_HEADER, HeaderValue::from_str(&correct).expect("hex"));
            assert_eq!(single.verify_headers(&headers, &flipped).map(|m| m.index()), mismatch);
        }
    }
}
