//! Profile hints: the programs' sizes after verification and JIT, and the director's
//! verified instructions (`bpftool prog dump xlated`) saved next to the report, with
//! instructions and helper calls counted per BPF function.

use std::collections::BTreeMap;
use std::os::fd::BorrowedFd;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::bpf::{self, ProgInfo, Program};
use crate::tools;

pub const DUMP_FILE: &str = "director.xlated.txt";

#[derive(Clone, Debug, Serialize)]
pub struct Function {
    pub name: String,
    pub insns: usize,
    /// Helper (or BPF function) calls by name.
    pub calls: BTreeMap<String, usize>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Profile {
    pub director: ProgInfo,
    pub pass: ProgInfo,
    pub mac_swap: ProgInfo,
    pub functions: Vec<Function>,
    pub dump_file: String,
}

pub fn collect(
    director: BorrowedFd<'_>,
    pass: &Program,
    swap: &Program,
    out: &Path,
) -> Result<Profile> {
    let info = bpf::prog_info(director)?;
    let bpftool = tools::find(tools::BPFTOOL.bin).context("bpftool not found")?;
    let dump = Command::new(&bpftool)
        .args(["prog", "dump", "xlated", "id", &info.id.to_string()])
        .output()
        .with_context(|| format!("run {}", bpftool.display()))?;
    if !dump.status.success() {
        bail!(
            "bpftool prog dump xlated id {} failed: {}",
            info.id,
            String::from_utf8_lossy(&dump.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&dump.stdout).into_owned();
    std::fs::write(out.join(DUMP_FILE), &text)
        .with_context(|| format!("write {}", out.join(DUMP_FILE).display()))?;
    Ok(Profile {
        director: info,
        pass: bpf::prog_info(pass.fd())?,
        mac_swap: bpf::prog_info(swap.fd())?,
        functions: functions(&text),
        dump_file: DUMP_FILE.to_owned(),
    })
}

/// Splits a `bpftool prog dump xlated` listing into functions: a line that does not
/// start with an instruction number (`  12: (bf) r1 = r6`) names the function the
/// following instructions belong to.
pub fn functions(dump: &str) -> Vec<Function> {
    let mut out: Vec<Function> = Vec::new();
    for line in dump.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with(';') {
            continue;
        }
        let Some((num, insn)) = trimmed.split_once(": ") else {
            out.push(Function {
                name: trimmed.trim_end_matches(':').to_owned(),
                insns: 0,
                calls: BTreeMap::new(),
            });
            continue;
        };
        if num.parse::<usize>().is_err() {
            out.push(Function {
                name: trimmed.trim_end_matches(':').to_owned(),
                insns: 0,
                calls: BTreeMap::new(),
            });
            continue;
        }
        if out.is_empty() {
            out.push(Function {
                name: "main".to_owned(),
                insns: 0,
                calls: BTreeMap::new(),
            });
        }
        let f = out.last_mut().expect("a function was pushed above");
        f.insns += 1;
        if let Some(callee) = call_target(insn) {
            *f.calls.entry(callee).or_default() += 1;
        }
    }
    out
}

/// `(85) call bpf_map_lookup_elem#1` → `bpf_map_lookup_elem`;
/// `(85) call pc+292#bpf_prog_4f9302ba65b90ccd_memset` → `memset()` (a BPF function);
/// `(85) call pc+12` → `bpf function`.
fn call_target(insn: &str) -> Option<String> {
    let rest = insn.split_once(" call ")?.1.trim();
    let Some(pc) = rest.strip_prefix("pc") else {
        return Some(rest.split('#').next().unwrap_or(rest).to_owned());
    };
    let name = pc
        .split_once("#bpf_prog_")
        .and_then(|(_, tagged)| tagged.split_once('_'))
        .map(|(_tag, name)| format!("{name}()"));
    Some(name.unwrap_or_else(|| "bpf function".to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_functions_and_counts_calls() {
        let dump = "int director(struct xdp_md * ctx):\n\
                    ; fn director(ctx: XdpContext) -> u32 {\n\
                    \x20  0: (bf) r6 = r1\n\
                    \x20  1: (85) call bpf_map_lookup_elem#1\n\
                    \x20  2: (85) call pc+3#bpf_prog_4f9302ba65b90ccd_memset\n\
                    \x20  3: (95) exit\n\
                    long long int inbound(void * raw):\n\
                    \x20  4: (85) call bpf_ktime_get_ns#5\n\
                    \x20  5: (85) call pc-3\n\
                    \x20  6: (95) exit\n";
        let f = functions(dump);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].name, "int director(struct xdp_md * ctx)");
        assert_eq!(f[0].insns, 4);
        assert_eq!(f[0].calls["bpf_map_lookup_elem"], 1);
        assert_eq!(f[0].calls["memset()"], 1);
        assert_eq!(f[1].insns, 3);
        assert_eq!(f[1].calls["bpf_ktime_get_ns"], 1);
        assert_eq!(f[1].calls["bpf function"], 1);
    }
}
