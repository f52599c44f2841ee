//! director's control plane: configuration, planning of the datapath's
//! maps, loading and attaching the XDP program, and the run loop.

pub mod config;
pub mod daemon;
pub mod dataplane;
pub mod gc;
pub mod neighbor;
pub mod plan;
