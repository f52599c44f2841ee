//! What the reconciler and the table upkeep need of the datapath's maps:
//! typed reads and writes, no policy. `Dataplane` is the kernel's; `Memory` (tests) is a plain copy,
//! so the reconciler is tested without a kernel.

use director_common::abi::{Backend, Conn, FlowKey, NatReply, NatServer, Persist, PersistKey};
use director_common::abi::{VipInfo, VipKey};

/// Which connection table: the established (`CONNS`, `NAT_REPLIES`), or the
/// half-open one a SYN's entry waits in for the client's ACK (`EMBRYOS`,
/// `EMBRYO_REPLIES`). Only established entries are synced or installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    Established,
    HalfOpen,
}

impl Table {
    pub const BOTH: [Table; 2] = [Table::Established, Table::HalfOpen];
}

pub trait Maps {
    fn vips(&self) -> Vec<(VipKey, VipInfo)>;
    fn set_vip(&mut self, key: &VipKey, info: &VipInfo) -> anyhow::Result<()>;
    /// Already gone is fine.
    fn remove_vip(&mut self, key: &VipKey);
    /// Writes `ids` to `RING[base..]`.
    fn set_ring(&mut self, base: u32, ids: &[u32]) -> anyhow::Result<()>;
    /// Every backend slot in use.
    fn backends(&self) -> Vec<(u32, Backend)>;
    fn backend(&self, id: u32) -> Option<Backend>;
    fn set_backends(&mut self, entries: &[(u32, Backend)]) -> anyhow::Result<()>;
    fn nat_servers(&self) -> Vec<(VipKey, NatServer)>;
    fn set_nat_servers(&mut self, entries: &[(VipKey, NatServer)]) -> anyhow::Result<()>;
    fn remove_nat_server(&mut self, key: &VipKey);
    /// A snapshot of one table: entries may change meanwhile.
    fn conns(&self, t: Table) -> Vec<(FlowKey, Conn)>;
    fn conn(&self, t: Table, key: &FlowKey) -> Option<Conn>;
    /// An established connection.
    fn insert_conn(&mut self, key: &FlowKey, conn: &Conn) -> anyhow::Result<()>;
    fn insert_nat_reply(&mut self, t: Table, key: &FlowKey, reply: &NatReply)
    -> anyhow::Result<()>;
    /// The connection and, if given, its reply entry; already gone is fine.
    fn remove_conn(&mut self, t: Table, key: &FlowKey, reply: Option<&FlowKey>);
    fn persist_entries(&self) -> Vec<(PersistKey, Persist)>;
    fn persist(&self, key: &PersistKey) -> Option<Persist>;
    fn set_persist(&mut self, key: &PersistKey, value: &Persist) -> anyhow::Result<()>;
    /// Already gone is fine.
    fn remove_persist(&mut self, key: &PersistKey);
}

#[cfg(test)]
pub use memory::Memory;

#[cfg(test)]
mod memory {
    use std::collections::HashMap;

    use super::*;

    /// The maps as plain collections, with the kernel's capacity limits.
    #[derive(Debug, Default)]
    pub struct Memory {
        pub vips: HashMap<VipKey, VipInfo>,
        pub ring: Vec<u32>,
        pub backends: Vec<Backend>,
        pub nat_servers: HashMap<VipKey, NatServer>,
        pub conns: HashMap<FlowKey, Conn>,
        pub nat_replies: HashMap<FlowKey, NatReply>,
        pub embryos: HashMap<FlowKey, Conn>,
        pub embryo_replies: HashMap<FlowKey, NatReply>,
        pub persist: HashMap<PersistKey, Persist>,
    }

    impl Memory {
        pub fn new(backends: u32, ring: u32) -> Memory {
            Memory {
                ring: vec![0; ring as usize],
                backends: vec![Backend::default(); backends as usize],
                ..Memory::default()
            }
        }
    }

    type Tables<'a> = (&'a HashMap<FlowKey, Conn>, &'a HashMap<FlowKey, NatReply>);
    type TablesMut<'a> = (
        &'a mut HashMap<FlowKey, Conn>,
        &'a mut HashMap<FlowKey, NatReply>,
    );

    impl Memory {
        fn table(&self, t: Table) -> Tables<'_> {
            match t {
                Table::Established => (&self.conns, &self.nat_replies),
                Table::HalfOpen => (&self.embryos, &self.embryo_replies),
            }
        }

        fn table_mut(&mut self, t: Table) -> TablesMut<'_> {
            match t {
                Table::Established => (&mut self.conns, &mut self.nat_replies),
                Table::HalfOpen => (&mut self.embryos, &mut self.embryo_replies),
            }
        }
    }

    impl Maps for Memory {
        fn vips(&self) -> Vec<(VipKey, VipInfo)> {
            self.vips.iter().map(|(k, v)| (*k, *v)).collect()
        }
        fn set_vip(&mut self, key: &VipKey, info: &VipInfo) -> anyhow::Result<()> {
            self.vips.insert(*key, *info);
            Ok(())
        }
        fn remove_vip(&mut self, key: &VipKey) {
            self.vips.remove(key);
        }
        fn set_ring(&mut self, base: u32, ids: &[u32]) -> anyhow::Result<()> {
            let at = base as usize;
            let slots = self
                .ring
                .get_mut(at..at + ids.len())
                .ok_or_else(|| anyhow::anyhow!("RING[{at}..] out of bounds"))?;
            slots.copy_from_slice(ids);
            Ok(())
        }
        fn backends(&self) -> Vec<(u32, Backend)> {
            (0..)
                .zip(self.backends.iter().copied())
                .filter(|(_, b)| b.family != 0)
                .collect()
        }
        fn backend(&self, id: u32) -> Option<Backend> {
            self.backends.get(id as usize).copied()
        }
        fn set_backends(&mut self, entries: &[(u32, Backend)]) -> anyhow::Result<()> {
            for (id, b) in entries {
                *self
                    .backends
                    .get_mut(*id as usize)
                    .ok_or_else(|| anyhow::anyhow!("BACKENDS[{id}] out of bounds"))? = *b;
            }
            Ok(())
        }
        fn nat_servers(&self) -> Vec<(VipKey, NatServer)> {
            self.nat_servers.iter().map(|(k, v)| (*k, *v)).collect()
        }
        fn set_nat_servers(&mut self, entries: &[(VipKey, NatServer)]) -> anyhow::Result<()> {
            self.nat_servers.extend(entries.iter().copied());
            Ok(())
        }
        fn remove_nat_server(&mut self, key: &VipKey) {
            self.nat_servers.remove(key);
        }
        fn conns(&self, t: Table) -> Vec<(FlowKey, Conn)> {
            self.table(t).0.iter().map(|(k, v)| (*k, *v)).collect()
        }
        fn conn(&self, t: Table, key: &FlowKey) -> Option<Conn> {
            self.table(t).0.get(key).copied()
        }
        fn insert_conn(&mut self, key: &FlowKey, conn: &Conn) -> anyhow::Result<()> {
            self.conns.insert(*key, *conn);
            Ok(())
        }
        fn insert_nat_reply(
            &mut self,
            t: Table,
            key: &FlowKey,
            reply: &NatReply,
        ) -> anyhow::Result<()> {
            self.table_mut(t).1.insert(*key, *reply);
            Ok(())
        }
        fn remove_conn(&mut self, t: Table, key: &FlowKey, reply: Option<&FlowKey>) {
            let (conns, replies) = self.table_mut(t);
            conns.remove(key);
            if let Some(r) = reply {
                replies.remove(r);
            }
        }
        fn persist_entries(&self) -> Vec<(PersistKey, Persist)> {
            self.persist.iter().map(|(k, v)| (*k, *v)).collect()
        }
        fn persist(&self, key: &PersistKey) -> Option<Persist> {
            self.persist.get(key).copied()
        }
        fn set_persist(&mut self, key: &PersistKey, value: &Persist) -> anyhow::Result<()> {
            self.persist.insert(*key, *value);
            Ok(())
        }
        fn remove_persist(&mut self, key: &PersistKey) {
            self.persist.remove(key);
        }
    }
}
