//! The `[director]` table.

use std::collections::HashMap;

use serde_spanned::Spanned;

use super::{Checker, Pos};
use crate::config::{
    DEFAULT_CONNTRACK_MAX, DirectorSection, MAX_CONNTRACK_MAX, MAX_IFNAME_LEN, raw,
};

impl Checker<'_> {
    pub(super) fn director(&mut self, raw: raw::Director) -> DirectorSection {
        let mut interfaces = Vec::new();
        let mut seen: HashMap<&str, Pos> = HashMap::new();
        if raw.interfaces.get_ref().is_empty() {
            self.error(
                raw.interfaces.span(),
                "interfaces must not be empty, expected e.g. [\"eth0\"]",
            );
        }
        for ifname in raw.interfaces.get_ref() {
            let name = ifname.get_ref().as_str();
            if let Err(why) = check_ifname(name) {
                self.error(
                    ifname.span(),
                    format!("invalid interface name {name:?}: {why}"),
                );
            } else if let Some(first) = seen.get(name) {
                self.error(
                    ifname.span(),
                    format!("duplicate interface {name:?} (first listed at {first})"),
                );
            } else {
                seen.insert(name, self.pos(ifname.span()));
            }
            interfaces.push(name.to_owned());
        }
        let conntrack_max = raw
            .conntrack_max
            .as_ref()
            .and_then(|v| self.int_in("conntrack_max", v, 1, MAX_CONNTRACK_MAX.into()))
            .map_or(DEFAULT_CONNTRACK_MAX, |v| v as u32);
        let announce_table = raw.announce_table.as_ref().and_then(|t| {
            self.announcing = Some(self.pos(self.key_span(t.span())));
            self.announce_table(t)
        });
        DirectorSection {
            interfaces,
            xdp_mode: raw.xdp_mode.map(Spanned::into_inner).unwrap_or_default(),
            conntrack_max,
            announce_table,
        }
    }

    /// A table of its own: not one the kernel reserves (0 unspecified,
    /// 253 default, 254 main, 255 local), where a host route of a VIP
    /// would change how this host itself routes.
    fn announce_table(&mut self, t: &Spanned<i128>) -> Option<u32> {
        let v = self.int_in("announce_table", t, 1, u32::MAX.into())?;
        if (253..=255).contains(&v) {
            let name = ["default", "main", "local"][(v - 253) as usize];
            self.error(
                t.span(),
                format!(
                    "announce_table {v} is the kernel's {name} table; use a table of its own, e.g. 100"
                ),
            );
            return None;
        }
        Some(v as u32)
    }
}

/// Linux `dev_valid_name`: 1..=15 bytes, not "." or "..", no '/', ':' or
/// whitespace.
fn check_ifname(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > MAX_IFNAME_LEN {
        return Err(format!(
            "longer than {MAX_IFNAME_LEN} bytes ({} bytes)",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err("\".\" and \"..\" are reserved".to_owned());
    }
    if let Some(c) = name
        .chars()
        .find(|&c| c == '/' || c == ':' || c == '\0' || c.is_whitespace())
    {
        return Err(format!("contains {c:?}"));
    }
    Ok(())
}
