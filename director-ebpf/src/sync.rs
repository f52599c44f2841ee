//! Telling userspace which entries changed, for state sync: a key per event
//! in the `SYNC_EVENTS` ring buffer, only when sync is configured. A full
//! ring is counted in `SYNC_LOST`; userspace answers with a table walk.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use director_common::abi::{
    Conn, EVENT_CONN_REFRESH, EVENT_PERSIST_NEW, FlowKey, PersistKey, SETTINGS_F_SYNC,
    SETTINGS_FLAGS, SETTINGS_LEN, SYNC_REFRESH_S, SyncEvent, coarse_s,
};

use crate::keys::{addr, flow};

/// Written by userspace (`SETTINGS_*`).
#[map]
pub static SETTINGS: Array<u32> = Array::with_max_entries(SETTINGS_LEN, 0);

/// Sized by userspace.
#[map]
pub static SYNC_EVENTS: RingBuf = RingBuf::with_byte_size(1 << 16, 0);

/// Events the ring had no room for.
#[map]
pub static SYNC_LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
fn enabled() -> bool {
    SETTINGS
        .get(SETTINGS_FLAGS)
        .is_some_and(|f| f & SETTINGS_F_SYNC != 0)
}

#[inline(always)]
fn send(kind: u32, key: Option<&FlowKey>, persist: Option<&PersistKey>) {
    let Some(mut entry) = SYNC_EVENTS.reserve::<SyncEvent>(0) else {
        if let Some(lost) = SYNC_LOST.get_ptr_mut(0) {
            // SAFETY: per-CPU slot, no concurrent writer.
            unsafe { *lost += 1 };
        }
        return;
    };
    let e = entry.as_mut_ptr();
    // SAFETY: `e` is the reserved record, ours until submitted; every field
    // is written before the submit.
    unsafe {
        (*e).kind = kind;
        (*e)._pad = 0;
        (*e).flow = match key {
            Some(k) => flow(&k.src, &k.dst, k.sport, k.dport, k.proto, k.family),
            None => FlowKey::default(),
        };
        (*e).persist = match persist {
            Some(p) => PersistKey {
                addr: addr(&p.addr),
                vip_id: p.vip_id,
                family: p.family,
                _pad0: 0,
                _pad1: 0,
            },
            None => PersistKey::default(),
        };
    }
    entry.submit(0);
}

/// A connection event (`EVENT_CONN_*`) about the entry under `key`.
#[inline(always)]
pub fn conn(kind: u32, key: &FlowKey) {
    if enabled() {
        send(kind, Some(key), None);
    }
}

/// A used connection whose peers' copies are older than `SYNC_REFRESH_S`:
/// refreshed, and stamped.
#[inline(always)]
pub fn refresh(conn: &mut Conn, key: &FlowKey, now: u64) {
    let t = coarse_s(now);
    if t.wrapping_sub(conn.synced_s) >= SYNC_REFRESH_S && enabled() {
        conn.synced_s = t;
        send(EVENT_CONN_REFRESH, Some(key), None);
    }
}

/// A new persistence entry under `key`.
#[inline(always)]
pub fn persist(key: &PersistKey) {
    if enabled() {
        send(EVENT_PERSIST_NEW, None, Some(key));
    }
}
