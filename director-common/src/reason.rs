//! [`Reason`]: why the datapath did what it did with a packet it did not
//! forward normally. The enum, [`Reason::ALL`], [`Reason::COUNT`], the names
//! and the actions all come from the one table below.

/// What happens to a packet counted under a reason.
#[derive(Clone, Copy)]
enum Action {
    /// On to the kernel stack.
    Pass,
    /// Dropped.
    Drop,
}

macro_rules! reasons {
    ($(
        $(#[doc = $doc:literal])+
        $variant:ident = $index:literal, $name:literal, $action:ident;
    )+) => {
        /// Why the datapath did what it did with a packet that was not forwarded
        /// normally. Index into the per-CPU `REASONS` counter array, which is
        /// pinned: an index keeps its meaning, and a new reason takes the next one.
        /// Each reason has one deliberate action, see [`Reason::passes`].
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Reason {
            $($(#[doc = $doc])+ $variant = $index,)+
        }

        impl Reason {
            pub const COUNT: u32 = [$(Reason::$variant),+].len() as u32;
            /// Every reason, `ALL[i] as u32 == i`.
            pub const ALL: [Reason; Self::COUNT as usize] = [$(Reason::$variant),+];

            /// The reason's counter name (snake_case, unique).
            pub const fn name(self) -> &'static str {
                match self {
                    $(Reason::$variant => $name,)+
                }
            }

            const fn action(self) -> Action {
                match self {
                    $(Reason::$variant => Action::$action,)+
                }
            }
        }
    };
}

reasons! {
    /// Shorter than an Ethernet header.
    TruncatedEth = 0, "truncated_eth", Pass;
    /// IPv4 header cut short or inconsistent (IHL < 5, total length).
    BadIpv4Header = 1, "bad_ipv4_header", Pass;
    /// Transport header cut short.
    TruncatedL4 = 2, "truncated_l4", Pass;
    /// IP fragment: ports are not in every fragment, left to the stack.
    Fragment = 3, "fragment", Pass;
    /// Non-SYN TCP segment to a VIP with no connection entry.
    NoConnection = 4, "no_connection", Pass;
    /// The virtual server has no real server that takes new connections.
    NoRealServer = 5, "no_real_server", Drop;
    /// A scheduling list names a backend id that is not there.
    BadBackend = 6, "bad_backend", Drop;
    /// The real server's next hop is not resolved yet.
    Unresolved = 7, "unresolved_next_hop", Drop;
    /// The connection table refused an insert.
    ConntrackFull = 8, "conntrack_full", Drop;
    /// IPv4 header with options: not rewritten, left to the stack.
    Ipv4Options = 9, "ipv4_options", Pass;
    /// IPv6 header cut short or inconsistent (payload length).
    BadIpv6Header = 10, "bad_ipv6_header", Pass;
    /// IPv6 with extension headers before the transport header: left to
    /// the stack.
    Ipv6ExtHeader = 11, "ipv6_extension_header", Pass;
    /// Every server that could take the connection is at its limit.
    Overloaded = 12, "overloaded", Drop;
    /// An ICMP error quoting a flow we do not track: left to the stack.
    IcmpUnknownFlow = 13, "icmp_unknown_flow", Pass;
    /// An ICMP error whose quoted packet is cut short or unparsable.
    IcmpBadQuote = 14, "icmp_bad_quote", Pass;
    /// The per-CPU scratch entry was missing (cannot happen with a loaded
    /// program; counted rather than assumed).
    NoScratch = 15, "no_scratch", Drop;
    /// A SYN to a VIP whose TCP checksum is wrong (or whose segment is too
    /// long to check, over `csum::SYN_CHECKED_MAX` bytes): no entry is
    /// made, and the packet is dropped, as the server would drop it.
    BadSyn = 16, "bad_syn", Drop;
}

impl Reason {
    /// True when the packet goes on to the kernel stack; false for a drop.
    ///
    /// What we cannot classify passes: it may be the host's own traffic, and
    /// the stack validates (and counts) malformed packets itself. What we know
    /// is for a virtual server but cannot forward is dropped: the host must
    /// not answer for its real servers. The exception is a mid-flow segment
    /// with no entry, which passes as in IPVS: with the VIP local the stack
    /// answers a RST, so the client learns at once that the flow is gone.
    pub const fn passes(self) -> bool {
        matches!(self.action(), Action::Pass)
    }
}

// The counters are read back as `ALL[i]`: the indices must be 0, 1, 2, ... in
// table order.
const _: () = {
    let mut i = 0;
    while i < Reason::ALL.len() {
        assert!(
            Reason::ALL[i] as u32 == i as u32,
            "Reason indices must be dense and in table order"
        );
        i += 1;
    }
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_are_dense() {
        assert_eq!(Reason::ALL.len(), Reason::COUNT as usize);
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "{r:?} sits at ALL[{i}]");
        }
    }

    #[test]
    fn names_are_unique_snake_case() {
        for (i, r) in Reason::ALL.iter().enumerate() {
            let name = r.name();
            let words_ok = name.split('_').all(|w| {
                !w.is_empty()
                    && w.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            });
            assert!(
                words_ok && name.starts_with(|c: char| c.is_ascii_lowercase()),
                "{r:?}: name {name:?} is not snake_case"
            );
            for other in &Reason::ALL[i + 1..] {
                assert_ne!(name, other.name(), "{r:?} and {other:?} share a name");
            }
        }
    }

    #[test]
    fn drops_only_what_cannot_be_forwarded() {
        let drops = [
            Reason::NoRealServer,
            Reason::BadBackend,
            Reason::Unresolved,
            Reason::ConntrackFull,
            Reason::Overloaded,
            Reason::NoScratch,
            Reason::BadSyn,
        ];
        for r in Reason::ALL {
            assert_eq!(r.passes(), !drops.contains(&r), "{r:?}");
        }
    }
}
