//! Values that several sections share: integers in a range, durations and
//! socket addresses.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use serde_spanned::Spanned;

use super::Checker;

impl Checker<'_> {
    /// An integer in `lo..=hi`, or an error naming `key` and the range.
    /// The value is shown as written: it may be beyond any integer type.
    pub(super) fn int_in(
        &mut self,
        key: &str,
        value: &Spanned<i128>,
        lo: i64,
        hi: i64,
    ) -> Option<i64> {
        match i64::try_from(*value.get_ref()) {
            Ok(v) if (lo..=hi).contains(&v) => Some(v),
            _ => {
                let got = self.literal(value.span()).to_owned();
                self.error(
                    value.span(),
                    format!("{key} must be in {lo}..={hi}, got {got}"),
                );
                None
            }
        }
    }

    /// A humantime duration such as "30s" or "1m 30s".
    pub(super) fn duration(&mut self, key: &str, value: &Spanned<String>) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(
                    value.span(),
                    format!(
                        "invalid duration {:?} for {key} ({e}), expected e.g. \"30s\" or \"1m 30s\"",
                        value.get_ref()
                    ),
                );
                None
            }
        }
    }

    /// A positive duration.
    pub(super) fn positive_duration(
        &mut self,
        key: &str,
        value: &Spanned<String>,
    ) -> Option<Duration> {
        let d = self.duration(key, value)?;
        if d.is_zero() {
            self.error(value.span(), format!("{key} must be greater than zero"));
            return None;
        }
        Some(d)
    }

    /// "IP:port" or "[IPv6]:port" with a port in 1..=65535.
    pub(super) fn socket_addr(&mut self, value: &Spanned<String>) -> Option<SocketAddr> {
        let s = value.get_ref().as_str();
        let addr = match s.parse::<SocketAddr>() {
            Ok(addr) => addr,
            Err(_) => {
                let msg = match port_out_of_range(s) {
                    Some(port) => {
                        format!("port {port} in {s:?} is out of range, expected 1..=65535")
                    }
                    None => {
                        format!("invalid address {s:?}, expected \"IP:port\" or \"[IPv6]:port\"")
                    }
                };
                self.error(value.span(), msg);
                return None;
            }
        };
        if addr.port() == 0 {
            self.error(
                value.span(),
                format!("port 0 in {s:?} is not allowed, expected 1..=65535"),
            );
            return None;
        }
        if addr.ip().is_unspecified() {
            self.error(
                value.span(),
                format!("address {s:?} is unspecified, expected a host address"),
            );
            return None;
        }
        Some(addr)
    }
}

/// For "IP:port" whose port is all digits but above 65535, that port.
fn port_out_of_range(s: &str) -> Option<u64> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().ok()?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match port.parse::<u64>() {
        Ok(p) if p > 65_535 => Some(p),
        Ok(_) => None,
        Err(_) => Some(u64::MAX),
    }
}
