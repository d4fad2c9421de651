//! Verification of the HMAC-SHA256 signature Periskope sends in the `x-periskope-signature` header.
//!
//! Periskope signs the raw request body with HMAC-SHA256, keyed with the signing key exactly as
//! the console shows it (including the `peri_` prefix), and sends the tag as 64 hex digits.
//!
//! # Example
//!
//! ```
//! use http::{HeaderMap, HeaderValue};
//! use periskope_webhook::signature::{SIGNATURE_HEADER, SigningKey, SigningKeys, sign};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let current = SigningKey::new("peri_ea194594-c433-4ea7-8c94-af9e63c5df47")?.with_id("current");
//! let previous = SigningKey::new("peri_0a1b2c3d-0000-4000-8000-000000000000")?;
//!
//! let body = br#"{"event":"chat.created"}"#;
//! let mut headers = HeaderMap::new();
//! headers.insert(SIGNATURE_HEADER, HeaderValue::from_str(&sign(&previous, body))?);
//!
//! // During a rotation both keys are accepted; the match says which one signed the request.
//! let keys = SigningKeys::new(current)?.with_key(previous)?;
//! let matched = keys.verify_headers(&headers, body)?;
//! assert_eq!(matched.index(), 1);
//! assert_eq!(matched.id(), "key-1");
//! # Ok(())
//! # }
//! ```

use std::{error::Error, fmt, sync::Arc};

use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Length in bytes of an HMAC-SHA256 tag.
const TAG_LEN: usize = 32;

/// Name of the header that carries the signature: `x-periskope-signature`.
///
/// [`HeaderName::as_str`] gives it as text.
pub const SIGNATURE_HEADER: HeaderName = HeaderName::from_static("x-periskope-signature");

/// A secret key that Periskope webhooks are signed with.
///
/// Only the keyed HMAC state is kept, not the key text: it is computed once here and cloned for
/// each request, so the key is not hashed again per request. That state is as sensitive as the
/// key itself, which is why [`Debug`] redacts it and there is no [`Display`](fmt::Display) and no
/// accessor for it.
#[derive(Clone)]
pub struct SigningKey {
    mac: HmacSha256,
    id: Option<Arc<str>>,
}

impl SigningKey {
    /// Creates a key from the signing key's bytes, exactly as shown in the Periskope console.
    ///
    /// The bytes are used as they are: a `peri_` prefix is part of the key, and nothing is
    /// trimmed or decoded, so strip a trailing newline read from a file before calling this.
    ///
    /// # Errors
    ///
    /// Returns [`EmptyKey`] if `key` is empty. HMAC would accept an empty key, but it is always a
    /// configuration mistake (such as an unset environment variable), and it would make every
    /// signature forgeable.
    pub fn new(key: impl AsRef<[u8]>) -> Result<Self, EmptyKey> {
        let key = key.as_ref();
        if key.is_empty() {
            return Err(EmptyKey);
        }
        // HMAC accepts keys of any length (RFC 2104), so this cannot fail for a non-empty key.
        let mac = HmacSha256::new_from_slice(key).map_err(|_| EmptyKey)?;
        Ok(Self { mac, id: None })
    }

    /// Sets a label that [`KeyMatch::id`] reports when this key verifies a request.
    ///
    /// The label is not secret: use it to tell keys apart in logs during a rotation. Without one,
    /// [`SigningKeys`] labels a key `key-N`, where `N` is its position in the set.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Returns the label set with [`SigningKey::with_id`], if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_redacted(f, self.id.as_deref())
    }
}

impl TryFrom<&str> for SigningKey {
    type Error = EmptyKey;

    fn try_from(key: &str) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

impl TryFrom<String> for SigningKey {
    type Error = EmptyKey;

    fn try_from(key: String) -> Result<Self, Self::Error> {
        Self::new(key)
    }
}

/// What a signing key can be built from: its text (`&str`, `String`), its bytes, or a
/// [`SigningKey`] already built (with an [id](SigningKey::with_id), say).
///
/// Every constructor that takes a key takes one of these, and refuses an empty one with
/// [`EmptyKey`].
pub trait IntoSigningKey {
    /// The key, or [`EmptyKey`] when it is empty.
    fn into_signing_key(self) -> Result<SigningKey, EmptyKey>;
}

impl IntoSigningKey for SigningKey {
    fn into_signing_key(self) -> Result<SigningKey, EmptyKey> {
        Ok(self)
    }
}

impl<T: AsRef<[u8]>> IntoSigningKey for T {
    fn into_signing_key(self) -> Result<SigningKey, EmptyKey> {
        SigningKey::new(self)
    }
}

fn fmt_redacted(f: &mut fmt::Formatter<'_>, id: Option<&str>) -> fmt::Result {
    let mut tuple = f.debug_tuple("SigningKey");
    if let Some(id) = id {
        tuple.field(&id);
    }
    tuple.field(&format_args!("<redacted>")).finish()
}

/// The error returned when a [`SigningKey`] is created from an empty key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmptyKey;

impl fmt::Display for EmptyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("signing key is empty")
    }
}

impl Error for EmptyKey {}

/// Computes the signature Periskope would send for `body`, as 64 lowercase hex digits.
///
/// This is what a sender puts in the [`SIGNATURE_HEADER`] header; it is useful for tests and for
/// replaying captured webhooks.
pub fn sign(key: &SigningKey, body: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";

    let tag = key.mac.clone().chain_update(body).finalize().into_bytes();
    let mut out = String::with_capacity(TAG_LEN * 2);
    for byte in tag.iter() {
        out.push(char::from(HEX[usize::from(byte >> 4)]));
        out.push(char::from(HEX[usize::from(byte & 0x0f)]));
    }
    out
}

/// A non-empty, ordered set of [`SigningKey`]s, so that keys can be rotated without downtime.
///
/// A signature is checked against each key in turn until one matches. Each key tried costs one
/// HMAC over the body, so put the key most requests are signed with first.
#[derive(Clone)]
pub struct SigningKeys {
    entries: Vec<Entry>,
}

#[derive(Clone)]
struct Entry {
    mac: HmacSha256,
    id: Arc<str>,
}

impl fmt::Debug for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt_redacted(f, Some(&self.id))
    }
}

impl SigningKeys {
    /// Creates a set holding a single key: its text (`&str`, `String`) or a [`SigningKey`].
    ///
    /// # Errors
    ///
    /// Returns [`EmptyKey`] if `key` is empty.
    pub fn new(key: impl IntoSigningKey) -> Result<Self, EmptyKey> {
        key.into_signing_key().map(Self::from)
    }

    /// Adds a key that is tried after the keys already in the set.
    ///
    /// # Errors
    ///
    /// Returns [`EmptyKey`] if `key` is empty.
    pub fn with_key(mut self, key: impl IntoSigningKey) -> Result<Self, EmptyKey> {
        self.push(key.into_signing_key()?);
        Ok(self)
    }

    fn push(&mut self, key: SigningKey) {
        let index = self.entries.len();
        let id = key.id.unwrap_or_else(|| format!("key-{index}").into());
        self.entries.push(Entry { mac: key.mac, id });
    }

    /// Verifies a signature header value against `body`, the raw request body.
    ///
    /// The value must be exactly 64 hex digits, in either case, optionally surrounded by ASCII
    /// whitespace; prefixes such as `sha256=` are rejected. The comparison is constant time.
    ///
    /// # Errors
    ///
    /// Returns [`SignatureError::Malformed`] if the value is not 64 hex digits, and
    /// [`SignatureError::Mismatch`] if no key in the set produced it.
    pub fn verify(&self, header_value: &[u8], body: &[u8]) -> Result<KeyMatch, SignatureError> {
        let tag = decode_tag(header_value)?;
        self.verify_tag(&tag, body)
    }

    /// Verifies the [`SIGNATURE_HEADER`] header in `headers` against `body`.
    ///
    /// The header may appear more than once if every copy decodes to the same signature (so
    /// letter case and surrounding whitespace may differ), since a proxy that duplicates a header
    /// does not change what was signed. Copies that disagree are rejected rather than tried one
    /// by one, which would let a sender probe several guesses with a single request.
    ///
    /// # Errors
    ///
    /// Returns [`SignatureError::Missing`] without the header, [`SignatureError::Malformed`] if
    /// any copy of it is not 64 hex digits, [`SignatureError::Conflict`] if copies
    /// disagree, and [`SignatureError::Mismatch`] if no key in the set produced the signature.
    pub fn verify_headers(&self, headers: &HeaderMap, body: &[u8]) -> Result<KeyMatch, SignatureError> {
        let mut values = headers.get_all(SIGNATURE_HEADER).into_iter();
        let first = values.next().ok_or(SignatureError::Missing)?;
        let tag = decode_tag(first.as_bytes())?;
        for other in values {
            // Both sides come from the request, so a plain comparison leaks nothing secret.
            if decode_tag(other.as_bytes())? != tag {
                return Err(SignatureError::Conflict);
            }
        }
        self.verify_tag(&tag, body)
    }

    fn verify_tag(&self, tag: &[u8; TAG_LEN], body: &[u8]) -> Result<KeyMatch, SignatureError> {
        self.entries
            .iter()
            .enumerate()
            .find(|(_, entry)| entry.mac.clone().chain_update(body).verify_slice(tag).is_ok())
            .map(|(index, entry)| KeyMatch { index, id: Arc::clone(&entry.id) })
            .ok_or(SignatureError::Mismatch)
    }
}

impl From<SigningKey> for SigningKeys {
    /// A set of one key; a [`SigningKey`] is never empty, so this cannot fail.
    fn from(key: SigningKey) -> Self {
        let mut keys = Self { entries: Vec::with_capacity(1) };
        keys.push(key);
        keys
    }
}

impl fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SigningKeys").field(&self.entries).finish()
    }
}

/// Decodes a header value of exactly 64 hex digits, ignoring surrounding ASCII whitespace.
fn decode_tag(value: &[u8]) -> Result<[u8; TAG_LEN], SignatureError> {
    fn nibble(digit: u8) -> Option<u8> {
        match digit {
            b'0'..=b'9' => Some(digit - b'0'),
            b'a'..=b'f' => Some(digit - b'a' + 10),
            b'A'..=b'F' => Some(digit - b'A' + 10),
            _ => None,
        }
    }

    let digits = value.trim_ascii();
    if digits.len() != TAG_LEN * 2 {
        return Err(SignatureError::Malformed);
    }
    let mut tag = [0; TAG_LEN];
    for (byte, pair) in tag.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])
            .zip(nibble(pair[1]))
            .map(|(high, low)| high << 4 | low)
            .ok_or(SignatureError::Malformed)?;
    }
    Ok(tag)
}

/// The key that verified a request, as returned by [`SigningKeys::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMatch {
    index: usize,
    id: Arc<str>,
}

impl KeyMatch {
    /// The match of the key at `index` labelled `id` (for [`crate::testing`]).
    #[cfg(feature = "testing")]
    pub(crate) fn new(index: usize, id: &str) -> Self {
        KeyMatch { index, id: Arc::from(id) }
    }

    /// Returns the position of the key in its [`SigningKeys`], starting at 0.
    pub fn index(&self) -> usize {
        self.index
    }

    /// Returns the key's label: the one given to [`SigningKey::with_id`], or else `key-N` where
    /// `N` is [`KeyMatch::index`].
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The reason a request's signature was rejected.
///
/// Neither the message nor the [`code`](SignatureError::code) includes a key, a signature or the
/// body, so both are safe to log and to return to the sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignatureError {
    /// The request has no [`SIGNATURE_HEADER`] header.
    Missing,
    /// The header value is not 64 hex digits.
    Malformed,
    /// No key produced the signature for this body.
    Mismatch,
    /// The header appears more than once with different signatures.
    Conflict,
}

impl SignatureError {
    /// Returns a short, stable, machine-readable code for the error, such as
    /// `signature_mismatch`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "signature_missing",
            Self::Malformed => "signature_malformed",
            Self::Mismatch => "signature_mismatch",
            Self::Conflict => "signature_conflict",
        }
    }
}

impl fmt::Display for SignatureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "missing x-periskope-signature header",
            Self::Malformed => "x-periskope-signature header is not 64 hex digits",
            Self::Mismatch => "x-periskope-signature does not match the request body",
            Self::Conflict => "conflicting x-periskope-signature headers",
        })
    }
}

impl Error for SignatureError {}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const KEY: &str = "peri_ea194594-c433-4ea7-8c94-af9e63c5df47";
    const EXPECTED: &str = "02a4cc846772cb71bb86b216e36f542f9a0a72b5890bc2282f32aa94c87f1e95";

    fn vector_body() -> Vec<u8> {
        let fixture = include_str!("../tests/fixtures/signature-test-vector.json");
        let json: serde_json::Value = serde_json::from_str(fixture).unwrap();
        json["body"].as_str().unwrap().as_bytes().to_vec()
    }

    fn keys() -> SigningKeys {
        SigningKeys::new(KEY).unwrap()
    }

    fn headers(values: &[&[u8]]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append(SIGNATURE_HEADER, HeaderValue::from_bytes(value).unwrap());
        }
        headers
    }

    #[test]
    fn test_vector() {
        let body = vector_body();
        assert_eq!(body.len(), 947);
        assert_eq!(sign(&SigningKey::new(KEY).unwrap(), &body), EXPECTED);

        let matched = keys().verify(EXPECTED.as_bytes(), &body).unwrap();
        assert_eq!(matched.index(), 0);
        assert_eq!(matched.id(), "key-0");
    }

    #[test]
    fn accepts_uppercase_hex() {
        let upper = EXPECTED.to_ascii_uppercase();
        assert!(keys().verify(upper.as_bytes(), &vector_body()).is_ok());
    }

    #[test]
    fn trims_ascii_whitespace() {
        let padded = format!(" \t{EXPECTED}\r\n ");
        assert!(keys().verify(padded.as_bytes(), &vector_body()).is_ok());
    }

    #[test]
    fn changed_body_is_a_mismatch() {
        let mut body = vector_body();
        body[100] ^= 1;
        assert_eq!(keys().verify(EXPECTED.as_bytes(), &body), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_values() {
        let prefixed = format!("sha256={EXPECTED}");
        let non_hex = format!("{}g", &EXPECTED[..63]);
        let too_long = format!("{EXPECTED}0");
        let non_ascii = [&EXPECTED.as_bytes()[..62], "é".as_bytes()].concat();
        let cases: [&[u8]; 7] = [
            &EXPECTED.as_bytes()[..63],
            too_long.as_bytes(),
            prefixed.as_bytes(),
            non_hex.as_bytes(),
            &non_ascii,
            b"",
            b"   ",
        ];
        for case in cases {
            assert_eq!(keys().verify(case, &vector_body()), Err(SignatureError::Malformed), "{case:?}");
        }
    }

    #[test]
    fn non_ascii_header_is_malformed() {
        let mut value = EXPECTED.as_bytes().to_vec();
        value[10] = 0xff;
        assert_eq!(
            keys().verify_headers(&headers(&[&value]), &vector_body()),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn rotation_reports_the_matching_key() {
        let body = vector_body();
        let keys = SigningKeys::new(SigningKey::new("peri_new").unwrap().with_id("new"))
            .and_then(|keys| keys.with_key(SigningKey::new(KEY).unwrap().with_id("old")))
            .and_then(|keys| keys.with_key("peri_other".to_owned()))
            .unwrap();

        let matched = keys.verify(EXPECTED.as_bytes(), &body).unwrap();
        assert_eq!((matched.index(), matched.id()), (1, "old"));

        let third = sign(&SigningKey::new("peri_other").unwrap(), &body);
        let matched = keys.verify(third.as_bytes(), &body).unwrap();
        assert_eq!((matched.index(), matched.id()), (2, "key-2"));
    }

    #[test]
    fn debug_redacts_the_key() {
        let key = SigningKey::new(KEY).unwrap();
        assert_eq!(format!("{key:?}"), "SigningKey(<redacted>)");

        let keys =
            SigningKeys::new(key).unwrap().with_key(SigningKey::new(KEY).unwrap().with_id("old")).unwrap();
        let debug = format!("{keys:?}");
        assert!(!debug.contains("ea194594"), "{debug}");
        assert!(debug.contains("\"old\""), "{debug}");
    }

    #[test]
    fn empty_key_is_rejected() {
        assert_eq!(SigningKey::new("").unwrap_err(), EmptyKey);
        assert!(SigningKey::try_from(String::new()).is_err());
        assert!(SigningKey::try_from(KEY).is_ok());
        assert_eq!(SigningKeys::new("").unwrap_err(), EmptyKey);
        assert_eq!(SigningKeys::new(KEY).unwrap().with_key(String::new()).unwrap_err(), EmptyKey);
    }

    #[test]
    fn missing_header() {
        assert_eq!(keys().verify_headers(&HeaderMap::new(), &vector_body()), Err(SignatureError::Missing));
    }

    #[test]
    fn conflicting_headers_are_rejected() {
        let other = sign(&SigningKey::new("peri_other").unwrap(), &vector_body());
        // Rejected even when one of the copies is right.
        for values in [[EXPECTED.as_bytes(), other.as_bytes()], [other.as_bytes(), EXPECTED.as_bytes()]] {
            assert_eq!(
                keys().verify_headers(&headers(&values), &vector_body()),
                Err(SignatureError::Conflict)
            );
        }
    }

    #[test]
    fn identical_duplicate_headers_are_accepted() {
        let upper = format!(" {}", EXPECTED.to_ascii_uppercase());
        let headers = headers(&[EXPECTED.as_bytes(), upper.as_bytes()]);
        assert!(keys().verify_headers(&headers, &vector_body()).is_ok());
    }

    #[test]
    fn malformed_duplicate_header_is_malformed() {
        let headers = headers(&[EXPECTED.as_bytes(), b"sha256=abc"]);
        assert_eq!(keys().verify_headers(&headers, &vector_body()), Err(SignatureError::Malformed));
    }

    #[test]
    fn error_codes_and_messages() {
        let errors = [
            (SignatureError::Missing, "signature_missing"),
            (SignatureError::Malformed, "signature_malformed"),
            (SignatureError::Mismatch, "signature_mismatch"),
            (SignatureError::Conflict, "signature_conflict"),
        ];
        for (error, code) in errors {
            assert_eq!(error.code(), code);
            assert!(!error.to_string().is_empty());
        }
    }
}
