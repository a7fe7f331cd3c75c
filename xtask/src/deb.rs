//! `cargo xtask deb`: the Debian package, built by cargo-deb from `[package.metadata.deb]` of
//! xdp-user. The man pages and shell completions are generated from the CLI itself
//! (`sipshield assets`, clap_mangen and clap_complete) and the systemd unit is
//! `deploy/sipshield.service` with the packaged binary's path, all under
//! `target/<profile>/deb-assets`, which the metadata's asset list names.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use crate::util;

/// Where the manual install of `deploy/sipshield.service` puts the binary, and the package.
const MANUAL_BIN: &str = "/usr/local/sbin/sipshield";
const PACKAGE_BIN: &str = "/usr/sbin/sipshield";

/// Build the package from the `profile` build (`release`, or `dev` as the tests build);
/// `build = false` packages the binary already built. Returns the .deb's path.
pub fn run_with(profile: &str, build: bool) -> Result<PathBuf> {
    let root = util::workspace_root();
    let dir = util::target_dir().join(if profile == "dev" { "debug" } else { profile });
    if build {
        util::step(&format!("cargo build --profile {profile} -p xdp-user"));
        util::run(util::cargo().current_dir(&root).args(["build", "--profile", profile, "-p", "xdp-user"]))?;
    }
    let bin = dir.join("sipshield");
    if !bin.exists() {
        bail!("{} is missing: build it first", bin.display());
    }
    let assets = dir.join("deb-assets");
    let _ = std::fs::remove_dir_all(&assets);
    util::step("man pages and completions (sipshield assets)");
    util::run(std::process::Command::new(&bin).arg("assets").arg(&assets))?;
    let unit = std::fs::read_to_string(root.join("deploy/sipshield.service")).context("deploy/sipshield.service")?;
    if !unit.contains(MANUAL_BIN) {
        bail!("deploy/sipshield.service no longer runs {MANUAL_BIN}: update xtask/src/deb.rs");
    }
    std::fs::write(assets.join("sipshield.service"), unit.replace(MANUAL_BIN, PACKAGE_BIN))?;
    util::step("cargo deb");
    let out_dir = util::target_dir().join("debian");
    let mut deb = util::cargo();
    deb.current_dir(&root).args(["deb", "-p", "xdp-user", "--no-build", "--no-strip", "--profile", profile]);
    deb.arg("--output").arg(&out_dir);
    let out = util::output(&mut deb).context("cargo-deb failed (installed by `cargo xtask setup`)")?;
    let path = out.lines().rev().find(|l| l.trim().ends_with(".deb")).map(|l| PathBuf::from(l.trim()));
    path.context("cargo-deb did not print the path of the package")
}
