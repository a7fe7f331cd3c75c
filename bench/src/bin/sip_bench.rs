//! `sip_bench`: what sipshield's SIP path costs per packet, and how fast it drops scanners on
//! live traffic compared with iptables doing the same job.
//!
//! 1. Per-packet cost (`BPF_PROG_TEST_RUN`, repeat): the empty XDP program (`sipshield_pass`)
//!    against sipshield's full SIP path on a legitimate ~500-byte REGISTER (User-Agent last,
//!    default scanner signatures, a `[ratelimit.register]` rule too generous to ever limit) and
//!    on scanner REGISTERs with the User-Agent near the start, ~500 and ~1200 bytes in.
//! 2. Scanner-drop throughput with live frames over a veth between two throwaway network
//!    namespaces: sipshield attached natively on the receiving end, against an empty XDP
//!    program (for veth NAPI) plus iptables raw-table rules (`-m string` scanner drop and a
//!    `hashlimit` REGISTER limit) in the receiving namespace.
//!
//! Run as root: `cargo run --release -p sipshield-bench --bin sip_bench -- [--json]`.
//! See bench/LIVE.md. The harness, the peers and the report helpers are the library's.
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Parser;
use serde_json::{json, Value};
use sipshield::config::Config;
use sipshield::filter::{Filter, XDP_DROP, XDP_PASS};
use sipshield_bench::harness::cost::cost_rounds;
use sipshield_bench::harness::helpers::{Prog, EMPTY};
use sipshield_bench::harness::live::{
    call_overhead, compare, harness_floor, run_sipshield, Comparison, Floor, LiveArgs,
};
use sipshield_bench::harness::testbed::{Testbed, RX_ADDR};
use sipshield_bench::harness::{start, stats};
use sipshield_bench::peers;
use sipshield_bench::report::{self, action_name, mpps, pass_fail};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use xdp_common::{REASON_NAMES, REASON_PASS, REASON_RATELIMIT, REASON_SCANNER};

/// Targets.
const TARGET_COST_RATIO: f64 = 8.0;
const TARGET_SPEEDUP_START: f64 = 2.0;
const TARGET_SPEEDUP_500: f64 = 1.5;

#[derive(Parser, Clone)]
#[command(
    name = "sip_bench",
    about = "sipshield SIP path: per-packet cost and scanner-drop throughput vs iptables (root)"
)]
struct Args {
    /// Interleaved rounds of the per-packet cost measurement (the fastest round counts, the
    /// median is shown too).
    #[arg(long, default_value_t = 21)]
    rounds: usize,
    /// Distinct source addresses of the live frames (203.0.113.0/24, then 198.18.0.0/15), one
    /// frame each, cycled. Every distinct frame costs one live-frames syscall with a fixed
    /// ~25-40 ms of RCU waits, so the default keeps the whole run under 3 minutes; scanner
    /// frames are dropped before the per-source rate limit on both sides.
    #[arg(long, default_value_t = 128)]
    sources: usize,
    /// Measure the per-packet cost with this TOML config instead of the built-in one (e.g. to
    /// see what one feature costs). Its `[sip] ports` must include 5060; the verdict checks
    /// are skipped.
    #[arg(long, value_name = "FILE")]
    cost_config: Option<PathBuf>,
    /// The options both live benchmarks have (--json, --repeat, --frames, --runs, --skip-live).
    #[command(flatten)]
    live: LiveArgs,
}

/// sipshield doing the scanner job: default signatures, a per-source REGISTER rate rule, no bans.
/// * per-packet cost: rate 1e6/s (the configuration's maximum), burst 1e6, so the same source
///   repeated 1e6 times is never limited and the legit frame takes the whole pass path
///   (checked: the `ratelimit` counter must stay 0);
/// * live throughput: rate 5/s, burst 20, the same job as the iptables rules.
fn sip_config(rate: f64, burst: u32) -> String {
    format!(
        "[sip]\nports = [5060, 5061]\n[scanners]\nenabled = true\ndefaults = true\n\
         [ratelimit.register]\nrate = {rate:?}\nburst = {burst}\nban_after = 0\n[metrics]\nenabled = false\n"
    )
}

/// Distinct sources (frames) per per-packet-cost case.
const COST_SOURCES: usize = 2;

const LEGIT_UA: &str = "Linphone/5.2.0 (belle-sip/5.2.0)";
const SCANNER_UA: &str = "friendly-scanner";
const SIP_PORT: u16 = 5060;

/// Source address number `i` (documentation / benchmarking ranges only).
fn source(i: usize) -> IpAddr {
    let i = i as u32;
    if i < 256 {
        Ipv4Addr::new(203, 0, 113, i as u8).into()
    } else {
        // 198.18.0.0/15 (benchmarking), for more than 256 sources.
        Ipv4Addr::from(0xC612_0000u32 + (i - 256) % (1 << 17)).into()
    }
}

/// A legitimate REGISTER of about 500 bytes whose User-Agent is the last header before
/// Content-Length.
fn legit_sip() -> Vec<u8> {
    SipMessage::request("REGISTER", "100", "example.com").user_agent(LEGIT_UA).user_agent_at(440).build()
}

/// A legitimate INVITE to an international number (the toll-fraud guard walks its Request-URI).
fn legit_invite() -> Vec<u8> {
    SipMessage::request("INVITE", "100", "example.com")
        .uri("sip:+33-1-23-45-67-89@example.com;user=phone")
        .user_agent(LEGIT_UA)
        .user_agent_at(440)
        .build()
}

/// A scanner REGISTER with its User-Agent at `at` bytes (0 = right after the request line).
fn scanner_sip(at: usize) -> Vec<u8> {
    SipMessage::request("REGISTER", "100", "example.com").user_agent(SCANNER_UA).user_agent_at(at).build()
}

fn ua_offset(msg: &[u8]) -> usize {
    let needle = b"User-Agent:";
    msg.windows(needle.len()).position(|w| w == needle).unwrap_or(usize::MAX)
}

/// Frame from source `i` to the SIP port, with the testbed's MACs for live frames.
fn frame(i: usize, payload: &[u8], macs: Option<([u8; 6], [u8; 6])>) -> Vec<u8> {
    let mut b =
        PacketBuilder::udp(source(i), RX_ADDR.parse().unwrap(), 5060 + (i % 1000) as u16, SIP_PORT).payload(payload);
    if let Some((s, d)) = macs {
        b = b.macs(s, d);
    }
    b.build()
}

/// `n` frames of `payload` to the SIP port from sources 0..n.
fn frames(n: usize, payload: &[u8], macs: Option<([u8; 6], [u8; 6])>) -> Vec<Vec<u8>> {
    (0..n).map(|i| frame(i, payload, macs)).collect()
}

// ------------------------------------------------------------------------------------------
// 1. Per-packet cost.
// ------------------------------------------------------------------------------------------

struct CostRow {
    name: &'static str,
    ua_at: Option<usize>,
    msg_len: usize,
    frame_len: usize,
    action: u32,
    reason: &'static str,
    /// Fastest round (noise on a shared VM only ever adds time).
    ns: f64,
    ns_median: f64,
    /// Fastest round / the empty program's fastest round: the figure the target is checked on.
    ratio: f64,
    /// Median over rounds of ns / (empty program's ns in the same round), for reference.
    ratio_median: f64,
}

/// A per-packet-cost case: name, SIP message, expected action and reason.
type Case = (&'static str, Vec<u8>, u32, u32);

fn cost_cases(legit: &[u8]) -> Vec<Case> {
    vec![
        ("legit REGISTER, UA last", legit.to_vec(), XDP_PASS, REASON_PASS),
        ("scanner, UA near the start", scanner_sip(0), XDP_DROP, REASON_SCANNER),
        ("scanner, UA ~500 B in", scanner_sip(500), XDP_DROP, REASON_SCANNER),
        ("scanner, UA ~1200 B in", scanner_sip(1200), XDP_DROP, REASON_SCANNER),
        // The toll-fraud guard's pass path (with `[tollfraud]` in a --cost-config).
        ("legit INVITE to +33 1 23 45 67 89", legit_invite(), XDP_PASS, REASON_PASS),
    ]
}

/// The filter of the per-packet cost: the built-in config, or `--cost-config` (Some(text)).
fn cost_filter(a: &Args) -> Result<(Filter, Option<String>)> {
    let custom = match &a.cost_config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Config::parse(&text, p)?;
            Some(text)
        }
        None => None,
    };
    let toml = custom.clone().unwrap_or_else(|| sip_config(1e6, 1_000_000));
    Ok((sipshield_tests::filter_with(&toml), custom))
}

/// Check every case once (verdict and the reason counter) before timing it.
fn check_cases(f: &mut Filter, cases: &[Case]) -> Result<()> {
    for (name, msg, want_action, want_reason) in cases {
        let fr = frame(0, msg, None);
        let before = f.stats()?.reason_total(*want_reason).packets;
        let act = f.test_run(&fr)?;
        let after = f.stats()?.reason_total(*want_reason).packets;
        if act != *want_action || after != before + 1 {
            bail!(
                "{name}: expected {} counted as reason {want_reason}, got {} (counter +{})",
                action_name(*want_action),
                action_name(act),
                after - before
            );
        }
    }
    Ok(())
}

/// The empty program's ns per packet (fastest round) and a row per case, all measured
/// round-robin (see `cost_rounds`): the empty program on the legit frames, every case, and the
/// legit message to a port that is not a SIP port (header pipeline and IP-level checks only).
fn per_packet_cost(a: &Args) -> Result<(f64, Vec<CostRow>)> {
    let (mut f, custom) = cost_filter(a)?;
    let legit = legit_sip();
    let cases = cost_cases(&legit);
    if custom.is_none() {
        check_cases(&mut f, &cases)?;
    }
    let mut frame_sets = vec![frames(COST_SOURCES, &legit, None)];
    frame_sets.extend(cases.iter().map(|(_, msg, _, _)| frames(COST_SOURCES, msg, None)));
    frame_sets.push(
        (0..COST_SOURCES)
            .map(|i| PacketBuilder::udp(source(i), RX_ADDR.parse().unwrap(), 5060, 9999).payload(&legit).build())
            .collect(),
    );
    let mut specs: Vec<(Prog, &[Vec<u8>])> = vec![(EMPTY, &frame_sets[0][..])];
    specs.extend(frame_sets[1..].iter().map(|fs| (Prog::Sipshield, &fs[..])));
    let measured = cost_rounds(&mut f, &specs, a.live.repeat, a.rounds)?;
    let empty_rounds = &measured[0].rounds;
    let empty_ns = stats::min(empty_rounds);
    let names = cases
        .iter()
        .map(|(name, msg, _, reason)| (*name, Some(ua_offset(msg)), msg.len(), REASON_NAMES[*reason as usize]))
        .chain(std::iter::once(("legit to a non-SIP port (ref.)", None, legit.len(), "pass")));
    let mut rows = vec![];
    for (i, (name, ua_at, msg_len, reason)) in names.enumerate() {
        let c = &measured[i + 1];
        let ratios: Vec<f64> = c.rounds.iter().zip(empty_rounds).map(|(n, e)| n / e).collect();
        rows.push(CostRow {
            name,
            ua_at,
            msg_len,
            frame_len: frame_sets[i + 1][0].len(),
            action: c.actions[0],
            reason,
            ns: stats::min(&c.rounds),
            ns_median: stats::median(&c.rounds),
            ratio: stats::min(&c.rounds) / empty_ns,
            ratio_median: stats::median(&ratios),
        });
    }
    // The legit frames must never have been rate limited.
    let rl = f.stats()?.reason_total(REASON_RATELIMIT).packets;
    if rl != 0 && custom.is_none() {
        bail!("the legit frames were rate limited ({rl} packets): the cost measurement is not of the pass path");
    }
    Ok((empty_ns, rows))
}

// ------------------------------------------------------------------------------------------
// 2. Live scanner-drop throughput.
// ------------------------------------------------------------------------------------------

struct LiveCase {
    name: &'static str,
    ua_at: usize,
    frame_len: usize,
    target: f64,
    cmp: Comparison,
}

impl LiveCase {
    fn pass(&self) -> bool {
        self.cmp.ratio() >= self.target
    }
}

struct LiveResult {
    cases: Vec<LiveCase>,
    /// Fixed wall-clock cost of one live-frames syscall.
    overhead: f64,
    /// Harness floor: the same frames into an empty XDP_DROP program (generator + veth only).
    floor: Floor,
}

fn live(a: &Args, tb: &Testbed) -> Result<LiveResult> {
    let mut f = sipshield_tests::filter_with(&sip_config(5.0, 20));
    let per = (a.live.frames / a.sources as u64).max(1) as u32;
    let overhead = call_overhead(tb, &frame(0, &scanner_sip(0), None), 5).unwrap_or(f64::NAN);
    let mut cases = vec![];
    for (name, at, target) in [
        ("scanner, UA near the start", 0usize, TARGET_SPEEDUP_START),
        ("scanner, UA ~500 B in", 500, TARGET_SPEEDUP_500),
    ] {
        let msg = scanner_sip(at);
        let frames = frames(a.sources, &msg, Some(tb.macs()));
        eprintln!(
            "live: {name}: {} frames x {per}, {} runs each, sipshield and iptables interleaved ...",
            frames.len(),
            a.live.runs
        );
        let cmp = compare(
            a.live.runs,
            || run_sipshield(tb, &mut f, &frames, per, REASON_SCANNER),
            || peers::iptables_run(tb, &frames, per, SCANNER_UA),
        )?;
        cases.push(LiveCase { name, ua_at: ua_offset(&msg), frame_len: frames[0].len(), target, cmp });
    }
    eprintln!("live: harness floor (empty XDP_DROP on the receiver) ...");
    let floor = harness_floor(tb, &frames(a.sources, &scanner_sip(0), Some(tb.macs())), per)?;
    Ok(LiveResult { cases, overhead, floor })
}

// ------------------------------------------------------------------------------------------
// Report.
// ------------------------------------------------------------------------------------------

fn cost_table(t: &mut String, a: &Args, empty_ns: f64, rows: &[CostRow]) -> std::fmt::Result {
    writeln!(
        t,
        "\n-- per-packet cost, BPF_PROG_TEST_RUN (repeat {}, {} interleaved rounds, {} sources per case) --",
        a.live.repeat, a.rounds, COST_SOURCES
    )?;
    writeln!(t, "   ns/pkt and x empty: fastest round (noise only adds time); median columns for reference")?;
    writeln!(
        t,
        "{:<30} {:>6} {:>6} {:>7} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "case", "msg B", "UA at", "verdict", "reason", "ns/pkt", "x empty", "med ns", "med x"
    )?;
    let empty_median = stats::median(&rows.iter().map(|r| r.ns_median / r.ratio_median).collect::<Vec<_>>());
    writeln!(
        t,
        "{:<30} {:>6} {:>6} {:>7} {:>8} {:>8.1} {:>8} {:>8.1} {:>8}",
        "empty XDP program", rows[0].msg_len, "-", "PASS", "-", empty_ns, "1.0", empty_median, "1.0"
    )?;
    for r in rows {
        writeln!(
            t,
            "{:<30} {:>6} {:>6} {:>7} {:>8} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
            r.name,
            r.msg_len,
            r.ua_at.map_or("-".to_string(), |x| x.to_string()),
            action_name(r.action),
            r.reason,
            r.ns,
            r.ratio,
            r.ns_median,
            r.ratio_median
        )?;
    }
    let legit_ratio = rows[0].ratio; // rows[0]: legit REGISTER
    writeln!(
        t,
        "target: legit full SIP path <= {TARGET_COST_RATIO}x the empty program: {:.1}x -> {}",
        legit_ratio,
        pass_fail(legit_ratio <= TARGET_COST_RATIO)
    )
}

fn live_table(t: &mut String, a: &Args, l: &LiveResult) -> std::fmt::Result {
    let Some(first) = l.cases.first() else { return Ok(()) };
    writeln!(
        t,
        "\n-- scanner-drop throughput, live frames over veth ({} frames/run from {} sources, median of {} runs) --",
        first.cmp.sip.median.sent, a.sources, a.live.runs
    )?;
    writeln!(
        t,
        "   pps = frames dropped / kernel-measured time of the live-frames loop (generator + veth + receiver, one CPU)"
    )?;
    writeln!(
        t,
        "{:<28} {:>6} {:>12} {:>12} {:>8} {:>8} {:>6}",
        "case", "UA at", "sipshield", "iptables", "ratio", "target", ""
    )?;
    for c in &l.cases {
        let (sip, ipt) = (&c.cmp.sip, &c.cmp.peer);
        writeln!(
            t,
            "{:<28} {:>6} {:>12} {:>12} {:>7.2}x {:>6.1}x {:>6}",
            c.name,
            c.ua_at,
            mpps(sip.median.pps()),
            mpps(ipt.median.pps()),
            c.cmp.ratio(),
            c.target,
            pass_fail(c.pass())
        )?;
        writeln!(
            t,
            "    runs (Mpps): sipshield {}, iptables {}; dropped/sent: sipshield {:.3}, iptables {:.3}",
            report::runs_mpps(sip),
            report::runs_mpps(ipt),
            sip.median.dropped_fraction(),
            ipt.median.dropped_fraction()
        )?;
    }
    writeln!(t, "{}", report::floor_line(&l.floor))?;
    for c in &l.cases {
        writeln!(t, "  {}: {}", c.name, report::receiver_line(&c.cmp, &l.floor, "iptables"))?;
    }
    writeln!(
        t,
        "(each live-frames syscall also costs ~{:.1} ms of fixed wall time, excluded above; see LIVE.md)",
        l.overhead * 1e3
    )
}

fn out_json(a: &Args, empty_ns: f64, rows: &[CostRow], lr: Option<&LiveResult>, t0: Instant) -> Value {
    let legit_ratio = rows[0].ratio;
    let cost_json: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"case": r.name, "msg_bytes": r.msg_len, "frame_bytes": r.frame_len, "ua_offset": r.ua_at,
                   "verdict": action_name(r.action), "reason": r.reason, "ns_per_packet": r.ns, "ratio_to_empty": r.ratio,
                   "ns_per_packet_median": r.ns_median, "ratio_to_empty_median": r.ratio_median})
        })
        .collect();
    let cases = lr.map_or(&[][..], |l| &l.cases[..]);
    let live_json: Vec<Value> = cases
        .iter()
        .map(|c| {
            let base = json!({"case": c.name, "ua_offset": c.ua_at, "frame_bytes": c.frame_len,
                              "target_ratio": c.target, "pass": c.pass()});
            report::merged(base, report::comparison_json(&c.cmp, "iptables", lr.map(|l| &l.floor)))
        })
        .collect();
    let mut targets = vec![report::target(
        "per-packet cost, legit REGISTER full SIP path / empty program",
        legit_ratio,
        format!("<= {TARGET_COST_RATIO}"),
        legit_ratio <= TARGET_COST_RATIO,
    )];
    for c in cases {
        let name = format!("live scanner-drop pps sipshield / iptables, {}", c.name);
        targets.push(report::target(name, c.cmp.ratio(), format!(">= {}", c.target), c.pass()));
    }
    json!({
        "benchmark": "sip",
        "all_targets_pass": report::all_pass(&targets), "targets": targets,
        "environment": report::env_json(),
        "per_packet": {
            "repeat": a.live.repeat, "rounds": a.rounds,
            "empty_ns": empty_ns, "cases": cost_json,
            "legit_ratio": legit_ratio, "target_ratio": TARGET_COST_RATIO, "pass": legit_ratio <= TARGET_COST_RATIO,
        },
        "live": {
            "skipped": a.live.skip_live, "frames_per_run": a.live.frames, "sources": a.sources, "runs": a.live.runs,
            "per_call_overhead_secs": lr.map_or(f64::NAN, |l| l.overhead),
            "harness_floor": lr.map(|l| report::floor_json(&l.floor)),
            "peer": "iptables raw PREROUTING: -m string --algo bm friendly-scanner DROP; -m string REGISTER + hashlimit 5/s burst 20 srcip DROP; sipshield_pass on the veth for NAPI",
            "cases": live_json,
        },
        "total_secs": t0.elapsed().as_secs_f64(),
    })
}

fn main() -> Result<()> {
    let a = Args::parse();
    let t0 = start()?;
    eprintln!("per-packet cost (BPF_PROG_TEST_RUN, repeat {}, {} rounds) ...", a.live.repeat, a.rounds);
    let (empty_ns, rows) = per_packet_cost(&a)?;
    let lr = a.live.on_testbed("sip", |tb| live(&a, tb))?;
    let mut t = report::heading("sip_bench");
    cost_table(&mut t, &a, empty_ns, &rows)?;
    if let Some(l) = &lr {
        live_table(&mut t, &a, l)?;
    }
    report::total_time(&mut t, t0);
    let out = out_json(&a, empty_ns, &rows, lr.as_ref(), t0);
    report::emit(&t, &out, a.live.json)
}
