//! A two-instruction XDP_PASS program for the lab's own veth ends.
//!
//! Frames the director XDP_TXes out of a veth sit in the peer's queue until that peer's
//! NAPI is kicked, and the kernel (6.18) kicks it after XDP_TX only when the peer has an
//! XDP program: GRO alone gives the peer NAPI but leaves XDP_TX frames stranded until
//! the next frame the stack sends that way. (XDP_REDIRECT into a veth flushes
//! explicitly, so it works with GRO alone.) The lab therefore attaches this program to
//! the peers of the director's interfaces.
//!
//! Built from instructions with [`crate::bpf`]: no object file, no BPF toolchain at
//! test time. The attachment is a BPF link held by an fd, so it goes away with the fd
//! (or the device).

use std::os::fd::OwnedFd;

use anyhow::Result;

use super::netns::NetNs;
use crate::bpf::{Insn, Program, XDP_PASS};

/// The loaded XDP_PASS program.
#[derive(Debug)]
pub struct XdpPass {
    prog: Program,
}

impl XdpPass {
    pub fn load() -> Result<Self> {
        let insns = [Insn::mov_imm(0, XDP_PASS as i32), Insn::exit()];
        Ok(Self {
            prog: Program::load("lab_xdp_pass", &insns)?,
        })
    }

    /// Attaches the program (native mode) to `ifname` in `ns`; detached when the
    /// returned link fd is closed.
    pub fn attach(&self, ns: &NetNs, ifname: &str) -> Result<OwnedFd> {
        self.prog.attach(ns, ifname)
    }
}
