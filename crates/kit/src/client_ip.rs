//! The address of the client behind a request. `X-Forwarded-For` is believed only when the
//! peer is a trusted proxy, one of `TRUSTED_PROXIES` (none by default), so a client cannot pick
//! the address its rate limits are counted under. `ordermesh up` and `ordermesh cluster`, whose
//! gateway reaches the services over loopback, name loopback for the services themselves; a
//! service started on its own (`serve`) believes no one until told whom.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, FromRef, FromRequestParts};
use axum::http::request::Parts;

use crate::config::{ConfigError, Scoped};

/// The loopback networks, as `ordermesh up` and `cluster` name them for their services.
pub const LOOPBACK: &str = "127.0.0.0/8,::1/128";

/// `list` (a `TRUSTED_PROXIES` value, if any) with loopback added: what a service believes
/// when its gateway runs on the same host.
pub fn with_loopback(list: Option<&str>) -> String {
    match list.map(str::trim).filter(|l| !l.is_empty()) {
        Some(list) => format!("{list},{LOOPBACK}"),
        None => LOOPBACK.to_string(),
    }
}

/// Whose `X-Forwarded-For` is believed; nobody's by default.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Arc<Vec<(IpAddr, u8)>>,
}

impl TrustedProxies {
    /// `TRUSTED_PROXIES`: comma-separated addresses or CIDR networks (none when unset).
    pub fn from_settings(s: &Scoped<'_>) -> Result<Self, ConfigError> {
        let mut nets = Vec::new();
        if let Some((key, value, origin)) = s.lookup(&["TRUSTED_PROXIES"]) {
            for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                nets.push(parse_cidr(part).ok_or_else(|| {
                    ConfigError::invalid(&key, &value, origin, format!("{part:?} is not an IP address or CIDR"))
                })?);
            }
        }
        Ok(TrustedProxies { nets: Arc::new(nets) })
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|(net, bits)| in_net(ip, *net, *bits))
    }

    /// The client address: the peer, or the right-most untrusted hop of `X-Forwarded-For`.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let Some(chain) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in chain.rsplit(',') {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !self.trusts(ip) {
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        client
    }
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    match s.split_once('/') {
        Some((ip, bits)) => {
            let ip: IpAddr = ip.parse().ok()?;
            let bits: u8 = bits.parse().ok()?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            (bits <= max).then_some((ip, bits))
        }
        None => {
            let ip: IpAddr = s.parse().ok()?;
            Some((ip, if ip.is_ipv4() { 32 } else { 128 }))
        }
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if bits == 0 { 0 } else { u32::MAX << (32 - bits) };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if bits == 0 { 0 } else { u128::MAX << (128 - bits) };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Handler argument: the client's address as [`TrustedProxies`] sees it.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

impl<S> FromRequestParts<S> for ClientIp
where
    TrustedProxies: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let peer =
            parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip()).unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let xff = parts.headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
        Ok(ClientIp(TrustedProxies::from_ref(state).client_ip(peer, xff)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trusting(list: &str) -> TrustedProxies {
        TrustedProxies::from_settings(&crate::config::Settings::from_pairs([("TRUSTED_PROXIES", list)]).global())
            .unwrap()
    }

    /// Issue 16, finding 7: a service trusted `X-Forwarded-For` from any loopback peer, so
    /// anyone on the host could pick the address its sign-in failures were counted under.
    #[test]
    fn nobody_is_trusted_unless_named() {
        let t = TrustedProxies::from_settings(&crate::config::Settings::default().global()).unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(t.client_ip(loopback, Some("203.0.113.9")), loopback);
        assert_eq!(t.client_ip("::1".parse().unwrap(), Some("203.0.113.9")), "::1".parse::<IpAddr>().unwrap());
        assert_eq!(TrustedProxies::default().client_ip(loopback, Some("203.0.113.9")), loopback);
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_peers() {
        let t = trusting(LOOPBACK);
        let client: IpAddr = "203.0.113.9".parse().unwrap();
        let loopback: IpAddr = "127.0.0.1".parse().unwrap();
        let stranger: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(t.client_ip(loopback, Some("203.0.113.9")), client);
        assert_eq!(t.client_ip(stranger, Some("203.0.113.9")), stranger);
        // A spoofed left-most entry does not win over the real right-most untrusted hop.
        assert_eq!(t.client_ip(loopback, Some("1.2.3.4, 203.0.113.9")), client);
        assert_eq!(t.client_ip(loopback, Some("garbage")), loopback);
    }

    #[test]
    fn cidrs_match() {
        let (net, bits) = parse_cidr("10.0.0.0/8").unwrap();
        assert!(in_net("10.1.2.3".parse().unwrap(), net, bits));
        assert!(!in_net("11.0.0.1".parse().unwrap(), net, bits));
        assert!(parse_cidr("10.0.0.0/40").is_none());
    }
}
