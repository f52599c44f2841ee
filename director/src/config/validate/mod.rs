//! Checks the raw file and converts it into a [`Config`], collecting every
//! error and warning with the position of the value it is about.
//!
//! When a value is invalid, a placeholder takes its place so that checking
//! can go on; the resulting config is only handed out if there were no
//! errors.

mod director;
mod health_check;
mod real_server;
mod sync;
mod values;
mod virtual_server;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    ops::Range,
    path::{Path, PathBuf},
};

use super::{
    Config, DEFAULT_CONNTRACK_MAX, Diagnostic, DirectorSection, LineIndex, Protocol, Severity,
    XdpMode, raw,
};

/// Placeholder for an address that failed to parse.
const BAD_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0);

/// A 1-based line:column, printed as `LINE:COL`.
#[derive(Clone, Copy)]
struct Pos(usize, usize);

impl std::fmt::Display for Pos {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.0, self.1)
    }
}

struct Checker<'a> {
    text: &'a str,
    lines: LineIndex,
    diagnostics: Vec<Diagnostic>,
    /// Where `announce_table` is set, for the rules it brings.
    announcing: Option<Pos>,
}

pub(super) fn build(text: &str, raw: raw::File, path: PathBuf) -> (Config, Vec<Diagnostic>) {
    let mut c = Checker {
        text,
        lines: LineIndex::new(text),
        diagnostics: Vec::new(),
        announcing: None,
    };
    // Without a readable [director] (already an error) the config is
    // never handed out: the placeholder only lets checking go on.
    let director = raw.director.map_or_else(
        || DirectorSection {
            interfaces: Vec::new(),
            xdp_mode: XdpMode::default(),
            conntrack_max: DEFAULT_CONNTRACK_MAX,
            announce_table: None,
        },
        |d| c.director(d.into_inner()),
    );
    let mut names: HashMap<String, Pos> = HashMap::new();
    let mut services: HashMap<(SocketAddr, Protocol), Pos> = HashMap::new();
    let virtual_servers = raw
        .virtual_server
        .into_iter()
        .map(|vs| c.virtual_server(vs, &mut names, &mut services))
        .collect();
    let dir = path.parent().unwrap_or(Path::new(""));
    let sync = raw.sync.map(|s| c.sync(s.into_inner(), dir));
    let config = Config {
        path,
        director,
        virtual_servers,
        sync,
    };
    (config, c.diagnostics)
}

impl Checker<'_> {
    fn pos(&self, span: Range<usize>) -> Pos {
        let (line, col) = self.lines.position(self.text, span.start);
        Pos(line, col)
    }

    fn push(&mut self, span: Range<usize>, severity: Severity, message: String) {
        let d = self.lines.diagnostic(self.text, span, severity, message);
        self.diagnostics.push(d);
    }

    /// The value at `span` as written, for a message about it.
    fn literal(&self, span: Range<usize>) -> &str {
        self.text.get(span).unwrap_or_default()
    }

    /// The key of the `key = value` pair whose value spans `value`.
    /// serde_spanned records only values; a rule about a key being set at
    /// all reads best pointed at the key. TOML keeps a key and its value on
    /// one line, so the key is the token before the last `=` preceding the
    /// value; if there is none, the value's span is returned.
    fn key_span(&self, value: Range<usize>) -> Range<usize> {
        let before = &self.text[..value.start];
        let Some(eq) = before.rfind('=') else {
            return value;
        };
        let key = before[..eq].trim_end_matches([' ', '\t']);
        let start = key
            .rfind(|c: char| c.is_whitespace() || c == '{' || c == ',')
            .map_or(0, |i| i + 1);
        if start == key.len() {
            return value;
        }
        start..key.len()
    }

    fn error(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Error, message.into());
    }

    fn warning(&mut self, span: Range<usize>, message: impl Into<String>) {
        self.push(span, Severity::Warning, message.into());
    }
}
