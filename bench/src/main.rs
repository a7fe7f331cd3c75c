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
//! The stages live in the library ([`sipshield_bench::blacklist`]).
use anyhow::Result;
use clap::{Parser, Subcommand};
use sipshield_bench::blacklist::hash_fill::{hash_fill, HashFillArgs};
use sipshield_bench::blacklist::{blacklist, BlArgs};
use sipshield_bench::suite::{suite, SuiteArgs};

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
    /// Every benchmark (blacklist at several sizes, sip_bench, geo_bench) in one run: one
    /// validated table, the scaling table, JSON and SVG plots (what `cargo xtask bench` runs).
    Suite(SuiteArgs),
}

fn main() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Blacklist(a) => blacklist(a),
        Cmd::HashFill(a) => hash_fill(a),
        Cmd::Suite(a) => suite(a),
    }
}
