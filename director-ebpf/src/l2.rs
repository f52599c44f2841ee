//! Layer-2 rewrite and transmit. The control plane resolved the next hop, so
//! sending is a MAC rewrite plus TX on the same port or a redirect.

use aya_ebpf::{bindings::xdp_action, helpers::bpf_redirect};
use director_common::abi::Reason;
use network_types::eth::EthHdr;

use crate::parse::{Ctx, ptr_at};

#[inline(always)]
pub fn send(ctx: &Ctx, dst: [u8; 6], src: [u8; 6], ifindex: u32) -> Result<u32, Reason> {
    let eth = ptr_at::<EthHdr>(ctx, 0, Reason::TruncatedEth)?;
    // SAFETY: in bounds per `ptr_at`; EthHdr is byte arrays only.
    unsafe {
        (*eth).dst_addr = dst;
        (*eth).src_addr = src;
    }
    if ifindex == ctx.ingress_ifindex() {
        Ok(xdp_action::XDP_TX)
    } else {
        // SAFETY: plain helper call; returns XDP_REDIRECT or XDP_ABORTED.
        Ok(unsafe { bpf_redirect(ifindex, 0) } as u32)
    }
}
