//! `cargo xtask`: developer tasks for the sipshield workspace.
//!
//! - `cargo xtask setup`: install what the build and the tests need on a fresh Debian 12 machine
//!   (idempotent; quick when everything is present).
//! - `cargo xtask lint`: setup, then `cargo fmt --all --check` and clippy on the host crates and
//!   on the eBPF crates (for the BPF target, with their pinned nightly); any finding fails.
//! - `cargo xtask test [-- ARGS]`: setup, build the workspace, run its tests.
//! - `cargo xtask difftest [--seed N] [--count M]`: the differential test (kernel against the
//!   reference model) on M generated packets, release build; the seed of a failing run
//!   reproduces it.
//! - `cargo xtask fuzz [--seconds N] [TARGET]`: the cargo-fuzz targets, N seconds each (a
//!   smoke run of every target ends `cargo xtask test`).
//! - `cargo xtask deb`: build the Debian package (cargo-deb) with the man pages and
//!   completions generated from the CLI.
//! - `cargo xtask bench [--quick]`: setup (plus npm for the GeoIP database), build the
//!   benchmarks (release), run `sipshield-bench suite`: every benchmark against its peers, one
//!   validated table, JSON and SVG plots in `bench/results/`.
//! - `cargo xtask demo`: setup, build sipshield, run it between two network namespaces against
//!   a mixed SIP stream and check that every expected drop reason was counted.
//!
//! xtask only orchestrates: it runs tools and the `sipshield` binary, it holds no filter logic.
mod deb;
mod demo;
mod fuzz;
mod setup;
mod util;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "sipshield developer tasks")]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install the Debian packages, the pinned eBPF nightly with rust-src, bpf-linker 0.13.0 and mount bpffs (as root).
    Setup,
    /// Setup, then rustfmt and clippy (host crates, and the eBPF crates for the BPF target).
    Lint,
    /// Setup, `cargo build --workspace`, then `cargo test --workspace [ARGS]`.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. `-- --test pipeline`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, build sipshield (release) and run it against a mixed SIP stream in two namespaces.
    Demo,
    /// The differential test (kernel against the reference model), release build, as root.
    Difftest {
        /// Seed of the generators (default: from the clock, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// Packets to generate (CI runs 120,000).
        #[arg(long, default_value_t = 1_000_000)]
        count: u64,
    },
    /// Setup, then run the cargo-fuzz targets (all, or TARGET) for SECONDS each.
    Fuzz {
        #[arg(long, default_value = "60")]
        seconds: u64,
        /// One of list_parser, config, mmdb, capture, sip_scan.
        target: Option<String>,
    },
    /// Build the Debian package (cargo-deb): binary, unit, config, man pages, completions,
    /// logrotate, alert rules. Prints the path of the .deb.
    Deb {
        /// Package the binary of this cargo profile (`release`, or `dev` as `cargo xtask test`
        /// builds it).
        #[arg(long, default_value = "release")]
        profile: String,
        /// Package the binary already built instead of building it first.
        #[arg(long)]
        no_build: bool,
    },
    /// Setup, build the benchmarks (release) and run all of them: one validated table, JSON and
    /// SVG plots in bench/results/ (as root; quick: under 3 minutes, full: under 20).
    Bench {
        /// Smaller runs: fewer rounds, frames and sources, two scaling sizes.
        #[arg(long)]
        quick: bool,
    },
}

fn main() {
    let args = Args::parse();
    let res = match args.cmd {
        Cmd::Setup => setup::run(),
        Cmd::Lint => lint(),
        Cmd::Test { args } => test(&args),
        Cmd::Demo => demo::run(),
        Cmd::Difftest { seed, count } => difftest(seed, count),
        Cmd::Fuzz { seconds, target } => setup::run().and_then(|_| fuzz::run(seconds, target.as_deref())),
        Cmd::Deb { profile, no_build } => match no_build {
            true => deb::run_with(&profile, false),
            false => setup::run().and_then(|_| deb::run_with(&profile, true)),
        }
        .map(|p| println!("{}", p.display())),
        Cmd::Bench { quick } => bench(quick),
    };
    if let Err(e) = res {
        eprintln!("\nxtask: error: {e:#}");
        std::process::exit(1);
    }
}

/// The crates built for the host. `xdp-ebpf` and `sipshield-bench-ebpf` are `no_std` BPF
/// programs: the build scripts of xdp-user and bench build them for `bpfel-unknown-none`; built
/// for the host they clash with std's panic handler.
const HOST_EXCLUDES: &[&str] = &["--exclude", "xdp-ebpf", "--exclude", "sipshield-bench-ebpf"];

/// The lint rules are `[workspace.lints]` in Cargo.toml (every finding denied); `-D warnings`
/// also fails on the warnings outside them (deprecations, say).
fn lint() -> Result<()> {
    setup::run()?;
    let root = util::workspace_root();

    util::step("cargo fmt --all --check");
    util::run(util::cargo().current_dir(&root).args(["fmt", "--all", "--check"]))?;

    util::step("cargo clippy --workspace --all-targets (host crates)");
    let mut clippy = util::cargo();
    clippy.current_dir(&root).args(["clippy", "--workspace"]).args(HOST_EXCLUDES);
    clippy.args(["--all-targets", "--", "-D", "warnings"]);
    util::run(&mut clippy)?;

    // The eBPF crates as aya-build compiles them: their nightly, the BPF target, core built
    // from source, the `bpf_target_arch` cfg of the host.
    let nightly = setup::ebpf_toolchain()?;
    for (package, dir) in setup::EBPF_CRATES {
        util::step(&format!("cargo clippy -p {package} (bpfel-unknown-none, {nightly})"));
        let mut clippy = std::process::Command::new("rustup");
        clippy.current_dir(root.join(dir)).args(["run", &nightly, "cargo", "clippy", "--package", package]);
        clippy.args(["--target", "bpfel-unknown-none", "-Z", "build-std=core", "--release", "--", "-D", "warnings"]);
        clippy.env("RUSTFLAGS", format!("--cfg=bpf_target_arch=\"{}\"", std::env::consts::ARCH));
        for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTC", "RUSTC_WORKSPACE_WRAPPER"] {
            clippy.env_remove(var);
        }
        util::run(&mut clippy)?;
    }
    println!("\nxtask: lint clean");
    Ok(())
}

/// The benchmarks are release builds (the debug profile measures nothing useful).
fn bench(quick: bool) -> Result<()> {
    setup::run()?;
    setup::bench_packages()?;
    let root = util::workspace_root();
    util::step("cargo build --release -p sipshield-bench --bins");
    util::run(util::cargo().current_dir(&root).args(["build", "--release", "-p", "sipshield-bench", "--bins"]))?;
    let suite = util::target_dir().join("release").join("sipshield-bench");
    let mut cmd = std::process::Command::new(suite);
    cmd.current_dir(&root).args(["suite", "--out", "bench/results"]);
    if quick {
        cmd.arg("--quick");
    }
    util::step(&format!("sipshield-bench suite{}", if quick { " --quick" } else { "" }));
    util::run(&mut cmd)
}

fn test(extra: &[String]) -> Result<()> {
    setup::run()?;
    let root = util::workspace_root();

    util::step("cargo build --workspace (the tests spawn target/debug/sipshield)");
    let mut build = util::cargo();
    build.current_dir(&root).args(["build", "--workspace"]).args(HOST_EXCLUDES);
    util::run(&mut build)?;

    util::step(&format!("cargo test --workspace {}", extra.join(" ")));
    let mut test = util::cargo();
    test.current_dir(&root).args(["test", "--workspace"]).args(HOST_EXCLUDES).args(extra);
    util::run(&mut test)?;

    // A short run of every fuzz target, so a parser change that panics on its seeds (or on
    // what libFuzzer finds in a few seconds) fails CI.
    fuzz::run(fuzz::SMOKE_SECONDS, None)?;
    println!("\nxtask: all tests passed");
    Ok(())
}

/// `cargo test --release --test difftest` with the seed and count in its environment
/// (`SIPSHIELD_DIFF_SEED`, `SIPSHIELD_DIFF_COUNT`).
fn difftest(seed: Option<u64>, count: u64) -> Result<()> {
    setup::run()?;
    let root = util::workspace_root();
    util::step(&format!(
        "differential test: {count} packets, seed {}",
        seed.map_or("from the clock".into(), |s| s.to_string())
    ));
    let mut test = util::cargo();
    test.current_dir(&root).args([
        "test",
        "--release",
        "-p",
        "sipshield-tests",
        "--test",
        "difftest",
        "--",
        "--nocapture",
    ]);
    test.env("SIPSHIELD_DIFF_COUNT", count.to_string()).env("CI", "true");
    if let Some(s) = seed {
        test.env("SIPSHIELD_DIFF_SEED", s.to_string());
    }
    util::run(&mut test)?;
    println!("\nxtask: kernel and model agree");
    Ok(())
}
