//! Tests that need root (BPF, network namespaces, veth, XDP) skip, saying so, when run
//! without it: `need_root!()` as a test's first line, or `per_mode!` for a test run in
//! both lab modes.

/// True (after printing why) when the caller is not root and `test` must be skipped.
pub fn skip_without_root(test: &str) -> bool {
    let root = nix::unistd::geteuid().is_root();
    if !root {
        eprintln!("skipping {test}: needs root (BPF, network namespaces, veth, XDP)");
    }
    !root
}

/// Returns from the test it stands in (printing the test's name) unless run as root.
#[macro_export]
macro_rules! need_root {
    () => {{
        // The test's own path, from a function item declared inside it.
        fn here() {}
        let name = ::std::any::type_name_of_val(&here);
        if $crate::root::skip_without_root(name.strip_suffix("::here").unwrap_or(name)) {
            return;
        }
    }};
}

/// `per_mode!(run: nat_test, dr_test)`: a `#[test]` per lab mode, each named for its
/// mode (so that a failure says which) and calling `run(mode)` as root.
#[macro_export]
macro_rules! per_mode {
    ($run:ident: $nat:ident, $dr:ident) => {
        #[test]
        fn $nat() {
            $crate::need_root!();
            $run($crate::lab::Mode::Nat);
        }

        #[test]
        fn $dr() {
            $crate::need_root!();
            $run($crate::lab::Mode::Dr);
        }
    };
}
