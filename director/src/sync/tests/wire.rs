//! The wire format: version 1's bytes, batching, and the conversions.

use std::time::Duration;

use director_common::tcp::State;

use super::*;
use crate::apply::{ConnId, SyncedConn, SyncedPersist};
use crate::config;
use crate::sync::{
    UnknownState,
    wire::{self, ConnGone, Hello, HelloError, Item, MAX_PAYLOAD, OLDEST, Persist, VERSION},
};

/// One of each item, IPv4 and IPv6.
fn sample() -> Vec<Item> {
    vec![
        Item::BulkBegin,
        Item::Record(Record::Conn(Conn {
            protocol: Protocol::Tcp,
            client: "192.0.2.1:40000".parse().unwrap(),
            virtual_server: "198.51.100.10:80".parse().unwrap(),
            real_server: "203.0.113.11:8080".parse().unwrap(),
            state: State::Established as u8,
            idle_ms: 300,
        })),
        Item::Record(Record::ConnGone(ConnGone {
            protocol: Protocol::Udp,
            client: "[2001:db8::1]:53000".parse().unwrap(),
            virtual_server: "[2001:db8::10]:53".parse().unwrap(),
        })),
        Item::Record(Record::Persist(Persist {
            protocol: Protocol::Tcp,
            virtual_server: "198.51.100.10:443".parse().unwrap(),
            client_net: "192.0.2.0".parse().unwrap(),
            real_server: "203.0.113.12:443".parse().unwrap(),
            idle_ms: 70_000,
        })),
        Item::BulkEnd { entries: 3 },
    ]
}

fn encode(items: &[Item]) -> Vec<u8> {
    let mut payload = Vec::new();
    for item in items {
        assert!(wire::append(&mut payload, item));
    }
    payload
}

/// [`sample`] as version 1 encodes it. Never change these bytes: a later
/// version that still reads version 1 must decode them as they are.
const VERSION_1: [u8; 96] = [
    1, // BulkBegin
    0, 0, 0, // Record, Conn, tcp
    0, 192, 0, 2, 1, 192, 184, 2, // client 192.0.2.1:40000 (port as varint)
    0, 198, 51, 100, 10, 80, // virtual server 198.51.100.10:80
    0, 203, 0, 113, 11, 144, 63, // real server 203.0.113.11:8080
    2, 172, 2, // state established, idle 300 ms
    0, 1, 1, // Record, ConnGone, udp
    1, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 136, 158, 3, // [2001:db8::1]:53000
    1, 32, 1, 13, 184, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 53, // [2001:db8::10]:53
    0, 2, 0, // Record, Persist, tcp
    0, 198, 51, 100, 10, 187, 3, // virtual server 198.51.100.10:443
    0, 192, 0, 2, 0, // client network 192.0.2.0
    0, 203, 0, 113, 12, 187, 3, // real server 203.0.113.12:443
    240, 162, 4, // idle 70 000 ms
    2, 3, // BulkEnd of 3 entries
];

#[test]
fn version_1_messages_decode() {
    assert_eq!(
        OLDEST, 1,
        "a build that still speaks version 1 keeps this test"
    );
    assert_eq!(wire::decode(&VERSION_1), Ok(sample()));
    assert_eq!(encode(&sample()), VERSION_1);
}

/// Version 2's one addition, as it begins a message: the sender's wall
/// clock, here `SentAt` of 1 765 000 000 000 ms. Never change these bytes.
const VERSION_2_SENT_AT: [u8; 7] = [3, 128, 228, 202, 145, 175, 51];

#[test]
fn version_2_messages_begin_with_the_senders_clock_and_read_version_1_items() {
    assert_eq!(VERSION, 2, "a new version adds its own golden bytes");
    let sent = Item::SentAt {
        unix_ms: 1_765_000_000_000,
    };
    assert_eq!(encode(&[sent]), VERSION_2_SENT_AT);
    let message = [&VERSION_2_SENT_AT[..], &VERSION_1[..]].concat();
    let mut items = vec![sent];
    items.extend(sample());
    assert_eq!(wire::decode(&message), Ok(items));
}

#[test]
fn version_1_hello() {
    let bytes = [0, 1, 0, 10, 9, 0, 1, 144, 69];
    let hello = Hello {
        version: 1,
        listen: "10.9.0.1:8848".parse().unwrap(),
    };
    assert_eq!(hello.encode(), bytes);
    assert_eq!(Hello::decode(&bytes), Ok(hello));
    // Version 2's hello is version 1's with another number.
    let two = Hello {
        version: 2,
        ..hello
    };
    assert_eq!(Hello::decode(&[&[0, 2][..], &bytes[2..]].concat()), Ok(two));
    // A version this build does not speak is refused before the rest is read.
    assert_eq!(Hello::decode(&[0, 3, 0xff]), Err(HelloError::Version(3)));
    assert_eq!(Hello::decode(&[0, 0, 0xff]), Err(HelloError::Version(0)));
    assert_eq!(Hello::decode(&[0]), Err(HelloError::Malformed));
    assert_eq!(Hello::decode(&bytes[..8]), Err(HelloError::Malformed));
    assert_eq!(
        Hello::decode(&[&bytes[..], &[0]].concat()),
        Err(HelloError::Malformed)
    );
}

#[test]
fn malformed_messages_do_not_decode() {
    // An unknown item, a record cut short.
    assert!(wire::decode(&[9]).is_err());
    assert!(wire::decode(&VERSION_1[..20]).is_err());
    assert_eq!(wire::decode(&[]), Ok(vec![]), "a keepalive");
}

#[test]
fn a_message_holds_records_up_to_the_noise_limit() {
    let mut payload = Vec::new();
    let mut appended = Vec::new();
    for i in 0.. {
        let item = Item::Record(conn(i));
        if !wire::append(&mut payload, &item) {
            break;
        }
        appended.push(item);
    }
    assert!(payload.len() <= MAX_PAYLOAD && payload.len() > MAX_PAYLOAD - 40);
    assert!(appended.len() > 1000, "{} records", appended.len());
    assert_eq!(
        wire::decode(&payload),
        Ok(appended),
        "the refused record left no bytes"
    );
}

#[test]
fn conversions_round_trip() {
    let c = SyncedConn {
        id: ConnId {
            protocol: config::Protocol::Udp,
            client: "[2001:db8::1]:53000".parse().unwrap(),
            virtual_server: "[2001:db8::10]:53".parse().unwrap(),
        },
        real_server: "[2001:db8:2::11]:53".parse().unwrap(),
        state: State::Udp,
        idle: Duration::from_millis(1234),
    };
    let w = Conn::from(c);
    assert_eq!((w.protocol, w.state, w.idle_ms), (Protocol::Udp, 5, 1234));
    assert_eq!(SyncedConn::try_from(w), Ok(c));
    assert_eq!(ConnId::from(ConnGone::from(c.id)), c.id);
    let p = SyncedPersist {
        protocol: config::Protocol::Tcp,
        virtual_server: "198.51.100.10:443".parse().unwrap(),
        client_net: "192.0.2.0".parse().unwrap(),
        real_server: "203.0.113.12:443".parse().unwrap(),
        idle: Duration::from_secs(70),
    };
    assert_eq!(Persist::from(p).idle_ms, 70_000);
    assert_eq!(SyncedPersist::from(Persist::from(p)), p);
}

#[test]
fn conversions_saturate_idle_and_refuse_unknown_states() {
    let Record::Conn(w) = conn(0) else {
        panic!("conn() makes a Conn");
    };
    let bad = Conn { state: 9, ..w };
    assert_eq!(SyncedConn::try_from(bad), Err(UnknownState(9)));
    let c = SyncedConn {
        idle: Duration::from_secs(100 * 86_400),
        ..SyncedConn::try_from(w).unwrap()
    };
    assert_eq!(Conn::from(c).idle_ms, u32::MAX);
}
