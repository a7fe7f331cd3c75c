//! `cargo xtask fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets of `fuzz/` (list parser,
//! config loader, GeoIP database checks, capture reader, SIP scan model), each for N seconds
//! from its corpus `fuzz/corpus/TARGET`, seeded from `fuzz/seeds/TARGET`. Built with the eBPF
//! crates' dated nightly (libFuzzer needs nightly; setup installs it), without a sanitizer:
//! the code is safe Rust, a finding is a panic. A crash leaves its input in
//! `fuzz/artifacts/TARGET/` and fails the run; it then becomes a regression test.
use anyhow::{bail, Context, Result};

use crate::{setup, util};

pub const TARGETS: &[&str] = &["list_parser", "config", "mmdb", "capture", "sip_scan"];

/// Seconds per target of the smoke run inside `cargo xtask test`.
pub const SMOKE_SECONDS: u64 = 5;

pub fn run(seconds: u64, only: Option<&str>) -> Result<()> {
    let targets: Vec<&str> = match only {
        Some(t) if TARGETS.contains(&t) => vec![t],
        Some(t) => bail!("unknown fuzz target {t:?} (targets: {})", TARGETS.join(", ")),
        None => TARGETS.to_vec(),
    };
    let root = util::workspace_root();
    let nightly = setup::ebpf_toolchain()?;
    util::step(&format!("cargo fuzz build ({nightly})"));
    util::run(fuzz_cmd(&nightly).args(["build", "-s", "none"]))?;
    for t in targets {
        let corpus = root.join("fuzz/corpus").join(t);
        seed(&root.join("fuzz/seeds").join(t), &corpus)?;
        util::step(&format!("cargo fuzz run {t} ({seconds} s)"));
        let mut cmd = fuzz_cmd(&nightly);
        cmd.args(["run", "-s", "none", t]).arg(&corpus);
        cmd.args(["--", &format!("-max_total_time={seconds}"), "-print_final_stats=1"]);
        util::run(&mut cmd).with_context(|| format!("fuzz target {t} failed: its input is in fuzz/artifacts/{t}/"))?;
    }
    Ok(())
}

fn fuzz_cmd(nightly: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new("rustup");
    cmd.current_dir(util::workspace_root()).args(["run", nightly, "cargo", "fuzz"]);
    // The caller's cargo (stable) must not leak into the nightly build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTC", "RUSTC_WORKSPACE_WRAPPER", "CARGO_TARGET_DIR"] {
        cmd.env_remove(var);
    }
    cmd
}

/// Copy the seeds missing from the corpus (libFuzzer adds its own finds next to them).
fn seed(seeds: &std::path::Path, corpus: &std::path::Path) -> Result<()> {
    std::fs::create_dir_all(corpus).with_context(|| format!("creating {}", corpus.display()))?;
    let Ok(dir) = std::fs::read_dir(seeds) else { return Ok(()) };
    for e in dir {
        let e = e?;
        let to = corpus.join(e.file_name());
        if !to.exists() {
            std::fs::copy(e.path(), &to).with_context(|| format!("seeding {}", to.display()))?;
        }
    }
    Ok(())
}
