//! director's control plane: configuration, health checks, the model of
//! what the datapath should hold and its reconciliation, loading, pinning
//! and attaching the XDP program, the control socket and the run loop.

pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod gc;
pub mod health;
pub mod model;
pub mod netlink;
pub mod plan;
pub mod ring_alloc;
pub mod status;
