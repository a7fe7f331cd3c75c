//! `sipshield-bench`: reproducible measurements of sipshield against its peers.
//!
//! `sipshield-bench blacklist` generates a deterministic blacklist (N public-looking IPv4
//! addresses plus ~1% /16../24 ranges), then measures in one run:
//! * sipshield: parse time, swap (load-until-live) time, cleanup time, a second swap (reload),
//!   kernel memory per entry (/proc/meminfo Slab/SUnreclaim deltas and the maps' `memlock`);
//! * peers on the same list, inside a throwaway network namespace: `ipset restore`
//!   (hash:ip + hash:net) and `nft -f` (plain set + interval set);
//! * per-packet cost with `BPF_PROG_TEST_RUN`: empty list, sipshield's hash+LPM layout, and the
//!   rejected all-in-LPM layout;
//!
//! It prints a table (and with `--json` one JSON object) with ratios and pass/fail targets.
mod experiments;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{lpm_trie::Key, LpmTrie, Map};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sipshield::filter::{map_data, Filter, ListKind, EBPF_OBJECT, PROGRAM_NAME};
use sipshield::lists::{read_list_file, IpList};
use sipshield::packet::{PacketBuilder, SipMessage};
use xdp_common::{BL_NET_CAPACITY, BL_V4_CAPACITY};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Targets (for 1M addresses; the load-time target scales linearly with the entry count).
const TARGET_LOAD_SECS_PER_1M: f64 = 0.7;
const TARGET_SPEEDUP: f64 = 2.5;
const TARGET_BYTES_PER_ENTRY: f64 = 100.0;

#[derive(Parser)]
#[command(name = "sipshield-bench", about = "Benchmarks for sipshield (run as root)")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Blacklist load time, memory per entry and lookup cost vs ipset and nftables.
    Blacklist(BlArgs),
    /// Diagnostic: time BPF_MAP_UPDATE_BATCH of N random keys into a stand-alone hash map
    /// (e.g. under `perf record -g` to see where the kernel spends the load time).
    HashFill(HashFillArgs),
}

#[derive(Args, Clone)]
struct HashFillArgs {
    /// Keys to insert.
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// max_entries of the map (its bucket array is sized from this).
    #[arg(long, default_value_t = BL_V4_CAPACITY)]
    capacity: u32,
    /// Preallocated map (flags 0) instead of BPF_F_NO_PREALLOC.
    #[arg(long)]
    prealloc: bool,
    /// Insert the keys in ascending order instead of random order.
    #[arg(long)]
    sorted: bool,
    /// Also time a fill / delete from this many threads (0 = skip).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Fill/drain rounds.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
}

#[derive(Args, Clone)]
struct BlArgs {
    /// Number of distinct IPv4 addresses (/32) in the generated list.
    #[arg(long, default_value_t = 1_000_000)]
    entries: usize,
    /// Ranges (/16../24) to add, in percent of `--entries`.
    #[arg(long, default_value_t = 1.0)]
    range_percent: f64,
    /// Seed of the list generator (the list is a pure function of seed, entries, range-percent).
    #[arg(long, default_value_t = 0x5195_B1E1)]
    seed: u64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
    /// BPF_PROG_TEST_RUN repeat count of the single-source (cache-hot) measurement.
    #[arg(long, default_value_t = 1_000_000)]
    repeat: u32,
    /// Distinct sources of the "hot, K sources" measurement (each repeated repeat/K times).
    /// Kept small by default: every XDP test run with repeat > 1 makes the kernel swap the
    /// XDP dispatcher twice (two synchronize_rcu()), i.e. several ms per call.
    #[arg(long, default_value_t = 64)]
    diverse: usize,
    /// Distinct sources of the "cold" measurement (each run once: one syscall per packet).
    #[arg(long, default_value_t = 65536)]
    cold: usize,
    /// Per-command time limit for ipset / nft, seconds.
    #[arg(long, default_value_t = 600)]
    peer_timeout: u64,
    /// Skip the ipset / nft measurements.
    #[arg(long)]
    skip_peers: bool,
    /// Skip the full-size all-in-LPM comparison (separate program instance).
    #[arg(long)]
    skip_lpm_full: bool,
    /// Wait before reading /proc/meminfo after a change, milliseconds.
    #[arg(long, default_value_t = 2000)]
    settle_ms: u64,
    /// Directory for the generated files (default: a fresh directory under /tmp, removed at the end).
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Keep the generated files.
    #[arg(long)]
    keep_files: bool,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Blacklist(a) => blacklist(a),
        Cmd::HashFill(a) => hash_fill(a),
    }
}

// ------------------------------------------------------------------------------------------
// Deterministic list generation.
// ------------------------------------------------------------------------------------------

/// SplitMix64: tiny, fast, deterministic.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn u32(&mut self) -> u32 {
        (self.next() >> 32) as u32
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn mask(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Not public-looking: 0/8, 10/8, 127/8, 224/4 and above, the host's 192.0.2.0/24, and the
/// other special-purpose blocks (CGN, link-local, RFC 1918, benchmarking, documentation).
fn excluded(a: u32) -> bool {
    let o = a >> 24;
    let within = |net: u32, len: u32| a & mask(len) == net;
    o == 0
        || o == 10
        || o == 127
        || o >= 224
        || within(0x6440_0000, 10) // 100.64.0.0/10
        || within(0xA9FE_0000, 16) // 169.254.0.0/16
        || within(0xAC10_0000, 12) // 172.16.0.0/12
        || within(0xC000_0000, 24) // 192.0.0.0/24
        || within(0xC000_0200, 24) // 192.0.2.0/24 (the host's)
        || within(0xC0A8_0000, 16) // 192.168.0.0/16
        || within(0xC612_0000, 15) // 198.18.0.0/15
        || within(0xC633_6400, 24) // 198.51.100.0/24
        || within(0xCB00_7100, 24) // 203.0.113.0/24
}

/// Does the /16 `net16` (high 16 bits) touch an excluded block?
fn excluded16(net16: u32) -> bool {
    let first = net16 << 16;
    let last = first | 0xffff;
    // Blocks of length <= 16 contain the whole /16; the /24 blocks lie in these /16s.
    excluded(first) || excluded(last) || matches!(net16, 0xC000 | 0xC633 | 0xCB00)
}

struct Generated {
    /// Addresses in generation (random) order.
    addrs: Vec<u32>,
    set: HashSet<u32>,
    /// (network, prefix length), each in its own /16, so ranges never overlap.
    ranges: Vec<(u32, u8)>,
    by16: HashMap<u32, (u32, u8)>,
}

impl Generated {
    fn new(n: usize, n_ranges: usize, seed: u64) -> Result<Generated> {
        let mut rng = Rng(seed);
        let mut set = HashSet::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        let max_tries = 100 * n as u64 + 1000;
        let mut tries = 0u64;
        while addrs.len() < n {
            tries += 1;
            if tries > max_tries {
                bail!("could not generate {n} distinct addresses in {max_tries} draws");
            }
            let a = rng.u32();
            if !excluded(a) && set.insert(a) {
                addrs.push(a);
            }
        }
        let mut ranges = Vec::with_capacity(n_ranges);
        let mut by16 = HashMap::with_capacity(n_ranges);
        let mut tries = 0u64;
        while ranges.len() < n_ranges {
            tries += 1;
            if tries > 100 * n_ranges as u64 + 1000 {
                bail!("could not place {n_ranges} non-overlapping ranges (one per /16)");
            }
            let net16 = rng.u32() >> 16;
            if excluded16(net16) || by16.contains_key(&net16) {
                continue;
            }
            let len = 16 + rng.below(9) as u32; // 16..=24
            let net = ((net16 << 16) | (rng.u32() & 0xffff)) & mask(len);
            by16.insert(net16, (net, len as u8));
            ranges.push((net, len as u8));
        }
        Ok(Generated { addrs, set, ranges, by16 })
    }

    fn in_range(&self, a: u32) -> bool {
        self.by16.get(&(a >> 16)).is_some_and(|(n, l)| a & mask(*l as u32) == *n)
    }

    fn contains(&self, a: u32) -> bool {
        self.set.contains(&a) || self.in_range(a)
    }

    fn total(&self) -> usize {
        self.addrs.len() + self.ranges.len()
    }

    fn list_text(&self) -> String {
        let mut s = String::with_capacity(self.total() * 16 + 128);
        let _ = writeln!(s, "# sipshield-bench generated blacklist: {} addresses, {} ranges", self.addrs.len(), self.ranges.len());
        for a in &self.addrs {
            let _ = writeln!(s, "{}", ip(*a));
        }
        for (n, l) in &self.ranges {
            let _ = writeln!(s, "{}/{l}", ip(*n));
        }
        s
    }

    fn ipset_text(&self) -> String {
        let mut s = String::with_capacity(self.total() * 40 + 512);
        let hs = self.addrs.len().max(1024).next_power_of_two();
        let hn = self.ranges.len().max(1024).next_power_of_two();
        let _ = writeln!(s, "create {IPSET_V4} hash:ip family inet hashsize {hs} maxelem {}", self.addrs.len() + 1024);
        let _ = writeln!(s, "create {IPSET_NET4} hash:net family inet hashsize {hn} maxelem {}", self.ranges.len() + 1024);
        for a in &self.addrs {
            let _ = writeln!(s, "add {IPSET_V4} {}", ip(*a));
        }
        for (n, l) in &self.ranges {
            let _ = writeln!(s, "add {IPSET_NET4} {}/{l}", ip(*n));
        }
        s
    }

    fn nft_text(&self) -> String {
        let mut s = String::with_capacity(self.total() * 20 + 512);
        let _ = writeln!(s, "table ip {NFT_TABLE} {{");
        let _ = writeln!(s, "  set bl4 {{\n    type ipv4_addr\n    size {}", self.addrs.len() + 1024);
        if !self.addrs.is_empty() {
            s.push_str("    elements = {\n");
            for a in &self.addrs {
                let _ = writeln!(s, "      {},", ip(*a));
            }
            s.push_str("    }\n");
        }
        s.push_str("  }\n");
        s.push_str("  set bl4net {\n    type ipv4_addr\n    flags interval\n");
        if !self.ranges.is_empty() {
            s.push_str("    elements = {\n");
            for (n, l) in &self.ranges {
                let _ = writeln!(s, "      {}/{l},", ip(*n));
            }
            s.push_str("    }\n");
        }
        s.push_str("  }\n}\n");
        s
    }
}

const IPSET_V4: &str = "sipshield_bench_v4";
const IPSET_NET4: &str = "sipshield_bench_net4";
const NFT_TABLE: &str = "sipshield_bench";

// ------------------------------------------------------------------------------------------
// Memory.
// ------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, Default)]
struct Mem {
    slab: i64,
    sunreclaim: i64,
    vmalloc: i64,
}

impl Mem {
    fn read() -> Result<Mem> {
        let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let mut m = Mem::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else { continue };
            let bytes = v.parse::<i64>().unwrap_or(0) * 1024;
            match k {
                "Slab:" => m.slab = bytes,
                "SUnreclaim:" => m.sunreclaim = bytes,
                "VmallocUsed:" => m.vmalloc = bytes,
                _ => {}
            }
        }
        Ok(m)
    }

    fn settled(settle: Duration) -> Result<Mem> {
        std::thread::sleep(settle);
        Mem::read()
    }

    fn minus(self, o: Mem) -> Mem {
        Mem { slab: self.slab - o.slab, sunreclaim: self.sunreclaim - o.sunreclaim, vmalloc: self.vmalloc - o.vmalloc }
    }

    fn json(self, entries: usize) -> Value {
        let per = |v: i64| if entries == 0 { 0.0 } else { v as f64 / entries as f64 };
        json!({
            "slab_delta_bytes": self.slab,
            "sunreclaim_delta_bytes": self.sunreclaim,
            "vmalloc_delta_bytes": self.vmalloc,
            "slab_bytes_per_entry": per(self.slab),
            "sunreclaim_bytes_per_entry": per(self.sunreclaim),
            "slab_plus_vmalloc_bytes_per_entry": per(self.slab + self.vmalloc),
        })
    }
}

/// The kernel's own accounting of a map (`memlock:` in fdinfo; `map_mem_usage` since 6.4).
fn memlock(m: &Map) -> Option<u64> {
    let fd = map_data(m).fd().as_fd().as_raw_fd();
    let text = fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("memlock:").and_then(|v| v.trim().parse().ok()))
}

fn filter_memlock(filter: &Filter, name: &str) -> u64 {
    filter.map(name).ok().and_then(memlock).unwrap_or(0)
}

// ------------------------------------------------------------------------------------------
// Lookup cost.
// ------------------------------------------------------------------------------------------

const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

fn frames(srcs: &[u32], payload: &[u8]) -> Vec<Vec<u8>> {
    srcs.iter()
        .enumerate()
        .map(|(i, s)| {
            PacketBuilder::udp(IpAddr::V4(ip(*s)), IpAddr::V4(HOST), 5060 + (i % 1000) as u16, 5060)
                .payload(payload)
                .build()
        })
        .collect()
}

struct Probes {
    miss: Vec<Vec<u8>>,
    hit: Vec<Vec<u8>>,
    range: Vec<Vec<u8>>,
    /// Source addresses of `hit`, in the same order.
    hit_srcs: Vec<u32>,
}

fn make_probes(g: &Generated, count: usize, seed: u64) -> Result<Probes> {
    let mut rng = Rng(seed ^ 0xD1FF_E4E7_0000_0001);
    let payload = SipMessage::request("OPTIONS", "100", "sip.example.com").build();
    let mut miss = Vec::with_capacity(count);
    let mut seen = HashSet::new();
    let mut tries = 0;
    while miss.len() < count {
        tries += 1;
        if tries > 100 * count + 1000 {
            bail!("could not draw {count} source addresses outside the list");
        }
        let a = rng.u32();
        if !excluded(a) && !g.contains(a) && seen.insert(a) {
            miss.push(a);
        }
    }
    let n = g.addrs.len();
    let hits = count.min(n);
    let hit_srcs: Vec<u32> = (0..hits).map(|i| g.addrs[i * n / hits.max(1)]).collect();
    let mut range = Vec::with_capacity(count);
    let mut tries = 0;
    while !g.ranges.is_empty() && range.len() < count {
        tries += 1;
        if tries > 100 * count + 1000 {
            bail!("could not draw {count} sources inside ranges");
        }
        let (net, len) = g.ranges[rng.below(g.ranges.len() as u64) as usize];
        let a = net | (rng.u32() & !mask(len as u32));
        if !g.set.contains(&a) {
            range.push(a);
        }
    }
    Ok(Probes { miss: frames(&miss, &payload), hit: frames(&hit_srcs, &payload), range: frames(&range, &payload), hit_srcs })
}

#[derive(Clone, Debug)]
struct Lookup {
    scenario: String,
    entries: usize,
    probe: &'static str,
    hot1_ns: f64,
    hotk_ns: f64,
    hotk_sources: usize,
    /// Median of the single runs (robust against preemption and interrupts).
    cold_ns: f64,
    cold_p90_ns: f64,
    cold_mean_ns: f64,
    cold_sources: usize,
    actions: BTreeMap<u32, usize>,
    expected: u32,
}

impl Lookup {
    fn action(&self) -> String {
        let name = |a: u32| match a {
            XDP_DROP => "DROP".to_string(),
            XDP_PASS => "PASS".to_string(),
            o => format!("action {o}"),
        };
        if self.actions.len() == 1 {
            name(*self.actions.keys().next().unwrap())
        } else {
            let parts: Vec<String> = self.actions.iter().map(|(a, n)| format!("{}×{n}", name(*a))).collect();
            format!("MIXED {}", parts.join(" "))
        }
    }
    fn ok(&self) -> bool {
        self.actions.len() == 1 && self.actions.contains_key(&self.expected)
    }
    fn json(&self, empty_cold: f64, empty_hotk: f64) -> Value {
        json!({
            "scenario": self.scenario,
            "entries": self.entries,
            "probe": self.probe,
            "action": self.action(),
            "action_as_expected": self.ok(),
            "hot_1_source_ns": self.hot1_ns,
            "hot_k_sources_ns": self.hotk_ns,
            "hot_k_sources": self.hotk_sources,
            "cold_median_ns": self.cold_ns,
            "cold_p90_ns": self.cold_p90_ns,
            "cold_mean_ns": self.cold_mean_ns,
            "cold_sources": self.cold_sources,
            "hot_k_minus_empty_ns": self.hotk_ns - empty_hotk,
            "cold_median_minus_empty_ns": self.cold_ns - empty_cold,
        })
    }
}

type RunFn<'a> = dyn FnMut(&[u8], u32) -> Result<(u32, f64)> + 'a;

/// Three measurements of one probe set:
/// * hot, 1 source: `repeat` runs of one frame in one syscall (everything cache-hot);
/// * hot, K sources: K frames, each `repeat/K` runs in one syscall, averaged;
/// * cold: up to `cold` distinct frames, one run per syscall (the syscall evicts most of L1/L2
///   between lookups, and the map elements of many sources do not stay cached), averaged.
///   Includes the kernel timer overhead of a single run; compare with the empty-list row.
fn measure(
    run: &mut RunFn<'_>,
    scenario: &str,
    entries: usize,
    probe: &'static str,
    frames: &[Vec<u8>],
    expected: u32,
    a: &BlArgs,
) -> Result<Lookup> {
    if frames.is_empty() {
        bail!("no probe frames for {scenario}/{probe}");
    }
    let mut actions = BTreeMap::new();
    run(&frames[0], 10_000)?; // warm-up
    let (act, hot1) = run(&frames[0], a.repeat)?;
    *actions.entry(act).or_insert(0) += 1;
    let k = a.diverse.clamp(1, frames.len());
    let per = (a.repeat / k as u32).max(1);
    let mut sum = 0.0;
    for f in &frames[..k] {
        let (act, ns) = run(f, per)?;
        *actions.entry(act).or_insert(0) += 1;
        sum += ns;
    }
    let hotk = sum / k as f64;
    let c = a.cold.clamp(1, frames.len());
    let mut cold = Vec::with_capacity(c);
    for f in &frames[..c] {
        let (act, ns) = run(f, 1)?;
        *actions.entry(act).or_insert(0) += 1;
        cold.push(ns);
    }
    let cold_mean = cold.iter().sum::<f64>() / c as f64;
    cold.sort_by(|x, y| x.total_cmp(y));
    let pct = |p: f64| cold[((c - 1) as f64 * p).round() as usize];
    let l = Lookup {
        scenario: scenario.to_string(),
        entries,
        probe,
        hot1_ns: hot1,
        hotk_ns: hotk,
        hotk_sources: k,
        cold_ns: pct(0.5),
        cold_p90_ns: pct(0.9),
        cold_mean_ns: cold_mean,
        cold_sources: c,
        actions,
        expected,
    };
    eprintln!(
        "  {:<34} {:<6} {:>6.1} ns hot, {:>6.1} ns hot×{}, {:>6.1} ns cold×{} (median)  {}",
        scenario,
        probe,
        l.hot1_ns,
        l.hotk_ns,
        k,
        l.cold_ns,
        c,
        l.action()
    );
    Ok(l)
}

fn xdp_run(prog: &mut Xdp, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
        .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

/// `struct bpf_lpm_trie_key` for IPv4 (the layout of aya's `Key<[u8; 4]>`).
#[repr(C)]
#[derive(Clone, Copy)]
struct LpmKey4 {
    prefixlen: u32,
    addr: [u8; 4],
}

/// Insert (prefix, addr) pairs into an IPv4 LPM trie: `BPF_MAP_UPDATE_BATCH` when the kernel
/// supports it for tries, else one `BPF_MAP_UPDATE_ELEM` per entry. Returns the method used.
fn lpm_fill(m: &mut Map, entries: &[([u8; 4], u32)]) -> Result<&'static str> {
    let keys: Vec<LpmKey4> = entries.iter().map(|(a, l)| LpmKey4 { prefixlen: *l, addr: *a }).collect();
    let ones = vec![1u32; keys.len()];
    match sipshield::bpfsys::update_batch(map_data(m).fd().as_fd(), &keys, &ones) {
        Ok(()) => Ok("BPF_MAP_UPDATE_BATCH"),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(524) /* ENOTSUPP */ | Some(libc::EOPNOTSUPP)) => {
            let mut t: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(m)?;
            for (a, l) in entries {
                t.insert(&Key::new(*l, *a), 1, 0).map_err(|e| anyhow!("LPM insert {}/{l}: {e}", Ipv4Addr::from(*a)))?;
            }
            Ok("BPF_MAP_UPDATE_ELEM per entry")
        }
        Err(e) => Err(anyhow!("LPM batch insert: {e}")),
    }
}

// ------------------------------------------------------------------------------------------
// Peers (ipset, nft) in a throwaway network namespace.
// ------------------------------------------------------------------------------------------

struct Netns {
    name: String,
    file: fs::File,
}

impl Netns {
    fn create(name: &str) -> Result<Netns> {
        // A leftover of an interrupted run with the same name (pid reuse) is ours to remove.
        let _ = Command::new("ip").args(["netns", "del", name]).stderr(Stdio::null()).status();
        let st = Command::new("ip").args(["netns", "add", name]).status().context("running ip netns add")?;
        if !st.success() {
            bail!("ip netns add {name} failed");
        }
        let file = fs::File::open(format!("/run/netns/{name}")).with_context(|| format!("opening /run/netns/{name}"))?;
        Ok(Netns { name: name.to_string(), file })
    }

    /// A command that runs inside the namespace (setns in the child before exec).
    fn cmd(&self, prog: &str, args: &[&str]) -> Command {
        let mut c = Command::new(prog);
        c.args(args);
        let fd = self.file.as_raw_fd();
        // SAFETY: setns is async-signal-safe; fd stays open in the child until exec.
        unsafe {
            c.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.name]).status();
    }
}

/// Run `cmd` (stdin from `input` if given) with a time limit; returns (seconds, stdout).
/// Output goes to files so a chatty command cannot block on a full pipe.
fn run_timed(mut cmd: Command, input: Option<&Path>, dir: &Path, tag: &str, timeout: Duration) -> Result<(f64, String)> {
    let out_path = dir.join(format!("{tag}.stdout"));
    let err_path = dir.join(format!("{tag}.stderr"));
    cmd.stdout(fs::File::create(&out_path)?).stderr(fs::File::create(&err_path)?);
    cmd.stdin(match input {
        Some(p) => Stdio::from(fs::File::open(p).with_context(|| format!("opening {}", p.display()))?),
        None => Stdio::null(),
    });
    let t = Instant::now();
    let mut child = cmd.spawn().with_context(|| format!("starting {tag}"))?;
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if t.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!("{tag}: no result after {} s (killed)", timeout.as_secs());
        }
        std::thread::sleep(Duration::from_micros(500));
    };
    let secs = t.elapsed().as_secs_f64();
    let stdout = fs::read_to_string(&out_path).unwrap_or_default();
    if !status.success() {
        let err = fs::read_to_string(&err_path).unwrap_or_default();
        let err: String = err.lines().take(10).collect::<Vec<_>>().join("\n");
        bail!("{tag} failed ({status}): {err}");
    }
    Ok((secs, stdout))
}

struct PeerResult {
    name: &'static str,
    what: String,
    load_secs: f64,
    delete_secs: f64,
    mem: Mem,
    extra: Value,
}

fn run_peers(g: &Generated, dir: &Path, a: &BlArgs, probe_hit: u32, settle: Duration) -> Result<Vec<PeerResult>> {
    let timeout = Duration::from_secs(a.peer_timeout);
    let ns = Netns::create(&format!("sipshield-bench-{}", std::process::id()))?;
    let mut out = vec![];
    let total = g.total();

    // ipset: hash:ip for addresses, hash:net for ranges, sized up front (its best case).
    let ipset_file = dir.join("blacklist.ipset");
    fs::write(&ipset_file, g.ipset_text())?;
    eprintln!("ipset restore of {total} entries (netns {}) ...", ns.name);
    let before = Mem::settled(settle)?;
    let (load, _) = run_timed(ns.cmd("ipset", &["restore"]), Some(&ipset_file), dir, "ipset-restore", timeout)?;
    let after = Mem::settled(settle)?;
    let (_, listing) = run_timed(ns.cmd("ipset", &["list", "-t"]), None, dir, "ipset-list", timeout)?;
    let field = |set: &str, key: &str| -> Option<u64> {
        let mut in_set = false;
        for l in listing.lines() {
            if let Some(n) = l.strip_prefix("Name: ") {
                in_set = n.trim() == set;
            } else if in_set {
                if let Some(v) = l.strip_prefix(key) {
                    return v.trim().parse().ok();
                }
            }
        }
        None
    };
    let n_v4 = field(IPSET_V4, "Number of entries:").unwrap_or(0);
    let n_net = field(IPSET_NET4, "Number of entries:").unwrap_or(0);
    let size_mem = field(IPSET_V4, "Size in memory:").unwrap_or(0) + field(IPSET_NET4, "Size in memory:").unwrap_or(0);
    if n_v4 as usize != g.addrs.len() || n_net as usize != g.ranges.len() {
        bail!("ipset holds {n_v4} + {n_net} entries, expected {} + {}", g.addrs.len(), g.ranges.len());
    }
    let hit = ip(probe_hit).to_string();
    run_timed(ns.cmd("ipset", &["test", IPSET_V4, &hit]), None, dir, "ipset-test", timeout)
        .context("ipset test of a listed address")?;
    let (del, _) = run_timed(ns.cmd("ipset", &["destroy"]), None, dir, "ipset-destroy", timeout)?;
    out.push(PeerResult {
        name: "ipset",
        what: "ipset restore: hash:ip + hash:net (hashsize preset, no resize)".into(),
        load_secs: load,
        delete_secs: del,
        mem: after.minus(before),
        extra: json!({"entries_v4": n_v4, "entries_net4": n_net, "ipset_size_in_memory_bytes": size_mem,
                      "ipset_bytes_per_entry": size_mem as f64 / total as f64}),
    });
    eprintln!("  ipset restore {load:.3} s, destroy {del:.3} s");
    let _ = fs::remove_file(&ipset_file);

    // nftables: one plain ipv4_addr set (addresses) and one interval set (ranges), one `nft -f`.
    let nft_file = dir.join("blacklist.nft");
    fs::write(&nft_file, g.nft_text())?;
    eprintln!("nft -f of {total} entries ...");
    let before = Mem::settled(settle)?;
    let nft_path = nft_file.to_string_lossy().to_string();
    let (load, _) = run_timed(ns.cmd("nft", &["-f", &nft_path]), None, dir, "nft-load", timeout)?;
    let after = Mem::settled(settle)?;
    let elem = format!("{{ {hit} }}");
    run_timed(ns.cmd("nft", &["get", "element", "ip", NFT_TABLE, "bl4", &elem]), None, dir, "nft-get", timeout)
        .context("nft get element of a listed address")?;
    if let Some((n, l)) = g.ranges.first() {
        let e = format!("{{ {} }}", ip(*n | (!mask(*l as u32) & 0x5)));
        run_timed(ns.cmd("nft", &["get", "element", "ip", NFT_TABLE, "bl4net", &e]), None, dir, "nft-get-net", timeout)
            .context("nft get element inside a range")?;
    }
    let (del, _) = run_timed(ns.cmd("nft", &["delete", "table", "ip", NFT_TABLE]), None, dir, "nft-delete", timeout)?;
    out.push(PeerResult {
        name: "nft",
        what: "nft -f: plain ipv4_addr set (size preset) + interval set".into(),
        load_secs: load,
        delete_secs: del,
        mem: after.minus(before),
        extra: json!({}),
    });
    eprintln!("  nft -f {load:.3} s, delete table {del:.3} s");
    let _ = fs::remove_file(&nft_file);
    drop(ns);
    Ok(out)
}

// ------------------------------------------------------------------------------------------
// The benchmark.
// ------------------------------------------------------------------------------------------

/// Fill `map` with `keys` from `threads` threads (disjoint chunks, concurrent
/// BPF_MAP_UPDATE_BATCH calls; the hash map locks per bucket), then delete them the same way
/// with BPF_MAP_DELETE_BATCH. Returns (fill secs, delete secs).
fn parallel_fill_drain(map: std::os::fd::BorrowedFd<'_>, keys: &[[u8; 4]], threads: usize) -> Result<(f64, f64)> {
    let ones = vec![1u32; keys.len()];
    let chunk = keys.len().div_ceil(threads.max(1)).max(1);
    let t = Instant::now();
    let r: Vec<std::io::Result<()>> = std::thread::scope(|sc| {
        let hs: Vec<_> = keys
            .chunks(chunk)
            .zip(ones.chunks(chunk))
            .map(|(k, v)| sc.spawn(move || sipshield::bpfsys::update_batch(map, k, v)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("fill thread")).collect()
    });
    let fill = t.elapsed().as_secs_f64();
    for x in r {
        x.context("parallel fill")?;
    }
    let t = Instant::now();
    let r: Vec<std::io::Result<()>> = std::thread::scope(|sc| {
        let hs: Vec<_> = keys.chunks(chunk).map(|k| sc.spawn(move || sipshield::bpfsys::delete_batch(map, k))).collect();
        hs.into_iter().map(|h| h.join().expect("delete thread")).collect()
    });
    let del = t.elapsed().as_secs_f64();
    for x in r {
        x.context("parallel delete")?;
    }
    Ok((fill, del))
}

fn hash_fill(a: HashFillArgs) -> Result<()> {
    if a.entries > a.capacity as usize {
        bail!("--entries exceeds --capacity");
    }
    let g = Generated::new(a.entries, 0, 0x5195_B1E1)?;
    let mut keys: Vec<[u8; 4]> = g.addrs.iter().map(|x| x.to_be_bytes()).collect();
    if a.sorted {
        keys.sort_unstable();
    }
    let ones = vec![1u32; keys.len()];
    let flags = if a.prealloc { 0 } else { 1 }; // BPF_F_NO_PREALLOC
    let fd = experiments::map_create(experiments::BPF_MAP_TYPE_HASH, 4, 4, a.capacity, flags, "sb_hashfill")?;
    for r in 0..a.rounds.clamp(1, 100) {
        let t = Instant::now();
        sipshield::bpfsys::update_batch(fd.as_fd(), &keys, &ones)?;
        let fill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let n = sipshield::bpfsys::drain_hash(fd.as_fd(), 4, 4)?;
        let drain = t.elapsed().as_secs_f64();
        println!(
            "round {r}: fill {} keys (capacity {}, {}{}) {fill:.3} s = {:.0} ns/key; drain {n} {drain:.3} s = {:.0} ns/key",
            keys.len(),
            a.capacity,
            if a.prealloc { "prealloc" } else { "no-prealloc" },
            if a.sorted { ", sorted" } else { "" },
            fill * 1e9 / keys.len() as f64,
            drain * 1e9 / n.max(1) as f64
        );
        if a.threads > 0 {
            let (f, d) = parallel_fill_drain(fd.as_fd(), &keys, a.threads.min(64))?;
            println!("         {} threads: fill {f:.3} s, delete (BPF_MAP_DELETE_BATCH) {d:.3} s", a.threads.min(64));
        }
    }
    Ok(())
}

fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

fn v4_entries(list: &IpList) -> Vec<([u8; 4], u32)> {
    list.net4.iter().map(|(a, l)| (*a, *l as u32)).chain(list.v4.iter().map(|a| (*a, 32))).collect()
}

fn blacklist(a: BlArgs) -> Result<()> {
    if a.entries == 0 {
        bail!("--entries must be at least 1");
    }
    if a.entries > BL_V4_CAPACITY as usize {
        bail!("--entries {} exceeds the blacklist's IPv4 capacity of {BL_V4_CAPACITY}", a.entries);
    }
    let n_ranges = ((a.entries as f64 * a.range_percent / 100.0).round() as usize).min(BL_NET_CAPACITY as usize / 2);
    let settle = Duration::from_millis(a.settle_ms);
    let (dir, remove_dir) = match &a.workdir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("sipshield-bench-{}", std::process::id())), !a.keep_files),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_blacklist(&a, n_ranges, settle, &dir);
    if remove_dir {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

fn run_blacklist(a: &BlArgs, n_ranges: usize, settle: Duration, dir: &Path) -> Result<()> {
    // 1. The list.
    let t = Instant::now();
    let g = Generated::new(a.entries, n_ranges, a.seed)?;
    let list_path = dir.join("blacklist.txt");
    let text = g.list_text();
    fs::write(&list_path, &text).with_context(|| format!("writing {}", list_path.display()))?;
    let gen_secs = t.elapsed().as_secs_f64();
    let total = g.total();
    eprintln!(
        "generated {} addresses + {} ranges = {total} entries in {gen_secs:.2} s → {} ({:.1} MB)",
        g.addrs.len(),
        g.ranges.len(),
        list_path.display(),
        text.len() as f64 / 1e6
    );
    drop(text);
    let probe_count = a.cold.max(a.diverse).max(1);
    let probes = make_probes(&g, probe_count, a.seed)?;

    // 2. sipshield.
    let mem0 = Mem::settled(Duration::from_millis(200))?;
    let t = Instant::now();
    let mut filter = Filter::load_private()?;
    let program_load_secs = t.elapsed().as_secs_f64();
    let mem_prog = Mem::settled(settle)?.minus(mem0);
    let bl_maps = ["BL_V4_0", "BL_V4_1", "BL_V6_0", "BL_V6_1", "BL_NET4_0", "BL_NET4_1", "BL_NET6_0", "BL_NET6_1"];
    let bl_fixed_memlock: u64 = bl_maps.iter().map(|m| filter_memlock(&filter, m)).sum();
    eprintln!("sipshield program + maps loaded in {program_load_secs:.3} s; lookups with the empty blacklist:");

    let mut lookups: Vec<Lookup> = vec![];
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        lookups.push(measure(&mut run, "empty blacklist", 0, "miss", &probes.miss, XDP_PASS, a)?);
    }

    eprintln!("sipshield: parse + swap of {total} entries ...");
    let before = Mem::settled(settle)?;
    let slab_before = experiments::slabinfo();
    let t = Instant::now();
    let list = read_list_file(&list_path, false).map_err(|e| anyhow!("{e}"))?;
    let parse_secs = t.elapsed().as_secs_f64();
    if list.v4.len() != g.addrs.len() || list.net4.len() != g.ranges.len() {
        bail!("parsed {} addresses + {} ranges, generated {} + {}", list.v4.len(), list.net4.len(), g.addrs.len(), g.ranges.len());
    }
    let t = Instant::now();
    let r1 = filter.swap_list(ListKind::Blacklist, &list)?;
    let swap1_wall = t.elapsed().as_secs_f64();
    let after = Mem::settled(settle)?;
    let slab_after = experiments::slabinfo();
    let slab_top = experiments::slab_top(&slab_before, &slab_after, 5);
    let cg_delta = experiments::slab_cg_delta(&slab_before, &slab_after);
    let mem_load = after.minus(before);
    let live = filter.config()?.blacklist_gen & 1;
    let live_v4 = filter_memlock(&filter, &format!("BL_V4_{live}"));
    let idle_v4 = filter_memlock(&filter, &format!("BL_V4_{}", 1 - live));
    let live_n4 = filter_memlock(&filter, &format!("BL_NET4_{live}"));
    let idle_n4 = filter_memlock(&filter, &format!("BL_NET4_{}", 1 - live));
    let memlock_entries = (live_v4 + live_n4) as i64 - (idle_v4 + idle_n4) as i64;
    let bl_total_memlock: u64 = bl_maps.iter().map(|m| filter_memlock(&filter, m)).sum();
    eprintln!(
        "  parse {parse_secs:.3} s, swap (until live) {:.3} s, cleanup {:.4} s; SUnreclaim +{:.1} B/entry, Slab +{:.1} B/entry",
        r1.load_secs,
        r1.cleanup_secs,
        mem_load.sunreclaim as f64 / total as f64,
        mem_load.slab as f64 / total as f64
    );
    if filter.list_len(ListKind::Blacklist)? != total {
        bail!("the kernel holds a different number of entries than loaded");
    }

    let range_hit_expected = if probes.range.is_empty() { None } else { Some(()) };
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "sipshield: hash /32 + LPM ranges";
        lookups.push(measure(&mut run, sc, total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, sc, total, "hit/32", &probes.hit, XDP_DROP, a)?);
        if range_hit_expected.is_some() {
            lookups.push(measure(&mut run, sc, total, "range", &probes.range, XDP_DROP, a)?);
        }
    }

    // Reload: both generations are full until the old one is drained.
    eprintln!("sipshield: reload (second swap of the same list) ...");
    let t = Instant::now();
    let r2 = filter.swap_list(ListKind::Blacklist, &list)?;
    let swap2_wall = t.elapsed().as_secs_f64();
    let after_reload = Mem::settled(settle)?;
    let mem_reload = after_reload.minus(before);
    eprintln!("  reload swap {:.3} s, cleanup {:.3} s", r2.load_secs, r2.cleanup_secs);

    // Capped comparison inside the filter's own maps (BL_NET4 holds at most BL_NET_CAPACITY).
    let cap_v4 = (BL_NET_CAPACITY as usize).saturating_sub(g.ranges.len()).min(g.addrs.len());
    let mut capped = IpList::default();
    for a4 in probes.hit_srcs.iter().chain(g.addrs.iter()) {
        if capped.v4.len() >= cap_v4 {
            break;
        }
        capped.v4.insert(a4.to_be_bytes());
    }
    capped.net4 = list.net4.clone();
    let cap_total = capped.len();
    let cap_hits: Vec<Vec<u8>> =
        probes.hit.iter().zip(&probes.hit_srcs).filter(|(_, s)| capped.v4.contains(&s.to_be_bytes())).map(|(f, _)| f.clone()).collect();
    eprintln!("capped comparison at {cap_total} entries (BL_NET_CAPACITY = {BL_NET_CAPACITY}) ...");
    let rc = filter.swap_list(ListKind::Blacklist, &capped)?;
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "sipshield layout, capped";
        lookups.push(measure(&mut run, sc, cap_total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, sc, cap_total, "hit/32", &cap_hits, XDP_DROP, a)?);
        if range_hit_expected.is_some() {
            lookups.push(measure(&mut run, sc, cap_total, "range", &probes.range, XDP_DROP, a)?);
        }
    }
    // Rejected design in the filter's own maps: every /32 as a prefix in the (empty) other
    // generation's BL_NET4 trie, its BL_V4 hash left empty, then switch the program to it.
    let idle = 1 - (filter.config()?.blacklist_gen & 1);
    let t = Instant::now();
    let method_cap = lpm_fill(filter.map_mut(&format!("BL_NET4_{idle}"))?, &v4_entries(&capped))?;
    let lpm_cap_fill_secs = t.elapsed().as_secs_f64();
    filter.update_config(|c| c.blacklist_gen = idle)?;
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "rejected: all in LPM, capped";
        lookups.push(measure(&mut run, sc, cap_total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, sc, cap_total, "hit/32", &cap_hits, XDP_DROP, a)?);
        if range_hit_expected.is_some() {
            lookups.push(measure(&mut run, sc, cap_total, "range", &probes.range, XDP_DROP, a)?);
        }
    }
    drop(filter);

    // Rejected design at full size: a second instance of the same object whose BL_NET4_0 trie
    // is created with room for every entry (EbpfLoader::set_max_entries); CONFIG is all zero,
    // so the program uses generation 0, whose BL_V4_0 hash stays empty.
    let mut lpm_full: Option<Value> = None;
    let mut breakdown: Option<Value> = None;
    if !a.skip_lpm_full {
        eprintln!("rejected design at full size: {total} entries in one LPM trie (separate instance) ...");
        let cap = (total as u32).max(BL_NET_CAPACITY);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries("BL_NET4_0", cap)
            .load(EBPF_OBJECT)
            .context("loading a second instance with a large BL_NET4_0")?;
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).ok_or_else(|| anyhow!("no program"))?.try_into()?;
            prog.load().map_err(|e| anyhow!("loading the XDP program: {e:#}"))?;
        }
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into()?;
            let mut run = |f: &[u8], r: u32| xdp_run(prog, f, r);
            lookups.push(measure(&mut run, "empty (2nd instance)", 0, "miss", &probes.miss, XDP_PASS, a)?);
        }
        let entries = v4_entries(&list);
        let before = Mem::settled(settle)?;
        let t = Instant::now();
        let method = lpm_fill(ebpf.map_mut("BL_NET4_0").ok_or_else(|| anyhow!("no BL_NET4_0"))?, &entries)?;
        let fill_secs = t.elapsed().as_secs_f64();
        let mem = Mem::settled(settle)?.minus(before);
        let ml = ebpf.map("BL_NET4_0").and_then(memlock).unwrap_or(0);
        eprintln!("  filled in {fill_secs:.3} s ({method}); SUnreclaim +{:.1} B/entry", mem.sunreclaim as f64 / total as f64);
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into()?;
            let mut run = |f: &[u8], r: u32| xdp_run(prog, f, r);
            let sc = "rejected: all in LPM, full size";
            lookups.push(measure(&mut run, sc, total, "miss", &probes.miss, XDP_PASS, a)?);
            lookups.push(measure(&mut run, sc, total, "hit/32", &probes.hit, XDP_DROP, a)?);
            if range_hit_expected.is_some() {
                lookups.push(measure(&mut run, sc, total, "range", &probes.range, XDP_DROP, a)?);
            }
        }
        // Where the swap time goes: the same steps as swap_list, timed one by one on the
        // (empty) generation-1 maps of this instance.
        let t = Instant::now();
        let keys4: Vec<[u8; 4]> = list.v4.iter().copied().collect();
        let ones4 = vec![1u32; keys4.len()];
        let collect_secs = t.elapsed().as_secs_f64();
        let fd_of = |e: &aya::Ebpf, n: &str| -> Result<std::os::fd::OwnedFd> {
            let m = e.map(n).ok_or_else(|| anyhow!("no map {n}"))?;
            Ok(map_data(m).fd().as_fd().try_clone_to_owned()?)
        };
        let h1 = fd_of(&ebpf, "BL_V4_1")?;
        let t = Instant::now();
        sipshield::bpfsys::update_batch(h1.as_fd(), &keys4, &ones4).context("hash fill")?;
        let hash_fill_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let drained = sipshield::bpfsys::drain_hash(h1.as_fd(), 4, 4)?;
        let hash_drain_secs = t.elapsed().as_secs_f64();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let (par_fill_secs, par_drain_secs) = parallel_fill_drain(h1.as_fd(), &keys4, threads)?;
        let ranges: Vec<([u8; 4], u32)> = list.net4.iter().map(|(a, l)| (*a, *l as u32)).collect();
        let t = Instant::now();
        {
            let mut tr: LpmTrie<_, [u8; 4], u32> =
                LpmTrie::try_from(ebpf.map_mut("BL_NET4_1").ok_or_else(|| anyhow!("no BL_NET4_1"))?)?;
            for (a4, l) in &ranges {
                tr.insert(&Key::new(*l, *a4), 1, 0)?;
            }
        }
        let lpm_single_secs = t.elapsed().as_secs_f64();
        let n1 = fd_of(&ebpf, "BL_NET4_1")?;
        let rkeys: Vec<LpmKey4> = ranges.iter().map(|(a4, l)| LpmKey4 { prefixlen: *l, addr: *a4 }).collect();
        let t = Instant::now();
        let lpm_delete = sipshield::bpfsys::delete_batch(n1.as_fd(), &rkeys);
        let lpm_delete_batch_secs = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let lpm_batch = lpm_fill(ebpf.map_mut("BL_NET4_1").ok_or_else(|| anyhow!("no BL_NET4_1"))?, &ranges);
        let lpm_batch_secs = t.elapsed().as_secs_f64();
        breakdown = Some(json!({
            "collect_keys_secs": collect_secs,
            "hash_update_batch_secs": hash_fill_secs,
            "hash_update_batch_ns_per_entry": hash_fill_secs * 1e9 / keys4.len().max(1) as f64,
            "hash_drain_secs": hash_drain_secs,
            "hash_drained": drained,
            "threads": threads,
            "hash_update_batch_parallel_secs": par_fill_secs,
            "hash_delete_batch_parallel_secs": par_drain_secs,
            "lpm_ranges_single_insert_secs": lpm_single_secs,
            "lpm_ranges_delete_batch_secs": lpm_delete.as_ref().map(|_| lpm_delete_batch_secs).ok(),
            "lpm_ranges_delete_batch_error": lpm_delete.err().map(|e| e.to_string()),
            "lpm_ranges_batch_insert_secs": lpm_batch.as_ref().map(|_| lpm_batch_secs).ok(),
            "lpm_ranges_batch_insert_method": lpm_batch.as_ref().ok(),
            "ranges": ranges.len(),
        }));
        eprintln!(
            "  breakdown: collect {collect_secs:.3} s, hash batch fill {hash_fill_secs:.3} s, drain {hash_drain_secs:.3} s, {} ranges one by one {lpm_single_secs:.3} s",
            ranges.len()
        );
        lpm_full = Some(json!({
            "entries": total,
            "max_entries": cap,
            "fill_secs": fill_secs,
            "fill_method": method,
            "memory": mem.json(total),
            "memlock_bytes": ml,
            "memlock_bytes_per_entry": ml as f64 / total as f64,
        }));
        drop(ebpf);
    }
    // Candidate fixes, measured on stand-alone maps with the same keys.
    eprintln!("fix candidates: preallocated hash, mmapable array table, lean parser ...");
    let keys4: Vec<[u8; 4]> = list.v4.iter().copied().collect();
    let fix_prealloc = experiments::prealloc_hash(&keys4, BL_V4_CAPACITY).unwrap_or_else(|e| json!({"error": e.to_string()}));
    let fix_table = experiments::mmap_table(&keys4, BL_V4_CAPACITY as usize).unwrap_or_else(|e| json!({"error": e.to_string()}));
    drop(keys4);
    let lean = experiments::lean_parse(&list_path).map(|(s, a4, n4)| json!({"secs": s, "v4": a4, "net4": n4})).unwrap_or_else(|e| json!({"error": e.to_string()}));
    drop(list);

    // 4. Peers. The maps dropped above are freed by the kernel in the background (RCU,
    // deferred vfree); let that finish before the peers' memory baselines.
    if !a.skip_peers {
        std::thread::sleep(settle * 2);
    }
    let peers = if a.skip_peers {
        vec![]
    } else {
        let hit = *probes.hit_srcs.first().ok_or_else(|| anyhow!("no listed address"))?;
        run_peers(&g, dir, a, hit, settle)?
    };

    // ----------------------------------------------------------------------------- report
    let sip_load = r1.load_secs;
    let sip_total = parse_secs + r1.load_secs;
    let target_load = TARGET_LOAD_SECS_PER_1M * a.entries as f64 / 1e6;
    let per_entry_sunreclaim = mem_load.sunreclaim as f64 / total as f64;
    let per_entry_slab = mem_load.slab as f64 / total as f64;
    let per_entry_cg = cg_delta as f64 / total as f64;
    let per_entry_memlock = memlock_entries as f64 / total as f64;
    let per_entry_amortized = (bl_total_memlock as f64) / total as f64;
    let peer = |n: &str| peers.iter().find(|p| p.name == n);
    let ratio = |p: Option<&PeerResult>, base: f64| p.map(|p| p.load_secs / base);
    let r_ipset_load = ratio(peer("ipset"), sip_load);
    let r_nft_load = ratio(peer("nft"), sip_load);
    let r_ipset_total = ratio(peer("ipset"), sip_total);
    let r_nft_total = ratio(peer("nft"), sip_total);
    let pass_ratio = |r: Option<f64>| r.map(|r| r >= TARGET_SPEEDUP);
    let empty_cold = lookups[0].cold_ns;
    let empty_hotk = lookups[0].hotk_ns;
    let empty2 = lookups.iter().find(|l| l.scenario == "empty (2nd instance)").map(|l| (l.cold_ns, l.hotk_ns));

    let targets = json!({
        "load_secs_max": target_load,
        "load_pass_swap_only": sip_load <= target_load,
        "load_pass_parse_plus_swap": sip_total <= target_load,
        "speedup_min": TARGET_SPEEDUP,
        "faster_than_ipset_pass_swap_only": pass_ratio(r_ipset_load),
        "faster_than_nft_pass_swap_only": pass_ratio(r_nft_load),
        "faster_than_ipset_pass_parse_plus_swap": pass_ratio(r_ipset_total),
        "faster_than_nft_pass_parse_plus_swap": pass_ratio(r_nft_total),
        "bytes_per_entry_max": TARGET_BYTES_PER_ENTRY,
        "memory_pass_sunreclaim": per_entry_sunreclaim <= TARGET_BYTES_PER_ENTRY,
        "memory_pass_slab": per_entry_slab <= TARGET_BYTES_PER_ENTRY,
        "memory_pass_including_fixed_map_overhead": per_entry_amortized <= TARGET_BYTES_PER_ENTRY,
    });
    let lookups_json: Vec<Value> = lookups
        .iter()
        .map(|l| {
            let (c, h) = if l.scenario.contains("full size") || l.scenario.contains("2nd instance") {
                empty2.unwrap_or((empty_cold, empty_hotk))
            } else {
                (empty_cold, empty_hotk)
            };
            l.json(c, h)
        })
        .collect();
    let out = json!({
        "benchmark": "blacklist",
        "kernel": kernel_release(),
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "seed": a.seed,
        "addresses": g.addrs.len(),
        "ranges": g.ranges.len(),
        "entries": total,
        "list_file_bytes": fs::metadata(&list_path).map(|m| m.len()).unwrap_or(0),
        "generate_secs": gen_secs,
        "sipshield": {
            "program_load_secs": program_load_secs,
            "program_load_memory": mem_prog.json(0),
            "parse_secs": parse_secs,
            "load_secs": r1.load_secs,
            "total_secs": sip_total,
            "swap_wall_secs": swap1_wall,
            "cleanup_secs": r1.cleanup_secs,
            "reload_load_secs": r2.load_secs,
            "reload_cleanup_secs": r2.cleanup_secs,
            "reload_wall_secs": swap2_wall,
            "capped_swap_load_secs": rc.load_secs,
            "memory": mem_load.json(total),
            "memory_after_reload": mem_reload.json(total),
            "kmalloc_cg_slab_delta_bytes": cg_delta,
            "kmalloc_cg_slab_bytes_per_entry": per_entry_cg,
            "memlock_live_entries_bytes": memlock_entries,
            "memlock_bytes_per_entry": per_entry_memlock,
            "memlock_bl_maps_empty_bytes": bl_fixed_memlock,
            "memlock_bl_maps_loaded_bytes": bl_total_memlock,
            "bytes_per_entry_including_fixed_map_overhead": per_entry_amortized,
        },
        "peers": peers.iter().map(|p| (p.name.to_string(), json!({
            "what": p.what,
            "load_secs": p.load_secs,
            "delete_secs": p.delete_secs,
            "memory": p.mem.json(total),
            "extra": p.extra,
        }))).collect::<serde_json::Map<_, _>>(),
        "ratios": {
            "ipset_restore_secs / sipshield_load_secs": r_ipset_load,
            "nft_secs / sipshield_load_secs": r_nft_load,
            "ipset_restore_secs / sipshield_total_secs": r_ipset_total,
            "nft_secs / sipshield_total_secs": r_nft_total,
        },
        "lookup": lookups_json,
        "lpm_only_full": lpm_full,
        "swap_breakdown": breakdown,
        "slab_top_growth_during_load": slab_top.iter().map(|(k, v)| json!({"cache": k, "bytes": v})).collect::<Vec<_>>(),
        "fix_candidates": {
            "prealloc_hash": fix_prealloc,
            "mmap_array_table": fix_table,
            "lean_parse": lean,
        },
        "lpm_only_capped": {"entries": cap_total, "fill_secs": lpm_cap_fill_secs, "fill_method": method_cap},
        "targets": targets,
    });

    // Human-readable table.
    let mut s = String::new();
    let pf = |b: bool| if b { "PASS" } else { "FAIL" };
    let pfo = |b: Option<bool>| b.map(pf).unwrap_or("n/a");
    let fx = |r: Option<f64>| r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "n/a".into());
    let _ = writeln!(s, "\nsipshield-bench blacklist — kernel {}, {} CPUs, seed {:#x}", out["kernel"].as_str().unwrap_or(""), out["cpus"], a.seed);
    let _ = writeln!(s, "list: {} addresses + {} ranges (/16../24) = {total} entries, {:.1} MB", g.addrs.len(), g.ranges.len(), out["list_file_bytes"].as_u64().unwrap_or(0) as f64 / 1e6);
    let _ = writeln!(s, "\nLOAD TIME                                              seconds");
    let _ = writeln!(s, "  sipshield parse (read_list_file)                     {parse_secs:>8.3}");
    let _ = writeln!(s, "  sipshield load  (swap_list until live)               {:>8.3}", r1.load_secs);
    let _ = writeln!(s, "  sipshield total (parse + load)                       {sip_total:>8.3}");
    let _ = writeln!(s, "  sipshield cleanup of the old (empty) generation      {:>8.3}", r1.cleanup_secs);
    let _ = writeln!(s, "  sipshield reload: load (2nd swap, until live)        {:>8.3}", r2.load_secs);
    let _ = writeln!(s, "  sipshield reload: cleanup (drain old generation)     {:>8.3}", r2.cleanup_secs);
    for p in &peers {
        let label = if p.name == "ipset" { "ipset restore (hash:ip + hash:net)" } else { "nft -f (plain set + interval set)" };
        let _ = writeln!(s, "  {label:<52} {:>8.3}   (delete {:.3} s)", p.load_secs, p.delete_secs);
    }
    if let Some(l) = &lpm_full {
        let label = format!("rejected all-in-LPM fill ({})", l["fill_method"].as_str().unwrap_or(""));
        let _ = writeln!(s, "  {label:<52} {:>8.3}", l["fill_secs"].as_f64().unwrap_or(0.0));
    }
    let _ = writeln!(s, "\nRATIOS (peer / sipshield)             vs load   vs parse+load");
    let _ = writeln!(s, "  ipset_restore_secs / sipshield        {:>7}   {:>7}", fx(r_ipset_load), fx(r_ipset_total));
    let _ = writeln!(s, "  nft_secs / sipshield                  {:>7}   {:>7}", fx(r_nft_load), fx(r_nft_total));
    let _ = writeln!(s, "\nMEMORY (kernel, after {} ms settle)          bytes/entry", a.settle_ms);
    let _ = writeln!(s, "  sipshield SUnreclaim delta                       {per_entry_sunreclaim:>8.1}");
    let _ = writeln!(s, "  sipshield Slab delta                             {per_entry_slab:>8.1}");
    let _ = writeln!(s, "  sipshield kmalloc-cg-* caches only (slabinfo)    {per_entry_cg:>8.1}   (map objects; excludes their memcg obj_exts in kmalloc-512)");
    let _ = writeln!(s, "  sipshield map memlock (kernel accounting)        {per_entry_memlock:>8.1}");
    let _ = writeln!(
        s,
        "  sipshield all 8 BL maps incl. fixed buckets       {per_entry_amortized:>8.1}   ({:.1} MB fixed when empty, {:.1} MB loaded)",
        bl_fixed_memlock as f64 / 1e6,
        bl_total_memlock as f64 / 1e6
    );
    let _ = writeln!(s, "  sipshield SUnreclaim delta after reload+drain    {:>8.1}", mem_reload.sunreclaim as f64 / total as f64);
    for p in &peers {
        let _ = writeln!(
            s,
            "  {:<6} SUnreclaim {:>6.1} | Slab {:>6.1} | Slab+Vmalloc {:>6.1}",
            p.name,
            p.mem.sunreclaim as f64 / total as f64,
            p.mem.slab as f64 / total as f64,
            (p.mem.slab + p.mem.vmalloc) as f64 / total as f64
        );
        if let Some(b) = p.extra.get("ipset_bytes_per_entry").and_then(|v| v.as_f64()) {
            let _ = writeln!(s, "  ipset  own \"Size in memory\"                    {b:>8.1}");
        }
    }
    if let Some(l) = &lpm_full {
        let m = &l["memory"];
        let _ = writeln!(
            s,
            "  rejected all-in-LPM: SUnreclaim {:.1}, Slab {:.1}, memlock {:.1}",
            m["sunreclaim_bytes_per_entry"].as_f64().unwrap_or(0.0),
            m["slab_bytes_per_entry"].as_f64().unwrap_or(0.0),
            l["memlock_bytes_per_entry"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(s, "\nLOOKUP (BPF_PROG_TEST_RUN, ns per packet; UDP → :5060)");
    let _ = writeln!(s, "  hot×1 = 1 source × {} runs; hot×K = K sources × repeat/K; cold = median over K sources × 1 run per syscall", a.repeat);
    let _ = writeln!(s, "  {:<34} {:>8} {:<7} {:<6} {:>8} {:>8} {:>8} {:>10}", "scenario", "entries", "probe", "action", "hot×1", "hot×K", "cold", "cold−empty");
    for (l, j) in lookups.iter().zip(&lookups_json) {
        let _ = writeln!(
            s,
            "  {:<34} {:>8} {:<7} {:<6} {:>8.1} {:>8.1} {:>8.1} {:>10.1}{}",
            l.scenario,
            l.entries,
            l.probe,
            l.action(),
            l.hot1_ns,
            l.hotk_ns,
            l.cold_ns,
            j["cold_median_minus_empty_ns"].as_f64().unwrap_or(0.0),
            if l.ok() { "" } else { "  <-- unexpected action" }
        );
    }
    let _ = writeln!(s, "  (K = {} for hot×K, {} for cold; capped rows hold {cap_total} entries = BL_NET_CAPACITY)", lookups[0].hotk_sources, lookups[0].cold_sources);
    let f = |v: &Value| v.as_f64().map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    if let Some(b) = out["swap_breakdown"].as_object() {
        let _ = writeln!(s, "\nSWAP BREAKDOWN (same steps as swap_list, timed separately)        seconds");
        let rows = [
            (format!("collect {} keys from the BTreeSet into a Vec", g.addrs.len()), f(&b["collect_keys_secs"]), String::new()),
            (
                "BPF_MAP_UPDATE_BATCH into an empty BL_V4 hash (NO_PREALLOC)".to_string(),
                f(&b["hash_update_batch_secs"]),
                format!("   ({:.0} ns/entry)", b["hash_update_batch_ns_per_entry"].as_f64().unwrap_or(0.0)),
            ),
            ("drain it (BPF_MAP_LOOKUP_AND_DELETE_BATCH) = reload cleanup".to_string(), f(&b["hash_drain_secs"]), String::new()),
            (
                format!("the same fill from {} threads, disjoint key chunks", b["threads"]),
                f(&b["hash_update_batch_parallel_secs"]),
                String::new(),
            ),
            (
                format!("delete with BPF_MAP_DELETE_BATCH of the known keys, {} threads", b["threads"]),
                f(&b["hash_delete_batch_parallel_secs"]),
                String::new(),
            ),
            (format!("{} ranges into the LPM trie, one syscall each", b["ranges"]), f(&b["lpm_ranges_single_insert_secs"]), String::new()),
            ("the same ranges with one BPF_MAP_UPDATE_BATCH".to_string(), f(&b["lpm_ranges_batch_insert_secs"]), String::new()),
        ];
        for (l, v, x) in rows {
            let _ = writeln!(s, "  {l:<64} {v:>8}{x}");
        }
    }
    if !slab_top.is_empty() {
        let _ = writeln!(s, "\nSLAB CACHES THAT GREW DURING THE LOAD (/proc/slabinfo)");
        for (k, v) in &slab_top {
            let _ = writeln!(s, "  {k:<28} {:>+9.1} MB  ({:+.1} B/entry)", *v as f64 / 1e6, *v as f64 / total as f64);
        }
    }
    let fc = &out["fix_candidates"];
    let _ = writeln!(s, "\nFIX CANDIDATES (stand-alone maps, same {} keys)", g.addrs.len());
    let p = &fc["prealloc_hash"];
    if p.get("error").is_none() {
        let _ = writeln!(
            s,
            "  preallocated hash: fill {} s (create {} s); memlock {:.1} B/entry per generation, {:.1} for two",
            f(&p["fill_secs"]),
            f(&p["create_secs"]),
            p["memlock_bytes_per_entry_one_generation"].as_f64().unwrap_or(0.0),
            p["memlock_bytes_per_entry_two_generations"].as_f64().unwrap_or(0.0)
        );
    } else {
        let _ = writeln!(s, "  preallocated hash: {}", p["error"]);
    }
    let t = &fc["mmap_array_table"];
    if t.get("error").is_none() {
        let _ = writeln!(
            s,
            "  mmap array table:  build {} s + copy {} s = {} s; {:.1} B/entry per generation, {:.1} for two; overflow {} keys",
            f(&t["build_secs"]),
            f(&t["copy_secs"]),
            f(&t["load_secs"]),
            t["memlock_bytes_per_entry_one_generation"].as_f64().unwrap_or(0.0),
            t["memlock_bytes_per_entry_two_generations"].as_f64().unwrap_or(0.0),
            t["overflow_keys"]
        );
    } else {
        let _ = writeln!(s, "  mmap array table:  {}", t["error"]);
    }
    let _ = writeln!(s, "  lean IPv4 parser (Vec + sort + dedup): {} s vs read_list_file {parse_secs:.3} s", f(&fc["lean_parse"]["secs"]));
    let _ = writeln!(s, "\nTARGETS");
    let _ = writeln!(s, "  load ≤ {target_load:.2} s:            load {:.3} s {}   parse+load {:.3} s {}", sip_load, pf(sip_load <= target_load), sip_total, pf(sip_total <= target_load));
    let _ = writeln!(s, "  ≥ {TARGET_SPEEDUP}× faster than ipset:   {} {}   parse+load {} {}", fx(r_ipset_load), pfo(pass_ratio(r_ipset_load)), fx(r_ipset_total), pfo(pass_ratio(r_ipset_total)));
    let _ = writeln!(s, "  ≥ {TARGET_SPEEDUP}× faster than nft:     {} {}   parse+load {} {}", fx(r_nft_load), pfo(pass_ratio(r_nft_load)), fx(r_nft_total), pfo(pass_ratio(r_nft_total)));
    let _ = writeln!(
        s,
        "  ≤ {TARGET_BYTES_PER_ENTRY} B/entry:           SUnreclaim {per_entry_sunreclaim:.1} {}   Slab {per_entry_slab:.1} {}   incl. fixed map overhead {per_entry_amortized:.1} {}",
        pf(per_entry_sunreclaim <= TARGET_BYTES_PER_ENTRY),
        pf(per_entry_slab <= TARGET_BYTES_PER_ENTRY),
        pf(per_entry_amortized <= TARGET_BYTES_PER_ENTRY)
    );
    if a.entries != 1_000_000 {
        let _ = writeln!(s, "  (load target scaled linearly from {TARGET_LOAD_SECS_PER_1M} s per 1M addresses)");
    }
    if a.json {
        eprint!("{s}");
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{s}");
    }
    Ok(())
}
