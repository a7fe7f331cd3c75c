//! `sipshield-bench`: reproducible measurements of sipshield against its peers.
//!
//! `sipshield-bench blacklist` generates a deterministic blacklist (N public-looking IPv4
//! addresses plus ~1% /16../24 ranges), then measures in one run:
//! * sipshield: parse time, swap (load-until-live) time, cleanup time, a reload (parse + swap
//!   again), kernel memory per entry (/proc/meminfo Slab/SUnreclaim/VmallocUsed deltas and the
//!   `memlock` of every blacklist map, both generations);
//! * peers on the same list, inside a throwaway network namespace: `ipset restore`
//!   (hash:ip + hash:net) and `nft -f` (plain set + interval set);
//! * per-packet cost with `BPF_PROG_TEST_RUN`: empty list, sipshield's layout (/32s in the
//!   bucketized table `BL_TAB4_g`, ranges in the LPM trie), the previous layout (/32s in a
//!   no-prealloc hash) and the rejected all-in-LPM layout;
//! * a design comparison of the /32 store (table vs no-prealloc hash vs preallocated hash):
//!   fill time and kernel bytes per entry for the same keys.
//!
//! It prints a table (and with `--json` one JSON object) with ratios and pass/fail targets.
mod experiments;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{lpm_trie::Key, LpmTrie, Map};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use clap::{Args, Parser, Subcommand};
use serde_json::{json, Value};
use sipshield::bpfsys::MmapRegion;
use sipshield::filter::{build_table4, map_data, Filter, ListKind, EBPF_OBJECT, PROGRAM_NAME};
use sipshield::lists::{read_list_file, IpList};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::netns::Netns;
use sipshield_tests::sip::SipMessage;
use xdp_common::{Bucket4, Config, BL4_BUCKETS, BL4_SLOTS, BL4_TABLE_CAPACITY, BL_NET_CAPACITY, BL_V4_CAPACITY};

const XDP_DROP: u32 = 1;
const XDP_PASS: u32 = 2;

/// Targets (for 1M addresses; the load-time target scales linearly with the entry count).
const TARGET_LOAD_SECS_PER_1M: f64 = 0.7;
const TARGET_SPEEDUP: f64 = 2.5;
const TARGET_BYTES_PER_ENTRY: f64 = 100.0;

/// `max_entries` of the previous design's exact-IPv4 hash (`BL_V4_CAPACITY` before the table);
/// also the capacity of the stand-alone hashes of the design comparison.
const PREV_BL_V4_CAPACITY: u32 = 1 << 20;

/// Every blacklist map of the object (both generations).
const BL_MAPS: [&str; 10] = [
    "BL_TAB4_0",
    "BL_TAB4_1",
    "BL_V4_0",
    "BL_V4_1",
    "BL_V6_0",
    "BL_V6_1",
    "BL_NET4_0",
    "BL_NET4_1",
    "BL_NET6_0",
    "BL_NET6_1",
];

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
    /// max_entries of the map (its bucket array is sized from this); the default is the
    /// previous design's BL_V4 capacity.
    #[arg(long, default_value_t = PREV_BL_V4_CAPACITY)]
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
    /// Skip the second program instance (full-size all-in-LPM and previous hash design rows,
    /// the hash fill/drain timings of the design comparison).
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
        let _ = writeln!(
            s,
            "# sipshield-bench generated blacklist: {} addresses, {} ranges",
            self.addrs.len(),
            self.ranges.len()
        );
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
        let _ =
            writeln!(s, "create {IPSET_NET4} hash:net family inet hashsize {hn} maxelem {}", self.ranges.len() + 1024);
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
    Ok(Probes {
        miss: frames(&miss, &payload),
        hit: frames(&hit_srcs, &payload),
        range: frames(&range, &payload),
        hit_srcs,
    })
}

#[derive(Clone, Debug)]
struct Lookup {
    scenario: String,
    /// 1 = the sipshield filter (with its 8 MB table per generation, always probed), 2 = the
    /// second instance (BL_TAB4_* shrunk to one bucket: practically no table probe).
    instance: u8,
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
    fn json(&self, empty_cold: f64, empty_hotk: f64, base_cold: Option<f64>) -> Value {
        json!({
            "scenario": self.scenario,
            "instance": self.instance,
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
            "cold_median_minus_no_table_base_ns": base_cold.map(|b| self.cold_ns - b),
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
#[allow(clippy::too_many_arguments)]
fn measure(
    run: &mut RunFn<'_>,
    instance: u8,
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
        instance,
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
        "  {:<40} {:<6} {:>6.1} ns hot, {:>6.1} ns hot×{}, {:>6.1} ns cold×{} (median)  {}",
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
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(524) /* ENOTSUPP */ | Some(libc::EOPNOTSUPP)) =>
        {
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

/// Run `cmd` (stdin from `input` if given) with a time limit; returns (seconds, stdout).
/// Output goes to files so a chatty command cannot block on a full pipe.
fn run_timed(
    mut cmd: Command,
    input: Option<&Path>,
    dir: &Path,
    tag: &str,
    timeout: Duration,
) -> Result<(f64, String)> {
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
        let hs: Vec<_> =
            keys.chunks(chunk).map(|k| sc.spawn(move || sipshield::bpfsys::delete_batch(map, k))).collect();
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

/// `memlock` of every blacklist map of the filter.
fn bl_memlock(filter: &Filter) -> BTreeMap<&'static str, u64> {
    BL_MAPS.iter().map(|m| (*m, filter_memlock(filter, m))).collect()
}

/// Sum over both generations of one blacklist map (`prefix` = name without `_0`/`_1`).
fn bl_group(m: &BTreeMap<&'static str, u64>, prefix: &str) -> u64 {
    m.iter().filter(|(k, _)| k.len() > 2 && &k[..k.len() - 2] == prefix).map(|(_, v)| *v).sum()
}

/// The blacklist map groups, in report order: (name prefix, what it holds).
const BL_GROUPS: [(&str, &str); 5] = [
    ("BL_TAB4", "/32 table (mmap-able array, vmalloc)"),
    ("BL_V4", "IPv4 overflow hash (no-prealloc)"),
    ("BL_NET4", "IPv4 range LPM trie"),
    ("BL_V6", "IPv6 hash (no-prealloc)"),
    ("BL_NET6", "IPv6 range LPM trie"),
];

/// Where the table's memory comes from: create one array shaped like `BL_TAB4_g` on its own
/// and read the meminfo deltas and its memlock.
fn table_array_check(settle: Duration) -> Result<Value> {
    let before = Mem::settled(settle)?;
    let fd = experiments::map_create(
        experiments::BPF_MAP_TYPE_ARRAY,
        4,
        std::mem::size_of::<Bucket4>() as u32,
        BL4_BUCKETS,
        experiments::BPF_F_MMAPABLE,
        "sb_tab4",
    )?;
    let m = Mem::settled(settle)?.minus(before);
    let ml = experiments::fd_memlock(&fd);
    drop(fd);
    Ok(json!({
        "what": "one BPF_MAP_TYPE_ARRAY | BPF_F_MMAPABLE of BL4_BUCKETS × 64 B, created alone",
        "vmalloc_delta_bytes": m.vmalloc,
        "slab_delta_bytes": m.slab,
        "memlock_bytes": ml,
    }))
}

/// Read-modify-write of CONFIG in a raw `Ebpf` instance (the second instance).
fn ebpf_update_config(ebpf: &mut aya::Ebpf, f: impl FnOnce(&mut Config)) -> Result<()> {
    let mut arr: aya::maps::Array<_, Config> =
        aya::maps::Array::try_from(ebpf.map_mut("CONFIG").ok_or_else(|| anyhow!("no map CONFIG"))?)?;
    let mut c = arr.get(&0, 0)?;
    f(&mut c);
    arr.set(0, c, 0)?;
    Ok(())
}

fn blacklist(a: BlArgs) -> Result<()> {
    if a.entries == 0 {
        bail!("--entries must be at least 1");
    }
    if a.entries > BL4_TABLE_CAPACITY as usize {
        bail!(
            "--entries {} exceeds the blacklist's IPv4 table capacity of {BL4_TABLE_CAPACITY} (BL4_TABLE_CAPACITY)",
            a.entries
        );
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
    let n_addrs = g.addrs.len();
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
    let has_ranges = !probes.range.is_empty();

    // 2. sipshield. The table arrays (BL_TAB4_0/1, 8 MB each) are vmalloc'd here, at map
    // creation, not during a list load.
    let mem0 = Mem::settled(Duration::from_millis(200))?;
    let t = Instant::now();
    let mut filter = Filter::load_private()?;
    let program_load_secs = t.elapsed().as_secs_f64();
    let mem_prog = Mem::settled(settle)?.minus(mem0);
    let ml_empty = bl_memlock(&filter);
    eprintln!(
        "sipshield program + maps loaded in {program_load_secs:.3} s (VmallocUsed {:+.1} MB, BL_TAB4_0+1 memlock {:.1} MB); lookups with the empty blacklist:",
        mem_prog.vmalloc as f64 / 1e6,
        bl_group(&ml_empty, "BL_TAB4") as f64 / 1e6
    );

    let mut lookups: Vec<Lookup> = vec![];
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        lookups.push(measure(&mut run, 1, "empty blacklist", 0, "miss", &probes.miss, XDP_PASS, a)?);
    }

    eprintln!("sipshield: parse + swap of {total} entries ...");
    let before = Mem::settled(settle)?;
    let slab_before = experiments::slabinfo();
    let t = Instant::now();
    let list = read_list_file(&list_path, &Default::default()).map_err(|e| anyhow!("{e}"))?;
    let parse_secs = t.elapsed().as_secs_f64();
    if list.v4.len() != g.addrs.len() || list.net4.len() != g.ranges.len() {
        bail!(
            "parsed {} addresses + {} ranges, generated {} + {}",
            list.v4.len(),
            list.net4.len(),
            g.addrs.len(),
            g.ranges.len()
        );
    }
    let t = Instant::now();
    let r1 = filter.swap_list(ListKind::Blacklist, &list)?;
    let swap1_wall = t.elapsed().as_secs_f64();
    let after = Mem::settled(settle)?;
    let slab_after = experiments::slabinfo();
    let slab_top = experiments::slab_top(&slab_before, &slab_after, 5);
    let cg_delta = experiments::slab_cg_delta(&slab_before, &slab_after);
    let mem_load = after.minus(before);
    let ml_loaded = bl_memlock(&filter);
    let cfg1 = filter.config()?;
    let live1 = cfg1.blacklist_gen & 1;
    eprintln!(
        "  parse {parse_secs:.3} s, swap (until live) {:.3} s, cleanup {:.4} s; SUnreclaim {:+.1} B/entry, Slab {:+.1} B/entry, VmallocUsed {:+.1} B/entry",
        r1.load_secs,
        r1.cleanup_secs,
        mem_load.sunreclaim as f64 / total as f64,
        mem_load.slab as f64 / total as f64,
        mem_load.vmalloc as f64 / total as f64
    );
    if filter.list_len(ListKind::Blacklist)? != total {
        bail!("the kernel holds a different number of entries than loaded");
    }
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "table /32 + LPM ranges";
        lookups.push(measure(&mut run, 1, sc, total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, 1, sc, total, "hit/32", &probes.hit, XDP_DROP, a)?);
        if has_ranges {
            lookups.push(measure(&mut run, 1, sc, total, "range", &probes.range, XDP_DROP, a)?);
        }
    }

    // Reload from the file: parse again, swap into the other generation while the first one
    // is live, then clear the first one.
    eprintln!("sipshield: reload (parse + second swap of the same list) ...");
    let t = Instant::now();
    let list2 = read_list_file(&list_path, &Default::default()).map_err(|e| anyhow!("{e}"))?;
    let reparse_secs = t.elapsed().as_secs_f64();
    let r2 = filter.swap_list(ListKind::Blacklist, &list2)?;
    let reload_wall = t.elapsed().as_secs_f64();
    drop(list2);
    let mem_reload = Mem::settled(settle)?.minus(before);
    eprintln!("  reload parse {reparse_secs:.3} s, swap {:.3} s, cleanup {:.3} s", r2.load_secs, r2.cleanup_secs);

    // Swap breakdown: the steps of swap_list for the /32s, timed one by one on the idle
    // generation (the reload's cleanup emptied it; swap_list clears it again before a fill).
    let idle = 1 - (r2.generation & 1);
    let t = Instant::now();
    let (table, overflow) = build_table4(list.v4.iter().copied());
    let build_secs = t.elapsed().as_secs_f64();
    let fills: Vec<usize> = table.iter().map(|b| b.keys.iter().filter(|k| **k != 0).count()).collect();
    let max_fill = fills.iter().copied().max().unwrap_or(0);
    let full_buckets = fills.iter().filter(|f| **f == BL4_SLOTS).count();
    let stored: usize = fills.iter().sum();
    let tab_name = format!("BL_TAB4_{idle}");
    let tab_len = BL4_BUCKETS as usize * std::mem::size_of::<Bucket4>();
    let (copy_secs, zero_secs) = {
        let fd = map_data(filter.map(&tab_name)?).fd().as_fd();
        let mut region = MmapRegion::map(fd, tab_len, true).map_err(|e| anyhow!("mmap of {tab_name}: {e}"))?;
        let t = Instant::now();
        region.slice_mut::<Bucket4>()[..table.len()].copy_from_slice(&table);
        let copy = t.elapsed().as_secs_f64();
        let t = Instant::now();
        region.slice_mut::<u64>().fill(0);
        (copy, t.elapsed().as_secs_f64())
    };
    drop(table);
    let ranges: Vec<([u8; 4], u32)> = list.net4.iter().map(|(a, l)| (*a, *l as u32)).collect();
    let n4_idle = format!("BL_NET4_{idle}");
    let t = Instant::now();
    {
        let mut tr: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(filter.map_mut(&n4_idle)?)?;
        for (a4, l) in &ranges {
            tr.insert(&Key::new(*l, *a4), 1, 0)?;
        }
    }
    let lpm_single_secs = t.elapsed().as_secs_f64();
    let rkeys: Vec<LpmKey4> = ranges.iter().map(|(a4, l)| LpmKey4 { prefixlen: *l, addr: *a4 }).collect();
    let t = Instant::now();
    let lpm_delete = sipshield::bpfsys::delete_batch(map_data(filter.map(&n4_idle)?).fd().as_fd(), &rkeys);
    let lpm_delete_batch_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let lpm_batch = lpm_fill(filter.map_mut(&n4_idle)?, &ranges);
    let lpm_batch_secs = t.elapsed().as_secs_f64();
    let breakdown = json!({
        "build_table4_secs": build_secs,
        "mmap_copy_secs": copy_secs,
        "mmap_zero_secs": zero_secs,
        "table_buckets": BL4_BUCKETS,
        "table_slots_per_bucket": BL4_SLOTS,
        "table_capacity": BL4_TABLE_CAPACITY,
        "table_keys_stored": stored,
        "table_load_factor": stored as f64 / (BL4_BUCKETS as f64 * BL4_SLOTS as f64),
        "table_max_bucket_fill": max_fill,
        "table_full_buckets": full_buckets,
        "overflow_keys": overflow.len(),
        "config_bl4_overflow_after_load": cfg1.bl4_overflow,
        "ranges": ranges.len(),
        "lpm_ranges_single_insert_secs": lpm_single_secs,
        "lpm_ranges_delete_batch_secs": lpm_delete.as_ref().map(|_| lpm_delete_batch_secs).ok(),
        "lpm_ranges_delete_batch_error": lpm_delete.err().map(|e| e.to_string()),
        "lpm_ranges_batch_insert_secs": lpm_batch.as_ref().map(|_| lpm_batch_secs).ok(),
        "lpm_ranges_batch_insert_method": lpm_batch.as_ref().ok(),
    });
    eprintln!(
        "  breakdown: build_table4 {build_secs:.3} s, mmap copy {copy_secs:.3} s, zero {zero_secs:.3} s; overflow {} keys, max bucket fill {max_fill}/{BL4_SLOTS}; {} ranges one by one {lpm_single_secs:.3} s",
        overflow.len(),
        ranges.len()
    );

    // 3. The three layouts at the same 65,536 entries, in the filter's own maps (the range trie
    // and the overflow hash hold at most 65,536 entries): table, previous hash, all-in-LPM.
    let cap_v4 =
        (BL_NET_CAPACITY as usize).saturating_sub(g.ranges.len()).min(g.addrs.len()).min(BL_V4_CAPACITY as usize);
    let mut capped = IpList::default();
    for a4 in probes.hit_srcs.iter().chain(g.addrs.iter()) {
        if capped.v4.len() >= cap_v4 {
            break;
        }
        capped.v4.insert(a4.to_be_bytes());
    }
    capped.net4 = list.net4.clone();
    let cap_total = capped.len();
    let cap_hits: Vec<Vec<u8>> = probes
        .hit
        .iter()
        .zip(&probes.hit_srcs)
        .filter(|(_, s)| capped.v4.contains(&s.to_be_bytes()))
        .map(|(f, _)| f.clone())
        .collect();
    eprintln!("capped comparison at {cap_total} entries (BL_NET_CAPACITY = BL_V4_CAPACITY = {BL_NET_CAPACITY}) ...");
    let rc = filter.swap_list(ListKind::Blacklist, &capped)?;
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "table /32 + LPM, capped";
        lookups.push(measure(&mut run, 1, sc, cap_total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, 1, sc, cap_total, "hit/32", &cap_hits, XDP_DROP, a)?);
        if has_ranges {
            lookups.push(measure(&mut run, 1, sc, cap_total, "range", &probes.range, XDP_DROP, a)?);
        }
    }
    // Previous design in the filter's own maps: the ranges through swap_list (so the live
    // table is empty), then the /32s straight into that generation's overflow hash BL_V4_g
    // (no-prealloc, capacity BL_V4_CAPACITY) and bl4_overflow = 1. The program still probes
    // the (empty) table first, as it always does.
    let ranges_only = IpList { net4: list.net4.clone(), ..Default::default() };
    let ro = filter.swap_list(ListKind::Blacklist, &ranges_only)?;
    let hname = format!("BL_V4_{}", ro.generation & 1);
    let hkeys: Vec<[u8; 4]> = capped.v4.iter().copied().collect();
    let hones = vec![1u32; hkeys.len()];
    let t = Instant::now();
    sipshield::bpfsys::update_batch(map_data(filter.map(&hname)?).fd().as_fd(), &hkeys, &hones)
        .with_context(|| format!("filling {hname}"))?;
    let hash_cap_fill_secs = t.elapsed().as_secs_f64();
    filter.update_config(|c| c.bl4_overflow = 1)?;
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "previous: hash /32 + LPM, capped";
        lookups.push(measure(&mut run, 1, sc, cap_total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, 1, sc, cap_total, "hit/32", &cap_hits, XDP_DROP, a)?);
        if has_ranges {
            lookups.push(measure(&mut run, 1, sc, cap_total, "range", &probes.range, XDP_DROP, a)?);
        }
    }
    // Rejected design in the filter's own maps: every /32 as a prefix in the (empty) other
    // generation's BL_NET4 trie, its table and hash empty, then switch the program to it.
    let idle = 1 - (filter.config()?.blacklist_gen & 1);
    let t = Instant::now();
    let method_cap = lpm_fill(filter.map_mut(&format!("BL_NET4_{idle}"))?, &v4_entries(&capped))?;
    let lpm_cap_fill_secs = t.elapsed().as_secs_f64();
    filter.update_config(|c| {
        c.blacklist_gen = idle;
        c.bl4_overflow = 0;
    })?;
    {
        let mut run = |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        let sc = "rejected: all in LPM, capped";
        lookups.push(measure(&mut run, 1, sc, cap_total, "miss", &probes.miss, XDP_PASS, a)?);
        lookups.push(measure(&mut run, 1, sc, cap_total, "hit/32", &cap_hits, XDP_DROP, a)?);
        if has_ranges {
            lookups.push(measure(&mut run, 1, sc, cap_total, "range", &probes.range, XDP_DROP, a)?);
        }
    }
    drop(filter);

    // 4. Second instance of the same object, with map sizes changed at load time
    // (EbpfLoader::map_max_entries; the program code is identical):
    // * BL_TAB4_0/1 shrunk to one bucket: the table probe is two out-of-range array lookups
    //   (a bounds check each), so this instance is the program without the table;
    // * generation 0: every entry in BL_NET4_0 (sized for all of them): rejected all-in-LPM;
    // * generation 1: the previous design at full size, the /32s in the no-prealloc hash
    //   BL_V4_1 with its old capacity (1<<20), the ranges in BL_NET4_1.
    let mut lpm_full: Option<Value> = None;
    let mut prev_hash: Option<Value> = None;
    if !a.skip_lpm_full {
        eprintln!("second instance (no table; all-in-LPM in generation 0, previous hash design in generation 1) ...");
        let cap = (total as u32).max(BL_NET_CAPACITY);
        let mut ebpf = aya::EbpfLoader::new()
            .map_max_entries("BL_NET4_0", cap)
            .map_max_entries("BL_V4_1", PREV_BL_V4_CAPACITY)
            .map_max_entries("BL_TAB4_0", 1)
            .map_max_entries("BL_TAB4_1", 1)
            .load(EBPF_OBJECT)
            .context("loading a second instance")?;
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).ok_or_else(|| anyhow!("no program"))?.try_into()?;
            prog.load().map_err(|e| anyhow!("loading the XDP program: {e:#}"))?;
        }
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into()?;
            let mut run = |f: &[u8], r: u32| xdp_run(prog, f, r);
            lookups.push(measure(&mut run, 2, "empty (2nd instance, no table)", 0, "miss", &probes.miss, XDP_PASS, a)?);
        }
        let entries = v4_entries(&list);
        let before = Mem::settled(settle)?;
        let t = Instant::now();
        let method = lpm_fill(ebpf.map_mut("BL_NET4_0").ok_or_else(|| anyhow!("no BL_NET4_0"))?, &entries)?;
        let fill_secs = t.elapsed().as_secs_f64();
        drop(entries);
        let mem = Mem::settled(settle)?.minus(before);
        let ml = ebpf.map("BL_NET4_0").and_then(memlock).unwrap_or(0);
        eprintln!(
            "  all-in-LPM filled in {fill_secs:.3} s ({method}); SUnreclaim {:+.1} B/entry",
            mem.sunreclaim as f64 / total as f64
        );
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into()?;
            let mut run = |f: &[u8], r: u32| xdp_run(prog, f, r);
            let sc = "rejected: all in LPM, full size";
            lookups.push(measure(&mut run, 2, sc, total, "miss", &probes.miss, XDP_PASS, a)?);
            lookups.push(measure(&mut run, 2, sc, total, "hit/32", &probes.hit, XDP_DROP, a)?);
            if has_ranges {
                lookups.push(measure(&mut run, 2, sc, total, "range", &probes.range, XDP_DROP, a)?);
            }
        }
        lpm_full = Some(json!({
            "entries": total,
            "max_entries": cap,
            "fill_secs": fill_secs,
            "fill_method": method,
            "memory": mem.json(total),
            "memlock_bytes": ml,
            "memlock_bytes_per_entry": ml as f64 / total as f64,
        }));

        // The previous design: one BPF_MAP_UPDATE_BATCH of all /32s into the no-prealloc hash
        // (what the previous swap_list did), the ranges one insert each.
        let h1 =
            map_data(ebpf.map("BL_V4_1").ok_or_else(|| anyhow!("no BL_V4_1"))?).fd().as_fd().try_clone_to_owned()?;
        let hash_fixed = ebpf.map("BL_V4_1").and_then(memlock).unwrap_or(0);
        let keys4: Vec<[u8; 4]> = list.v4.iter().copied().collect();
        let ones4 = vec![1u32; keys4.len()];
        let before = Mem::settled(settle)?;
        let t = Instant::now();
        sipshield::bpfsys::update_batch(h1.as_fd(), &keys4, &ones4).context("previous design: hash fill")?;
        let hash_fill_secs = t.elapsed().as_secs_f64();
        let hmem = Mem::settled(settle)?.minus(before);
        let hash_loaded = ebpf.map("BL_V4_1").and_then(memlock).unwrap_or(0);
        {
            let mut tr: LpmTrie<_, [u8; 4], u32> =
                LpmTrie::try_from(ebpf.map_mut("BL_NET4_1").ok_or_else(|| anyhow!("no BL_NET4_1"))?)?;
            for (a4, l) in &ranges {
                tr.insert(&Key::new(*l, *a4), 1, 0)?;
            }
        }
        ebpf_update_config(&mut ebpf, |c| {
            c.blacklist_gen = 1;
            c.bl4_overflow = 1;
        })?;
        eprintln!(
            "  previous design: {} /32s into the no-prealloc hash in {hash_fill_secs:.3} s; Slab {:+.1} B per /32, memlock {:.1} MB empty → {:.1} MB",
            keys4.len(),
            hmem.slab as f64 / keys4.len() as f64,
            hash_fixed as f64 / 1e6,
            hash_loaded as f64 / 1e6
        );
        {
            let prog: &mut Xdp = ebpf.program_mut(PROGRAM_NAME).unwrap().try_into()?;
            let mut run = |f: &[u8], r: u32| xdp_run(prog, f, r);
            let sc = "previous: hash /32 + LPM, full size";
            lookups.push(measure(&mut run, 2, sc, total, "miss", &probes.miss, XDP_PASS, a)?);
            lookups.push(measure(&mut run, 2, sc, total, "hit/32", &probes.hit, XDP_DROP, a)?);
            if has_ranges {
                lookups.push(measure(&mut run, 2, sc, total, "range", &probes.range, XDP_DROP, a)?);
            }
        }
        // Its reload cleanup (drain), and the same fill/delete from several threads.
        let t = Instant::now();
        let drained = sipshield::bpfsys::drain_hash(h1.as_fd(), 4, 4)?;
        let hash_drain_secs = t.elapsed().as_secs_f64();
        let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 8);
        let (par_fill_secs, par_del_secs) = parallel_fill_drain(h1.as_fd(), &keys4, threads)?;
        eprintln!(
            "  drain {hash_drain_secs:.3} s; {threads} threads: fill {par_fill_secs:.3} s, delete {par_del_secs:.3} s"
        );
        prev_hash = Some(json!({
            "what": "BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, max_entries 1<<20 (the previous BL_V4_g), one BPF_MAP_UPDATE_BATCH",
            "keys": keys4.len(),
            "capacity": PREV_BL_V4_CAPACITY,
            "fill_secs": hash_fill_secs,
            "fill_ns_per_key": hash_fill_secs * 1e9 / keys4.len().max(1) as f64,
            "drain_secs": hash_drain_secs,
            "drained": drained,
            "threads": threads,
            "parallel_fill_secs": par_fill_secs,
            "parallel_delete_batch_secs": par_del_secs,
            "memory": hmem.json(keys4.len()),
            "memlock_empty_bytes": hash_fixed,
            "memlock_loaded_bytes": hash_loaded,
        }));
        drop(ebpf);
    }

    // 5. Design comparison: a preallocated hash (stand-alone map, same capacity, same keys).
    eprintln!("design comparison: preallocated hash (stand-alone, max_entries {PREV_BL_V4_CAPACITY}) ...");
    let keys4: Vec<[u8; 4]> = list.v4.iter().copied().collect();
    let prealloc =
        experiments::prealloc_hash(&keys4, PREV_BL_V4_CAPACITY).unwrap_or_else(|e| json!({"error": e.to_string()}));
    drop(keys4);
    let tab_check = table_array_check(settle).unwrap_or_else(|e| json!({"error": e.to_string()}));
    let lean = experiments::lean_parse(&list_path)
        .map(|(s, a4, n4)| json!({"secs": s, "v4": a4, "net4": n4}))
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    drop(list);

    // 6. Peers. The maps dropped above are freed by the kernel in the background (RCU,
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
    let reload_total = reparse_secs + r2.load_secs;
    let target_load = TARGET_LOAD_SECS_PER_1M * a.entries as f64 / 1e6;
    let per = |v: f64| v / total as f64;
    let per_entry_sunreclaim = per(mem_load.sunreclaim as f64);
    let per_entry_slab = per(mem_load.slab as f64);
    let per_entry_vmalloc = per(mem_load.vmalloc as f64);
    let per_entry_cg = per(cg_delta as f64);
    // The slab part of the total: the larger of the two meminfo deltas (conservative).
    let slab_part = mem_load.slab.max(mem_load.sunreclaim);
    let ml_loaded_sum: u64 = ml_loaded.values().sum();
    let ml_empty_sum: u64 = ml_empty.values().sum();
    let tab_ml = bl_group(&ml_loaded, "BL_TAB4");
    let total_bytes = slab_part as f64 + ml_loaded_sum as f64;
    let per_entry_total = per(total_bytes);
    let per_entry_total_nodup = per(slab_part as f64 + ml_empty_sum as f64);
    let pass_mem = per_entry_total <= TARGET_BYTES_PER_ENTRY;
    let peer = |n: &str| peers.iter().find(|p| p.name == n);
    let ratio = |p: Option<&PeerResult>, base: f64| p.map(|p| p.load_secs / base);
    let r_ipset_load = ratio(peer("ipset"), sip_load);
    let r_nft_load = ratio(peer("nft"), sip_load);
    let r_ipset_total = ratio(peer("ipset"), sip_total);
    let r_nft_total = ratio(peer("nft"), sip_total);
    let pass_ratio = |r: Option<f64>| r.map(|r| r >= TARGET_SPEEDUP);
    let empty_cold = lookups[0].cold_ns;
    let empty_hotk = lookups[0].hotk_ns;
    let empty2 = lookups.iter().find(|l| l.instance == 2 && l.entries == 0).map(|l| (l.cold_ns, l.hotk_ns));
    let base_cold = empty2.map(|e| e.0);

    let targets = json!({
        "load_secs_max": target_load,
        "load_pass": sip_total <= target_load,
        "load_counts": "parse + load (read_list_file + swap_list until live)",
        "load_pass_swap_only": sip_load <= target_load,
        "speedup_min": TARGET_SPEEDUP,
        "faster_than_ipset_pass": pass_ratio(r_ipset_total),
        "faster_than_nft_pass": pass_ratio(r_nft_total),
        "speedup_counts": "peer time / sipshield parse + load",
        "faster_than_ipset_pass_swap_only": pass_ratio(r_ipset_load),
        "faster_than_nft_pass_swap_only": pass_ratio(r_nft_load),
        "bytes_per_entry_max": TARGET_BYTES_PER_ENTRY,
        "memory_pass": pass_mem,
        "memory_counts": "max(Slab, SUnreclaim) delta of the load + memlock of all 10 BL maps (both generations, loaded), / entries",
        "memory_total_bytes_per_entry": per_entry_total,
        "memory_pass_slab_delta_only": per_entry_slab.max(per_entry_sunreclaim) <= TARGET_BYTES_PER_ENTRY,
    });
    let lookups_json: Vec<Value> = lookups
        .iter()
        .map(|l| {
            let (c, h) =
                if l.instance == 2 { empty2.unwrap_or((empty_cold, empty_hotk)) } else { (empty_cold, empty_hotk) };
            l.json(c, h, base_cold)
        })
        .collect();

    // Design comparison rows: (design, fill s, cleanup s, fixed bytes for two generations,
    // per-element slab bytes, note). Per /32 key.
    let nk = n_addrs as f64;
    let mut design: Vec<Value> = vec![];
    design.push(json!({
        "design": "chosen: table in mmap array (swap_list, whole list)",
        "fill_secs": r1.load_secs,
        "cleanup_secs": r2.cleanup_secs,
        "fixed_bytes_two_generations": tab_ml,
        "element_slab_bytes": slab_part,
        "note": "fill = swap_list until live (includes the ranges and zeroing the generation first); slab = the whole load's delta (the ranges' trie nodes)",
    }));
    design.push(json!({
        "design": "chosen: table, /32 part (build_table4 + mmap copy)",
        "fill_secs": build_secs + copy_secs,
        "cleanup_secs": zero_secs,
        "fixed_bytes_two_generations": tab_ml,
        "element_slab_bytes": 0,
        "note": "cleanup = zeroing the 8 MB generation through the mmap",
    }));
    if let Some(h) = &prev_hash {
        let fixed = 2 * h["memlock_empty_bytes"].as_u64().unwrap_or(0);
        let m = &h["memory"];
        let slab = m["slab_delta_bytes"].as_i64().unwrap_or(0).max(m["sunreclaim_delta_bytes"].as_i64().unwrap_or(0));
        design.push(json!({
            "design": "previous: no-prealloc hash, one BPF_MAP_UPDATE_BATCH",
            "fill_secs": h["fill_secs"],
            "cleanup_secs": h["drain_secs"],
            "fixed_bytes_two_generations": fixed,
            "element_slab_bytes": slab,
            "note": format!("fixed = 2 × the empty map's memlock (bucket array); the loaded map's memlock is {:.1} MB", h["memlock_loaded_bytes"].as_u64().unwrap_or(0) as f64 / 1e6),
        }));
        design.push(json!({
            "design": format!("no-prealloc hash, {} threads (disjoint chunks)", h["threads"]),
            "fill_secs": h["parallel_fill_secs"],
            "cleanup_secs": h["parallel_delete_batch_secs"],
            "fixed_bytes_two_generations": fixed,
            "element_slab_bytes": slab,
            "note": "cleanup = BPF_MAP_DELETE_BATCH of the known keys from the same threads",
        }));
    }
    if prealloc.get("error").is_none() {
        let ml = prealloc["memlock_bytes"].as_u64().unwrap_or(0);
        design.push(json!({
            "design": "preallocated hash, one BPF_MAP_UPDATE_BATCH",
            "fill_secs": prealloc["fill_secs"],
            "create_secs": prealloc["create_secs"],
            "cleanup_secs": Value::Null,
            "fixed_bytes_two_generations": 2 * ml,
            "element_slab_bytes": 0,
            "note": "all elements preallocated at map creation (counted in memlock)",
        }));
    }
    for d in &mut design {
        let fixed = d["fixed_bytes_two_generations"].as_f64().unwrap_or(0.0);
        let slab = d["element_slab_bytes"].as_f64().unwrap_or(0.0);
        d["fixed_bytes_per_key"] = json!(fixed / nk);
        d["element_slab_bytes_per_key"] = json!(slab / nk);
        d["total_bytes_per_key"] = json!((fixed + slab) / nk);
    }

    let memlock_json = |m: &BTreeMap<&'static str, u64>| {
        m.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>()
    };
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
            "ipv4_layout": "exact /32s: bucketized two-choice hash table in BL_TAB4_g (mmap-able array, written through mmap); overflow in BL_V4_g; ranges in BL_NET4_g",
            "program_load_secs": program_load_secs,
            "program_load_memory": mem_prog.json(0),
            "vmalloc_delta_program_load_bytes": mem_prog.vmalloc,
            "parse_secs": parse_secs,
            "load_secs": r1.load_secs,
            "total_secs": sip_total,
            "swap_wall_secs": swap1_wall,
            "cleanup_secs": r1.cleanup_secs,
            "reload_parse_secs": reparse_secs,
            "reload_load_secs": r2.load_secs,
            "reload_total_secs": reload_total,
            "reload_cleanup_secs": r2.cleanup_secs,
            "reload_wall_secs": reload_wall,
            "capped_swap_load_secs": rc.load_secs,
            "live_generation_after_load": live1,
            "memory": mem_load.json(total),
            "memory_after_reload": mem_reload.json(total),
            "vmalloc_delta_load_bytes": mem_load.vmalloc,
            "kmalloc_cg_slab_delta_bytes": cg_delta,
            "kmalloc_cg_slab_bytes_per_entry": per_entry_cg,
            "memlock_bl_maps_empty": memlock_json(&ml_empty),
            "memlock_bl_maps_loaded": memlock_json(&ml_loaded),
            "memlock_bl_maps_empty_bytes": ml_empty_sum,
            "memlock_bl_maps_loaded_bytes": ml_loaded_sum,
            "memlock_bl_tab4_bytes": tab_ml,
            "memlock_bl_maps_bytes_per_entry": per(ml_loaded_sum as f64),
            "slab_part_bytes": slab_part,
            "total_kernel_bytes": total_bytes,
            "total_kernel_bytes_per_entry": per_entry_total,
            "total_kernel_bytes_per_entry_without_double_count": per_entry_total_nodup,
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
        "previous_hash_full": prev_hash,
        "swap_breakdown": breakdown,
        "slab_top_growth_during_load": slab_top.iter().map(|(k, v)| json!({"cache": k, "bytes": v})).collect::<Vec<_>>(),
        "design_comparison": {
            "keys": n_addrs,
            "rows": design,
            "prealloc_hash": prealloc,
        },
        "lean_parse": lean,
        "table_array_check": tab_check,
        "capped": {
            "entries": cap_total,
            "lpm_fill_secs": lpm_cap_fill_secs,
            "lpm_fill_method": method_cap,
            "overflow_hash_fill_secs": hash_cap_fill_secs,
        },
        "targets": targets,
    });

    // Human-readable table.
    let mut s = String::new();
    let pf = |b: bool| if b { "PASS" } else { "FAIL" };
    let pfo = |b: Option<bool>| b.map(pf).unwrap_or("n/a");
    let fx = |r: Option<f64>| r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "n/a".into());
    let f = |v: &Value| v.as_f64().map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    let mb = |b: u64| b as f64 / 1e6;
    let _ = writeln!(
        s,
        "\nsipshield-bench blacklist — kernel {}, {} CPUs, seed {:#x}",
        out["kernel"].as_str().unwrap_or(""),
        out["cpus"],
        a.seed
    );
    let _ = writeln!(
        s,
        "list: {} addresses + {} ranges (/16../24) = {total} entries, {:.1} MB",
        g.addrs.len(),
        g.ranges.len(),
        out["list_file_bytes"].as_u64().unwrap_or(0) as f64 / 1e6
    );
    let _ = writeln!(s, "sipshield IPv4 layout: /32s in a bucketized table (BL_TAB4_g, {BL4_BUCKETS} × {BL4_SLOTS} slots), ranges in an LPM trie");
    let _ = writeln!(s, "\nLOAD TIME                                              seconds");
    let _ = writeln!(s, "  sipshield parse (read_list_file)                     {parse_secs:>8.3}");
    let _ = writeln!(s, "  sipshield load  (swap_list until live)               {:>8.3}", r1.load_secs);
    let _ = writeln!(s, "  sipshield total (parse + load)                       {sip_total:>8.3}");
    let _ = writeln!(s, "  sipshield cleanup of the old (empty) generation      {:>8.3}", r1.cleanup_secs);
    let _ = writeln!(s, "  sipshield reload: parse                              {reparse_secs:>8.3}");
    let _ = writeln!(s, "  sipshield reload: load (2nd swap, until live)        {:>8.3}", r2.load_secs);
    let _ = writeln!(s, "  sipshield reload: total (parse + load)               {reload_total:>8.3}");
    let _ = writeln!(s, "  sipshield reload: cleanup (clear old generation)     {:>8.3}", r2.cleanup_secs);
    for p in &peers {
        let label =
            if p.name == "ipset" { "ipset restore (hash:ip + hash:net)" } else { "nft -f (plain set + interval set)" };
        let _ = writeln!(s, "  {label:<52} {:>8.3}   (delete {:.3} s)", p.load_secs, p.delete_secs);
    }
    if let Some(h) = &prev_hash {
        let _ = writeln!(
            s,
            "  {:<52} {:>8}   (drain {} s)",
            "previous: /32s into the no-prealloc hash (batch)",
            f(&h["fill_secs"]),
            f(&h["drain_secs"])
        );
    }
    if let Some(l) = &lpm_full {
        let label = format!("rejected all-in-LPM fill ({})", l["fill_method"].as_str().unwrap_or(""));
        let _ = writeln!(s, "  {label:<52} {:>8.3}", l["fill_secs"].as_f64().unwrap_or(0.0));
    }
    let _ = writeln!(s, "\nRATIOS (peer / sipshield)             vs parse+load (fair)   vs load only");
    let _ = writeln!(s, "  ipset_restore_secs / sipshield        {:>20}   {:>12}", fx(r_ipset_total), fx(r_ipset_load));
    let _ = writeln!(s, "  nft_secs / sipshield                  {:>20}   {:>12}", fx(r_nft_total), fx(r_nft_load));
    let _ = writeln!(
        s,
        "  (ipset restore and nft -f parse their own text input, so parse + load is the like-for-like figure)"
    );

    let _ =
        writeln!(s, "\nMEMORY (kernel, after {} ms settle; per entry = / {total} entries)   bytes/entry", a.settle_ms);
    let _ = writeln!(s, "  load: SUnreclaim delta                                   {per_entry_sunreclaim:>8.1}");
    let _ = writeln!(s, "  load: Slab delta                                         {per_entry_slab:>8.1}");
    let _ = writeln!(s, "  load: kmalloc-cg-* caches only (slabinfo)                {per_entry_cg:>8.1}");
    let _ = writeln!(s, "  load: VmallocUsed delta                                  {per_entry_vmalloc:>8.1}   (the table memory exists before the load)");
    let _ = writeln!(
        s,
        "  program load: VmallocUsed delta {:.1} MB (all vmalloc'd maps of the whole object, not only the blacklist)",
        mem_prog.vmalloc as f64 / 1e6
    );
    if tab_check.get("error").is_none() {
        let _ = writeln!(
            s,
            "  one BL_TAB4-shaped array created alone: VmallocUsed {:+.2} MB, Slab {:+.2} MB, memlock {:.2} MB",
            tab_check["vmalloc_delta_bytes"].as_i64().unwrap_or(0) as f64 / 1e6,
            tab_check["slab_delta_bytes"].as_i64().unwrap_or(0) as f64 / 1e6,
            tab_check["memlock_bytes"].as_u64().unwrap_or(0) as f64 / 1e6
        );
    }
    let _ = writeln!(s, "  memlock of the blacklist maps, both generations, loaded (empty → loaded):");
    for (p, what) in BL_GROUPS {
        let e = bl_group(&ml_empty, p);
        let l = bl_group(&ml_loaded, p);
        let _ = writeln!(
            s,
            "    {:<12} {what:<40} {:>8.1}   ({:.2} → {:.2} MB)",
            format!("{p}_0+1"),
            per(l as f64),
            mb(e),
            mb(l)
        );
    }
    let _ = writeln!(
        s,
        "    {:<53} {:>8.1}   ({:.2} → {:.2} MB)",
        "all 10 BL maps",
        per(ml_loaded_sum as f64),
        mb(ml_empty_sum),
        mb(ml_loaded_sum)
    );
    let _ = writeln!(
        s,
        "  TOTAL = max(Slab, SUnreclaim) delta + all BL maps' memlock  {per_entry_total:>8.1}   {} (target ≤ {TARGET_BYTES_PER_ENTRY}; {:.1} MB)",
        pf(pass_mem),
        total_bytes / 1e6
    );
    let _ = writeln!(
        s,
        "  (memlock of the loaded maps also counts the ranges' trie nodes that are in the slab delta; without that: {per_entry_total_nodup:.1})"
    );
    let _ = writeln!(
        s,
        "  after reload + clear: SUnreclaim delta vs before the load {:>8.1}",
        mem_reload.sunreclaim as f64 / total as f64
    );
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
    let _ = writeln!(
        s,
        "  hot×1 = 1 source × {} runs; hot×K = K sources × repeat/K; cold = median over K sources × 1 run per syscall",
        a.repeat
    );
    let _ = writeln!(
        s,
        "  −empty = cold − the empty row of the same instance; −base = cold − \"empty (2nd instance, no table)\""
    );
    let _ = writeln!(
        s,
        "  {:<40} {:>8} {:<7} {:<6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "entries", "probe", "action", "hot×1", "hot×K", "cold", "−empty", "−base"
    );
    for (l, j) in lookups.iter().zip(&lookups_json) {
        let _ = writeln!(
            s,
            "  {:<40} {:>8} {:<7} {:<6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8}{}",
            l.scenario,
            l.entries,
            l.probe,
            l.action(),
            l.hot1_ns,
            l.hotk_ns,
            l.cold_ns,
            j["cold_median_minus_empty_ns"].as_f64().unwrap_or(0.0),
            j["cold_median_minus_no_table_base_ns"].as_f64().map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
            if l.ok() { "" } else { "  <-- unexpected action" }
        );
    }
    let _ = writeln!(
        s,
        "  (K = {} for hot×K, {} for cold; capped rows hold {cap_total} entries = BL_NET_CAPACITY)",
        lookups[0].hotk_sources, lookups[0].cold_sources
    );
    let _ = writeln!(
        s,
        "  instance 1 = the sipshield filter: its 8 MB table is probed on every IPv4 packet, even when empty."
    );
    let _ = writeln!(s, "  \"previous: hash /32 + LPM, capped\": the /32s in the overflow hash BL_V4_g (no-prealloc, at most {BL_V4_CAPACITY}), the");
    let _ = writeln!(
        s,
        "    table empty but still probed first; it measures a hash lookup at {} /32s, not at 1M.",
        capped.v4.len()
    );
    let _ = writeln!(s, "  instance 2 = the same object with BL_TAB4_* shrunk to 1 bucket (no table probe): previous design at full size");
    let _ = writeln!(
        s,
        "    (1M /32s in a no-prealloc hash of max_entries {PREV_BL_V4_CAPACITY}) and the rejected all-in-LPM layout."
    );

    // Summary: cold medians side by side.
    let find = |sc: &str, probe: &str| lookups.iter().find(|l| l.scenario == sc && l.probe == probe);
    let _ = writeln!(
        s,
        "\nLOOKUP SUMMARY (cold median ns, and − the no-table base)        miss               hit/32             range"
    );
    let rows = [
        "empty blacklist",
        "table /32 + LPM ranges",
        "previous: hash /32 + LPM, full size",
        "rejected: all in LPM, full size",
        "table /32 + LPM, capped",
        "previous: hash /32 + LPM, capped",
        "rejected: all in LPM, capped",
        "empty (2nd instance, no table)",
    ];
    for sc in rows {
        if !lookups.iter().any(|l| l.scenario == sc) {
            continue;
        }
        let mut line = format!("  {sc:<61}");
        for probe in ["miss", "hit/32", "range"] {
            let cell = match find(sc, probe) {
                Some(l) => match base_cold {
                    Some(b) => format!("{:>7.1} ({:>+7.1})", l.cold_ns, l.cold_ns - b),
                    None => format!("{:>7.1}", l.cold_ns),
                },
                None => format!("{:>7}", "-"),
            };
            let _ = write!(line, " {cell:<18}");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }

    let b = &out["swap_breakdown"];
    let _ =
        writeln!(s, "\nSWAP BREAKDOWN (the /32 steps of swap_list, timed separately on the idle generation)   seconds");
    let brows = [
        (format!("build_table4: place {} /32s in the userspace table", g.addrs.len()), f(&b["build_table4_secs"])),
        (
            format!("copy the table into BL_TAB4_g through mmap ({:.1} MB)", tab_len as f64 / 1e6),
            f(&b["mmap_copy_secs"]),
        ),
        ("zero BL_TAB4_g through mmap (as clear_list_gen does)".to_string(), f(&b["mmap_zero_secs"])),
        (
            format!("{} ranges into the LPM trie, one syscall each (as swap_list does)", ranges.len()),
            f(&b["lpm_ranges_single_insert_secs"]),
        ),
        ("the same ranges with one BPF_MAP_UPDATE_BATCH".to_string(), f(&b["lpm_ranges_batch_insert_secs"])),
    ];
    for (l, v) in brows {
        let _ = writeln!(s, "  {l:<78} {v:>8}");
    }
    let _ = writeln!(
        s,
        "  table: load factor {:.3}, max bucket fill {max_fill}/{BL4_SLOTS}, {full_buckets} full buckets, overflow {} keys (bl4_overflow = {})",
        b["table_load_factor"].as_f64().unwrap_or(0.0),
        overflow.len(),
        cfg1.bl4_overflow
    );
    let _ = writeln!(
        s,
        "  reference: lean IPv4 parser (Vec + sort + dedup): {} s vs read_list_file {parse_secs:.3} s",
        f(&lean["secs"])
    );

    let _ = writeln!(
        s,
        "\nDESIGN COMPARISON: the /32 store, {n_addrs} keys (bytes per key; fixed = two generations' maps)"
    );
    let _ = writeln!(
        s,
        "  {:<52} {:>14} {:>9} {:>8} {:>8} {:>8}",
        "design", "fill s", "cleanup s", "fixed B", "slab B", "total B"
    );
    for d in &design {
        let fill = match d.get("create_secs").and_then(|v| v.as_f64()) {
            Some(c) => format!("{c:.3}+{}", f(&d["fill_secs"])),
            None => f(&d["fill_secs"]),
        };
        let _ = writeln!(
            s,
            "  {:<52} {:>14} {:>9} {:>8.1} {:>8.1} {:>8.1}",
            d["design"].as_str().unwrap_or(""),
            fill,
            f(&d["cleanup_secs"]),
            d["fixed_bytes_per_key"].as_f64().unwrap_or(0.0),
            d["element_slab_bytes_per_key"].as_f64().unwrap_or(0.0),
            d["total_bytes_per_key"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(s, "  (preallocated hash: create+fill; slab B = max(Slab, SUnreclaim) delta of the fill; all hashes max_entries {PREV_BL_V4_CAPACITY})");
    if let Some(e) = prealloc.get("error") {
        let _ = writeln!(s, "  preallocated hash: {e}");
    }

    if !slab_top.is_empty() {
        let _ = writeln!(s, "\nSLAB CACHES THAT GREW DURING THE LOAD (/proc/slabinfo)");
        for (k, v) in &slab_top {
            let _ = writeln!(s, "  {k:<28} {:>+9.1} MB  ({:+.1} B/entry)", *v as f64 / 1e6, *v as f64 / total as f64);
        }
    }

    let _ = writeln!(s, "\nTARGETS (pass/fail on parse + load and on total kernel memory)");
    let _ = writeln!(
        s,
        "  load ≤ {target_load:.2} s:              parse+load {sip_total:.3} s {}   (load only {sip_load:.3} s {}; reload parse+load {reload_total:.3} s)",
        pf(sip_total <= target_load),
        pf(sip_load <= target_load)
    );
    let _ = writeln!(
        s,
        "  ≥ {TARGET_SPEEDUP}× faster than ipset:   parse+load {} {}   (load only {} {})",
        fx(r_ipset_total),
        pfo(pass_ratio(r_ipset_total)),
        fx(r_ipset_load),
        pfo(pass_ratio(r_ipset_load))
    );
    let _ = writeln!(
        s,
        "  ≥ {TARGET_SPEEDUP}× faster than nft:     parse+load {} {}   (load only {} {})",
        fx(r_nft_total),
        pfo(pass_ratio(r_nft_total)),
        fx(r_nft_load),
        pfo(pass_ratio(r_nft_load))
    );
    let _ = writeln!(
        s,
        "  ≤ {TARGET_BYTES_PER_ENTRY} B/entry:           total {per_entry_total:.1} {}   = slab delta {:.1} + BL maps' memlock {:.1} (of which table {:.1})",
        pf(pass_mem),
        per(slab_part as f64),
        per(ml_loaded_sum as f64),
        per(tab_ml as f64)
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
