//! Per-CPU room for the keys and values a packet builds, instead of the
//! stack: the call chain director -> inbound -> pick -> scan callback shares
//! one 512-byte BPF stack, and these would not fit in it.

use director_common::abi::{Conn, FlowKey, NatReply, Persist, PersistKey, Reason, VipKey};

use aya_ebpf::{macros::map, maps::PerCpuArray};

/// This CPU's `Scratch`.
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

#[repr(C)]
pub struct Scratch {
    /// The packet's destination as a `VIPS` key.
    pub vip_key: VipKey,
    /// The client-side flow: looked up, then recorded if new.
    pub conn_key: FlowKey,
    pub reply_key: FlowKey,
    /// The chosen server's `NAT_SERVERS` key.
    pub server_key: VipKey,
    pub conn: Conn,
    pub reply: NatReply,
    pub persist_key: PersistKey,
    pub persist: Persist,
}

/// This CPU's entry. The entry point takes it once per packet and hands it
/// down, so there is only ever one reference to it.
#[inline(always)]
pub fn get() -> Result<&'static mut Scratch, Reason> {
    let s = SCRATCH.get_ptr_mut(0).ok_or(Reason::NoScratch)?;
    // SAFETY: this CPU's entry; an XDP program runs to completion on its
    // CPU, and a packet takes the entry once (see above).
    Ok(unsafe { &mut *s })
}
