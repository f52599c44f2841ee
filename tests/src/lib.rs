//! End-to-end test support for director: a network-namespace lab ([`lab::Lab`]) with a
//! client, the director and real servers wired for NAT or DR, a small HTTP client
//! ([`http`]) to drive traffic from inside it, and the payloads both ends agree on
//! ([`pattern`]).
//!
//! Everything stays inside namespaces the lab creates: nothing is added to the default
//! namespace, and all addresses are 10.x or documentation ranges.

pub mod example_config;
pub mod http;
pub mod lab;
pub mod paths;
pub mod pattern;
