//! How each cost grows with its work: list size (the blacklist bench at 1k..1M entries), number
//! of sources (the 1M list probed from 1, 64 and 65,536 sources), message length and UA position
//! (sip_bench's cases). Points whose verdict check failed are left out and counted.
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use super::Sources;

#[derive(Clone, Debug, Default, Serialize)]
pub struct ListPoint {
    pub entries: u64,
    pub parse_load_secs: f64,
    pub ipset_secs: Option<f64>,
    pub nft_secs: Option<f64>,
    pub bytes_per_entry: Option<f64>,
    /// Cold miss (unlisted source) minus the empty list, ns.
    pub miss_plus_ns: Option<f64>,
    /// Cold hit on a listed /32, ns.
    pub hit_ns: Option<f64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct SourcePoint {
    pub sources: u64,
    pub miss_ns: f64,
    pub hit_ns: f64,
    pub empty_ns: f64,
}

/// Live blacklist drops (`bl_live`, 400k list) at a number of distinct sources, Mpps.
#[derive(Clone, Debug, Default, Serialize)]
pub struct LivePoint {
    pub sources: u64,
    pub sipshield_mpps: f64,
    pub iptables_ipset_mpps: f64,
    pub nft_netdev_mpps: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct MsgPoint {
    pub case: String,
    pub msg_bytes: u64,
    pub ua_offset: Option<u64>,
    pub ns: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Scaling {
    pub list_size: Vec<ListPoint>,
    pub sources: Vec<SourcePoint>,
    pub live_sources: Vec<LivePoint>,
    pub message: Vec<MsgPoint>,
    /// Points left out because a verdict check failed, with the reason.
    pub left_out: Vec<String>,
    /// What the suite does not measure yet.
    pub not_measured: Vec<String>,
}

fn lookup<'a>(bl: &'a Value, scenario: &str, probe: &str) -> Option<&'a Value> {
    bl["lookup"].as_array()?.iter().find(|l| l["scenario"] == scenario && l["probe"] == probe)
}

fn checked<'a>(bl: &'a Value, scenario: &str, probe: &str, left_out: &mut Vec<String>) -> Option<&'a Value> {
    let l = lookup(bl, scenario, probe)?;
    if l["action_as_expected"].as_bool() == Some(true) {
        Some(l)
    } else {
        left_out.push(format!("{} entries: {scenario} {probe}: action {}", bl["entries"], l["action"]));
        None
    }
}

const FULL: &str = "table /32 + LPM ranges";

fn list_point(bl: &Value, left_out: &mut Vec<String>) -> Option<ListPoint> {
    let empty = checked(bl, "empty blacklist", "miss", left_out).and_then(|l| l["cold_median_ns"].as_f64());
    let miss = checked(bl, FULL, "miss", left_out).and_then(|l| l["cold_median_ns"].as_f64());
    let hit = checked(bl, FULL, "hit/32", left_out).and_then(|l| l["cold_median_ns"].as_f64());
    Some(ListPoint {
        entries: bl["entries"].as_u64()?,
        parse_load_secs: bl["sipshield"]["total_secs"].as_f64()?,
        ipset_secs: bl["peers"]["ipset"]["load_secs"].as_f64(),
        nft_secs: bl["peers"]["nft"]["load_secs"].as_f64(),
        bytes_per_entry: bl["targets"]["memory_total_bytes_per_entry"].as_f64(),
        miss_plus_ns: miss.zip(empty).map(|(m, e)| m - e),
        hit_ns: hit,
    })
}

pub fn scaling(s: &Sources) -> Scaling {
    let mut out = Scaling::default();
    let mut lists: Vec<&Value> = s.ok.iter().filter(|(k, _)| k.starts_with("blacklist")).map(|(_, v)| v).collect();
    lists.sort_by_key(|v| v["entries"].as_u64().unwrap_or(0));
    for bl in lists {
        if let Some(p) = list_point(bl, &mut out.left_out) {
            out.list_size.push(p);
        }
    }
    if let Some(bl) = s.get("blacklist") {
        let mut lo = vec![];
        if let (Some(m), Some(h), Some(e)) = (
            checked(bl, FULL, "miss", &mut lo),
            checked(bl, FULL, "hit/32", &mut lo),
            checked(bl, "empty blacklist", "miss", &mut lo),
        ) {
            let n = |k: &str| m[k].as_u64().unwrap_or(0);
            for (sources, key) in [
                (1, "hot_1_source_ns"),
                (n("hot_k_sources"), "hot_k_sources_ns"),
                (n("cold_sources"), "cold_median_ns"),
            ] {
                let g = |v: &Value| v[key].as_f64().unwrap_or(f64::NAN);
                out.sources.push(SourcePoint { sources, miss_ns: g(m), hit_ns: g(h), empty_ns: g(e) });
            }
        }
        out.left_out.extend(lo);
    }
    if let Some(live) = s.get("bl_live") {
        for c in live["cases"].as_array().into_iter().flatten() {
            let run = |k: &str, side: &str| &c[k][side];
            let sides = [run("iptables_ipset", "sipshield"), run("iptables_ipset", "peer"), run("nft_netdev", "peer")];
            if sides.iter().any(|r| r["dropped_fraction"].as_f64().is_none_or(|x| x < super::rows::MIN_ACCOUNTED)) {
                out.left_out.push(format!("live, {} sources: frames not accounted for", c["sources"]));
                continue;
            }
            let mpps = |r: &Value| r["pps"].as_f64().unwrap_or(f64::NAN) / 1e6;
            out.live_sources.push(LivePoint {
                sources: c["sources"].as_u64().unwrap_or(0),
                sipshield_mpps: mpps(sides[0]),
                iptables_ipset_mpps: mpps(sides[1]),
                nft_netdev_mpps: mpps(sides[2]),
            });
        }
    }
    if let Some(sip) = s.get("sip") {
        for c in sip["per_packet"]["cases"].as_array().into_iter().flatten() {
            let case = c["case"].as_str().unwrap_or("").to_string();
            if case.contains("non-SIP") {
                continue;
            }
            out.message.push(MsgPoint {
                case,
                msg_bytes: c["msg_bytes"].as_u64().unwrap_or(0),
                ua_offset: c["ua_offset"].as_u64(),
                ns: c["ns_per_packet"].as_f64().unwrap_or(f64::NAN),
            });
        }
        out.message.sort_by_key(|p| p.msg_bytes);
    }
    out.not_measured = vec![
        "signatures 15 -> 1,000: the suite loads the default signature set only".into(),
        "live drop rate at 1 and 1M sources: bl_live measures 1k and 400k (its list size)".into(),
    ];
    out
}

fn o(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

pub fn table(sc: &Scaling) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "\nSCALING: list size (blacklist, /32s + 1% ranges)");
    let _ = writeln!(
        s,
        "  {:>9} {:>12} {:>10} {:>10} {:>9} {:>14} {:>12}",
        "entries", "parse+load s", "ipset s", "nft s", "B/entry", "miss cold +ns", "hit/32 ns"
    );
    for p in &sc.list_size {
        let _ = writeln!(
            s,
            "  {:>9} {:>12.3} {:>10} {:>10} {:>9} {:>14} {:>12}",
            p.entries,
            p.parse_load_secs,
            o(p.ipset_secs, |x| format!("{x:.3}")),
            o(p.nft_secs, |x| format!("{x:.3}")),
            o(p.bytes_per_entry, |x| format!("{x:.1}")),
            o(p.miss_plus_ns, |x| format!("{x:+.0}")),
            o(p.hit_ns, |x| format!("{x:.0}"))
        );
    }
    let _ = writeln!(s, "SCALING: sources (1M list + 10k ranges, ns/packet, BPF_PROG_TEST_RUN)");
    let _ = writeln!(s, "  {:>9} {:>10} {:>10} {:>10}", "sources", "empty", "miss", "hit/32");
    for p in &sc.sources {
        let _ = writeln!(s, "  {:>9} {:>10.1} {:>10.1} {:>10.1}", p.sources, p.empty_ns, p.miss_ns, p.hit_ns);
    }
    let _ = writeln!(s, "SCALING: sources, live blacklist drops (400k list, Mpps, sipshield's run against iptables)");
    let _ = writeln!(s, "  {:>9} {:>10} {:>16} {:>12}", "sources", "sipshield", "iptables+ipset", "nft netdev");
    for p in &sc.live_sources {
        let _ = writeln!(
            s,
            "  {:>9} {:>10.3} {:>16.3} {:>12.3}",
            p.sources, p.sipshield_mpps, p.iptables_ipset_mpps, p.nft_netdev_mpps
        );
    }
    let _ = writeln!(s, "SCALING: message length and UA position (whole SIP path, ns/packet)");
    let _ = writeln!(s, "  {:>9} {:>7} {:>9}  case", "msg B", "UA at", "ns");
    for p in &sc.message {
        let ua = p.ua_offset.map(|u| u.to_string()).unwrap_or_else(|| "-".into());
        let _ = writeln!(s, "  {:>9} {:>7} {:>9.1}  {}", p.msg_bytes, ua, p.ns, p.case);
    }
    for l in &sc.left_out {
        let _ = writeln!(s, "  left out (INVALID): {l}");
    }
    for l in &sc.not_measured {
        let _ = writeln!(s, "  not measured: {l}");
    }
    s
}
