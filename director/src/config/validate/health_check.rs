//! `health_check` tables, of a virtual server or of a real server (the same
//! keys and rules).

use serde_spanned::Spanned;

use super::Checker;
use crate::config::{
    CheckKind, DEFAULT_CHECK_FALL, DEFAULT_CHECK_INTERVAL, DEFAULT_CHECK_RISE,
    DEFAULT_CHECK_TIMEOUT, DEFAULT_EXPECT_STATUS, DEFAULT_HTTP_PATH, DEFAULT_UDP_PAYLOAD,
    HealthCheck, MAX_UDP_PAYLOAD, raw,
};

impl Checker<'_> {
    /// Checks a `health_check` table, of a virtual server or of a real
    /// server (the same keys and rules).
    pub(super) fn health_check(&mut self, raw: Spanned<raw::HealthCheck>) -> HealthCheck {
        let header = raw.span();
        let raw = raw.into_inner();
        let kind = *raw.kind.get_ref();

        let path = raw.path.as_ref().map(|p| {
            if self.for_kind("path", p, kind, CheckKind::Http) {
                let path = p.get_ref();
                if !path.starts_with('/') {
                    self.error(p.span(), format!("path {path:?} must start with '/'"));
                } else if let Some(c) = path.chars().find(|c| c.is_whitespace() || c.is_control()) {
                    self.error(
                        p.span(),
                        format!("path {path:?} contains {c:?}; percent-encode it"),
                    );
                }
            }
            p.get_ref().clone()
        });
        let expect_status = raw.expect_status.as_ref().and_then(|s| {
            self.for_kind("expect_status", s, kind, CheckKind::Http);
            match parse_status_range(s.get_ref()) {
                Ok(range) => Some(range),
                Err(why) => {
                    self.error(s.span(), why);
                    None
                }
            }
        });
        let expect_body = raw.expect_body.as_ref().map(|b| {
            if self.for_kind("expect_body", b, kind, CheckKind::Http) {
                self.not_empty("expect_body", b);
            }
            b.get_ref().clone()
        });
        let host = raw.host.as_ref().map(|h| {
            if self.for_kind("host", h, kind, CheckKind::Http) {
                let host = h.get_ref();
                if host.is_empty() {
                    self.error(h.span(), "host must not be empty");
                } else if let Some(c) = host.chars().find(|c| c.is_whitespace() || c.is_control()) {
                    self.error(h.span(), format!("host {host:?} contains {c:?}"));
                }
            }
            h.get_ref().clone()
        });
        let payload = raw.payload.as_ref().map(|p| {
            if self.for_kind("payload", p, kind, CheckKind::Udp)
                && p.get_ref().len() > MAX_UDP_PAYLOAD
            {
                self.error(
                    p.span(),
                    format!(
                        "payload must be at most {MAX_UDP_PAYLOAD} bytes, got {}",
                        p.get_ref().len()
                    ),
                );
            }
            p.get_ref().clone()
        });
        let expect = raw.expect.as_ref().map(|e| {
            if self.for_kind("expect", e, kind, CheckKind::Udp) {
                self.not_empty("expect", e);
            }
            e.get_ref().clone()
        });
        let command = raw.command.as_ref().map(|c| {
            if self.for_kind("command", c, kind, CheckKind::Exec) {
                match c.get_ref().first() {
                    None => self.error(
                        c.span(),
                        "command must not be empty, expected e.g. [\"/usr/local/bin/check\", \"--fast\"]",
                    ),
                    Some(program) if program.get_ref().is_empty() => {
                        self.error(program.span(), "the program of command must not be empty");
                    }
                    Some(_) => {}
                }
                for arg in c.get_ref() {
                    if arg.get_ref().contains('\0') {
                        self.error(arg.span(), "command arguments must not contain NUL");
                    }
                }
            }
            c.get_ref().iter().map(|a| a.get_ref().clone()).collect::<Vec<_>>()
        });
        let unreadable = |key| raw.unreadable.contains(&key);
        if kind == CheckKind::Exec && raw.command.is_none() && !unreadable("command") {
            self.error(
                header,
                "kind = \"exec\" requires command, e.g. command = [\"/usr/local/bin/check\", \"--fast\"]",
            );
        }

        let interval = raw
            .interval
            .as_ref()
            .and_then(|i| self.positive_duration("interval", i));
        let timeout = raw
            .timeout
            .as_ref()
            .and_then(|t| self.positive_duration("timeout", t));
        // Only compare values that are valid; defaults fill in the rest.
        let interval_ok = interval.is_some() || raw.interval.is_none() && !unreadable("interval");
        let timeout_ok = timeout.is_some() || raw.timeout.is_none() && !unreadable("timeout");
        let interval = interval.unwrap_or(DEFAULT_CHECK_INTERVAL);
        let timeout = timeout.unwrap_or(DEFAULT_CHECK_TIMEOUT);
        if interval_ok && timeout_ok && timeout > interval {
            let span = raw
                .timeout
                .as_ref()
                .or(raw.interval.as_ref())
                .map(Spanned::span);
            if let Some(span) = span {
                self.error(
                    span,
                    format!(
                        "timeout ({}) must not exceed interval ({})",
                        humantime::format_duration(timeout),
                        humantime::format_duration(interval)
                    ),
                );
            }
        }
        let rise = raw
            .rise
            .as_ref()
            .and_then(|r| self.int_in("rise", r, 1, u32::MAX.into()))
            .map_or(DEFAULT_CHECK_RISE, |v| v as u32);
        let fall = raw
            .fall
            .as_ref()
            .and_then(|f| self.int_in("fall", f, 1, u32::MAX.into()))
            .map_or(DEFAULT_CHECK_FALL, |v| v as u32);
        let port = raw
            .port
            .as_ref()
            .and_then(|p| self.int_in("port", p, 1, u16::MAX.into()))
            .map(|v| v as u16);
        let on_failure = raw
            .on_failure
            .as_ref()
            .map(|o| *o.get_ref())
            .unwrap_or_default();

        if kind == CheckKind::None {
            // Valid values, but nothing reads them: say so rather than
            // let a reader believe the server is checked.
            let ignored = [
                ("interval", raw.interval.as_ref().map(Spanned::span)),
                ("timeout", raw.timeout.as_ref().map(Spanned::span)),
                ("rise", raw.rise.as_ref().map(Spanned::span)),
                ("fall", raw.fall.as_ref().map(Spanned::span)),
                ("port", raw.port.as_ref().map(Spanned::span)),
                ("on_failure", raw.on_failure.as_ref().map(Spanned::span)),
            ];
            for (key, span) in ignored {
                if let Some(span) = span {
                    self.warning(
                        self.key_span(span),
                        format!("{key} has no effect with kind = \"none\""),
                    );
                }
            }
        }

        let http = kind == CheckKind::Http;
        let udp = kind == CheckKind::Udp;
        HealthCheck {
            kind,
            path: path.or_else(|| http.then(|| DEFAULT_HTTP_PATH.to_owned())),
            expect_status: expect_status.or(http.then_some(DEFAULT_EXPECT_STATUS)),
            interval,
            timeout,
            rise,
            fall,
            port,
            expect_body,
            host,
            payload: payload.or_else(|| udp.then(|| DEFAULT_UDP_PAYLOAD.to_owned())),
            expect,
            command,
            on_failure,
        }
    }

    /// Whether `key`, which belongs to checks of kind `wanted`, may be set
    /// on a check of kind `kind`; an error if not.
    fn for_kind<T>(
        &mut self,
        key: &str,
        value: &Spanned<T>,
        kind: CheckKind,
        wanted: CheckKind,
    ) -> bool {
        if kind == wanted {
            return true;
        }
        self.error(
            value.span(),
            format!("{key} only applies to kind = \"{wanted}\", not \"{kind}\""),
        );
        false
    }

    fn not_empty(&mut self, key: &str, value: &Spanned<String>) {
        if value.get_ref().is_empty() {
            self.error(value.span(), format!("{key} must not be empty"));
        }
    }
}

/// "NNN" or "NNN-NNN" with codes in 100..=599 and lo <= hi.
fn parse_status_range(s: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "invalid expect_status {s:?}, expected \"NNN\" or \"NNN-NNN\" with codes in 100..=599"
        )
    };
    let code = |part: &str| -> Option<u16> {
        if part.len() != 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|c| (100..=599).contains(c))
    };
    let (lo, hi) = match s.split_once('-') {
        Some((lo, hi)) => (
            code(lo.trim()).ok_or_else(bad)?,
            code(hi.trim()).ok_or_else(bad)?,
        ),
        None => {
            let c = code(s.trim()).ok_or_else(bad)?;
            (c, c)
        }
    };
    if lo > hi {
        return Err(format!(
            "invalid expect_status {s:?}: the lower bound ({lo}) exceeds the upper bound ({hi})"
        ));
    }
    Ok((lo, hi))
}
