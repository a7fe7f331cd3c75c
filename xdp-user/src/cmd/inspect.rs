//! Read-only verbs: status, stats, events, GeoIP lookup.
use std::io::{BufRead, Seek, Write};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sipshield::addrlist::ListCounts;
use sipshield::control::{self, Request};
use sipshield::filter::{Filter, ListKind, Stats};
use sipshield::state::{self, DaemonState};
use xdp_common::*;

pub fn open() -> Result<Filter> {
    Filter::open_pinned(&state::pin_dir())
}

fn counter_json(c: &Counter) -> Value {
    json!({"packets": c.packets, "bytes": c.bytes})
}

/// Stats as the stable JSON document of `sipshield stats --json`.
pub fn stats_json(st: &Stats, ds: Option<&DaemonState>) -> Value {
    let mut reasons = serde_json::Map::new();
    for r in 0..NUM_REASONS {
        reasons.insert(REASON_NAMES[r as usize].into(), counter_json(&st.reason_total(r)));
    }
    let mut ifaces = serde_json::Map::new();
    for (slot, row) in st.slots.iter().enumerate() {
        if row.iter().all(|c| c.packets == 0) {
            continue;
        }
        let name = ds.and_then(|d| d.iface_of_slot(slot as u32)).map(|i| i.name.clone()).unwrap_or_else(|| {
            if slot == 0 {
                "other".into()
            } else {
                format!("slot{slot}")
            }
        });
        let mut m = serde_json::Map::new();
        for (r, c) in row.iter().enumerate() {
            m.insert(REASON_NAMES[r].into(), counter_json(c));
        }
        ifaces.insert(name, Value::Object(m));
    }
    let mut countries = serde_json::Map::new();
    for (i, c) in st.countries.iter().enumerate() {
        if c.packets > 0 {
            countries.insert(sipshield::countries::code_of(i as u8).into(), counter_json(c));
        }
    }
    let dropped: u64 = (0..NUM_REASONS)
        .filter(|r| *r != REASON_PASS && *r != REASON_ALLOWLISTED && *r != REASON_MALFORMED)
        .map(|r| st.reason_total(r).packets)
        .sum();
    json!({
        "reasons": reasons,
        "interfaces": ifaces,
        "countries": countries,
        "total": {"packets": st.total_packets(), "dropped_or_would_drop": dropped},
        "events": {
            "emitted": st.events[EVSTAT_EMITTED as usize],
            "suppressed": st.events[EVSTAT_SUPPRESSED as usize],
            "ring_full": st.events[EVSTAT_RING_FULL as usize],
            "bans_added": st.events[EVSTAT_BANS as usize],
            "ban_failed": st.events[EVSTAT_BAN_FAILED as usize],
        },
        "authfail": AUTHSTAT_NAMES.iter().zip(st.auth).map(|(n, v)| (n.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
    })
}

fn print_stats_table(st: &Stats, prev: Option<(&Stats, f64)>, ds: Option<&DaemonState>) {
    println!("{:<12} {:>14} {:>16} {:>12}", "reason", "packets", "bytes", if prev.is_some() { "pkt/s" } else { "" });
    for r in 0..NUM_REASONS {
        let c = st.reason_total(r);
        let rate = prev.map(|(p, secs)| format!("{:.1}", (c.packets - p.reason_total(r).packets) as f64 / secs));
        println!("{:<12} {:>14} {:>16} {:>12}", REASON_NAMES[r as usize], c.packets, c.bytes, rate.unwrap_or_default());
    }
    if let Some(d) = ds {
        for i in &d.interfaces {
            let row = &st.slots[i.slot as usize];
            let parts: Vec<String> = row
                .iter()
                .enumerate()
                .filter(|(_, c)| c.packets > 0)
                .map(|(r, c)| format!("{}={}", REASON_NAMES[r], c.packets))
                .collect();
            println!("iface {:<8} {}", i.name, parts.join(" "));
        }
    }
    let countries: Vec<String> = st
        .countries
        .iter()
        .enumerate()
        .filter(|(_, c)| c.packets > 0)
        .map(|(i, c)| format!("{}={}", sipshield::countries::code_of(i as u8), c.packets))
        .collect();
    if !countries.is_empty() {
        println!("geo drops by country: {}", countries.join(" "));
    }
    if st.auth.iter().any(|v| *v != 0) {
        let parts: Vec<String> = AUTHSTAT_NAMES.iter().zip(st.auth).map(|(n, v)| format!("{n}={v}")).collect();
        println!("authfail (egress): {}", parts.join(" "));
    }
}

pub fn stats(json: bool, watch: Option<u64>) -> Result<()> {
    let f = open()?;
    let ds = DaemonState::load();
    let mut prev: Option<(Stats, std::time::Instant)> = None;
    loop {
        let st = f.stats()?;
        if json {
            let mut v = stats_json(&st, ds.as_ref());
            if let Some((p, t)) = &prev {
                let secs = t.elapsed().as_secs_f64().max(1e-3);
                let mut rates = serde_json::Map::new();
                for r in 0..NUM_REASONS {
                    let d = st.reason_total(r).packets - p.reason_total(r).packets;
                    rates.insert(REASON_NAMES[r as usize].into(), json!(d as f64 / secs));
                }
                v["rates_per_second"] = Value::Object(rates);
            }
            println!("{v}");
        } else {
            let p = prev.as_ref().map(|(p, t)| (p, t.elapsed().as_secs_f64().max(1e-3)));
            print_stats_table(&st, p, ds.as_ref());
        }
        match watch {
            Some(secs) => {
                prev = Some((st, std::time::Instant::now()));
                std::io::stdout().flush()?;
                std::thread::sleep(Duration::from_secs(secs.max(1)));
                if !json {
                    println!();
                }
            }
            None => return Ok(()),
        }
    }
}

/// `status`: the controller's own answer when one runs; otherwise what the pins say.
pub fn status(json_out: bool) -> Result<()> {
    let v = match control::call(&state::control_socket(), &Request::Status)? {
        Some(reply) => reply.into_result()?.data,
        None => offline_status()?,
    };
    if json_out {
        println!("{v}");
        return Ok(());
    }
    let s = |k: &str| v[k].as_str().unwrap_or("").to_string();
    println!("controller:   {}", s("controller"));
    if let Some(pid) = v["pid"].as_u64() {
        println!("pid:          {pid}  config: {}", s("config"));
    }
    if let Some(up) = v["uptime_secs"].as_f64() {
        println!("uptime:       {up:.0}s");
    }
    if let Some(id) = v["program_id"].as_u64() {
        println!("program id:   {id}");
    }
    for i in v["interfaces"].as_array().into_iter().flatten() {
        println!(
            "interface:    {} (ifindex {}, {} mode)",
            i["name"].as_str().unwrap_or(""),
            i["ifindex"],
            i["mode"].as_str().unwrap_or("")
        );
    }
    let attached: Vec<&str> = v["attached"].as_array().into_iter().flatten().filter_map(|a| a.as_str()).collect();
    println!("attached:     {}", if attached.is_empty() { "none".into() } else { attached.join(", ") });
    let dry = v["dry_run"].as_bool() == Some(true);
    println!(
        "dry-run:      {} (from {})",
        if dry { "ON (nothing is dropped)" } else { "off" },
        v["dry_run_source"].as_str().unwrap_or("config")
    );
    println!("SIP ports:    {}", v["sip_ports"]);
    let l = &v["lists"];
    let count = |k: &str| l[k]["v4"].as_u64().unwrap_or(0) + l[k]["v6"].as_u64().unwrap_or(0);
    let ranges = |k: &str| l[k]["ranges_v4"].as_u64().unwrap_or(0) + l[k]["ranges_v6"].as_u64().unwrap_or(0);
    println!("blacklist:    {} addresses, {} ranges", count("blacklist"), ranges("blacklist"));
    println!("allowlist:    {} addresses, {} ranges", count("allowlist"), ranges("allowlist"));
    println!("scanners:     {} signatures", l["scanner_signatures"]);
    println!("bans:         {} active", l["active_bans"]);
    println!("geoip:        {}", if v["geoip"].as_bool() == Some(true) { "on" } else { "off" });
    if let Some(loads) = l["loads"].as_object() {
        for (name, st) in loads {
            let when = state::unix_now() - st["last_load_unix"].as_f64().unwrap_or(0.0);
            let err = st["last_error"].as_str().map(|e| format!(", last error: {e}")).unwrap_or_default();
            println!(
                "  {name}: {} entries, loaded {when:.0}s ago in {:.3}s{err}",
                st["entries"],
                st["load_secs"].as_f64().unwrap_or(0.0)
            );
        }
    }
    Ok(())
}

/// Status from the pins when no controller answers.
fn offline_status() -> Result<Value> {
    let f = open()?;
    let cfg = f.config()?;
    let ds = DaemonState::load();
    let links: Vec<String> = std::fs::read_dir(state::pin_dir().join("links"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let bans = sipshield::bans::list(&f)?.len();
    let bl = f.read_list(ListKind::Blacklist)?;
    let al = f.read_list(ListKind::Allowlist)?;
    let sigs = sipshield::sig::read(&f)?.len();
    let rt = state::Runtime::load()?;
    Ok(json!({
        "controller": "stopped (filter stays attached)",
        "pid": Value::Null,
        "config": ds.as_ref().map(|d| d.config.display().to_string()),
        "program_id": ds.as_ref().and_then(|d| d.program_id),
        "attached": links,
        "interfaces": ds.as_ref().map(|d| d.interfaces.clone()).unwrap_or_default(),
        "dry_run": cfg.flags & CFG_DRY_RUN != 0,
        "dry_run_source": sipshield::edits::dry_run_source(&rt),
        "sip_ports": f.sip_ports()?,
        "lists": {
            "blacklist": ListCounts::of(&bl).status_json(),
            "allowlist": ListCounts::of(&al).status_json(),
            "scanner_signatures": sigs,
            "active_bans": bans,
            "loads": ds.as_ref().map(|d| serde_json::to_value(&d.lists).unwrap_or_default()),
        },
        "runtime": rt,
        "geoip": cfg.flags & CFG_GEO_ENABLED != 0,
    }))
}

pub fn events(follow: bool, json_out: bool, last: Option<usize>, pcap: Option<&std::path::Path>) -> Result<()> {
    let path = state::events_log();
    let file = std::fs::File::open(&path)
        .with_context(|| format!("{}: no event log (is `sipshield run` active?)", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let mut snaps = pcap.map(SnapWriter::create).transpose()?;
    let mut each = |line: &str| -> Result<()> {
        let v = serde_json::from_str::<Value>(line).ok();
        if json_out {
            println!("{}", line.trim_end());
        } else if let Some(v) = &v {
            println!("{}", sipshield::events::human(v));
        }
        std::io::stdout().flush()?;
        if let (Some(w), Some(v)) = (&mut snaps, &v) {
            w.write(v)?;
        }
        Ok(())
    };
    let last = last.unwrap_or(if pcap.is_some() { usize::MAX } else { 20 });
    let lines: Vec<String> = (&mut reader).lines().map_while(|l| l.ok()).collect();
    for l in lines.iter().skip(lines.len().saturating_sub(last)) {
        each(l)?;
    }
    if !follow {
        if let Some(w) = snaps {
            eprintln!("{}: {} dropped frames", w.path.display(), w.count);
        }
        return Ok(());
    }
    loop {
        let mut line = String::new();
        let n = reader.read_line(&mut line)?;
        if n == 0 {
            std::thread::sleep(Duration::from_millis(200));
            // Log rotated: reopen.
            let len = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            if len < reader.stream_position()? {
                reader = std::io::BufReader::new(std::fs::File::open(&path)?);
            }
            continue;
        }
        each(&line)?;
    }
}

/// `events --pcap`: the events' snapshots as a pcap, written unbuffered so a reader (Wireshark,
/// tshark) of a followed file sees every frame as it comes.
struct SnapWriter {
    path: std::path::PathBuf,
    w: pcap_file::pcap::PcapWriter<std::fs::File>,
    count: u64,
}

impl SnapWriter {
    fn create(path: &std::path::Path) -> Result<SnapWriter> {
        let f = std::fs::File::create(path).with_context(|| format!("{}: cannot create", path.display()))?;
        let header = pcap_file::pcap::PcapHeader {
            datalink: pcap_file::DataLink::ETHERNET,
            ts_resolution: pcap_file::TsResolution::NanoSecond,
            snaplen: EVENT_SNAP as u32,
            ..Default::default()
        };
        let w = pcap_file::pcap::PcapWriter::with_header(f, header)
            .with_context(|| format!("{}: cannot write", path.display()))?;
        Ok(SnapWriter { path: path.to_path_buf(), w, count: 0 })
    }

    /// The event's frame, if it carries one (events of an older filter do not).
    fn write(&mut self, v: &Value) -> Result<()> {
        let Some((when, data, len)) = sipshield::events::snapshot(v) else { return Ok(()) };
        let p = pcap_file::pcap::PcapPacket {
            timestamp: when.duration_since(std::time::UNIX_EPOCH).unwrap_or_default(),
            orig_len: len,
            data: std::borrow::Cow::Owned(data),
        };
        self.w.write_packet(&p).with_context(|| format!("{}: cannot write", self.path.display()))?;
        self.count += 1;
        Ok(())
    }
}

pub fn geo_lookup(ip: IpAddr) -> Result<()> {
    let f = open()?;
    let (country, drops) = sipshield::geo::lookup_live(&f, ip)?;
    let cfg = f.config()?;
    let enabled = cfg.flags & CFG_GEO_ENABLED != 0;
    println!(
        "{ip}: country {} -> {}",
        sipshield::countries::code_of(country),
        if !enabled {
            "pass (GeoIP policy disabled)"
        } else if drops {
            "drop (geo)"
        } else {
            "pass"
        }
    );
    Ok(())
}
