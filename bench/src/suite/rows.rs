//! The rows of the suite's table: one [`RowDef`] per measured claim, in [`ROWS`]. A row reads
//! the JSON of the benchmarks that ran (by source key), checks that the measurement is valid
//! (verdicts and counters as expected, ≥ 99.9 % of the generated frames accounted for) and
//! returns the figures. Adding a row is adding one entry to [`ROWS`].
use serde::Serialize;
use serde_json::Value;

use super::Sources;

/// Share of the generated frames that must be accounted for (dropped by the mechanism under
/// test, or passed where passing is the verdict) for a live row to count.
pub const MIN_ACCOUNTED: f64 = 0.999;

/// One row of the table, as measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Row {
    pub id: &'static str,
    pub title: &'static str,
    pub peer: &'static str,
    pub target: &'static str,
    /// "valid", "INVALID" (measured, but a check failed: no figure is claimed) or "NOT RUN".
    pub status: &'static str,
    /// Why a row is INVALID or NOT RUN.
    pub reason: Option<String>,
    /// What `value` is: "pps", "ns/packet", "s", "+ns".
    pub unit: &'static str,
    /// sipshield's absolute figure.
    pub value: Option<f64>,
    /// sipshield's ns per packet (1e9 / pps for live rows).
    pub ns_per_packet: Option<f64>,
    /// The peer's figure in the same run, same unit.
    pub peer_value: Option<f64>,
    /// The ratio the target is judged on (sipshield over the peer, or the peer over sipshield
    /// for times, so that bigger is better; per-packet rows: sipshield / peer).
    pub ratio: Option<f64>,
    /// Live rows: the ratio with the harness floor (measured in the same run) subtracted on
    /// both sides.
    pub receiver_ratio: Option<f64>,
    pub floor_ns: Option<f64>,
    /// Ethernet frame bytes (without FCS) of a per-packet row, and the share of the 10 GbE
    /// line-rate budget for that frame size its ns/packet takes.
    pub frame_bytes: Option<u64>,
    pub line_rate_share: Option<f64>,
    /// The target met (None: no target, or not measured).
    pub met: Option<bool>,
    /// Extra figures of the row (printed under it, kept in the JSON).
    pub notes: Vec<String>,
}

/// A row's definition: identity, peer, target and how to read it from the sources.
pub struct RowDef {
    pub id: &'static str,
    pub title: &'static str,
    pub peer: &'static str,
    pub target: &'static str,
    pub measure: fn(&Sources) -> Outcome,
}

/// What a row's `measure` found.
pub enum Outcome {
    Measured(Box<Row>),
    Invalid(String),
    NotRun(String),
}

/// Every row of the table, in order.
pub const ROWS: &[RowDef] = &[
    RowDef {
        id: "blacklist-drop-1k-sources",
        title: "blacklisted drop, 400k list, 1k sources (live)",
        peer: "nftables set (netdev ingress); iptables raw + ipset",
        target: ">= 3x pps",
        measure: |s| blacklist_live_row(s, false, 3.0),
    },
    RowDef {
        id: "blacklist-drop-400k-sources",
        title: "blacklisted drop, 400k list, 400k distinct sources (live)",
        peer: "nftables set (netdev ingress); iptables raw + ipset",
        target: ">= 2x pps",
        measure: |s| blacklist_live_row(s, true, 2.0),
    },
    RowDef {
        id: "blacklist-miss-cold",
        title: "legitimate source's blacklist check, 1M addresses + 10k ranges, cold",
        peer: "the same program with empty lists",
        target: "<= +60 ns",
        measure: |s| miss_row(s, "table /32 + LPM ranges", Some(60.0)),
    },
    RowDef {
        id: "blacklist-miss-cold-no-bitmap",
        title: "  the same, without the /24 bitmap (the lookup before it; reference)",
        peer: "the same program with empty lists",
        target: "(was +560 ns)",
        measure: |s| miss_row(s, crate::blacklist::stages::NO_BITMAP, None),
    },
    RowDef {
        id: "geoip-drop",
        title: "GeoIP drop, real country DB (live)",
        peer: "nftables interval set",
        target: ">= 1.5x pps",
        measure: geo_row,
    },
    RowDef {
        id: "scanner-ua-30",
        title: "scanner UA drop, UA at ~30 B (live)",
        peer: "iptables string --algo bm",
        target: ">= 2x pps",
        measure: |s| scanner_row(s, "scanner, UA near the start"),
    },
    RowDef {
        id: "scanner-ua-500",
        title: "scanner UA drop, UA at ~500 B (live)",
        peer: "iptables string --algo bm",
        target: ">= 2x pps",
        measure: |s| scanner_row(s, "scanner, UA ~500 B in"),
    },
    RowDef {
        id: "register-rate-limit",
        title: "REGISTER rate limit, 10k sources (live)",
        peer: "iptables hashlimit; nft meter",
        target: ">= 2.5x pps, admitted rate within 5%",
        measure: |_| Outcome::NotRun("no live rate-limit benchmark yet (see the report)".into()),
    },
    RowDef {
        id: "legit-sip-live",
        title: "legitimate SIP through every check (live)",
        peer: "XDP_PASS program only",
        target: "<= 10% lower pps",
        measure: |_| Outcome::NotRun("no live pass-path benchmark yet (see the report)".into()),
    },
    RowDef {
        id: "legit-register-500",
        title: "legitimate 500-byte REGISTER, whole SIP path",
        peer: "empty XDP program",
        target: "<= 150 ns/packet",
        measure: |s| cost_row(s, "legit REGISTER, UA last", Some(150.0)),
    },
    RowDef {
        id: "per-check-cost",
        title: "each check added by the policy/auth issues",
        peer: "same program without it",
        target: "<= +20 ns (egress <= +30 ns)",
        measure: |_| Outcome::NotRun("the checks of the policy/auth issues add their rows here".into()),
    },
    RowDef {
        id: "load-1m",
        title: "load 1M entries (parse + load until live)",
        peer: "ipset restore; nft -f",
        target: ">= 2.5x faster, <= 0.7 s, <= 100 B/entry",
        measure: load_row,
    },
    RowDef {
        id: "cost-scanner-ua-34",
        title: "per packet: scanner drop, UA at 34 B",
        peer: "empty XDP program",
        target: "",
        measure: |s| cost_row(s, "scanner, UA near the start", None),
    },
    RowDef {
        id: "cost-scanner-ua-500",
        title: "per packet: scanner drop, UA at 500 B",
        peer: "empty XDP program",
        target: "",
        measure: |s| cost_row(s, "scanner, UA ~500 B in", None),
    },
    RowDef {
        id: "cost-scanner-ua-1200",
        title: "per packet: scanner drop, UA at 1200 B",
        peer: "empty XDP program",
        target: "",
        measure: |s| cost_row(s, "scanner, UA ~1200 B in", None),
    },
    RowDef {
        id: "cost-non-sip-port",
        title: "per packet: legitimate, non-SIP port (IP checks only)",
        peer: "empty XDP program",
        target: "",
        measure: |s| cost_row(s, "legit to a non-SIP port (ref.)", None),
    },
    RowDef {
        id: "cost-geo-drop",
        title: "per packet: GeoIP drop (flat /24 table)",
        peer: "empty XDP program",
        target: "",
        measure: geo_cost_row,
    },
];

/// ns per packet of the 10 GbE line rate for an Ethernet frame of `frame_bytes` (without FCS):
/// FCS, preamble and inter-frame gap (24 B) on the wire, 64 B minimum frame.
pub fn line_rate_budget_ns(frame_bytes: u64) -> f64 {
    let wire = (frame_bytes + 4).max(64) + 20;
    wire as f64 * 8.0 / 10.0
}

fn f(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, k| v.get(k))?.as_f64()
}

fn base(kind: &'static str) -> Row {
    Row { status: "valid", unit: kind, ..Default::default() }
}

/// A live run's share of frames accounted for (dropped by the mechanism under test).
fn accounted(run: &Value) -> Option<f64> {
    f(run, &["dropped_fraction"])
}

fn check_accounted(side: &str, run: &Value) -> Result<(), String> {
    match accounted(run) {
        Some(x) if x >= MIN_ACCOUNTED => Ok(()),
        Some(x) => Err(format!("{side}: only {:.2} % of the generated frames accounted for", x * 100.0)),
        None => Err(format!("{side}: no frame count")),
    }
}

/// A sipshield-vs-peer live comparison (`harness::live` JSON): pps, ratio, receiver ratio.
fn live_row(src: &Value, case: &Value, peer_key: &str) -> Outcome {
    let (me, peer) = (&case["sipshield"], &case[peer_key]);
    for (side, run) in [("sipshield", me), (peer_key, peer)] {
        if let Err(e) = check_accounted(side, run) {
            return Outcome::Invalid(e);
        }
    }
    let floor = f(src, &["live", "harness_floor", "ns_per_frame"]);
    if let Some(run) = src["live"]["harness_floor"].get("run") {
        if let Err(e) = check_accounted("harness floor", run) {
            return Outcome::Invalid(e);
        }
    }
    let (Some(pps), Some(peer_pps)) = (f(me, &["pps"]), f(peer, &["pps"])) else {
        return Outcome::Invalid("no pps".into());
    };
    let mut r = base("pps");
    r.value = Some(pps);
    r.ns_per_packet = Some(1e9 / pps);
    r.peer_value = Some(peer_pps);
    r.ratio = Some(pps / peer_pps);
    r.floor_ns = floor;
    if let Some(fl) = floor {
        let (a, b) = (1e9 / pps - fl, 1e9 / peer_pps - fl);
        if a > 0.0 && b > 0.0 {
            r.receiver_ratio = Some(b / a);
        }
    }
    Outcome::Measured(Box::new(r))
}

fn scanner_row(s: &Sources, case: &str) -> Outcome {
    let Some(src) = s.get("sip") else { return Outcome::NotRun(s.missing("sip")) };
    let Some(c) = src["live"]["cases"].as_array().and_then(|v| v.iter().find(|c| c["case"] == case)) else {
        return Outcome::NotRun(format!("sip_bench has no live case {case:?}"));
    };
    let mut o = live_row(src, c, "iptables");
    if let Outcome::Measured(r) = &mut o {
        r.met = r.ratio.map(|x| x >= 2.0);
        r.frame_bytes = c["frame_bytes"].as_u64();
    }
    o
}

fn geo_row(s: &Sources) -> Outcome {
    let Some(src) = s.get("geo") else { return Outcome::NotRun(s.missing("geo")) };
    if src["database"]["synthetic"].as_bool() != Some(false) {
        return Outcome::Invalid("synthetic database: the row is about the real country database".into());
    }
    let mut o = live_row(src, &src["live"], "nftables");
    if let Outcome::Measured(r) = &mut o {
        r.met = r.ratio.map(|x| x >= 1.5);
        r.notes.push(format!(
            "country {} ({} IPv4 networks in the nft set)",
            src["database"]["denied_country"].as_str().unwrap_or("?"),
            src["live"]["nft_set_elements"]
        ));
    }
    o
}

/// A `BPF_PROG_TEST_RUN` per-packet case of sip_bench (verdict checked by sip_bench itself:
/// it fails instead of reporting a case whose verdict or counter is wrong).
fn cost_row(s: &Sources, case: &str, max_ns: Option<f64>) -> Outcome {
    let Some(src) = s.get("sip") else { return Outcome::NotRun(s.missing("sip")) };
    let pp = &src["per_packet"];
    let Some(c) = pp["cases"].as_array().and_then(|v| v.iter().find(|c| c["case"] == case)) else {
        return Outcome::NotRun(format!("sip_bench has no per-packet case {case:?}"));
    };
    let (Some(ns), Some(empty)) = (f(c, &["ns_per_packet"]), f(pp, &["empty_ns"])) else {
        return Outcome::Invalid("no ns/packet".into());
    };
    if c["verdict"].as_str().is_none() {
        return Outcome::Invalid("no verdict recorded".into());
    }
    let mut r = base("ns/packet");
    r.value = Some(ns);
    r.ns_per_packet = Some(ns);
    r.peer_value = Some(empty);
    r.ratio = Some(ns / empty);
    r.frame_bytes = c["frame_bytes"].as_u64();
    r.line_rate_share = r.frame_bytes.map(|b| ns / line_rate_budget_ns(b));
    r.met = max_ns.map(|m| ns <= m);
    r.notes.push(format!(
        "message {} B, UA at {}, verdict {} ({}); fastest of {} rounds, median {} ns",
        c["msg_bytes"],
        c["ua_offset"],
        c["verdict"].as_str().unwrap_or("?"),
        c["reason"].as_str().unwrap_or("?"),
        pp["rounds"],
        c["ns_per_packet_median"]
    ));
    Outcome::Measured(Box::new(r))
}

fn geo_cost_row(s: &Sources) -> Outcome {
    let Some(src) = s.get("geo") else { return Outcome::NotRun(s.missing("geo")) };
    let pp = &src["per_packet"];
    let (Some(ns), Some(empty)) = (f(pp, &["geo_drop_ns"]), f(pp, &["empty_ns"])) else {
        return Outcome::Invalid("no ns/packet".into());
    };
    let mut r = base("ns/packet");
    r.value = Some(ns);
    r.ns_per_packet = Some(ns);
    r.peer_value = Some(empty);
    r.ratio = Some(ns / empty);
    r.notes.push(format!("sources in split /24s (trie path): {} ns", pp["split_24_geo_drop_ns"]));
    Outcome::Measured(Box::new(r))
}

/// The blacklist bench's cold miss of `scenario` minus the empty list's, same instance.
fn miss_row(s: &Sources, scenario: &str, max_delta: Option<f64>) -> Outcome {
    let Some(src) = s.get("blacklist") else { return Outcome::NotRun(s.missing("blacklist")) };
    let find = |sc: &str| {
        src["lookup"].as_array().and_then(|v| v.iter().find(|l| l["scenario"] == sc && l["probe"] == "miss"))
    };
    let (Some(l), Some(e)) = (find(scenario), find("empty blacklist")) else {
        return Outcome::NotRun(format!("the blacklist bench has no {scenario:?} miss row"));
    };
    for row in [l, e] {
        if row["action_as_expected"].as_bool() != Some(true) {
            return Outcome::Invalid(format!("{}: unexpected action {}", row["scenario"], row["action"]));
        }
    }
    let (addrs, ranges) = (src["addresses"].as_u64().unwrap_or(0), src["ranges"].as_u64().unwrap_or(0));
    if addrs < 1_000_000 || ranges < 10_000 {
        return Outcome::Invalid(format!("list of {addrs} addresses + {ranges} ranges, the row needs 1M + 10k"));
    }
    let (Some(ns), Some(empty)) = (f(l, &["cold_median_ns"]), f(e, &["cold_median_ns"])) else {
        return Outcome::Invalid("no cold median".into());
    };
    let mut r = base("+ns");
    r.value = Some(ns - empty);
    r.ns_per_packet = Some(ns);
    r.peer_value = Some(empty);
    r.ratio = Some(ns / empty);
    r.met = max_delta.map(|m| ns - empty <= m);
    r.notes.push(format!(
        "cold median {ns:.0} ns vs {empty:.0} ns over {} sources (one run per syscall); p90 {} vs {}; hot, 1 source: {} vs {} ns",
        l["cold_sources"], l["cold_p90_ns"], e["cold_p90_ns"], l["hot_1_source_ns"], e["hot_1_source_ns"]
    ));
    Outcome::Measured(Box::new(r))
}

fn load_row(s: &Sources) -> Outcome {
    let Some(src) = s.get("blacklist") else { return Outcome::NotRun(s.missing("blacklist")) };
    let entries = src["entries"].as_u64().unwrap_or(0);
    if src["addresses"].as_u64().unwrap_or(0) < 1_000_000 {
        return Outcome::Invalid(format!("a list of {entries} entries, the row needs 1M addresses"));
    }
    let Some(total) = f(src, &["sipshield", "total_secs"]) else {
        return Outcome::Invalid("no sipshield load time".into());
    };
    let peer = |k: &str| f(src, &["peers", k, "load_secs"]);
    let (Some(ipset), Some(nft)) = (peer("ipset"), peer("nft")) else {
        return Outcome::Invalid("a peer did not load the list (see the blacklist bench's output)".into());
    };
    let bpe = f(src, &["targets", "memory_total_bytes_per_entry"]);
    // The maps' own accounting, without the system-wide slab delta (which other processes move).
    let memlock = f(src, &["sipshield", "memlock_bl_maps_bytes_per_entry"]);
    let mut r = base("s");
    r.value = Some(total);
    r.peer_value = Some(ipset.min(nft));
    r.ratio = Some(ipset.min(nft) / total);
    r.met = Some(r.ratio.unwrap() >= 2.5 && total <= 0.7 && bpe.is_some_and(|b| b <= 100.0));
    r.notes.push(format!(
        "{entries} entries; ipset restore {ipset:.2} s ({:.1}x), nft -f {nft:.2} s ({:.1}x); {:.1} B/entry = slab delta + memlock of all blacklist maps, both generations (memlock alone {:.1})",
        ipset / total,
        nft / total,
        bpe.unwrap_or(f64::NAN),
        memlock.unwrap_or(f64::NAN)
    ));
    Outcome::Measured(Box::new(r))
}

/// `bl_live`: sipshield against both peers on the same frames; the row is judged on the
/// stronger peer (the lower ratio), the other one is in the notes. `all_sources`: the case
/// where every listed address is a source.
fn blacklist_live_row(s: &Sources, all_sources: bool, min_ratio: f64) -> Outcome {
    let Some(src) = s.get("bl_live") else { return Outcome::NotRun(s.missing("bl_live")) };
    let addrs = src["addresses"].as_u64().unwrap_or(0);
    if addrs < 400_000 {
        return Outcome::Invalid(format!("a list of {addrs} addresses, the row needs 400k"));
    }
    let cases = src["cases"].as_array().cloned().unwrap_or_default();
    let Some(case) = cases.iter().find(|c| (c["sources"].as_u64() == Some(addrs)) == all_sources) else {
        return Outcome::NotRun("bl_live has no such case".into());
    };
    let sources = case["sources"].as_u64().unwrap_or(0);
    if !all_sources && sources != 1000 {
        return Outcome::Invalid(format!("{sources} sources, the row needs 1,000"));
    }
    if let Err(e) = check_accounted("harness floor", &case["harness_floor"]["run"]) {
        return Outcome::Invalid(e);
    }
    let floor = f(case, &["harness_floor", "ns_per_frame"]);
    let mut best: Option<Row> = None;
    let mut notes = vec![];
    for (key, name) in [("iptables_ipset", "iptables raw + ipset"), ("nft_netdev", "nftables netdev ingress set")] {
        let c = &case[key];
        // The floor is per case, not inside the comparison: put it where live_row reads it.
        let wrapped = serde_json::json!({"live": {"harness_floor": case["harness_floor"]}});
        match live_row(&wrapped, c, "peer") {
            Outcome::Measured(r) => {
                notes.push(format!(
                    "{name}: {:.3} Mpps, {:.2}x (receiver side {})",
                    r.peer_value.unwrap_or(0.0) / 1e6,
                    r.ratio.unwrap_or(0.0),
                    r.receiver_ratio.map(|x| format!("{x:.2}x")).unwrap_or_else(|| "-".into())
                ));
                if best.as_ref().is_none_or(|b| r.ratio < b.ratio) {
                    best = Some(*r);
                }
            }
            Outcome::Invalid(e) => return Outcome::Invalid(format!("{name}: {e}")),
            Outcome::NotRun(e) => return Outcome::NotRun(e),
        }
    }
    let Some(mut r) = best else { return Outcome::Invalid("no comparison".into()) };
    r.floor_ns = floor;
    r.met = r.ratio.map(|x| x >= min_ratio);
    r.notes = notes;
    r.notes.push(format!(
        "{sources} distinct sources (the generator rewrites the source per frame); ratio vs the stronger peer"
    ));
    Outcome::Measured(Box::new(r))
}
