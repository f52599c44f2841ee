//! Carrying a previous map layout's live entries into this one on upgrade.
//!
//! A layout change (`ABI_VERSION`) pins a new set of maps beside the old
//! one. Without this, the new build would start empty while the old program
//! kept forwarding on the old maps until its link is swapped: every
//! connection lost. Instead, when this layout's maps are new and the
//! previous layout's are pinned, every entry of the previous maps that
//! holds state is copied into the new ones before the reconciler adopts
//! them, so the new run takes over the previous run's ids, ring slots and
//! connections as if it were a restart of the same build. Connections the
//! old program creates until the links are swapped are copied in a second
//! pass after the swap; then the old maps are unpinned.
//!
//! [`PREVIOUS`] names the one layout this build reads, and [`Old`] its
//! types: the rule for each map is written once here, and a layout change
//! updates both (a field that changed gets a conversion in place of the
//! plain copy). A layout two or more versions back is not read: the start
//! says so and begins empty, as a reboot would.

use std::path::PathBuf;

use anyhow::Context as _;
use aya::maps::{Array, HashMap, Map, MapData};
use aya::{Pod, maps::MapError};
use director_common::abi::{
    Backend, Conn, ConnCounts, FlowKey, NatReply, Persist, PersistKey, VipInfo, VipKey,
};
use director_common::entries::map;
use tracing::{info, warn};

use super::{ABI_VERSION, Dataplane, PinDir};

/// The layout this build migrates from. v5 -> v6 added the half-open
/// tables (`EMBRYOS`, `EMBRYO_REPLIES`: a previous run's half-open
/// connections are in its `CONNS`, where this build's program finds them
/// too) and a `REASONS` counter; every map copied here kept its key and
/// value layout, so [`Old`]'s types are today's.
pub const PREVIOUS: u32 = ABI_VERSION - 1;

/// The previous layout's maps that hold state. Counters start again; the
/// ring is not copied: the reconciler's first apply writes every adopted
/// virtual server's lists afresh before this build's program is attached.
pub struct Old {
    dir: PathBuf,
    vips: HashMap<MapData, VipKey, VipInfo>,
    backends: Array<MapData, Backend>,
    conns: HashMap<MapData, FlowKey, Conn>,
    nat_replies: HashMap<MapData, FlowKey, NatReply>,
    persist: HashMap<MapData, PersistKey, Persist>,
    backend_conns: Array<MapData, ConnCounts>,
    backend_released: Array<MapData, ConnCounts>,
}

/// Entries copied, and those the new maps had no room for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub entries: usize,
    pub failed: usize,
}

impl Copied {
    fn add(&mut self, ok: bool) {
        if ok {
            self.entries += 1;
        } else {
            self.failed += 1;
        }
    }
}

fn open<T: TryFrom<Map, Error = MapError>>(dir: &std::path::Path, name: &str) -> anyhow::Result<T> {
    let path = dir.join(name);
    let data = MapData::from_pin(&path).with_context(|| format!("opening {}", path.display()))?;
    let map = Map::from_map_data(data).with_context(|| format!("reading {}", path.display()))?;
    T::try_from(map).with_context(|| format!("{} is not the map it should be", path.display()))
}

impl Old {
    /// The previous layout's maps, when this layout's are not pinned yet
    /// (a first start of this build over a previous build's datapath).
    /// Older layouts are reported and left to `director teardown`.
    pub fn find(pins: &PinDir) -> anyhow::Result<Option<Old>> {
        if pins.maps().exists() {
            return Ok(None);
        }
        let root = pins.0.join("maps");
        let dir = root.join(format!("v{PREVIOUS}"));
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.filter_map(Result::ok) {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path() != dir {
                    warn!(
                        layout = %name,
                        "pinned maps of a layout this build cannot read (only v{PREVIOUS}): \
                         starting without their connections; `director teardown` removes them"
                    );
                }
            }
        }
        if !dir.exists() {
            return Ok(None);
        }
        Ok(Some(Old {
            vips: open(&dir, map::VIPS)?,
            backends: open(&dir, map::BACKENDS)?,
            conns: open(&dir, map::CONNS)?,
            nat_replies: open(&dir, map::NAT_REPLIES)?,
            persist: open(&dir, map::PERSIST)?,
            backend_conns: open(&dir, map::BACKEND_CONNS)?,
            backend_released: open(&dir, map::BACKEND_RELEASED)?,
            dir,
        }))
    }

    /// First pass, before the reconciler adopts the new maps: virtual and
    /// real servers (so that their ids, which connections name, carry over),
    /// connection counts and connections.
    pub fn copy_all(&self, dp: &mut Dataplane) -> Copied {
        let mut n = Copied::default();
        copy_hash(&self.vips, &mut dp.vips, &mut n, false);
        copy_array(&self.backends, &mut dp.backends, &mut n, |b| b.family != 0);
        copy_array(&self.backend_conns, &mut dp.backend_conns, &mut n, |c| {
            *c != ConnCounts::default()
        });
        copy_array(
            &self.backend_released,
            &mut dp.backend_released,
            &mut n,
            |c| *c != ConnCounts::default(),
        );
        self.copy_connections(dp, &mut n, false);
        n
    }

    /// Second pass, once this build's program is attached: the connections
    /// the old program created meanwhile (entries already here stay: they
    /// are newer). Then the old maps are unpinned; they go with the old
    /// program.
    pub fn finish(self, dp: &mut Dataplane) -> anyhow::Result<Copied> {
        let mut n = Copied::default();
        self.copy_connections(dp, &mut n, true);
        std::fs::remove_dir_all(&self.dir)
            .with_context(|| format!("removing {}", self.dir.display()))?;
        Ok(n)
    }

    fn copy_connections(&self, dp: &mut Dataplane, n: &mut Copied, only_new: bool) {
        copy_hash(&self.conns, &mut dp.conns, n, only_new);
        copy_hash(&self.nat_replies, &mut dp.nat_replies, n, only_new);
        copy_hash(&self.persist, &mut dp.persist, n, only_new);
    }
}

/// Copies every entry of `from` into `to`; with `only_new`, none whose key
/// `to` already has.
fn copy_hash<K: Pod, V: Pod>(
    from: &HashMap<MapData, K, V>,
    to: &mut HashMap<MapData, K, V>,
    n: &mut Copied,
    only_new: bool,
) {
    for (k, v) in from.iter().filter_map(Result::ok) {
        if only_new && to.get(&k, 0).is_ok() {
            continue;
        }
        n.add(to.insert(k, v, 0).is_ok());
    }
}

/// Copies the slots of `from` that `used` says hold something.
fn copy_array<V: Pod>(
    from: &Array<MapData, V>,
    to: &mut Array<MapData, V>,
    n: &mut Copied,
    used: impl Fn(&V) -> bool,
) {
    for (i, v) in from.iter().enumerate() {
        let Ok(v) = v else { continue };
        if used(&v) {
            n.add(to.set(i as u32, v, 0).is_ok());
        }
    }
}

/// Logs what a pass did; entries that found no room are never silent.
pub fn report(pass: &str, n: Copied) {
    if n.failed > 0 {
        warn!(
            entries = n.entries,
            failed = n.failed,
            "upgrade from map layout v{PREVIOUS}, {pass}: entries the new maps had no room for"
        );
    } else {
        info!(
            entries = n.entries,
            "upgrade from map layout v{PREVIOUS}, {pass}: entries carried over"
        );
    }
}
