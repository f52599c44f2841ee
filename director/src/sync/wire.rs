//! The sync wire format, versioned on its own (not with the map ABI): what
//! the handshake says about the sender, and the records a message carries.
//!
//! A message's plaintext is a sequence of postcard-encoded [`Item`]s, as
//! many as fit in one Noise message. A change to any type here is a new
//! [`VERSION`] (an older reader refuses an enum variant it does not know);
//! a stream speaks the older of its two ends' versions, so a group upgrades
//! one director at a time. The golden bytes in the tests keep every version
//! since [`OLDEST`] decodable.
//!
//! - Version 1: records, and the bounds of bulk transfers.
//! - Version 2: a message that carries items begins with [`Item::SentAt`],
//!   the sender's wall clock, from which the receiver tells its sync lag.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// The newest format this build speaks.
pub const VERSION: u16 = 2;
/// The oldest format this build still speaks.
pub const OLDEST: u16 = 1;
/// Longest Noise message (its length travels as a u16).
pub(super) const MAX_MESSAGE: usize = u16::MAX as usize;
/// Longest plaintext of a message: a Noise message less its AEAD tag.
pub(super) const MAX_PAYLOAD: usize = MAX_MESSAGE - 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Protocol {
    Tcp,
    Udp,
}

/// A connection, new or changed: client -> virtual server, served by
/// `real_server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conn {
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub virtual_server: SocketAddr,
    pub real_server: SocketAddr,
    /// `director_common::tcp::State as u8`.
    pub state: u8,
    /// Milliseconds since its last packet (saturating).
    pub idle_ms: u32,
}

/// A connection the sender removed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnGone {
    pub protocol: Protocol,
    pub client: SocketAddr,
    pub virtual_server: SocketAddr,
}

/// A persistence entry: clients of `client_net` (already masked) stick to
/// `real_server`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Persist {
    pub protocol: Protocol,
    pub virtual_server: SocketAddr,
    pub client_net: IpAddr,
    pub real_server: SocketAddr,
    pub idle_ms: u32,
}

/// One entry of the table, as the daemon publishes and receives it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Record {
    Conn(Conn),
    ConnGone(ConnGone),
    Persist(Persist),
}

/// What a message carries: records, and the bounds of a bulk transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Item {
    Record(Record),
    /// The sender's whole table follows, up to [`Item::BulkEnd`].
    BulkBegin,
    /// The end of a bulk transfer of `entries` records.
    BulkEnd {
        entries: u64,
    },
    /// When the sender began the message: milliseconds since the Unix
    /// epoch on its wall clock (version 2).
    SentAt {
        unix_ms: u64,
    },
}

/// Milliseconds since the Unix epoch now, on this host's wall clock: the
/// only clock two hosts share (to within their NTP offset).
pub(super) fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The version a stream between two ends speaks: the older of theirs.
pub(super) fn agreed(ours: u16, theirs: u16) -> u16 {
    ours.min(theirs)
}

/// Appends `item` to the plaintext `payload` if the result fits in one
/// message; otherwise leaves `payload` as it was and returns false.
pub(super) fn append(payload: &mut Vec<u8>, item: &Item) -> bool {
    let start = payload.len();
    *payload = postcard::to_extend(item, std::mem::take(payload))
        .expect("postcard encodes an Item into a Vec without fail");
    if payload.len() > MAX_PAYLOAD {
        payload.truncate(start);
        return false;
    }
    true
}

/// The items of a message's plaintext, all of them or an error.
pub(super) fn decode(mut payload: &[u8]) -> Result<Vec<Item>, postcard::Error> {
    let mut items = Vec::new();
    while !payload.is_empty() {
        let (item, rest) = postcard::take_from_bytes(payload)?;
        items.push(item);
        payload = rest;
    }
    Ok(items)
}

/// The payload of each side's handshake message: the format version (first,
/// as a big-endian u16, so that every version can read it) and the address
/// the sender listens on, which names it to its peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hello {
    pub version: u16,
    pub listen: SocketAddr,
}

/// Why a handshake payload is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum HelloError {
    #[error("wire format version {0}, this director speaks versions {OLDEST} to {VERSION}")]
    Version(u16),
    #[error("malformed handshake payload")]
    Malformed,
}

impl Hello {
    pub(super) fn encode(&self) -> Vec<u8> {
        postcard::to_extend(&self.listen, self.version.to_be_bytes().to_vec())
            .expect("postcard encodes an address into a Vec without fail")
    }

    /// Refuses a version this build does not speak.
    pub(super) fn decode(payload: &[u8]) -> Result<Hello, HelloError> {
        let (version, rest) = payload.split_first_chunk().ok_or(HelloError::Malformed)?;
        let version = u16::from_be_bytes(*version);
        if !(OLDEST..=VERSION).contains(&version) {
            return Err(HelloError::Version(version));
        }
        match postcard::take_from_bytes(rest) {
            Ok((listen, [])) => Ok(Hello { version, listen }),
            _ => Err(HelloError::Malformed),
        }
    }
}
