//! `sipshield-bench blacklist`: sipshield's blacklist against ipset and nftables, stage by stage
//! (see bench/README.md):
//! 1. [`list`]: the deterministic list and the probe frames;
//! 2. [`stages::load`]: sipshield parse + swap, memory, reload;
//! 3. [`stages::breakdown`]: the /32 steps of `swap_list` timed one by one;
//! 4. [`stages::capped`]: the three layouts at the same 65,536 entries in the filter's maps;
//! 5. [`stages::second_instance`]: the object without the table, all-in-LPM and the previous
//!    hash design at full size;
//! 6. [`experiments`]: the preallocated hash, a stand-alone table array, a lean parser;
//! 7. [`stages::peers`]: `ipset restore` and `nft -f` of the same list;
//! 8. [`report`]: the JSON object and the table.
use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::Value;
use xdp_common::{BL4_TABLE_CAPACITY, BL_NET_CAPACITY};

pub mod experiments;
pub mod hash_fill;
pub mod list;
pub mod lookup;
pub mod mem;
pub mod report;
pub mod stages;

use list::{Generated, Probes};
use lookup::Lookup;

/// Targets (for 1M addresses; the load-time target scales linearly with the entry count).
pub const TARGET_LOAD_SECS_PER_1M: f64 = 0.7;
pub const TARGET_SPEEDUP: f64 = 2.5;
pub const TARGET_BYTES_PER_ENTRY: f64 = 100.0;

/// `max_entries` of the previous design's exact-IPv4 hash (`BL_V4_CAPACITY` before the table);
/// also the capacity of the stand-alone hashes of the design comparison.
pub const PREV_BL_V4_CAPACITY: u32 = 1 << 20;

#[derive(Args, Clone)]
pub struct BlArgs {
    /// Number of distinct IPv4 addresses (/32) in the generated list.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// Ranges (/16../24) to add, in percent of `--entries`.
    #[arg(long, default_value_t = 1.0)]
    pub range_percent: f64,
    /// Seed of the list generator (the list is a pure function of seed, entries, range-percent).
    #[arg(long, default_value_t = 0x5195_B1E1)]
    pub seed: u64,
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// BPF_PROG_TEST_RUN repeat count of the single-source (cache-hot) measurement.
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u32,
    /// Distinct sources of the "hot, K sources" measurement (each repeated repeat/K times).
    /// Kept small by default: every XDP test run with repeat > 1 makes the kernel swap the
    /// XDP dispatcher twice (two synchronize_rcu()), i.e. several ms per call.
    #[arg(long, default_value_t = 64)]
    pub diverse: usize,
    /// Distinct sources of the "cold" measurement (each run once: one syscall per packet).
    #[arg(long, default_value_t = 65536)]
    pub cold: usize,
    /// Per-command time limit for ipset / nft, seconds.
    #[arg(long, default_value_t = 600)]
    pub peer_timeout: u64,
    /// Skip the ipset / nft measurements.
    #[arg(long)]
    pub skip_peers: bool,
    /// Skip the second program instance (full-size all-in-LPM and previous hash design rows,
    /// the hash fill/drain timings of the design comparison).
    #[arg(long)]
    pub skip_lpm_full: bool,
    /// Wait before reading /proc/meminfo after a change, milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub settle_ms: u64,
    /// Directory for the generated files (default: a fresh directory under /tmp, removed at the end).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Keep the generated files.
    #[arg(long)]
    pub keep_files: bool,
}

impl BlArgs {
    pub fn settle(&self) -> Duration {
        Duration::from_millis(self.settle_ms)
    }
}

/// Run the benchmark in `--workdir` or a fresh directory (removed at the end unless
/// `--keep-files`).
pub fn blacklist(a: BlArgs) -> Result<()> {
    if a.entries == 0 {
        bail!("--entries must be at least 1");
    }
    if a.entries > BL4_TABLE_CAPACITY as usize {
        bail!(
            "--entries {} exceeds the blacklist's IPv4 table capacity of {BL4_TABLE_CAPACITY} (BL4_TABLE_CAPACITY)",
            a.entries
        );
    }
    let (dir, remove_dir) = match &a.workdir {
        Some(d) => (d.clone(), false),
        None => (std::env::temp_dir().join(format!("sipshield-bench-{}", std::process::id())), !a.keep_files),
    };
    fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run(&a, &dir);
    if remove_dir {
        let _ = fs::remove_dir_all(&dir);
    }
    result
}

/// The generated list, written as a sipshield list file.
pub struct Listing {
    pub g: Generated,
    pub path: PathBuf,
    pub gen_secs: f64,
}

fn write_list(a: &BlArgs, dir: &Path) -> Result<Listing> {
    let n_ranges = ((a.entries as f64 * a.range_percent / 100.0).round() as usize).min(BL_NET_CAPACITY as usize / 2);
    let t = Instant::now();
    let g = Generated::new(a.entries, n_ranges, a.seed)?;
    let path = dir.join("blacklist.txt");
    let text = g.list_text();
    fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
    let gen_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "generated {} addresses + {} ranges = {} entries in {gen_secs:.2} s → {} ({:.1} MB)",
        g.addrs.len(),
        g.ranges.len(),
        g.total(),
        path.display(),
        text.len() as f64 / 1e6
    );
    Ok(Listing { g, path, gen_secs })
}

/// Everything the stages measured, for [`report`].
pub struct Results {
    pub listing: Listing,
    pub load: stages::Load,
    pub breakdown: stages::Breakdown,
    pub capped: stages::Capped,
    pub lookups: Vec<Lookup>,
    /// `lpm_only_full` and `previous_hash_full` of the second instance (None when skipped).
    pub second: Option<stages::Second>,
    pub prealloc: Value,
    pub tab_check: Value,
    pub lean: Value,
    pub peers: Vec<stages::PeerResult>,
}

fn run(a: &BlArgs, dir: &Path) -> Result<()> {
    let listing = write_list(a, dir)?;
    let probes = Probes::new(&listing.g, a.cold.max(a.diverse).max(1), a.seed)?;
    let mut lookups = vec![];
    let (mut filter, load, list) = stages::load(a, &listing, &probes, &mut lookups)?;
    let breakdown = stages::breakdown(&mut filter, &load, &list)?;
    let capped = stages::capped(a, &mut filter, &listing.g, &list, &probes, &mut lookups)?;
    drop(filter);
    let second = match a.skip_lpm_full {
        true => None,
        false => Some(stages::second_instance(a, &list, &probes, &mut lookups)?),
    };
    let (prealloc, tab_check, lean) = stages::side_experiments(a, &list, &listing.path);
    drop(list);
    let peers = stages::peers(a, &listing.g, &probes, dir)?;
    let r = Results { listing, load, breakdown, capped, lookups, second, prealloc, tab_check, lean, peers };
    let (table, out) = report::report(a, &r)?;
    crate::report::emit(&table, &out, a.json)
}
