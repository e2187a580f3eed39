//! Where the proxy may connect: server-side request forgery rules.
//!
//! Servers in the configuration are the operator's and are trusted. Servers added at run time
//! (the server API, temporary servers) come from whoever holds an admin credential, and must
//! not turn the proxy into a way into the network it runs in: their URLs may not name a
//! loopback, private, link-local (cloud metadata at 169.254.169.254 included), unspecified or
//! multicast address, and a DNS name is checked again on the addresses it resolves to when the
//! shell connects ([`is_public_address`], applied by the shell to fetches marked
//! `public_only`), so a name that later resolves inside is refused too. The operator can name
//! exceptions (`--allow-runtime-hosts`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// Why a URL may not be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlRefusal {
    /// Not an absolute http(s) URL.
    #[error("not an http(s) URL")]
    NotHttp,
    /// The host is a loopback, private, link-local, unspecified or multicast address.
    #[error("{0} is not a public address (servers added at run time may not reach the proxy's own network; --allow-runtime-hosts names exceptions)")]
    NotPublic(String),
    /// A remote configuration over plain http to a host that is not loopback.
    #[error("a remote configuration must be fetched over https (plain http only from a loopback host)")]
    PlainHttp,
}

/// How a server added at run time may be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reach {
    /// Anywhere (a configured server, or a host the operator allowed).
    Anywhere,
    /// Only public addresses: the shell must check what the name resolves to.
    PublicOnly,
}

/// Whether `ip` is an address on the public internet: not loopback, private (RFC 1918, unique
/// local), shared (RFC 6598), benchmarking (RFC 2544), link-local, unspecified, multicast,
/// broadcast or reserved; an IPv4 address inside IPv6 (mapped, compatible, NAT64, 6to4) is
/// judged as that IPv4 address.
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, _, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0)
        || (a == 198 && (18..20).contains(&b))
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) and the deprecated IPv4-compatible form carry an IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (segments[..6] == [0; 6] && segments[6] != 0) {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    // 6to4 (2002::/16) carries an IPv4 address in its next 32 bits.
    if segments[0] == 0x2002 {
        let [a, b] = segments[1].to_be_bytes();
        let [c, d] = segments[2].to_be_bytes();
        return is_public_v4(Ipv4Addr::new(a, b, c, d));
    }
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        || (segments[0] & 0xfe00) == 0xfc00
        || (segments[0] & 0xffc0) == 0xfe80
        || (segments[0] & 0xffc0) == 0xfec0
        || segments[0] == 0x2001 && segments[1] == 0xdb8)
}

/// Judges the URL of a server added at run time: refused when its host is an address that is
/// not public (or `localhost`), [`Reach::PublicOnly`] for a DNS name (checked again at connect
/// time), [`Reach::Anywhere`] for a host the operator allowed.
pub fn runtime_url_reach(url: &str, allowed_hosts: &[String]) -> Result<Reach, UrlRefusal> {
    let parsed = Url::parse(url).map_err(|_| UrlRefusal::NotHttp)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(UrlRefusal::NotHttp);
    }
    let host = parsed.host().ok_or(UrlRefusal::NotHttp)?;
    let name = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    if allowed_hosts
        .iter()
        .any(|allowed| allowed.trim_start_matches('[').trim_end_matches(']').eq_ignore_ascii_case(name))
    {
        return Ok(Reach::Anywhere);
    }
    let address = match host {
        Host::Ipv4(v4) => Some(IpAddr::V4(v4)),
        Host::Ipv6(v6) => Some(IpAddr::V6(v6)),
        Host::Domain(domain) => {
            let domain = domain.trim_end_matches('.');
            if domain.eq_ignore_ascii_case("localhost") || domain.to_ascii_lowercase().ends_with(".localhost") {
                return Err(UrlRefusal::NotPublic(domain.to_owned()));
            }
            None
        }
    };
    match address {
        Some(ip) if !is_public_address(ip) => Err(UrlRefusal::NotPublic(ip.to_string())),
        Some(_) => Ok(Reach::Anywhere),
        None => Ok(Reach::PublicOnly),
    }
}

/// How the server `entry` may be reached: anywhere when it is the configuration's, else as its
/// URL allows (`None`: not a remote server, or a URL refused outright).
pub(crate) fn entry_reach(entry: &crate::config::file::ServerEntry, allowed_hosts: &[String]) -> Option<Reach> {
    use crate::config::file::{ServerSource, UpstreamConfig};
    let url = match &entry.upstream {
        UpstreamConfig::Sse { url, .. } | UpstreamConfig::StreamableHttp { url, .. } => url,
        UpstreamConfig::Stdio(_) => return None,
    };
    match entry.source {
        ServerSource::Config => Some(Reach::Anywhere),
        // A URL the runtime rules refuse (an entry read back from a `--persist`ed file after
        // its exception was withdrawn) may still reach public addresses only.
        ServerSource::Api | ServerSource::Temporary => {
            Some(runtime_url_reach(url, allowed_hosts).unwrap_or(Reach::PublicOnly))
        }
    }
}

/// Judges the URL of a remote configuration (`--config https://…`): https, or plain http from
/// a loopback host only (a configuration names commands to run; it must not be open to a
/// network attacker).
pub fn config_url_allowed(url: &str) -> Result<(), UrlRefusal> {
    let parsed = Url::parse(url).map_err(|_| UrlRefusal::NotHttp)?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" => {
            let loopback = match parsed.host() {
                Some(Host::Ipv4(v4)) => v4.is_loopback(),
                Some(Host::Ipv6(v6)) => v6.is_loopback(),
                Some(Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
                None => false,
            };
            if loopback {
                Ok(())
            } else {
                Err(UrlRefusal::PlainHttp)
            }
        }
        _ => Err(UrlRefusal::NotHttp),
    }
}

/// Whether two URLs share scheme, host and port.
pub(crate) fn same_origin(a: &str, b: &str) -> bool {
    match (Url::parse(a), Url::parse(b)) {
        (Ok(a), Ok(b)) => a.origin() == b.origin() && a.origin().is_tuple(),
        _ => false,
    }
}

/// Resolves a reference (like a legacy SSE `endpoint` event) against `base`.
pub(crate) fn join(base: &str, reference: &str) -> Option<String> {
    Url::parse(base).ok()?.join(reference).ok().map(String::from)
}

/// A URL as logs show it: without its query and credentials, which may hold secrets
/// (`?key=…`, `user:password@`).
pub fn redacted(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let hidden = parsed.query().is_some();
            parsed.set_query(None);
            parsed.set_fragment(None);
            if hidden {
                format!("{parsed}?…")
            } else {
                parsed.to_string()
            }
        }
        Err(_) => "(an invalid URL)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_added_at_run_time_never_reaches_inside() {
        use crate::config::file::{parse_server, ServerOptions, ServerSource};
        let entry = |url: &str, source| {
            let mut entry =
                parse_server("r", &serde_json::json!({"url": url}), &ServerOptions::default()).expect("a valid entry");
            entry.source = source;
            entry
        };
        let inside = "http://127.0.0.1:9/mcp";
        assert_eq!(entry_reach(&entry(inside, ServerSource::Config), &[]), Some(Reach::Anywhere));
        // Read back from a persisted file without the exception it was added under.
        assert_eq!(entry_reach(&entry(inside, ServerSource::Api), &[]), Some(Reach::PublicOnly));
        assert_eq!(entry_reach(&entry(inside, ServerSource::Api), &["127.0.0.1".into()]), Some(Reach::Anywhere));
        let named = "https://mcp.example.com/mcp";
        assert_eq!(entry_reach(&entry(named, ServerSource::Temporary), &[]), Some(Reach::PublicOnly));
    }

    #[test]
    fn classifies_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::10.0.0.1",
            "2002:a9fe:a9fe::",
            "2002:7f00:1::1",
            "198.18.0.1",
            "198.19.255.254",
        ] {
            assert!(!is_public_address(private.parse().expect("ip")), "{private}");
        }
        for public in
            ["1.1.1.1", "8.8.8.8", "2606:4700:4700::1111", "::ffff:1.1.1.1", "2002:0101:0101::1", "198.20.0.1"]
        {
            assert!(is_public_address(public.parse().expect("ip")), "{public}");
        }
    }

    #[test]
    fn runtime_urls_may_not_name_the_inside() {
        for inside in [
            "http://127.0.0.1:8080/mcp",
            "http://[::1]/mcp",
            "http://localhost/mcp",
            "http://api.localhost/mcp",
            "http://169.254.169.254/latest/meta-data",
            "http://[::ffff:10.0.0.1]/mcp",
            "http://0x7f000001/mcp",
            "http://2130706433/mcp",
            "http://10.0.0.1./mcp",
        ] {
            assert!(matches!(runtime_url_reach(inside, &[]), Err(UrlRefusal::NotPublic(_))), "{inside}");
        }
        assert_eq!(runtime_url_reach("https://mcp.example.com/mcp", &[]), Ok(Reach::PublicOnly));
        assert_eq!(runtime_url_reach("https://1.1.1.1/mcp", &[]), Ok(Reach::Anywhere));
        assert_eq!(runtime_url_reach("http://127.0.0.1:9/mcp", &["127.0.0.1".into()]), Ok(Reach::Anywhere));
        assert_eq!(runtime_url_reach("http://[::1]:9/mcp", &["::1".into()]), Ok(Reach::Anywhere));
        assert_eq!(runtime_url_reach("file:///etc/passwd", &[]), Err(UrlRefusal::NotHttp));
    }

    #[test]
    fn remote_configurations_need_https_off_loopback() {
        assert_eq!(config_url_allowed("https://config.example/c.json"), Ok(()));
        assert_eq!(config_url_allowed("http://127.0.0.1:8000/c.json"), Ok(()));
        assert_eq!(config_url_allowed("http://localhost/c.json"), Ok(()));
        assert_eq!(config_url_allowed("http://config.example/c.json"), Err(UrlRefusal::PlainHttp));
    }

    #[test]
    fn origins_joins_and_redaction() {
        assert!(same_origin("http://h:1/sse", "http://h:1/messages?s=1"));
        assert!(!same_origin("http://h:1/sse", "http://h:2/messages"));
        assert!(!same_origin("http://h:1/sse", "https://h:1/messages"));
        assert!(!same_origin("http://h/sse", "http://evil.example/messages"));
        assert_eq!(join("http://h:1/a/sse", "/messages?s=1").as_deref(), Some("http://h:1/messages?s=1"));
        assert_eq!(join("http://h:1/a/sse", "messages?s=1").as_deref(), Some("http://h:1/a/messages?s=1"));
        assert_eq!(join("http://h:1/a/sse", "//evil.example/x").as_deref(), Some("http://evil.example/x"));
        assert_eq!(redacted("https://u:p@mcp.amap.com/sse?key=secret"), "https://mcp.amap.com/sse?…");
    }
}
