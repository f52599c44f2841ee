//! The connection-tracking TCP state machine: what the datapath records per
//! flow and how long userspace keeps an idle entry in each state (the IPVS
//! defaults).

#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Client SYN seen, handshake not finished.
    SynRecv = 1,
    Established = 2,
    /// A FIN was seen from either side.
    FinWait = 3,
    /// A RST was seen: the entry only lingers for late packets.
    Close = 4,
    /// Datagram flow (UDP): no states, one timeout.
    Udp = 5,
}

impl State {
    pub const fn from_u8(v: u8) -> Option<State> {
        match v {
            1 => Some(State::SynRecv),
            2 => Some(State::Established),
            3 => Some(State::FinWait),
            4 => Some(State::Close),
            5 => Some(State::Udp),
            _ => None,
        }
    }

    /// Idle timeout in seconds (IPVS defaults: `ipvsadm --set 900 120 300`).
    pub const fn timeout_secs(self) -> u64 {
        match self {
            State::SynRecv => 60,
            State::Established => 900,
            State::FinWait => 120,
            State::Close => 10,
            State::Udp => 300,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            State::SynRecv => "SYN_RECV",
            State::Established => "ESTABLISHED",
            State::FinWait => "FIN_WAIT",
            State::Close => "CLOSE",
            State::Udp => "UDP",
        }
    }
}

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_SYN: u8 = 0x02;
pub const FLAG_RST: u8 = 0x04;
pub const FLAG_ACK: u8 = 0x10;

/// A client SYN (no ACK) opens a connection.
#[inline(always)]
pub const fn is_syn(flags: u8) -> bool {
    flags & (FLAG_SYN | FLAG_ACK | FLAG_RST) == FLAG_SYN
}

/// Whether a client SYN on an existing entry starts a new connection on the
/// same tuple (port reuse after close) rather than being a retransmission.
#[inline(always)]
pub const fn reopens(state: State, flags: u8) -> bool {
    is_syn(flags) && matches!(state, State::FinWait | State::Close)
}

/// Whether a real server's SYN-ACK on an entry in this state answers a new
/// connection the client opened to the server itself from the same port
/// (NAT keeps the client's address and port), rather than the client's
/// connection to the virtual server: that one is over, and a reopening
/// through the virtual server would have brought the entry back to SYN_RECV.
#[inline(always)]
pub const fn server_reopens(state: State, flags: u8) -> bool {
    flags & (FLAG_SYN | FLAG_ACK | FLAG_RST) == FLAG_SYN | FLAG_ACK
        && matches!(state, State::FinWait | State::Close)
}

/// Next state after a segment with `flags`; `from_client` tells the
/// direction (in DR mode only client segments are seen).
#[inline(always)]
pub const fn next(state: State, from_client: bool, flags: u8) -> State {
    if flags & FLAG_RST != 0 {
        return State::Close;
    }
    if flags & FLAG_FIN != 0 {
        return match state {
            State::Close => State::Close,
            _ => State::FinWait,
        };
    }
    match state {
        // The client's ACK of the SYN-ACK completes the handshake.
        State::SynRecv if from_client && flags & (FLAG_ACK | FLAG_SYN) == FLAG_ACK => {
            State::Established
        }
        s => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_syn_ack_reopens_only_a_closed_entry() {
        let syn_ack = FLAG_SYN | FLAG_ACK;
        assert!(server_reopens(State::Close, syn_ack));
        assert!(server_reopens(State::FinWait, syn_ack));
        assert!(
            !server_reopens(State::SynRecv, syn_ack),
            "the handshake's own SYN-ACK"
        );
        assert!(!server_reopens(State::Established, syn_ack));
        assert!(!server_reopens(State::Close, FLAG_ACK));
        assert!(!server_reopens(State::Close, syn_ack | FLAG_RST));
    }

    #[test]
    fn handshake_data_and_close() {
        let mut s = State::SynRecv;
        s = next(s, false, FLAG_SYN | FLAG_ACK);
        assert_eq!(s, State::SynRecv, "server SYN-ACK does not establish");
        s = next(s, true, FLAG_ACK);
        assert_eq!(s, State::Established);
        s = next(s, false, FLAG_ACK);
        assert_eq!(s, State::Established);
        s = next(s, true, FLAG_FIN | FLAG_ACK);
        assert_eq!(s, State::FinWait);
        s = next(s, false, FLAG_ACK);
        assert_eq!(s, State::FinWait, "plain ACK keeps FIN_WAIT");
    }

    #[test]
    fn rst_closes_from_any_state_and_fin_does_not_reopen_close() {
        for s in [
            State::SynRecv,
            State::Established,
            State::FinWait,
            State::Close,
        ] {
            assert_eq!(next(s, false, FLAG_RST), State::Close);
            assert_eq!(next(s, true, FLAG_RST | FLAG_ACK), State::Close);
        }
        assert_eq!(next(State::Close, true, FLAG_FIN), State::Close);
    }

    #[test]
    fn syn_reopens_only_closed_entries() {
        assert!(reopens(State::Close, FLAG_SYN));
        assert!(reopens(State::FinWait, FLAG_SYN));
        assert!(!reopens(State::Established, FLAG_SYN), "retransmitted SYN");
        assert!(!reopens(State::SynRecv, FLAG_SYN));
        assert!(!reopens(State::Close, FLAG_SYN | FLAG_ACK));
    }

    #[test]
    fn timeouts_are_ipvs_defaults() {
        assert_eq!(State::Established.timeout_secs(), 900);
        assert_eq!(State::FinWait.timeout_secs(), 120);
        assert_eq!(State::Udp.timeout_secs(), 300);
    }

    #[test]
    fn state_round_trips_through_u8() {
        for s in [
            State::SynRecv,
            State::Established,
            State::FinWait,
            State::Close,
            State::Udp,
        ] {
            assert_eq!(State::from_u8(s as u8), Some(s));
        }
        assert_eq!(State::from_u8(0), None);
        assert_eq!(State::from_u8(9), None);
    }
}
