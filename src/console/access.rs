//! Who may use the console, and the cookies and CSRF tokens that carry that decision.

use std::fmt;
use std::sync::Arc;

use hmac::{KeyInit, Mac};
use http::request::Parts;
use http::{HeaderMap, header};

/// The decision the console was given about who gets in.
#[derive(Clone)]
pub(super) enum Access {
    /// No decision: every request is refused.
    Undecided,
    /// `Authorization: Bearer TOKEN`, or the cookie a `?token=TOKEN` link sets.
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
    /// Something a browser sends by itself (a cookie, the app's session, or nothing at all):
    /// a POST also needs the CSRF token and a same-origin request.
    Ambient,
}

/// The cookie that holds the bearer token once a `?token=` link was opened.
pub(super) const TOKEN_COOKIE: &str = "periskope_console_token";
/// The cookie that names the browser's session, to which CSRF tokens are tied.
pub(super) const SESSION_COOKIE: &str = "periskope_console_session";

impl Access {
    /// How `parts` proves access, or `None` when it is refused.
    pub(super) fn check(&self, parts: &Parts) -> Option<Proof> {
        match self {
            Access::Undecided => None,
            Access::AllowAll => Some(Proof::Ambient),
            Access::Authorize(predicate) => predicate(parts).then_some(Proof::Ambient),
            Access::Bearer(token) => {
                if let Some(given) = bearer(&parts.headers) {
                    return same_secret(given, token).then_some(Proof::Header);
                }
                let given = cookie(&parts.headers, TOKEN_COOKIE)?;
                same_secret(given, token).then_some(Proof::Ambient)
            }
        }
    }

    /// Whether `token` (from a `?token=` link) is the console's bearer token.
    pub(super) fn accepts_link_token(&self, token: &str) -> bool {
        matches!(self, Access::Bearer(expected) if same_secret(token, expected))
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

/// Compares two secrets in time that depends on their lengths only, through their digests.
fn same_secret(given: &str, expected: &str) -> bool {
    use sha2::Digest;
    let (given, expected) =
        (sha2::Sha256::digest(given.as_bytes()), sha2::Sha256::digest(expected.as_bytes()));
    given.iter().zip(expected.iter()).fold(0u8, |difference, (a, b)| difference | (a ^ b)) == 0
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict`, `Secure` when asked, for the whole site
/// (the console cannot know the prefix it is mounted at).
pub(super) fn set_cookie(name: &str, value: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict{secure}")
}

/// Fresh random hex: session names and tokens.
pub(super) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // Without the system's randomness no session can be named safely: the page is still
    // served, and its forms carry a token that no session matches.
    if getrandom::fill(&mut buffer).is_err() {
        return String::new();
    }
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The CSRF token of `session`: an HMAC under the console's own secret, so that it cannot be
/// made without that secret, and is worth nothing with another session.
pub(super) fn csrf_token(secret: &[u8], session: &str) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"periskope-console-csrf:");
    mac.update(session.as_bytes());
    hex(&mac.finalize().into_bytes())
}

/// Whether a POST authenticated by what a browser sends by itself may act: its CSRF token
/// matches its session, and it comes from the console's own origin.
pub(super) fn csrf_holds(secret: &[u8], headers: &HeaderMap, token: Option<&str>) -> bool {
    let Some(session) = cookie(headers, SESSION_COOKIE).filter(|session| !session.is_empty()) else {
        return false;
    };
    let Some(token) = token else { return false };
    same_secret(token, &csrf_token(secret, session)) && same_origin(headers)
}

/// `Sec-Fetch-Site: same-origin`, or else an `Origin` whose host is the request's `Host`; a
/// request with neither is refused (every browser sends one of them with a form's POST).
fn same_origin(headers: &HeaderMap) -> bool {
    if let Some(site) = headers.get("sec-fetch-site") {
        return site.as_bytes() == b"same-origin";
    }
    let (Some(origin), Some(host)) = (headers.get(header::ORIGIN), headers.get(header::HOST)) else {
        return false;
    };
    let (Ok(origin), Ok(host)) = (origin.to_str(), host.to_str()) else { return false };
    origin.split_once("://").is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(host))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (header::HeaderName::from_static(name), value.parse().unwrap()))
            .collect()
    }

    #[test]
    fn cookies_are_found_among_others() {
        let headers = headers(&[("cookie", "a=1; periskope_console_token=t0k; b=2")]);
        assert_eq!(cookie(&headers, TOKEN_COOKIE), Some("t0k"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
    }

    #[test]
    fn a_csrf_token_holds_for_its_session_from_the_same_origin_only() {
        let secret = b"secret";
        let token = csrf_token(secret, "s1");
        let good = headers(&[("cookie", "periskope_console_session=s1"), ("sec-fetch-site", "same-origin")]);
        assert!(csrf_holds(secret, &good, Some(&token)));
        assert!(!csrf_holds(b"other secret", &good, Some(&token)));
        assert!(!csrf_holds(secret, &good, Some(&csrf_token(secret, "s2"))));
        assert!(!csrf_holds(secret, &good, None));
        let cross = headers(&[("cookie", "periskope_console_session=s1"), ("sec-fetch-site", "cross-site")]);
        assert!(!csrf_holds(secret, &cross, Some(&token)));
        let by_origin = headers(&[
            ("cookie", "periskope_console_session=s1"),
            ("origin", "http://127.0.0.1:8080"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(csrf_holds(secret, &by_origin, Some(&token)));
        let other_origin = headers(&[
            ("cookie", "periskope_console_session=s1"),
            ("origin", "http://evil.example"),
            ("host", "127.0.0.1:8080"),
        ]);
        assert!(!csrf_holds(secret, &other_origin, Some(&token)));
        let no_origin = headers(&[("cookie", "periskope_console_session=s1")]);
        assert!(!csrf_holds(secret, &no_origin, Some(&token)));
    }
}
