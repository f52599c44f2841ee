//! Config fuzzing (issue 12 item 2): the shipped example files, mutated the
//! ways a hand edit goes wrong (a cut, a stray token, a duplicated or
//! truncated line, a value replaced by one of another type or range), go
//! through the parser and validator, and the valid ones through a reload of
//! a running reconciler. Properties: never a panic; a rejection has at least
//! one error and every diagnostic points inside the file; a reload the
//! reconciler refuses leaves its model as it was.

use std::cell::Cell;
use std::time::Instant;

use proptest::prelude::*;
use proptest::test_runner::{Config as Runner, TestRunner};

use super::*;
use crate::apply::Reconciler;
use crate::dataplane::Sizes;
use crate::maps::Memory;

/// Every configuration file shipped in examples/.
const SEEDS: &[&str] = &[
    include_str!("../../../../examples/director.toml"),
    include_str!("../../../../examples/lab-dr.toml"),
    include_str!("../../../../examples/lab-dr6.toml"),
    include_str!("../../../../examples/lab-nat.toml"),
    include_str!("../../../../examples/lab-nat6.toml"),
    include_str!("../../../../examples/web-dr.toml"),
    include_str!("../../../../examples/web-nat.toml"),
];

/// What a hand edit leaves behind: structure, values of every type, values
/// out of every range, and keys the files use.
const TOKENS: &[&str] = &[
    "=",
    "\"",
    "'",
    "[",
    "]",
    "[[",
    "]]",
    ",",
    "{",
    "}",
    "\n",
    "#",
    ".",
    "0",
    "-1",
    "65536",
    "4294967296",
    "99999999999999999999",
    "1e999",
    "nan",
    "true",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "\"10.1.0.11:8080\"",
    "\"192.0.2.10:80\"",
    "\"2001:db8::1\"",
    "\"300s\"",
    "\"1h\"",
    "\"-5s\"",
    "\"\u{e9}\u{fffd}\"",
    "[[virtual_server]]",
    "[[virtual_server.real_server]]",
    "[director]",
    "[sync]",
    "[health_check]",
    "name",
    "address",
    "weight",
    "forward",
    "scheduler",
    "protocol",
    "persistence",
    "interfaces",
    "conntrack_max",
    "backup",
];

/// One edit of a file, at a position given as a fraction of its length.
#[derive(Clone, Debug)]
enum Edit {
    Cut { at: f64, len: usize },
    Insert { at: f64, token: usize },
    Duplicate { line: f64 },
    Truncate { at: f64 },
    Value { line: f64, token: usize },
}

fn edit() -> impl Strategy<Value = Edit> {
    let at = 0.0..1.0f64;
    let token = 0..TOKENS.len();
    prop_oneof![
        (at.clone(), 1..40usize).prop_map(|(at, len)| Edit::Cut { at, len }),
        (at.clone(), token.clone()).prop_map(|(at, token)| Edit::Insert { at, token }),
        at.clone().prop_map(|line| Edit::Duplicate { line }),
        at.clone().prop_map(|at| Edit::Truncate { at }),
        (at, token).prop_map(|(line, token)| Edit::Value { line, token }),
    ]
}

/// The char boundary nearest below `frac` of `text`.
fn boundary(text: &str, frac: f64) -> usize {
    let mut i = (text.len() as f64 * frac) as usize;
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn apply_edit(text: &mut String, e: &Edit) {
    let lines: Vec<&str> = text.split_inclusive('\n').collect();
    let line_of = |frac: f64| ((lines.len() as f64 * frac) as usize).min(lines.len() - 1);
    match *e {
        Edit::Cut { at, len } => {
            let from = boundary(text, at);
            let to = boundary(text, ((from + len) as f64 / text.len() as f64).min(1.0));
            text.replace_range(from..to.max(from), "");
        }
        Edit::Insert { at, token } => text.insert_str(boundary(text, at), TOKENS[token]),
        Edit::Duplicate { line } => {
            let i = line_of(line);
            let copy = lines[i].to_owned();
            let start: usize = lines[..i].iter().map(|l| l.len()).sum();
            text.insert_str(start, &copy);
        }
        Edit::Truncate { at } => text.truncate(boundary(text, at)),
        Edit::Value { line, token } => {
            // Among the lines that set a key (most of an example is comments).
            let keyed: Vec<usize> = (0..lines.len())
                .filter(|&i| lines[i].contains('=') && !lines[i].trim_start().starts_with('#'))
                .collect();
            if keyed.is_empty() {
                return;
            }
            let i = keyed[((keyed.len() as f64 * line) as usize).min(keyed.len() - 1)];
            let eq = lines[i].find('=').expect("a keyed line");
            let start: usize = lines[..i].iter().map(|l| l.len()).sum();
            let end = start + lines[i].trim_end_matches('\n').len();
            text.replace_range(start + eq + 1..end, &format!(" {}", TOKENS[token]));
        }
    }
}

/// A seed with one to four edits.
fn mutated() -> impl Strategy<Value = (usize, String)> {
    (0..SEEDS.len(), prop::collection::vec(edit(), 1..5)).prop_map(|(seed, edits)| {
        let mut text = SEEDS[seed].to_owned();
        for e in &edits {
            if !text.is_empty() {
                apply_edit(&mut text, e);
            }
        }
        (seed, text)
    })
}

/// Every diagnostic of `e` is on a line of `text` (or just past its end) and
/// at most one column past that line's last character.
fn assert_inside(text: &str, e: &ConfigError) {
    assert!(e.errors().next().is_some(), "a rejection without an error");
    let lines: Vec<&str> = text.split('\n').collect();
    for d in &e.diagnostics {
        assert!(
            (1..=lines.len()).contains(&d.line),
            "{d} is outside the file's {} lines:\n{text}",
            lines.len()
        );
        let width = lines[d.line - 1].chars().count();
        assert!(
            (1..=width + 1).contains(&d.col),
            "{d} is past the end of line {} ({width} characters):\n{text}",
            d.line
        );
    }
}

fn runner(cases: u32) -> TestRunner {
    // A fixed seed: CI runs the same cases every time; a failure is
    // shrunk to a minimal file and printed.
    TestRunner::new_with_rng(
        Runner {
            cases,
            failure_persistence: None,
            ..Runner::default()
        },
        proptest::test_runner::TestRng::deterministic_rng(
            proptest::test_runner::RngAlgorithm::ChaCha,
        ),
    )
}

#[test]
fn every_example_file_is_valid() {
    for seed in SEEDS {
        if let Err(e) = parse(seed, "example.toml") {
            panic!("a shipped example is rejected:\n{e}");
        }
    }
}

#[test]
fn mutated_files_never_panic_and_every_error_points_inside_the_file() {
    let (accepted, rejected) = (Cell::new(0), Cell::new(0));
    runner(20_000)
        .run(&mutated(), |(_, text)| {
            match parse(&text, "fuzz.toml") {
                Ok(_) => accepted.set(accepted.get() + 1),
                Err(e) => {
                    rejected.set(rejected.get() + 1);
                    assert_inside(&text, &e);
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (accepted, rejected) = (accepted.get(), rejected.get());
    println!("config fuzz: {accepted} mutated files accepted, {rejected} rejected");
    // Both sides were reached: the mutations are neither all fatal nor all
    // harmless.
    assert!(
        accepted > 500 && rejected > 5_000,
        "{accepted} accepted, {rejected} rejected"
    );
}

/// A reconciler running `seed`, applied, with no virtual server id to
/// spare: a mutation that renames or moves a virtual server needs one more
/// and is refused half-way.
fn running(seed: &str) -> Reconciler<Memory> {
    let c = parse(seed, "seed.toml").expect("seed").config;
    let sizes = Sizes {
        vips: c.virtual_servers.len() as u32,
        ..Sizes::for_config(&c)
    };
    Reconciler::running(&c, &sizes)
}

#[test]
fn a_refused_reload_of_a_mutated_file_changes_nothing() {
    let (reloaded, refused) = (Cell::new(0), Cell::new(0));
    runner(6_000)
        .run(&mutated(), |(seed, text)| {
            let Ok(loaded) = parse(&text, "fuzz.toml") else {
                // Refused before the reconciler sees it.
                return Ok(());
            };
            let mut r = running(SEEDS[seed]);
            let before = format!("{:?}", r.model().vss);
            match r.reconcile(&loaded.config, Instant::now()) {
                Ok(_) => {
                    r.apply().expect("a reconciled file applies");
                    reloaded.set(reloaded.get() + 1);
                }
                Err(e) => {
                    refused.set(refused.get() + 1);
                    assert_eq!(
                        format!("{:?}", r.model().vss),
                        before,
                        "refused ({e}) but changed:\n{text}"
                    );
                }
            }
            Ok(())
        })
        .unwrap_or_else(|e| panic!("{e}"));
    let (reloaded, refused) = (reloaded.get(), refused.get());
    println!("config fuzz: {reloaded} mutated files reloaded, {refused} refused");
    assert!(
        reloaded > 300 && refused > 5,
        "{reloaded} mutated files reloaded, {refused} refused"
    );
}
