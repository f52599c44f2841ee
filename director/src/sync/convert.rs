//! Between the wire records and the entries `apply` installs: the wire
//! types change only with the wire version, the internal ones freely.

use std::time::Duration;

use director_common::tcp::State;

use super::wire;
use crate::apply::{ConnId, SyncedConn, SyncedPersist};
use crate::config::Protocol;

/// A connection record whose state byte names no TCP state this build
/// knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown connection state {0}")]
pub struct UnknownState(pub u8);

impl From<Protocol> for wire::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => wire::Protocol::Tcp,
            Protocol::Udp => wire::Protocol::Udp,
        }
    }
}

impl From<wire::Protocol> for Protocol {
    fn from(p: wire::Protocol) -> Self {
        match p {
            wire::Protocol::Tcp => Protocol::Tcp,
            wire::Protocol::Udp => Protocol::Udp,
        }
    }
}

fn idle_ms(idle: Duration) -> u32 {
    u32::try_from(idle.as_millis()).unwrap_or(u32::MAX)
}

fn idle(ms: u32) -> Duration {
    Duration::from_millis(ms.into())
}

impl From<SyncedConn> for wire::Conn {
    fn from(c: SyncedConn) -> Self {
        wire::Conn {
            protocol: c.id.protocol.into(),
            client: c.id.client,
            virtual_server: c.id.virtual_server,
            real_server: c.real_server,
            state: c.state as u8,
            idle_ms: idle_ms(c.idle),
        }
    }
}

impl TryFrom<wire::Conn> for SyncedConn {
    type Error = UnknownState;

    fn try_from(c: wire::Conn) -> Result<Self, UnknownState> {
        Ok(SyncedConn {
            id: ConnId {
                protocol: c.protocol.into(),
                client: c.client,
                virtual_server: c.virtual_server,
            },
            real_server: c.real_server,
            state: State::from_u8(c.state).ok_or(UnknownState(c.state))?,
            idle: idle(c.idle_ms),
        })
    }
}

impl From<ConnId> for wire::ConnGone {
    fn from(id: ConnId) -> Self {
        wire::ConnGone {
            protocol: id.protocol.into(),
            client: id.client,
            virtual_server: id.virtual_server,
        }
    }
}

impl From<wire::ConnGone> for ConnId {
    fn from(g: wire::ConnGone) -> Self {
        ConnId {
            protocol: g.protocol.into(),
            client: g.client,
            virtual_server: g.virtual_server,
        }
    }
}

impl From<SyncedPersist> for wire::Persist {
    fn from(p: SyncedPersist) -> Self {
        wire::Persist {
            protocol: p.protocol.into(),
            virtual_server: p.virtual_server,
            client_net: p.client_net,
            real_server: p.real_server,
            idle_ms: idle_ms(p.idle),
        }
    }
}

impl From<wire::Persist> for SyncedPersist {
    fn from(p: wire::Persist) -> Self {
        SyncedPersist {
            protocol: p.protocol.into(),
            virtual_server: p.virtual_server,
            client_net: p.client_net,
            real_server: p.real_server,
            idle: idle(p.idle_ms),
        }
    }
}
