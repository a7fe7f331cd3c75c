//! Shared by `sip_bench` and `geo_bench` (included with `mod live;`; this directory has no
//! `main.rs`, so cargo does not build it as a binary of its own).
//!
//! * [`Testbed`]: two throwaway network namespaces `ssbench-<tag>-<pid>-{gen,rx}` (the test
//!   kit's [`Netns`]) joined by a veth pair created directly inside them (documentation
//!   addresses only), removed on drop;
//! * [`blast`]: push frames out of a veth with the `sipshield_gen` program and
//!   `BPF_PROG_TEST_RUN` live frames (`BPF_F_TEST_XDP_LIVE_FRAMES`);
//! * [`with_helper`]: the helper programs `sipshield_gen` and `sipshield_pass`, from their own
//!   object (`bench/ebpf`, built by `bench/build.rs`), which the controller never loads;
//! * per-packet cost helpers (`BPF_PROG_TEST_RUN` with repeat), table and JSON helpers.
#![allow(dead_code)]

use std::fs;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions, Xdp, XdpMode};
use aya::Ebpf;
use serde_json::Value;
use sipshield::filter::Filter;
pub use sipshield_tests::netns::{self, Netns};

/// Generator side address and receiver address (TEST-NET-2); the receiver address is local to
/// the receiving namespace so frames addressed to it reach PREROUTING.
pub const GEN_ADDR: &str = "198.51.100.1";
pub const RX_ADDR: &str = "198.51.100.2";
pub const GEN_IF: &str = "ssb-gen";
pub const RX_IF: &str = "ssb-rx";

/// Hard ceiling of frames one [`blast`] may send, whatever the arguments say.
pub const MAX_FRAMES_PER_BLAST: u64 = 50_000_000;
/// Wall-clock ceiling of one [`blast`].
pub const MAX_BLAST_SECS: f64 = 60.0;

// ------------------------------------------------------------------------------------------
// Interruption.
// ------------------------------------------------------------------------------------------

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM set a flag that [`blast`] checks between syscalls, so an interrupted run
/// unwinds through the `Drop` guards (namespaces, attachments) instead of leaving them behind.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    STOP.load(Ordering::SeqCst)
}

// ------------------------------------------------------------------------------------------
// Network namespaces (the test kit's fixture) with the benchmark's time limits.
// ------------------------------------------------------------------------------------------

/// Peer commands under a time limit, so none can hang the benchmark.
pub trait BenchNetns {
    /// `prog args…` run inside the namespace under `timeout`.
    fn timed(&self, timeout: Duration, prog: &str, args: &[&str]) -> Command;
    /// Run a command inside the namespace feeding `input` on stdin (e.g. `nft -f -`);
    /// returns (seconds, stdout).
    fn run_stdin(&self, prog: &str, args: &[&str], input: &[u8], timeout: Duration) -> Result<(f64, String)>;
}

impl BenchNetns for Netns {
    fn timed(&self, timeout: Duration, prog: &str, args: &[&str]) -> Command {
        let secs = format!("{}", timeout.as_secs().max(1));
        let mut c = self.cmd("timeout", &[&secs, prog]);
        c.args(args);
        c
    }

    fn run_stdin(&self, prog: &str, args: &[&str], input: &[u8], timeout: Duration) -> Result<(f64, String)> {
        use std::io::Write;
        let t = Instant::now();
        let mut child = self
            .timed(timeout, prog, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {prog} in {}", self.name))?;
        let mut stdin = child.stdin.take().expect("piped");
        let data = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&data);
        });
        let out = child.wait_with_output()?;
        let _ = writer.join();
        let secs = t.elapsed().as_secs_f64();
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "{prog} {} (netns {}) failed: {}",
                args.join(" "),
                self.name,
                err.chars().take(2000).collect::<String>()
            );
        }
        Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
    }
}

/// An interface as `ip -j link` reports it.
#[derive(Clone, Debug)]
pub struct Iface {
    pub name: String,
    pub ifindex: u32,
    pub mac: [u8; 6],
}

fn iface(ns: &Netns, name: &str) -> Result<Iface> {
    let out = ns.run("ip", &["-j", "link", "show", "dev", name])?;
    let v: Value = serde_json::from_str(&out).context("parsing ip -j link")?;
    let l = v.get(0).ok_or_else(|| anyhow!("no interface {name} in {}", ns.name))?;
    let ifindex = l["ifindex"].as_u64().ok_or_else(|| anyhow!("{name}: no ifindex"))? as u32;
    let addr = l["address"].as_str().ok_or_else(|| anyhow!("{name}: no address"))?;
    let mut mac = [0u8; 6];
    for (i, p) in addr.split(':').enumerate().take(6) {
        mac[i] = u8::from_str_radix(p, 16).with_context(|| format!("MAC {addr}"))?;
    }
    Ok(Iface { name: name.to_string(), ifindex, mac })
}

/// Generator namespace (`gen`, veth end [`GEN_IF`] with [`GEN_ADDR`]) and receiver namespace
/// (`rx`, veth end [`RX_IF`] with [`RX_ADDR`]). Dropping it deletes both namespaces, which
/// destroys the veth pair and everything attached to it.
pub struct Testbed {
    pub gen: Netns,
    pub rx: Netns,
    pub gen_if: Iface,
    pub rx_if: Iface,
}

impl Testbed {
    pub fn create(tag: &str) -> Result<Testbed> {
        netns::remove_leftovers(&format!("ssbench-{tag}-"));
        let pid = std::process::id();
        let gen = Netns::create(&format!("ssbench-{tag}-{pid}-gen"))?;
        let rx = Netns::create(&format!("ssbench-{tag}-{pid}-rx"))?;
        netns::veth(&gen, GEN_IF, &rx, RX_IF)?;
        gen.add_addr(GEN_IF, &format!("{GEN_ADDR}/24"))?;
        rx.add_addr(RX_IF, &format!("{RX_ADDR}/24"))?;
        let gen_if = iface(&gen, GEN_IF)?;
        let rx_if = iface(&rx, RX_IF)?;
        Ok(Testbed { gen, rx, gen_if, rx_if })
    }

    /// RX packet/drop counters of the receiving veth (from `ip -s -j link`).
    pub fn rx_stats(&self) -> Result<Value> {
        let out = self.rx.run("ip", &["-s", "-j", "link", "show", "dev", RX_IF])?;
        let v: Value = serde_json::from_str(&out)?;
        Ok(v[0]["stats64"].clone())
    }
}

/// Attach `prog` natively on the receiver veth, run `f`, detach (also when `f` fails).
pub fn with_attached<R>(
    tb: &Testbed,
    filter: &mut Filter,
    prog_name: Option<&str>,
    f: impl FnOnce(&mut Filter) -> Result<R>,
) -> Result<R> {
    let ifindex = tb.rx_if.ifindex;
    let link = tb.rx.enter(|| {
        with_prog(filter, prog_name, |p| {
            p.attach_to_if_index(ifindex, XdpMode::Driver)
                .map_err(|e| anyhow!("attaching {} natively to {RX_IF}: {e:#}", prog_name.unwrap_or("sipshield")))
        })
    })?;
    let r = f(filter);
    let d = with_prog(filter, prog_name, |p| p.detach(link).map_err(|e| anyhow!("detach: {e:#}")));
    let r = r?;
    d?;
    Ok(r)
}

/// Run `f` on the filter's program (`None`) or on a helper program (`Some(name)`, see
/// [`with_helper`]).
pub fn with_prog<R>(filter: &mut Filter, name: Option<&str>, f: impl FnOnce(&mut Xdp) -> Result<R>) -> Result<R> {
    match name {
        None => f(filter.program()?),
        Some(n) => with_helper(n, f),
    }
}

/// The benchmarks' helper programs (`sipshield_gen`, `sipshield_pass`) and the generator's
/// map `GEN_IFINDEX`: an object of their own (`bench/ebpf`, built by `bench/build.rs`), so
/// the controller never loads or pins them.
static HELPER_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipshield-bench-xdp"));

/// The helper object, loaded on first use and kept for the whole run.
static HELPERS: Mutex<Option<Ebpf>> = Mutex::new(None);

/// Run `f` on the helper object, loading it on first use.
fn with_helpers<R>(f: impl FnOnce(&mut Ebpf) -> Result<R>) -> Result<R> {
    let mut helpers = HELPERS.lock().map_err(|_| anyhow!("helper object lock poisoned"))?;
    if helpers.is_none() {
        *helpers = Some(Ebpf::load(HELPER_OBJECT).context("loading the benchmark helper object")?);
    }
    f(helpers.as_mut().expect("loaded above"))
}

/// Run `f` on the helper program `name`, loading it on first use.
pub fn with_helper<R>(name: &str, f: impl FnOnce(&mut Xdp) -> Result<R>) -> Result<R> {
    with_helpers(|ebpf| {
        let prog: &mut Xdp =
            ebpf.program_mut(name).ok_or_else(|| anyhow!("the helper object has no program {name}"))?.try_into()?;
        if prog.fd().is_err() {
            prog.load().with_context(|| format!("loading the helper program {name}"))?;
        }
        f(prog)
    })
}

/// Point `sipshield_gen` at `ifindex` (its map `GEN_IFINDEX`).
fn set_gen_ifindex(ifindex: u32) -> Result<()> {
    with_helpers(|ebpf| {
        let map = ebpf.map_mut("GEN_IFINDEX").ok_or_else(|| anyhow!("the helper object has no map GEN_IFINDEX"))?;
        let mut a: aya::maps::Array<_, u32> = aya::maps::Array::try_from(map)?;
        a.set(0, ifindex, 0)?;
        Ok(())
    })
}

// ------------------------------------------------------------------------------------------
// Live frames.
// ------------------------------------------------------------------------------------------

/// What one [`blast`] did.
#[derive(Clone, Debug, Default)]
pub struct Blast {
    /// Frames handed to the generator (each is redirected out of the generator's veth).
    pub sent: u64,
    /// Sum of the wall-clock time of the test-run syscalls (includes the kernel's fixed per-call
    /// cost: installing the program as XDP dispatcher and two RCU grace periods).
    pub wall_secs: f64,
    /// Sum of the kernel-reported time of the frame loops (duration × repeat per call).
    pub kernel_secs: f64,
    pub calls: usize,
    /// Frames the receiver dropped, when the caller counts them (see [`harness_floor`]).
    pub dropped: u64,
}

/// Send `frames` round-robin, `per_frame` times each, out of the generator's veth with the
/// `sipshield_gen` program in live-frames mode. Runs on a thread inside the generator
/// namespace. Bounded by [`MAX_FRAMES_PER_BLAST`] and [`MAX_BLAST_SECS`].
pub fn blast(tb: &Testbed, frames: &[Vec<u8>], per_frame: u32) -> Result<Blast> {
    let total = frames.len() as u64 * per_frame as u64;
    if total > MAX_FRAMES_PER_BLAST {
        bail!("{total} frames exceed the per-run ceiling of {MAX_FRAMES_PER_BLAST}");
    }
    set_gen_ifindex(tb.gen_if.ifindex)?;
    tb.gen.enter(|| {
        with_helper("sipshield_gen", |gen| {
            let mut b = Blast::default();
            let t0 = Instant::now();
            for f in frames {
                if interrupted() {
                    bail!("interrupted");
                }
                let t = Instant::now();
                let r = gen
                    .test_run(TestRunOptions {
                        data_in: Some(f),
                        repeat: per_frame,
                        attrs: TestRunAttrs::new().xdp_live_frames(64),
                        ..Default::default()
                    })
                    .map_err(|e| anyhow!("live-frames BPF_PROG_TEST_RUN: {e:#}"))?;
                b.wall_secs += t.elapsed().as_secs_f64();
                b.kernel_secs += r.duration.as_nanos() as f64 * per_frame as f64 / 1e9;
                b.sent += per_frame as u64;
                b.calls += 1;
                if t0.elapsed().as_secs_f64() > MAX_BLAST_SECS {
                    eprintln!("  (blast stopped at the {MAX_BLAST_SECS} s ceiling after {} frames)", b.sent);
                    break;
                }
            }
            Ok(b)
        })
    })
}

/// Fixed wall-clock cost of one live-frames test run (program swap + RCU grace periods),
/// measured with runs of 2 frames each (median of `n`); those frames do go out of the veth.
pub fn call_overhead(tb: &Testbed, frame: &[u8], n: usize) -> Result<f64> {
    let mut v = vec![];
    for _ in 0..n {
        let b = blast(tb, &[frame.to_vec()], 2)?;
        v.push(b.wall_secs - b.kernel_secs);
    }
    Ok(median(&mut v))
}

// ------------------------------------------------------------------------------------------
// Harness floor: an empty XDP_DROP program on the receiver.
// ------------------------------------------------------------------------------------------

/// `bpf(2)` with a zeroed 128-byte attribute block filled by `fill`.
fn bpf_call(cmd: libc::c_long, fill: impl FnOnce(&mut [u8; 128])) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    let mut attr = [0u64; 16];
    // SAFETY: [u64; 16] and [u8; 128] have the same size; u8 has no alignment requirement.
    let bytes: &mut [u8; 128] = unsafe { &mut *(attr.as_mut_ptr() as *mut [u8; 128]) };
    fill(bytes);
    // SAFETY: attr is a valid, fully initialised buffer of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128usize) };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor we now own.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(r as i32) })
}

/// Load `r0 = XDP_DROP; exit` (2 instructions) as an XDP program.
fn load_xdp_drop() -> Result<std::os::fd::OwnedFd> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_XDP: u32 = 6;
    const BPF_XDP: u32 = 37;
    // mov64 r0, 1 (XDP_DROP); exit
    let insns: [u64; 2] =
        [u64::from_le_bytes([0xb7, 0x00, 0, 0, 1, 0, 0, 0]), u64::from_le_bytes([0x95, 0, 0, 0, 0, 0, 0, 0])];
    let license = b"GPL\0";
    bpf_call(BPF_PROG_LOAD, |a| {
        a[0..4].copy_from_slice(&BPF_PROG_TYPE_XDP.to_ne_bytes());
        a[4..8].copy_from_slice(&2u32.to_ne_bytes());
        a[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
        a[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
        a[48..56].copy_from_slice(b"ssb_drop");
        a[68..72].copy_from_slice(&BPF_XDP.to_ne_bytes());
    })
    .map_err(|e| anyhow!("loading the 2-instruction XDP_DROP program: {e}"))
}

/// Attach a program fd natively to `ifindex` (in the calling thread's namespace) with a BPF
/// link; closing the returned fd detaches it.
fn link_xdp(prog: &std::os::fd::OwnedFd, ifindex: u32) -> Result<std::os::fd::OwnedFd> {
    const BPF_LINK_CREATE: libc::c_long = 28;
    const BPF_XDP: u32 = 37;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    let fd = prog.as_raw_fd() as u32;
    bpf_call(BPF_LINK_CREATE, |a| {
        a[0..4].copy_from_slice(&fd.to_ne_bytes());
        a[4..8].copy_from_slice(&ifindex.to_ne_bytes());
        a[8..12].copy_from_slice(&BPF_XDP.to_ne_bytes());
        a[12..16].copy_from_slice(&XDP_FLAGS_DRV_MODE.to_ne_bytes());
    })
    .map_err(|e| anyhow!("attaching the XDP_DROP program to {RX_IF}: {e}"))
}

/// The harness alone: the same frames into an empty XDP_DROP program on the receiver (frames
/// counted from the veth's XDP packet counter, `ip -s link` rx packets).
pub fn harness_floor(tb: &Testbed, frames: &[Vec<u8>], per: u32) -> Result<Blast> {
    let prog = load_xdp_drop()?;
    let ifindex = tb.rx_if.ifindex;
    let link = tb.rx.enter(|| link_xdp(&prog, ifindex))?;
    let r = (|| {
        blast(tb, &frames[..frames.len().min(4)], 4000)?;
        let before = tb.rx_stats()?["rx"]["packets"].as_u64().unwrap_or(0);
        let mut b = blast(tb, frames, per)?;
        let after = tb.rx_stats()?["rx"]["packets"].as_u64().unwrap_or(0);
        b.dropped = after - before;
        Ok(b)
    })();
    drop(link);
    r
}

// ------------------------------------------------------------------------------------------
// Per-packet cost (BPF_PROG_TEST_RUN with repeat).
// ------------------------------------------------------------------------------------------

/// Average ns per run of `prog` on `frame` (kernel-measured), and the XDP action.
pub fn run_repeat(prog: &mut Xdp, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
        .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

/// Per-packet cost of `prog_name` over `frames`: each frame run `repeat` times, `rounds`
/// times; returns (actions of the frames, median over rounds of the mean over frames, ns).
pub fn cost(
    filter: &mut Filter,
    prog_name: Option<&str>,
    frames: &[Vec<u8>],
    repeat: u32,
    rounds: usize,
) -> Result<(Vec<u32>, f64)> {
    with_prog(filter, prog_name, |prog| {
        let mut actions = vec![];
        let mut per_round = vec![];
        for round in 0..rounds {
            let mut sum = 0.0;
            for f in frames {
                let (a, ns) = run_repeat(prog, f, repeat)?;
                if round == 0 {
                    actions.push(a);
                }
                sum += ns;
            }
            per_round.push(sum / frames.len() as f64);
        }
        Ok((actions, median(&mut per_round)))
    })
}

/// Per-packet cost of several cases measured round-robin, so a slow phase of a noisy VM hits
/// every case alike: each round runs every case (its program over its frames, each frame
/// `repeat` times). Returns per case: (actions of its frames, ns per round).
pub fn cost_rounds(
    filter: &mut Filter,
    cases: &[(Option<&str>, &[Vec<u8>])],
    repeat: u32,
    rounds: usize,
) -> Result<Vec<(Vec<u32>, Vec<f64>)>> {
    let mut out: Vec<(Vec<u32>, Vec<f64>)> = cases.iter().map(|_| (vec![], vec![])).collect();
    for round in 0..rounds {
        for (ci, (prog_name, frames)) in cases.iter().enumerate() {
            let sum = with_prog(filter, *prog_name, |prog| {
                let mut sum = 0.0;
                for f in frames.iter() {
                    let (a, ns) = run_repeat(prog, f, repeat)?;
                    if round == 0 {
                        out[ci].0.push(a);
                    }
                    sum += ns;
                }
                Ok(sum)
            })?;
            out[ci].1.push(sum / frames.len() as f64);
        }
    }
    Ok(out)
}

pub fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

pub fn action_name(a: u32) -> &'static str {
    match a {
        0 => "ABORTED",
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}

// ------------------------------------------------------------------------------------------
// Misc.
// ------------------------------------------------------------------------------------------

pub fn require_root() -> Result<()> {
    if unsafe { libc::geteuid() } != 0 {
        bail!("this benchmark needs root (BPF, network namespaces)");
    }
    Ok(())
}

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

/// Kernel facts that change BPF per-packet costs (JIT, hardening, Spectre v2 mitigation).
pub fn env_json() -> Value {
    let rd = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    serde_json::json!({
        "kernel": kernel_release(), "cpus": ncpus(), "cpu": cpu_model(),
        "bpf_jit_enable": rd("/proc/sys/net/core/bpf_jit_enable"),
        "bpf_jit_harden": rd("/proc/sys/net/core/bpf_jit_harden"),
        "bpf_stats_enabled": rd("/proc/sys/kernel/bpf_stats_enabled"),
        "spectre_v2": rd("/sys/devices/system/cpu/vulnerabilities/spectre_v2"),
        "virtualized": fs::read_to_string("/proc/cpuinfo").map(|s| s.contains(" hypervisor")).unwrap_or(false),
    })
}

pub fn ncpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub fn pass_fail(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// Human pps.
pub fn mpps(pps: f64) -> String {
    format!("{:.3} Mpps", pps / 1e6)
}

/// Deterministic SplitMix64.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// One throughput run: frames sent and dropped, kernel-measured loop time and wall time.
#[derive(Clone, Debug, Default)]
pub struct Run {
    pub sent: u64,
    pub dropped: u64,
    pub wall_secs: f64,
    pub kernel_secs: f64,
    pub calls: usize,
}

impl Run {
    /// Drops per second of frame-loop time (kernel-measured).
    pub fn pps(&self) -> f64 {
        self.dropped as f64 / self.kernel_secs
    }
    /// Drops per second of wall-clock syscall time (includes the fixed per-call cost).
    /// ns per frame of the frame loop.
    pub fn ns_per_frame(&self) -> f64 {
        1e9 / self.pps()
    }
    /// Receiver-side ns per frame: this run's per-frame time minus the harness floor's.
    pub fn receiver_ns(&self, floor: &Run) -> f64 {
        self.ns_per_frame() - floor.ns_per_frame()
    }
    pub fn pps_wall(&self) -> f64 {
        self.dropped as f64 / self.wall_secs
    }
    pub fn json(&self) -> Value {
        serde_json::json!({
            "sent": self.sent, "dropped": self.dropped, "calls": self.calls,
            "kernel_secs": self.kernel_secs, "wall_secs": self.wall_secs,
            "pps": self.pps(), "pps_wall": self.pps_wall(),
            "dropped_fraction": self.dropped as f64 / self.sent.max(1) as f64,
        })
    }
}

/// Warm up with the first few frames, blast `frames` (`per` repetitions each) and count as
/// dropped the growth of `drops` (the measured side's drop counter) across the blast.
pub fn counted_blast(
    tb: &Testbed,
    f: &mut Filter,
    frames: &[Vec<u8>],
    per: u32,
    mut drops: impl FnMut(&mut Filter) -> Result<u64>,
) -> Result<Run> {
    // Warm-up (faults pages in, fills the rate-limit table, lets the peer's state settle).
    blast(tb, &frames[..frames.len().min(4)], 4000)?;
    let before = drops(f)?;
    let b = blast(tb, frames, per)?;
    let after = drops(f)?;
    Ok(Run {
        sent: b.sent,
        dropped: after - before,
        wall_secs: b.wall_secs,
        kernel_secs: b.kernel_secs,
        calls: b.calls,
    })
}

/// One sipshield run: attached natively on the receiver, warm-up, blast, count the drops of
/// `reason` from its counters.
pub fn run_sipshield(tb: &Testbed, f: &mut Filter, frames: &[Vec<u8>], per: u32, reason: u32) -> Result<Run> {
    with_attached(tb, f, None, |f| counted_blast(tb, f, frames, per, |f| Ok(f.stats()?.reason_total(reason).packets)))
}
