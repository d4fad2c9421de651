//! A browser's session with the console: the cookie that names it, the CSRF tokens tied to it,
//! and the one-time codes that open one.
//!
//! Browsers do not separate cookies by port, so another server on the console's host can read
//! the cookie: it must be worth little. It holds no token, only a session value signed with a key
//! derived from the token (so that replicas sharing the token accept each other's sessions and
//! forms), and it expires. A bearer header never accepts it.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{KeyInit, Mac};

use super::access::same_secret;

/// How long a session lasts unless the console is told otherwise.
pub(super) const DEFAULT_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How far a session may be dated in the future: replicas' clocks differ a little.
const CLOCK_SKEW: u64 = 60;

/// The key that signs sessions and CSRF tokens.
#[derive(Clone)]
pub(super) struct SessionKey([u8; 32]);

impl SessionKey {
    /// The key of a console behind `token`: the same on every replica that shares the token.
    pub(super) fn from_token(token: &str) -> SessionKey {
        SessionKey(mac(token.as_bytes(), &[b"periskope-console-session-key-v1"]))
    }

    /// A key of this process only (a console without a token has no shared secret); `None`
    /// when the system gives no randomness.
    pub(super) fn random() -> Option<SessionKey> {
        let mut key = [0u8; 32];
        getrandom::fill(&mut key).ok().map(|()| SessionKey(key))
    }

    /// The cookie's name for a console mounted at `mount_path`: unique per token and prefix, so
    /// that two consoles on one host keep their own; `__Secure-` when it is `Secure`.
    pub(super) fn cookie_name(&self, mount_path: &str, secure: bool) -> String {
        let tag = hex(&mac(&self.0, &[b"cookie-name:", mount_path.as_bytes()])[..6]);
        let prefix = if secure { "__Secure-" } else { "" };
        format!("{prefix}periskope_console_{tag}")
    }

    /// A new session value, issued at `now`.
    pub(super) fn issue(&self, now: SystemTime) -> Option<String> {
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).ok()?;
        let issued = seconds(now).to_string();
        let nonce = hex(&nonce);
        let signature = hex(&mac(&self.0, &[b"session:", issued.as_bytes(), b".", nonce.as_bytes()]));
        Some(format!("{issued}.{nonce}.{signature}"))
    }

    /// Whether `value` is a session this key issued, not older than `lifetime` at `now`.
    pub(super) fn holds(&self, value: &str, now: SystemTime, lifetime: Duration) -> bool {
        let mut parts = value.split('.');
        let (Some(issued), Some(nonce), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return false;
        };
        let Ok(issued_at) = issued.parse::<u64>() else { return false };
        let now = seconds(now);
        let fresh =
            issued_at <= now.saturating_add(CLOCK_SKEW) && now.saturating_sub(issued_at) < lifetime.as_secs();
        let expected = hex(&mac(&self.0, &[b"session:", issued.as_bytes(), b".", nonce.as_bytes()]));
        same_secret(signature, &expected) && fresh
    }

    /// The CSRF token of `session`: worth nothing without the key, or with another session.
    pub(super) fn csrf_token(&self, session: &str) -> String {
        hex(&mac(&self.0, &[b"csrf:", session.as_bytes()]))
    }
}

/// A `Set-Cookie` value for the session: `HttpOnly; SameSite=Strict`, scoped to the console's
/// path, expiring after `lifetime` (at once for an empty value, which signs out).
pub(super) fn set_cookie(name: &str, value: &str, path: &str, lifetime: Duration, secure: bool) -> String {
    let max_age = if value.is_empty() { 0 } else { lifetime.as_secs() };
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}")
}

/// One-time sign-in codes: each opens one session, once, for a short time.
#[derive(Clone, Default)]
pub(super) struct SignInCodes(Arc<Mutex<Vec<(String, SystemTime)>>>);

impl SignInCodes {
    /// A new code, valid until `now + valid_for`.
    pub(super) fn issue(&self, now: SystemTime, valid_for: Duration) -> Option<String> {
        let mut code = [0u8; 16];
        getrandom::fill(&mut code).ok()?;
        let code = hex(&code);
        let until = now.checked_add(valid_for).unwrap_or(now);
        self.0.lock().unwrap_or_else(PoisonError::into_inner).push((code.clone(), until));
        Some(code)
    }

    /// Whether `code` is a code not yet spent nor expired at `now`; it is spent either way.
    pub(super) fn spend(&self, code: &str, now: SystemTime) -> bool {
        let mut codes = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        codes.retain(|(_, until)| *until > now);
        let position = codes.iter().position(|(issued, _)| same_secret(code, issued));
        position.map(|position| codes.swap_remove(position)).is_some()
    }
}

fn mac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn a_session_holds_under_its_key_until_it_expires() {
        let key = SessionKey::from_token("a token of sixteen bytes");
        let now = SystemTime::now();
        let session = key.issue(now).unwrap();
        assert!(key.holds(&session, now, HOUR));
        assert!(key.holds(&session, now + HOUR - Duration::from_secs(1), HOUR));
        assert!(!key.holds(&session, now + HOUR, HOUR), "expired");
        assert!(!key.holds(&session, now - Duration::from_secs(600), HOUR), "dated in the future");
        assert!(
            SessionKey::from_token("a token of sixteen bytes").holds(&session, now, HOUR),
            "replicas agree"
        );
        assert!(!SessionKey::from_token("another token, 16 bytes").holds(&session, now, HOUR));
        let (issued, rest) = session.split_once('.').unwrap();
        let later = format!("{}.{rest}", issued.parse::<u64>().unwrap() + 3000);
        assert!(!key.holds(&later, now, HOUR), "its time is signed");
        for forged in ["", "1.2.3", "x.y.z", &format!("{session}.x")] {
            assert!(!key.holds(forged, now, HOUR), "{forged:?}");
        }
    }

    #[test]
    fn csrf_tokens_and_cookie_names_differ_by_session_token_and_prefix() {
        let key = SessionKey::from_token("a token of sixteen bytes");
        assert_ne!(key.csrf_token("s1"), key.csrf_token("s2"));
        assert_eq!(key.csrf_token("s1"), SessionKey::from_token("a token of sixteen bytes").csrf_token("s1"));
        let other = SessionKey::from_token("another token, 16 bytes");
        assert_ne!(key.cookie_name("/", false), other.cookie_name("/", false));
        assert_ne!(key.cookie_name("/", false), key.cookie_name("/console", false));
        assert!(key.cookie_name("/", true).starts_with("__Secure-periskope_console_"));
    }

    #[test]
    fn a_code_opens_once_and_not_after_it_expired() {
        let codes = SignInCodes::default();
        let now = SystemTime::now();
        let code = codes.issue(now, Duration::from_secs(60)).unwrap();
        assert!(!codes.spend("not-the-code", now));
        assert!(codes.spend(&code, now));
        assert!(!codes.spend(&code, now), "spent");
        let late = codes.issue(now, Duration::from_secs(60)).unwrap();
        assert!(!codes.spend(&late, now + Duration::from_secs(60)), "expired");
        assert!(!codes.spend("", now));
    }
}
