//! `cargo xtask deb`: the Debian package. The release binary writes its own man pages
//! and shell completions into `<target>/release/deb-assets`, where
//! `[package.metadata.deb]` in director/Cargo.toml expects them; cargo-deb then
//! packs the binary, those, the unit and the example config without building again.

use std::{
    fs::{self, File},
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    cargo::{DIRECTOR_BIN, Profile, Workspace},
    failure::{Failure, Result},
    prereq, run,
};

/// `director completions SHELL` for each shell, and the file name its
/// completion directory expects (see the assets in director/Cargo.toml).
const COMPLETIONS: &[(&str, &str)] = &[
    ("bash", "director"),
    ("zsh", "_director"),
    ("fish", "director.fish"),
];

/// Builds the package and returns the path of the `.deb`.
pub fn build(ws: &Workspace) -> Result<PathBuf> {
    let cargo_deb = prereq::ensure_cargo_deb()?;
    ws.build_packages(&["director"], Profile::Release)?;
    let bin = ws.built_bin(Profile::Release, DIRECTOR_BIN, "director")?;
    let assets = ws.bin(Profile::Release, "deb-assets");
    // Afresh: a page of a command that no longer exists must not be packed.
    remove_dir(&assets)?;
    man_pages(&bin, &assets.join("man"))?;
    completions(&bin, &assets.join("completions"))?;

    let mut cmd = Command::new(&cargo_deb);
    cmd.current_dir(ws.root())
        .args(["--package", "director", "--no-build"])
        // Its warnings go to the terminal; its stdout names the package.
        .stderr(Stdio::inherit());
    let out = run::stdout(
        &mut cmd,
        "packing the .deb (cargo-deb)",
        "fix what cargo-deb printed above ([package.metadata.deb] in director/Cargo.toml), then rerun: cargo xtask deb",
    )?;
    // cargo-deb prints the path of the package it wrote as its last line.
    let deb = out
        .lines()
        .rev()
        .map(str::trim)
        .find(|line| line.ends_with(".deb"))
        .map(PathBuf::from)
        .filter(|deb| deb.is_file())
        .ok_or_else(|| {
            Failure::new(
                "packing the .deb (cargo-deb)",
                format!("cargo-deb printed no path of a .deb that exists: {out:?}"),
                "rerun: cargo xtask deb",
            )
        })?;
    prereq::progress("debian package", &format!("ok ({})", deb.display()));
    Ok(deb)
}

fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(err) => Err(Failure::new(
            "clearing the package's generated files",
            format!("{}: {err}", dir.display()),
            format!("rm -rf {}", dir.display()),
        )),
    }
}

fn create_dir(dir: &Path) -> Result<()> {
    fs::create_dir_all(dir).map_err(|err| {
        Failure::new(
            "creating a directory for the package's generated files",
            format!("{}: {err}", dir.display()),
            format!("mkdir -p {}", dir.display()),
        )
    })
}

/// director.8 and director-COMMAND.8, compressed as Debian ships man pages
/// (`gzip -9n`: best, and without a timestamp, so that rebuilds are identical).
fn man_pages(bin: &Path, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    let fix = "fix `director manpage`, then rerun: cargo xtask deb";
    run::status(
        Command::new(bin).arg("manpage").arg(dir),
        "writing the man pages",
        fix,
    )?;
    let read = |err: std::io::Error| {
        Failure::new(
            "listing the man pages",
            format!("{}: {err}", dir.display()),
            fix,
        )
    };
    let mut pages: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(read)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(read)?;
    pages.retain(|page| page.extension().is_some_and(|ext| ext == "8"));
    if pages.is_empty() {
        return Err(Failure::new(
            "writing the man pages",
            format!("`director manpage` wrote no *.8 into {}", dir.display()),
            fix,
        ));
    }
    pages.sort();
    run::status(
        Command::new("gzip").arg("-9nf").args(&pages),
        "compressing the man pages",
        "apt-get install gzip, then rerun: cargo xtask deb",
    )
}

fn completions(bin: &Path, dir: &Path) -> Result<()> {
    create_dir(dir)?;
    for &(shell, name) in COMPLETIONS {
        let path = dir.join(name);
        let what = format!("writing the {shell} completions");
        let file = File::create(&path).map_err(|err| {
            Failure::new(
                what.as_str(),
                format!("{}: {err}", path.display()),
                "check that the target directory is writable",
            )
        })?;
        run::status(
            Command::new(bin)
                .args(["completions", shell])
                .stdout(Stdio::from(file)),
            &what,
            "fix `director completions`, then rerun: cargo xtask deb",
        )?;
    }
    Ok(())
}
