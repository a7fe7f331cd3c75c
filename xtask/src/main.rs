//! `cargo xtask`: developer tasks for the sipshield workspace.
//!
//! - `cargo xtask setup`: install what the build and the tests need on a fresh Debian 12 machine
//!   (idempotent; quick when everything is present).
//! - `cargo xtask test [-- ARGS]`: setup, build the workspace, run its tests.
//! - `cargo xtask demo`: setup, build sipshield, run it between two network namespaces against
//!   a mixed SIP stream and check that every expected drop reason was counted.
//!
//! xtask only orchestrates: it runs tools and the `sipshield` binary, it holds no filter logic.
mod demo;
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
    /// Install the Debian packages, rust-src, bpf-linker 0.13.0 and mount bpffs (as root).
    Setup,
    /// Setup, `cargo build --workspace`, then `cargo test --workspace [ARGS]`.
    Test {
        /// Extra arguments for `cargo test` (after `--`), e.g. `-- --test pipeline`.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Setup, build sipshield (release) and run it against a mixed SIP stream in two namespaces.
    Demo,
}

fn main() {
    let args = Args::parse();
    let res = match args.cmd {
        Cmd::Setup => setup::run(),
        Cmd::Test { args } => test(&args),
        Cmd::Demo => demo::run(),
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
    println!("\nxtask: all tests passed");
    Ok(())
}
