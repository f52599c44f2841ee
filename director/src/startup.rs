//! Startup errors that say what to do: missing privileges before anything
//! is tried, and native XDP on an interface whose driver lacks it.

use anyhow::bail;

use crate::config::XdpMode;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// What a `CapEff` mask lacks for `director run`: CAP_NET_ADMIN (XDP) and
/// CAP_BPF (maps and programs; CAP_SYS_ADMIN also does, on kernels before
/// 5.8).
fn missing(cap_eff: u64) -> Vec<&'static str> {
    let has = |c: u32| cap_eff & (1 << c) != 0;
    let mut lacks = Vec::new();
    if !has(CAP_BPF) && !has(CAP_SYS_ADMIN) {
        lacks.push("CAP_BPF");
    }
    if !has(CAP_NET_ADMIN) {
        lacks.push("CAP_NET_ADMIN");
    }
    lacks
}

/// The effective capabilities of this process (`CapEff:` of
/// /proc/self/status).
fn cap_eff(status: &str) -> Option<u64> {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))?
        .trim();
    u64::from_str_radix(hex, 16).ok()
}

/// Refuses to start without the privileges the datapath needs, saying so,
/// instead of the kernel's bare "Operation not permitted" half way through
/// loading.
pub fn check_privileges() -> anyhow::Result<()> {
    let Some(eff) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| cap_eff(&s))
    else {
        // Not Linux's procfs: let the kernel's own errors speak.
        return Ok(());
    };
    let lacks = missing(eff);
    if !lacks.is_empty() {
        bail!(
            "director run needs root (CAP_BPF, CAP_NET_ADMIN): this process lacks {}",
            lacks.join(" and ")
        );
    }
    Ok(())
}

/// Adds what to do to an attach error that means the driver has no native
/// XDP (the kernel says only "Operation not supported").
pub fn attach_error(e: anyhow::Error, iface: &str, mode: XdpMode) -> anyhow::Error {
    let unsupported = e
        .chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|io| io.raw_os_error() == Some(libc::EOPNOTSUPP));
    if mode == XdpMode::Native && unsupported {
        return e.context(format!(
            "{iface}: its driver has no native XDP; set xdp_mode = \"generic\" in [director] \
             (slower, but works on any interface)"
        ));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_capabilities_the_error_says_needs_root() {
        let status = "Name:\tdirector\nCapInh:\t0000000000000000\nCapEff:\t0000000000000000\n";
        assert_eq!(cap_eff(status), Some(0));
        assert_eq!(missing(0), ["CAP_BPF", "CAP_NET_ADMIN"]);
        // Root: every capability.
        assert!(missing(0x000001ffffffffff).is_empty());
        // CAP_SYS_ADMIN stands for CAP_BPF (kernels before 5.8).
        assert!(missing(1 << CAP_SYS_ADMIN | 1 << CAP_NET_ADMIN).is_empty());
        assert_eq!(missing(1 << CAP_BPF), ["CAP_NET_ADMIN"]);
    }

    #[test]
    fn native_xdp_unsupported_hints_at_generic_mode() {
        let io = std::io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        let e = anyhow::Error::new(io).context("attaching XDP (Driver) to d0");
        let msg = format!("{:#}", attach_error(e, "d0", XdpMode::Native));
        assert!(msg.contains("xdp_mode = \"generic\""), "{msg}");
        let io = std::io::Error::from_raw_os_error(libc::EOPNOTSUPP);
        let e = anyhow::Error::new(io).context("attaching XDP (Skb) to d0");
        let msg = format!("{:#}", attach_error(e, "d0", XdpMode::Generic));
        assert!(
            !msg.contains("xdp_mode"),
            "generic mode told to use generic: {msg}"
        );
    }
}
