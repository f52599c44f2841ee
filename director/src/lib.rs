//! director's control plane: configuration, health checks, the model of
//! what the datapath should hold and its reconciliation, loading, pinning
//! and attaching the XDP program, the control socket and the run loop.

pub mod announce;
pub mod apply;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dataplane;
pub mod events;
pub mod gc;
pub mod health;
pub mod instance;
pub mod logging;
pub mod maps;
pub mod metrics;
pub mod model;
pub mod netlink;
pub mod notify;
pub mod operator;
pub mod plan;
pub mod process;
pub mod ready;
pub mod reload;
pub mod replicate;
pub mod ring_alloc;
pub mod snapshot;
pub mod startup;
pub mod status;
pub mod sync;
