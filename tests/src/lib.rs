//! End-to-end test support for director: a network-namespace lab ([`lab::Lab`]) with a
//! client, the director and real servers wired for NAT or DR, a director pair behind
//! keepalived ([`lab::ha::HaLab`]) with long-lived flows to watch across a failover
//! ([`long_lived`]), a small HTTP client
//! ([`http`]) and a UDP one ([`udp`]) to drive traffic from inside it, director configs
//! for tests and benchmarks ([`config`]), the payloads both ends agree on ([`pattern`]),
//! raw `bpf(2)` for small hand-written XDP programs ([`bpf`]), exact Ethernet frames
//! for the packet fixtures and benchmarks ([`packet`]), and the skip of tests that need
//! root ([`root`]).
//!
//! Everything stays inside namespaces the lab creates: nothing is added to the default
//! namespace, and all addresses are 10.x or documentation ranges (IPv6: 2001:db8::/32).

pub mod bpf;
pub mod config;
pub mod example_config;
pub mod http;
pub mod lab;
pub mod long_lived;
pub mod packet;
pub mod paths;
pub mod pattern;
pub mod root;
pub mod udp;
