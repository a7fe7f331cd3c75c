//! `bl_live`: blacklisted sources dropped with live frames over a veth, sipshield against an
//! nftables set on the netdev ingress hook and against iptables raw + ipset, on the same frames
//! in the same run (see bench/LIVE.md for the harness and its safety).
//!
//! The list is `sipshield-bench blacklist`'s generated list (`--entries` addresses + 1 %
//! ranges, `--seed`). The generator (`sipshield_gen`) rewrites each frame's source from a pool
//! of listed addresses, so one live-frames syscall sends from every source of the pool: two
//! cases, `--sources` (default 1,000) sources and every listed address as a distinct source.
use std::fmt::Write as _;
use std::net::IpAddr;

use anyhow::{bail, Result};
use clap::Parser;
use serde_json::{json, Value};
use sipshield::filter::{Filter, ListKind, XDP_DROP};
use sipshield::lists::IpList;
use sipshield_bench::blacklist::list::Generated;
use sipshield_bench::harness::helpers::set_gen_sources;
use sipshield_bench::harness::live::{compare, harness_floor, run_peer, run_sipshield, Comparison, Floor, LiveArgs};
use sipshield_bench::harness::start;
use sipshield_bench::harness::testbed::{Testbed, RX_ADDR, RX_IF};
use sipshield_bench::peers;
use sipshield_bench::report::{self, mpps};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use xdp_common::REASON_BLACKLISTED;

#[derive(Parser)]
#[command(about = "sipshield blacklist drops vs nftables (netdev ingress) and iptables + ipset, live frames (root)")]
struct Args {
    /// Listed IPv4 addresses (plus 1 % ranges).
    #[arg(long, default_value_t = 400_000)]
    entries: usize,
    /// Sources of the first case (listed addresses, cycled by the generator).
    #[arg(long, default_value_t = 1000)]
    sources: usize,
    /// Seed of the list generator.
    #[arg(long, default_value_t = 0x5195_B1E1)]
    seed: u64,
    #[command(flatten)]
    live: LiveArgs,
}

/// One case: a source pool, both peers against sipshield, the floor with the same pool.
struct Case {
    sources: usize,
    ipt: Comparison,
    nft: Comparison,
    floor: Floor,
}

fn template(tb: &Testbed, src: u32) -> Vec<u8> {
    let payload = SipMessage::request("OPTIONS", "100", "example.com").build();
    PacketBuilder::udp(IpAddr::V4(src.into()), RX_ADDR.parse().unwrap(), 5070, 5060)
        .payload(&payload)
        .macs(tb.macs().0, tb.macs().1)
        .build()
}

/// Every pool against one peer, the peer's rules loaded once (`load`, `unload`) around them.
fn against(
    a: &Args,
    tb: &Testbed,
    f: &mut Filter,
    pools: &[&[u32]],
    frames: &[Vec<u8>],
    drops: &dyn Fn() -> Result<u64>,
) -> Result<Vec<Comparison>> {
    let per = a.live.frames.min(u32::MAX as u64) as u32;
    let mut out = vec![];
    for pool in pools {
        set_gen_sources(pool)?;
        eprintln!("live: {} sources, {per} frames per run, {} runs per side ...", pool.len(), a.live.runs);
        out.push(compare(
            a.live.runs,
            || run_sipshield(tb, f, frames, per, REASON_BLACKLISTED),
            || run_peer(tb, frames, per, drops),
        )?);
    }
    Ok(out)
}

/// Both peers and the harness floor for every pool of sources.
fn cases(a: &Args, tb: &Testbed, f: &mut Filter, pools: &[&[u32]], texts: &(String, String)) -> Result<Vec<Case>> {
    let frames = vec![template(tb, pools[0][0])];
    peers::ipset_iptables_load(&tb.rx, &texts.0)?;
    let ipt = against(a, tb, f, pools, &frames, &|| Ok(peers::iptables_counters(&tb.rx)?.iter().sum()));
    peers::ipset_iptables_delete(&tb.rx)?;
    let ipt = ipt?;
    peers::nft_netdev_load(&tb.rx, &texts.1)?;
    let nft = against(a, tb, f, pools, &frames, &|| peers::nft_netdev_counter(&tb.rx));
    peers::nft_netdev_delete(&tb.rx)?;
    let nft = nft?;
    let per = a.live.frames.min(u32::MAX as u64) as u32;
    let mut out = vec![];
    for ((pool, ipt), nft) in pools.iter().zip(ipt).zip(nft) {
        set_gen_sources(pool)?;
        let floor = harness_floor(tb, &frames, per)?;
        out.push(Case { sources: pool.len(), ipt, nft, floor });
    }
    set_gen_sources(&[])?;
    Ok(out)
}

fn case_json(c: &Case) -> Value {
    json!({
        "sources": c.sources,
        "harness_floor": report::floor_json(&c.floor),
        "iptables_ipset": report::comparison_json(&c.ipt, "peer", Some(&c.floor)),
        "nft_netdev": report::comparison_json(&c.nft, "peer", Some(&c.floor)),
    })
}

fn case_table(t: &mut String, c: &Case) {
    let _ = writeln!(t, "\n-- {} distinct sources --", c.sources);
    for (name, cmp) in [("iptables raw + ipset", &c.ipt), ("nftables netdev ingress set", &c.nft)] {
        let _ = writeln!(
            t,
            "sipshield {} vs {name} {}: {:.2}x; dropped/sent {:.3} / {:.3}",
            mpps(cmp.sip.median.pps()),
            mpps(cmp.peer.median.pps()),
            cmp.ratio(),
            cmp.sip.median.dropped_fraction(),
            cmp.peer.median.dropped_fraction()
        );
        let _ = writeln!(t, "  {}", report::receiver_line(cmp, &c.floor, name));
    }
    let _ = writeln!(t, "{}", report::floor_line(&c.floor));
}

fn main() -> Result<()> {
    let a = Args::parse();
    let t0 = start()?;
    let n_ranges = a.entries / 100;
    let g = Generated::new(a.entries, n_ranges, a.seed)?;
    let list = IpList {
        v4: g.addrs.iter().map(|x| x.to_be_bytes()).collect(),
        net4: g.ranges.iter().map(|(n, l)| (n.to_be_bytes(), *l)).collect(),
        ..Default::default()
    };
    let mut f = Filter::load_private()?;
    f.swap_list(ListKind::Blacklist, &list)?;
    let ranges: Vec<(u32, u8)> = g.ranges.clone();
    let texts = (peers::ipset_text(&g.addrs, &ranges), peers::nft_netdev_blacklist_text(&g.addrs, &ranges, RX_IF));
    if a.sources == 0 || a.sources > g.addrs.len() {
        bail!("--sources must be 1..={}", g.addrs.len());
    }
    let cases = a.live.on_testbed("bl", |tb| {
        // Check the path once: a listed source is dropped as blacklisted.
        if f.test_run(&template(tb, g.addrs[0]))? != XDP_DROP {
            bail!("a listed source is not dropped");
        }
        cases(&a, tb, &mut f, &[&g.addrs[..a.sources], &g.addrs], &texts)
    })?;
    let mut t = report::heading("bl_live");
    let _ = writeln!(t, "list: {} addresses + {} ranges (seed {:#x})", g.addrs.len(), ranges.len(), a.seed);
    for c in cases.iter().flatten() {
        case_table(&mut t, c);
    }
    report::total_time(&mut t, t0);
    let out = json!({
        "benchmark": "blacklist_live",
        "environment": report::env_json(),
        "addresses": g.addrs.len(),
        "ranges": ranges.len(),
        "seed": a.seed,
        "frames_per_run": a.live.frames,
        "runs": a.live.runs,
        "cases": cases.iter().flatten().map(case_json).collect::<Vec<_>>(),
        "total_secs": t0.elapsed().as_secs_f64(),
    });
    report::emit(&t, &out, a.live.json)
}
