//! `cargo xtask setup`: make a fresh Debian 12 machine (root, rustup with stable + nightly)
//! ready to build and test sipshield. Every step checks first and is skipped when done, so a
//! second run only spends the time of a few queries.
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{self, is_root};

/// Debian packages the build (llvm-22-dev for bpf-linker, libpcap-dev) and the tests (network
/// tools, real SIP/capture/metrics/fail2ban peers) need.
pub const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "nftables",
    "iptables",
    "ipset",
    "sip-tester",
    "tshark",
    "prometheus",
    "fail2ban",
    "libpcap-dev",
];

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPFFS: &str = "/sys/fs/bpf";

pub fn run() -> Result<()> {
    let t0 = Instant::now();
    util::step("setup: checking the machine");
    let mut did = vec![];
    if apt_packages()? {
        did.push("apt packages");
    }
    if rust_src()? {
        did.push("rust-src");
    }
    if bpf_linker()? {
        did.push("bpf-linker");
    }
    if bpffs()? {
        did.push("bpffs mount");
    }
    let secs = t0.elapsed().as_secs_f64();
    if did.is_empty() {
        println!("setup: nothing to do, everything present ({secs:.1}s)");
    } else {
        println!("setup: done ({}) in {secs:.1}s", did.join(", "));
    }
    Ok(())
}

fn need_root(what: &str) -> Result<()> {
    if !is_root() {
        bail!(
            "setup must {what}, which needs root: run `cargo xtask setup` as root (e.g. `sudo -E cargo xtask setup`)"
        );
    }
    Ok(())
}

fn installed(pkg: &str) -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", pkg])
        .stderr(Stdio::null())
        .output()
        .map(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).trim() == "install ok installed")
        .unwrap_or(false)
}

/// Removes a `policy-rc.d` we created so package installs do not start daemons (prometheus on
/// :9090, fail2ban) that the tests would collide with.
struct PolicyRcGuard(Option<&'static str>);

impl Drop for PolicyRcGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn apt_packages() -> Result<bool> {
    if Command::new("dpkg-query").arg("--version").stdout(Stdio::null()).status().is_err() {
        bail!("dpkg-query not found: setup supports Debian 12 (apt/dpkg) only");
    }
    let missing: Vec<&str> = PACKAGES.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("[skip] Debian packages: all {} installed ({})", PACKAGES.len(), PACKAGES.join(" "));
        return Ok(false);
    }
    println!("[do]   Debian packages missing: {}", missing.join(" "));
    need_root("install Debian packages")?;

    // tshark asks whether non-root users may capture: answer "no" up front.
    let mut sel = Command::new("debconf-set-selections")
        .stdin(Stdio::piped())
        .spawn()
        .context("cannot start debconf-set-selections")?;
    sel.stdin
        .take()
        .expect("piped stdin")
        .write_all(b"wireshark-common wireshark-common/install-setuid boolean false\n")?;
    let st = sel.wait()?;
    if !st.success() {
        bail!("debconf-set-selections failed ({st})");
    }

    let policy = "/usr/sbin/policy-rc.d";
    let _guard = if Path::new(policy).exists() {
        PolicyRcGuard(None)
    } else {
        std::fs::write(policy, "#!/bin/sh\n# temporary, written by cargo xtask setup\nexit 101\n")?;
        std::fs::set_permissions(policy, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
        PolicyRcGuard(Some(policy))
    };

    util::step("apt-get update");
    util::run(Command::new("apt-get").arg("update").env("DEBIAN_FRONTEND", "noninteractive"))
        .context("apt-get update failed (is the Debian registry reachable?)")?;
    util::step(&format!("apt-get install -y {}", missing.join(" ")));
    util::run(Command::new("apt-get").args(["install", "-y"]).args(&missing).env("DEBIAN_FRONTEND", "noninteractive"))
        .context("apt-get install failed")?;
    let still: Vec<&str> = missing.iter().copied().filter(|p| !installed(p)).collect();
    if !still.is_empty() {
        bail!("apt-get reported success but these packages are still not installed: {}", still.join(" "));
    }
    println!("[done] installed {}", missing.join(" "));
    Ok(true)
}

fn rust_src() -> Result<bool> {
    let out =
        util::capture(Command::new("rustup").args(["component", "list", "--toolchain", "nightly", "--installed"]))
            .context("rustup is required (with a nightly toolchain)")?;
    if !out.status.success() {
        bail!(
            "`rustup component list --toolchain nightly --installed` failed: {} (is the nightly toolchain installed? `rustup toolchain install nightly`)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    if text.lines().any(|l| l.trim() == "rust-src" || l.trim().starts_with("rust-src-")) {
        println!("[skip] rust-src for nightly: installed");
        return Ok(false);
    }
    println!("[do]   rust-src for nightly (aya-build builds the XDP program with -Z build-std)");
    util::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]))?;
    println!("[done] rust-src installed");
    Ok(true)
}

/// `bpf-linker --version` output, if it runs.
fn bpf_linker_version() -> Option<String> {
    let out = Command::new("bpf-linker").arg("--version").stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn bpf_linker() -> Result<bool> {
    let current = bpf_linker_version();
    if let Some(v) = &current {
        if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) {
            println!("[skip] bpf-linker: {v}");
            return Ok(false);
        }
    }
    println!(
        "[do]   bpf-linker {BPF_LINKER_VERSION} (found: {}); building it against LLVM 22 takes a few minutes",
        current.as_deref().unwrap_or("none")
    );
    if !Path::new(LLVM_PREFIX).join("bin/llvm-config").exists() {
        bail!("{LLVM_PREFIX}/bin/llvm-config is missing: llvm-22-dev must be installed first");
    }
    let mut cmd = util::cargo();
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
        "--no-default-features",
        "--features",
        "llvm-22",
    ])
    // bpf-linker 0.13's build script reads LLVM_PREFIX; llvm-sys reads LLVM_SYS_221_PREFIX.
    .env("LLVM_PREFIX", LLVM_PREFIX)
    .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
    // Don't build it into the workspace's target dir if the caller set one.
    .env_remove("CARGO_TARGET_DIR");
    util::run(&mut cmd).context("installing bpf-linker failed")?;
    match bpf_linker_version() {
        Some(v) if v.split_whitespace().any(|w| w == BPF_LINKER_VERSION) => {
            println!("[done] bpf-linker: {v}");
            Ok(true)
        }
        other => bail!(
            "bpf-linker was installed but `bpf-linker --version` on PATH reports {:?}: put cargo's bin directory (~/.cargo/bin) first on PATH",
            other
        ),
    }
}

fn bpffs_mounted() -> Result<bool> {
    let out = util::capture(Command::new("stat").args(["-f", "-c", "%T", BPFFS]))?;
    Ok(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "bpf_fs")
}

fn bpffs() -> Result<bool> {
    if bpffs_mounted()? {
        println!("[skip] bpffs: mounted on {BPFFS}");
        return Ok(false);
    }
    println!("[do]   mount -t bpf bpf {BPFFS}");
    need_root("mount bpffs")?;
    util::run(Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]))?;
    if !bpffs_mounted()? {
        bail!("mounted bpffs but {BPFFS} still is not bpf_fs");
    }
    println!("[done] bpffs mounted");
    Ok(true)
}
