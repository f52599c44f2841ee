//! The director's own process, read from /proc/self for the standard
//! `process_*` metrics (those of the Prometheus client libraries' process
//! collectors, which prometheus-client does not have).

use std::io;

/// One reading of the process's counters.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// User and system CPU time.
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub open_fds: u64,
    /// The soft limit on open files.
    pub max_fds: u64,
    /// Unix time the process started.
    pub start_time_s: f64,
}

/// What /proc/self/stat says, in its own units.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    /// utime + stime, in clock ticks.
    cpu_ticks: u64,
    /// Clock ticks after boot.
    start_ticks: u64,
    virtual_bytes: u64,
    rss_pages: u64,
}

/// Reads the process's counters now.
pub fn sample() -> io::Result<Sample> {
    let stat = parse_stat(&std::fs::read_to_string("/proc/self/stat")?)
        .ok_or_else(|| invalid("/proc/self/stat"))?;
    let boot_time = parse_boot_time(&std::fs::read_to_string("/proc/stat")?)
        .ok_or_else(|| invalid("btime in /proc/stat"))?;
    let open_fds = std::fs::read_dir("/proc/self/fd")?.count() as u64;
    let mut files = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: a valid out pointer.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut files) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sysconf only reads configuration values.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let ticks = ticks.max(1) as f64;
    Ok(Sample {
        cpu_seconds: stat.cpu_ticks as f64 / ticks,
        resident_bytes: stat.rss_pages * page.max(0) as u64,
        virtual_bytes: stat.virtual_bytes,
        open_fds,
        max_fds: files.rlim_cur,
        start_time_s: boot_time as f64 + stat.start_ticks as f64 / ticks,
    })
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("cannot parse {what}"))
}

/// proc(5): `pid (comm) state ppid …`; comm may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let (_, rest) = text.rsplit_once(')')?;
    // Field 3 (state) is the first after comm.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(Stat {
        cpu_ticks: field(14)? + field(15)?,
        start_ticks: field(22)?,
        virtual_bytes: field(23)?,
        rss_pages: field(24)?,
    })
}

fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_end_of_comm() {
        let line = "4242 (tokio) runtime (x)) S 1 4242 4242 0 -1 4194560 2163 0 0 0 \
                    150 25 0 0 20 0 4 0 98765 123456789 2048 18446744073709551615 1 1 0 0 0 0 \
                    0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                cpu_ticks: 175,
                start_ticks: 98765,
                virtual_bytes: 123_456_789,
                rss_pages: 2048,
            })
        );
        assert_eq!(parse_stat("4242 (short"), None);
        assert_eq!(
            parse_boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_has_cpu_time_memory_files_and_a_start_in_the_past() {
        // Some CPU time to count.
        let spin = (0..2_000_000u64).fold(0u64, |a, i| a.wrapping_add(i * i));
        assert_ne!(spin, 1);
        let s = sample().expect("reading /proc/self");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(s.cpu_seconds > 0.0, "{s:?}");
        assert!(s.resident_bytes > 1 << 20, "{s:?}");
        assert!(s.virtual_bytes >= s.resident_bytes, "{s:?}");
        assert!(s.open_fds >= 3 && s.open_fds <= s.max_fds, "{s:?}");
        assert!(
            s.start_time_s <= now + 1.0 && s.start_time_s > now - 86_400.0,
            "started {} s before now: {s:?}",
            now - s.start_time_s
        );
    }
}
