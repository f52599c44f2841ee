//! `director run`'s log filter: a bare level in `RUST_LOG` (`debug`) is
//! director's own, its dependencies (aya, netlink, hyper) staying at `warn`
//! unless named (`RUST_LOG=debug,aya=debug`); unset, `info`.

use tracing_subscriber::{EnvFilter, filter::LevelFilter};

const DEFAULT: &str = "info";

/// The `EnvFilter` directives for `RUST_LOG` (or its absence).
pub fn directives(rust_log: Option<&str>) -> String {
    let given = rust_log.map(str::trim).filter(|s| !s.is_empty());
    let mut out = vec!["warn".to_string()];
    for d in given.unwrap_or(DEFAULT).split(',').map(str::trim) {
        match d.parse::<LevelFilter>() {
            Ok(level) => out.push(format!("director={level}")),
            Err(_) if !d.is_empty() => out.push(d.to_string()),
            Err(_) => {}
        }
    }
    out.join(",")
}

/// Logs to stderr, colours only on a terminal.
pub fn init() {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    let filter = EnvFilter::try_new(directives(rust_log.as_deref())).unwrap_or_else(|e| {
        eprintln!("director: ignoring RUST_LOG ({e})");
        EnvFilter::new(directives(None))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_log_debug_is_directors_debug_not_its_dependencies() {
        assert_eq!(directives(Some("debug")), "warn,director=debug");
        assert_eq!(
            directives(Some("debug,aya=debug")),
            "warn,director=debug,aya=debug"
        );
        assert_eq!(directives(None), "warn,director=info");
        assert_eq!(directives(Some("")), "warn,director=info");
        assert_eq!(
            directives(Some("director::health=trace")),
            "warn,director::health=trace"
        );
        let filter = EnvFilter::try_new(directives(Some("debug"))).unwrap();
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::DEBUG));
    }
}
