#![no_std]
// Exists so that director's build.rs can depend on this crate.
