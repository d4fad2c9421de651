//! Who may use the console: the access decision, and how a request proves it.

use std::fmt;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, header};

/// The shortest bearer token a console takes: one that a sign-in form could be made to guess is
/// no protection.
pub(super) const MIN_TOKEN_LEN: usize = 16;

/// The decision the console was given about who gets in.
#[derive(Clone)]
pub(super) enum Access {
    /// No decision: every request is refused.
    Undecided,
    /// `Authorization: Bearer TOKEN`, or a session opened by signing in with the token.
    Bearer(Arc<str>),
    /// The app's own predicate over the request (its sessions).
    Authorize(Arc<dyn Fn(&Parts) -> bool + Send + Sync>),
    /// Everyone: for a console on loopback only.
    AllowAll,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Access::Undecided => "Undecided",
            Access::Bearer(_) => "Bearer(..)",
            Access::Authorize(_) => "Authorize(..)",
            Access::AllowAll => "AllowAll",
        })
    }
}

/// How a request proved it may use the console.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Proof {
    /// An `Authorization` header: a script, which a browser page cannot forge; no CSRF token.
    Header,
    /// Something a browser sends by itself (a session cookie, the app's session, or nothing at
    /// all): a POST also needs the CSRF token and a same-origin request.
    Ambient,
}

impl Access {
    /// How `parts` proves access, or `None` when it is refused. `signed_in` tells whether the
    /// request carries a live session of this console.
    pub(super) fn check(&self, parts: &Parts, signed_in: bool) -> Option<Proof> {
        match self {
            Access::Undecided => None,
            Access::AllowAll => Some(Proof::Ambient),
            Access::Authorize(predicate) => predicate(parts).then_some(Proof::Ambient),
            Access::Bearer(token) => match bearer(&parts.headers) {
                Some(given) => same_secret(given, token).then_some(Proof::Header),
                None => signed_in.then_some(Proof::Ambient),
            },
        }
    }

    /// Whether `token` (typed into the sign-in form) is the console's bearer token.
    pub(super) fn accepts_token(&self, token: &str) -> bool {
        matches!(self, Access::Bearer(expected) if same_secret(token, expected))
    }

    /// Whether access is a session opened with the token, which a browser may sign out of.
    pub(super) fn signs_in(&self) -> bool {
        matches!(self, Access::Bearer(_))
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then_some(token.trim())
}

/// The value of the cookie `name`, if the request carries it.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find_map(|(key, value)| (key == name).then_some(value))
}

/// Compares two secrets in time that depends on their lengths only, through their digests. An
/// empty secret matches nothing, not even another empty one.
pub(super) fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::Digest;
    let (given_digest, expected_digest) =
        (sha2::Sha256::digest(given.as_bytes()), sha2::Sha256::digest(expected.as_bytes()));
    let difference =
        given_digest.iter().zip(expected_digest.iter()).fold(0u8, |difference, (a, b)| difference | (a ^ b));
    difference == 0 && !given.is_empty() && !expected.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&'static str, &str)]) -> Parts {
        let mut request = http::Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn cookies_are_found_among_others() {
        let parts = parts(&[("cookie", "a=1; periskope_console_x=s3ss; b=2")]);
        assert_eq!(cookie(&parts.headers, "periskope_console_x"), Some("s3ss"));
        assert_eq!(cookie(&parts.headers, "periskope_console_y"), None);
    }

    #[test]
    fn an_empty_secret_matches_nothing() {
        assert!(same_secret("a-token-of-16-bytes", "a-token-of-16-bytes"));
        assert!(!same_secret("", ""));
        assert!(!same_secret("", "a-token-of-16-bytes"));
        assert!(!same_secret("a-token-of-16-bytes", "a-token-of-16-byteS"));
    }

    #[test]
    fn a_bearer_console_takes_its_header_or_a_session_and_nothing_else() {
        let access = Access::Bearer(Arc::from("a-token-of-16-bytes"));
        let header = parts(&[("authorization", "Bearer a-token-of-16-bytes")]);
        assert_eq!(access.check(&header, false), Some(Proof::Header));
        let wrong = parts(&[("authorization", "Bearer nope")]);
        assert_eq!(access.check(&wrong, true), None, "a wrong header is not saved by a session");
        let empty = parts(&[("authorization", "Bearer ")]);
        assert_eq!(access.check(&empty, false), None);
        assert_eq!(access.check(&parts(&[]), true), Some(Proof::Ambient));
        assert_eq!(access.check(&parts(&[]), false), None);
        assert!(!access.accepts_token(""));
    }
}
