//! Where the server may send: `http`/`https` URLs whose host is a public address. Loopback,
//! private, link-local and other non-public addresses are refused unless the configuration
//! allows them (`webhook_allow_private`), both when a URL is set and when it is sent to: names
//! are resolved by [`Guarded`], which drops such addresses, so a name that later resolves
//! inside the network (DNS rebinding) is refused too. Redirects are never followed and no
//! proxy is used (a proxy would resolve the name itself).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

/// Why a URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("not a URL")]
    Malformed,
    #[error("only http:// and https:// URLs")]
    Scheme,
    #[error("credentials in the URL are not accepted")]
    Credentials,
    #[error("the host is a loopback or private address (allowed only with webhook_allow_private)")]
    Private,
}

/// Checks a URL to send to; with `allow_private`, any http(s) URL.
pub fn check(url: &str, allow_private: bool) -> Result<Url, TargetError> {
    let parsed = Url::parse(url).map_err(|_| TargetError::Malformed)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(TargetError::Scheme);
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(TargetError::Credentials);
    }
    let private = match parsed.host() {
        None => return Err(TargetError::Malformed),
        Some(url::Host::Ipv4(ip)) => !is_public(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => !is_public(IpAddr::V6(ip)),
        Some(url::Host::Domain(name)) => {
            let name = name.trim_end_matches('.');
            name == "localhost" || name.ends_with(".localhost")
        }
    };
    if private && !allow_private {
        return Err(TargetError::Private);
    }
    Ok(parsed)
}

/// An address anyone on the internet could reach: not loopback, private, link-local, shared,
/// multicast, documentation, reserved or unspecified; IPv6 forms of IPv4 addresses judged by
/// the address they carry.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return public_v4(v4);
            }
            let s = v6.segments();
            let first = s.first().copied().unwrap_or(0);
            // NAT64 (64:ff9b::/96) carries an IPv4 address in its last 32 bits.
            if s.starts_with(&[0x64, 0xff9b, 0, 0, 0, 0]) {
                let o = v6.octets();
                let v4 = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
                return public_v4(v4);
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                || first & 0xfe00 == 0xfc00 // unique local fc00::/7
                || first & 0xffc0 == 0xfe80 // link-local fe80::/10
                || first & 0xffc0 == 0xfec0 // site-local (deprecated) fec0::/10
                || (first == 0x2001 && s.get(1) == Some(&0x0db8)) // documentation
                || s.iter().take(5).all(|x| *x == 0)) // ::/80: IPv4-compatible and the like
        }
    }
}

fn public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared (CGNAT) 100.64/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240) // reserved
}

/// A resolver that keeps only the addresses [`check`] would accept.
#[derive(Debug, Clone, Copy)]
pub struct Guarded {
    pub allow_private: bool,
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(format!("{host} resolves to no address that may be sent to").into());
            }
            let addrs: Addrs = Box::new(found.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client for webhooks and chat: the guarded resolver, no redirects, no proxy, a
/// 15-second limit on every attempt.
pub fn client(allow_private: bool) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(Guarded { allow_private }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(std::time::Duration::from_secs(15))
        .connect_timeout(std::time::Duration::from_secs(5))
        .user_agent(concat!("countersign/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_outside_the_network_only() {
        assert!(check("https://hooks.example.com/x", false).is_ok());
        assert!(check("http://93.184.216.34:8080/x", false).is_ok());
        for bad in [
            "http://127.0.0.1/x",
            "http://localhost:9000/",
            "http://api.localhost/",
            "http://10.1.2.3/",
            "http://172.16.0.1/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fd00::1]/",
            "http://[fe80::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[64:ff9b::a00:1]/",
            "http://2130706433/", // 127.0.0.1 as one number
            "http://0x7f.1/",
        ] {
            assert_eq!(check(bad, false), Err(TargetError::Private), "{bad}");
            assert!(check(bad, true).is_ok(), "{bad}");
        }
        assert_eq!(check("ftp://example.com/", true), Err(TargetError::Scheme));
        assert_eq!(check("file:///etc/passwd", true), Err(TargetError::Scheme));
        assert_eq!(
            check("https://u:p@example.com/", true),
            Err(TargetError::Credentials)
        );
        assert_eq!(check("not a url", true), Err(TargetError::Malformed));
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_dropped() {
        let guarded = Guarded {
            allow_private: false,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(guarded.resolve(name).await.is_err());
        let open = Guarded {
            allow_private: true,
        };
        let name: Name = "localhost".parse().unwrap();
        assert!(open.resolve(name).await.unwrap().next().is_some());
    }
}
