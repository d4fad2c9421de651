//! Which hosts the console answers for: its defence against DNS rebinding.
//!
//! A page on `rebind.attacker.example` can make a browser send its requests to a console on
//! 127.0.0.1, but the browser still names the attacker's host in `Host` (and in `Origin`). So a
//! console that lets everyone in answers only loopback names and the hosts its app lists.

use std::net::{IpAddr, Ipv6Addr};
use std::sync::Arc;

use http::header;
use http::request::Parts;

/// The hosts a console answers for.
#[derive(Clone, Debug)]
pub(super) enum Hosts {
    /// Any host: a console behind a bearer token or the app's own sessions, with no list given.
    Any,
    /// Loopback names and addresses, and these hosts (`name` or `name:port`, in lowercase).
    Listed(Arc<[String]>),
}

impl Hosts {
    /// Loopback names and addresses only.
    pub(super) fn loopback() -> Hosts {
        Hosts::Listed(Arc::from([]))
    }

    /// `hosts`, each written `name` or `name:port`, beside the loopback ones.
    ///
    /// # Panics
    /// When one is empty or holds a character no host name or port has (a scheme, a path).
    pub(super) fn listed<I, H>(hosts: I) -> Hosts
    where
        I: IntoIterator<Item = H>,
        H: AsRef<str>,
    {
        let hosts: Vec<String> = hosts
            .into_iter()
            .map(|host| {
                let host = host.as_ref().trim().to_ascii_lowercase();
                let readable = !host.is_empty()
                    && host.bytes().all(|byte| byte.is_ascii_alphanumeric() || b".-:[]".contains(&byte));
                assert!(
                    readable,
                    "Console::allowed_hosts: {host:?} is not a host name, `name` or `name:port`"
                );
                host
            })
            .collect();
        Hosts::Listed(Arc::from(hosts))
    }

    /// Whether the request's host (`Host`, or the URI's authority for HTTP/2) is allowed.
    pub(super) fn allow(&self, parts: &Parts) -> bool {
        match self {
            Hosts::Any => true,
            Hosts::Listed(_) => {
                request_authority(parts).is_some_and(|authority| self.allows_authority(authority))
            }
        }
    }

    /// Whether a browser sent the request from one of the console's own pages:
    /// `Sec-Fetch-Site: same-origin`, or else an `Origin` that is the request's own origin and an
    /// allowed host (a page of another host, or of another port of this one, is not). A
    /// request with neither is refused: every browser sends one of them with a form's POST.
    pub(super) fn same_origin(&self, parts: &Parts) -> bool {
        if let Some(site) = parts.headers.get("sec-fetch-site") {
            return site.as_bytes() == b"same-origin";
        }
        let origin = parts.headers.get(header::ORIGIN).and_then(|origin| origin.to_str().ok());
        let Some(origin) = origin else { return false };
        let Some((_, authority)) = origin.split_once("://") else { return false };
        request_authority(parts).is_some_and(|own| own.eq_ignore_ascii_case(authority))
            && self.allows_authority(authority)
    }

    fn allows_authority(&self, authority: &str) -> bool {
        let authority = authority.to_ascii_lowercase();
        let Some(name) = host_name(&authority) else { return false };
        match self {
            Hosts::Any => true,
            Hosts::Listed(listed) => {
                is_loopback(name) || listed.iter().any(|host| *host == authority || *host == name)
            }
        }
    }
}

/// The authority a request names: its `Host` header, or its URI's authority (HTTP/2 sends
/// `:authority` instead of `Host`).
fn request_authority(parts: &Parts) -> Option<&str> {
    match parts.headers.get(header::HOST) {
        Some(host) => host.to_str().ok(),
        None => parts.uri.authority().map(|authority| authority.as_str()),
    }
}

/// The host part of `authority` (`name`, `name:port`, `[v6]` or `[v6]:port`), or `None`
/// when it is not one.
fn host_name(authority: &str) -> Option<&str> {
    if authority.starts_with('[') {
        let end = authority.find(']')?;
        let rest = &authority[end + 1..];
        return (rest.is_empty() || port(rest)).then_some(&authority[..=end]);
    }
    match authority.split_once(':') {
        Some((name, rest)) => (!name.is_empty() && port(&format!(":{rest}"))).then_some(name),
        None => (!authority.is_empty()).then_some(authority),
    }
}

fn port(rest: &str) -> bool {
    rest.strip_prefix(':').is_some_and(|digits| {
        !digits.is_empty() && digits.len() <= 5 && digits.bytes().all(|byte| byte.is_ascii_digit())
    })
}

/// `localhost`, a name below `.localhost` (browsers resolve both to loopback themselves, so DNS
/// cannot rebind them), or a loopback address (`127.0.0.0/8`, `[::1]`).
fn is_loopback(name: &str) -> bool {
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Some(v6) = name.strip_prefix('[').and_then(|name| name.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|address| address.is_loopback());
    }
    name.parse::<IpAddr>().is_ok_and(|address| address.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(host: Option<&str>, uri: &str) -> Parts {
        let mut request = http::Request::builder().uri(uri);
        if let Some(host) = host {
            request = request.header(header::HOST, host);
        }
        request.body(()).unwrap().into_parts().0
    }

    #[test]
    fn loopback_names_and_addresses_pass_and_others_do_not() {
        let loopback = Hosts::loopback();
        for host in
            ["127.0.0.1:8080", "localhost", "LOCALHOST:1", "console.localhost:9", "[::1]:80", "127.9.9.9"]
        {
            assert!(loopback.allow(&parts(Some(host), "/")), "{host}");
        }
        for host in [
            "rebind.attacker.example:8080",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "10.0.0.1",
            "[::2]",
            "localhost:",
            "localhost:x",
            "",
        ] {
            assert!(!loopback.allow(&parts(Some(host), "/")), "{host}");
        }
        assert!(!loopback.allow(&parts(None, "/")), "no host at all");
        assert!(loopback.allow(&parts(None, "http://127.0.0.1:3000/")), "HTTP/2's authority");
        assert!(!loopback.allow(&parts(None, "http://evil.example/")));
        assert!(Hosts::Any.allow(&parts(Some("anything.example"), "/")));
    }

    #[test]
    fn listed_hosts_pass_with_any_port_or_the_one_listed() {
        let hosts = Hosts::listed(["Console.Example.com", "ops.example.com:8443"]);
        assert!(hosts.allow(&parts(Some("console.example.com"), "/")));
        assert!(hosts.allow(&parts(Some("console.example.com:444"), "/")));
        assert!(hosts.allow(&parts(Some("ops.example.com:8443"), "/")));
        assert!(!hosts.allow(&parts(Some("ops.example.com:8444"), "/")));
        assert!(!hosts.allow(&parts(Some("example.com"), "/")));
        assert!(hosts.allow(&parts(Some("127.0.0.1:1"), "/")), "loopback stays allowed");
    }

    #[test]
    fn an_origin_must_be_the_request_s_own_and_allowed() {
        let request = |host: &str, origin: &str| {
            let mut parts = parts(Some(host), "/");
            parts.headers.insert(header::ORIGIN, origin.parse().unwrap());
            parts
        };
        let loopback = Hosts::loopback();
        assert!(loopback.same_origin(&request("127.0.0.1:8080", "http://127.0.0.1:8080")));
        assert!(!loopback.same_origin(&request("127.0.0.1:8080", "http://127.0.0.1:9090")), "another port");
        let rebound = request("rebind.attacker.example:8080", "http://rebind.attacker.example:8080");
        assert!(!loopback.same_origin(&rebound));
        assert!(Hosts::Any.same_origin(&rebound));
        let mut fetched = request("127.0.0.1:8080", "http://evil.example");
        fetched.headers.insert("sec-fetch-site", "same-origin".parse().unwrap());
        assert!(loopback.same_origin(&fetched), "Sec-Fetch-Site decides when a browser sends it");
        fetched.headers.insert("sec-fetch-site", "same-site".parse().unwrap());
        assert!(!loopback.same_origin(&fetched), "another port of the same host is the same site");
        assert!(!loopback.same_origin(&parts(Some("127.0.0.1:8080"), "/")), "neither header");
    }

    #[test]
    #[should_panic(expected = "is not a host name")]
    fn a_url_is_not_a_host() {
        let _ = Hosts::listed(["https://console.example.com/"]);
    }
}
