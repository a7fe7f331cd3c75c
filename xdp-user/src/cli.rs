//! CLI verbs that inspect and edit a running filter through its pinned maps.
use std::io::{BufRead, Seek, Write};
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use xdp_common::*;

use crate::apply;
use crate::filter::{Filter, ListKind, Stats};
use crate::state::{self, DaemonState, Runtime};

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
            countries.insert(crate::countries::code_of(i as u8).into(), counter_json(c));
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
        .map(|(i, c)| format!("{}={}", crate::countries::code_of(i as u8), c.packets))
        .collect();
    if !countries.is_empty() {
        println!("geo drops by country: {}", countries.join(" "));
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

pub fn status(json_out: bool) -> Result<()> {
    let f = open()?;
    let cfg = f.config()?;
    let ds = DaemonState::load();
    let running = ds.as_ref().is_some_and(|d| d.running());
    let links: Vec<String> = std::fs::read_dir(state::pin_dir().join("links"))
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    let bans = apply::ban_list(&f)?.len();
    let bl = f.read_list(ListKind::Blacklist)?;
    let al = f.read_list(ListKind::Allowlist)?;
    let sigs = crate::sig::read(&f)?.len();
    let v = json!({
        "controller": if running { "running" } else { "stopped (filter stays attached)" },
        "pid": ds.as_ref().map(|d| d.pid),
        "uptime_secs": ds.as_ref().filter(|_| running).map(|d| state::unix_now() - d.started_unix),
        "config": ds.as_ref().map(|d| d.config.display().to_string()),
        "program_id": ds.as_ref().and_then(|d| d.program_id),
        "attached": links,
        "interfaces": ds.as_ref().map(|d| d.interfaces.clone()).unwrap_or_default(),
        "dry_run": cfg.flags & CFG_DRY_RUN != 0,
        "sip_ports": f.sip_ports()?,
        "lists": {
            "blacklist": {"v4": bl.v4.len(), "v6": bl.v6.len(), "ranges_v4": bl.net4.len(), "ranges_v6": bl.net6.len()},
            "allowlist": {"v4": al.v4.len(), "v6": al.v6.len(), "ranges_v4": al.net4.len(), "ranges_v6": al.net6.len()},
            "scanner_signatures": sigs,
            "active_bans": bans,
            "loads": ds.as_ref().map(|d| serde_json::to_value(&d.lists).unwrap_or_default()),
        },
        "geoip": cfg.flags & CFG_GEO_ENABLED != 0,
    });
    if json_out {
        println!("{v}");
    } else {
        println!("controller:   {}", v["controller"].as_str().unwrap_or(""));
        if let Some(d) = &ds {
            println!("pid:          {}  config: {}", d.pid, d.config.display());
            if running {
                println!("uptime:       {:.0}s", state::unix_now() - d.started_unix);
            }
            if let Some(id) = d.program_id {
                println!("program id:   {id}");
            }
            for i in &d.interfaces {
                println!("interface:    {} (ifindex {}, {} mode)", i.name, i.ifindex, i.mode);
            }
        }
        println!("attached:     {}", if links.is_empty() { "none".into() } else { links.join(", ") });
        println!("dry-run:      {}", if cfg.flags & CFG_DRY_RUN != 0 { "ON (nothing is dropped)" } else { "off" });
        println!("SIP ports:    {:?}", f.sip_ports()?);
        println!("blacklist:    {} addresses, {} ranges", bl.v4.len() + bl.v6.len(), bl.net4.len() + bl.net6.len());
        println!("allowlist:    {} addresses, {} ranges", al.v4.len() + al.v6.len(), al.net4.len() + al.net6.len());
        println!("scanners:     {sigs} signatures");
        println!("bans:         {bans} active");
        println!("geoip:        {}", if cfg.flags & CFG_GEO_ENABLED != 0 { "on" } else { "off" });
        if let Some(d) = &ds {
            for (name, l) in &d.lists {
                println!(
                    "  {name}: {} entries, loaded {:.0}s ago in {:.3}s{}",
                    l.entries,
                    state::unix_now() - l.last_load_unix,
                    l.load_secs,
                    l.last_error.as_ref().map(|e| format!(", last error: {e}")).unwrap_or_default()
                );
            }
        }
    }
    Ok(())
}

pub fn parse_ip(s: &str) -> Result<IpAddr> {
    s.parse().map_err(|_| anyhow!("{s:?} is not an IPv4 or IPv6 address"))
}

pub fn ban(cmd: &str, ip: Option<&str>, ttl: Duration, json_out: bool) -> Result<()> {
    let mut f = open()?;
    match cmd {
        "add" => {
            let ip = parse_ip(ip.context("ban add needs an address")?)?;
            apply::ban_add(&mut f, ip, ttl)?;
            println!("banned {ip} for {}", humantime::format_duration(ttl));
        }
        "del" => {
            let ip = parse_ip(ip.context("ban del needs an address")?)?;
            if apply::ban_del(&mut f, ip)? {
                println!("unbanned {ip}");
            } else {
                bail!("{ip} is not banned");
            }
        }
        _ => {
            let bans = apply::ban_list(&f)?;
            if json_out {
                println!("{}", serde_json::to_string(&bans)?);
            } else if bans.is_empty() {
                println!("no active bans");
            } else {
                for b in bans {
                    println!("{}/{}  expires in {:.0}s", b.address, b.prefix, b.expires_in);
                }
            }
        }
    }
    Ok(())
}

/// `allow add|del|list`: edits the live allowlist (a new generation, switched atomically) and
/// records the change so reloads and restarts keep it.
pub fn allow(cmd: &str, entry: Option<&str>, json_out: bool) -> Result<()> {
    let mut f = open()?;
    let _lock = f.write_lock()?;
    let mut list = f.read_list(ListKind::Allowlist)?;
    match cmd {
        "add" | "del" => {
            let e = entry.context("allow add/del needs an address or CIDR")?;
            let net = crate::lists::parse_entry(e).ok_or_else(|| anyhow!("{e:?} is not an address or CIDR"))?;
            let mut rt = Runtime::load();
            let mut one = crate::lists::IpList::default();
            one.insert(net);
            if cmd == "add" {
                list.merge(one);
                rt.allow.push(net.to_string());
            } else {
                let before = list.len();
                list.v4.retain(|a| !one.v4.contains(a));
                list.v6.retain(|a| !one.v6.contains(a));
                list.net4.retain(|a| !one.net4.contains(a));
                list.net6.retain(|a| !one.net6.contains(a));
                if list.len() == before {
                    bail!("{e} is not on the allowlist");
                }
                rt.allow.retain(|a| crate::lists::parse_entry(a) != Some(net));
            }
            f.swap_list(ListKind::Allowlist, &list)?;
            rt.save()?;
            println!("allowlist: {} {net} ({} entries)", if cmd == "add" { "added" } else { "removed" }, list.len());
        }
        _ => {
            let mut all: Vec<String> = list.v4.iter().map(|a| IpAddr::from(*a).to_string()).collect();
            all.extend(list.v6.iter().map(|a| IpAddr::from(*a).to_string()));
            all.extend(list.net4.iter().map(|(a, p)| format!("{}/{p}", IpAddr::from(*a))));
            all.extend(list.net6.iter().map(|(a, p)| format!("{}/{p}", IpAddr::from(*a))));
            if json_out {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for a in all {
                    println!("{a}");
                }
            }
        }
    }
    Ok(())
}

pub fn blacklist(cmd: &str, json_out: bool) -> Result<()> {
    let f = open()?;
    match cmd {
        "reload" => {
            let ds = DaemonState::load().filter(|d| d.running()).ok_or_else(|| {
                anyhow!("no sipshield controller is running; `sipshield run` loads and refreshes the lists")
            })?;
            let before = ds.lists.get("blacklist").map(|l| (l.last_load_unix, l.errors)).unwrap_or_default();
            // SAFETY: plain signal to the controller's pid.
            unsafe { libc::kill(ds.pid as i32, libc::SIGUSR1) };
            let deadline = std::time::Instant::now() + Duration::from_secs(120);
            while std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                let now = DaemonState::load().and_then(|d| d.lists.get("blacklist").cloned()).unwrap_or_default();
                if (now.last_load_unix, now.errors) != before {
                    if now.errors != before.1 {
                        bail!(
                            "blacklist reload failed, the previous list stays: {}",
                            now.last_error.unwrap_or_default()
                        );
                    }
                    println!("blacklist reloaded: {} entries in {:.3}s", now.entries, now.load_secs);
                    return Ok(());
                }
            }
            bail!("the controller did not report a reload within 120s");
        }
        _ => {
            let bl = f.read_list(ListKind::Blacklist)?;
            let ds = DaemonState::load();
            let load = ds.as_ref().and_then(|d| d.lists.get("blacklist").cloned());
            let v = json!({
                "v4": bl.v4.len(), "v6": bl.v6.len(), "ranges_v4": bl.net4.len(), "ranges_v6": bl.net6.len(),
                "total": bl.len(),
                "generation": f.config()?.blacklist_gen,
                "last_load": load,
                "dropped": counter_json(&f.stats()?.reason_total(REASON_BLACKLISTED)),
            });
            if json_out {
                println!("{v}");
            } else {
                println!(
                    "blacklist: {} entries ({} IPv4, {} IPv6, {} IPv4 ranges, {} IPv6 ranges), generation {}",
                    bl.len(),
                    bl.v4.len(),
                    bl.v6.len(),
                    bl.net4.len(),
                    bl.net6.len(),
                    v["generation"]
                );
                if let Some(l) = load {
                    println!(
                        "last load {:.0}s ago in {:.3}s, {} failed refreshes",
                        state::unix_now() - l.last_load_unix,
                        l.load_secs,
                        l.errors
                    );
                }
                println!("dropped: {} packets", v["dropped"]["packets"]);
            }
        }
    }
    Ok(())
}

pub fn scanners(cmd: &str, header: Option<&str>, text: Option<&str>, json_out: bool) -> Result<()> {
    let mut f = open()?;
    let _lock = f.write_lock()?;
    let mut sigs = crate::sig::read(&f)?;
    match cmd {
        "add" | "del" => {
            let (h, t) = match (header, text) {
                (Some(h), Some(t)) => (h, t),
                (None, Some(t)) => ("user-agent", t),
                _ => bail!("usage: sipshield scanners {cmd} [--header NAME] TEXT"),
            };
            let id = crate::sig::header_id(h)
                .ok_or_else(|| anyhow!("unknown header {h:?}; one of {}", HEADER_NAMES[1..].join(", ")))?;
            let s = crate::sig::Signature::new(id, t)?;
            let mut rt = Runtime::load();
            let key = (s.header_name().to_string(), s.text.clone());
            if cmd == "add" {
                if sigs.contains(&s) {
                    bail!("signature {}: {:?} exists", s.header_name(), s.text);
                }
                sigs.push(s.clone());
                rt.scanners_del.retain(|k| *k != key);
                rt.scanners_add.push(key);
            } else {
                let before = sigs.len();
                sigs.retain(|x| *x != s);
                if sigs.len() == before {
                    bail!("no signature {}: {:?}", s.header_name(), s.text);
                }
                rt.scanners_add.retain(|k| *k != key);
                rt.scanners_del.push(key);
            }
            crate::sig::load(&mut f, &sigs)?;
            rt.save()?;
            println!(
                "scanners: {} {}: {:?} ({} signatures)",
                if cmd == "add" { "added" } else { "removed" },
                s.header_name(),
                s.text,
                sigs.len()
            );
        }
        _ => {
            if json_out {
                println!("{}", serde_json::to_string(&sigs)?);
            } else {
                for (i, s) in sigs.iter().enumerate() {
                    println!("{i:>4}  {:<11} {}", s.header_name(), s.text);
                }
            }
        }
    }
    Ok(())
}

pub fn dry_run(on: bool) -> Result<()> {
    let mut f = open()?;
    f.update_config(|c| if on { c.flags |= CFG_DRY_RUN } else { c.flags &= !CFG_DRY_RUN })?;
    println!("dry-run {}", if on { "ON: drops are counted but every packet passes" } else { "off: the filter drops" });
    Ok(())
}

pub fn reload() -> Result<()> {
    let ds =
        DaemonState::load().filter(|d| d.running()).ok_or_else(|| anyhow!("no sipshield controller is running"))?;
    let cfg = crate::config::Config::load(&ds.config)?;
    // Validate the sources too, so the operator sees the error here.
    apply::prepare(&cfg).context("the new configuration was rejected; the running one stays")?;
    // SAFETY: signal to the controller's pid.
    unsafe { libc::kill(ds.pid as i32, libc::SIGHUP) };
    println!("reload requested (pid {}, config {})", ds.pid, ds.config.display());
    Ok(())
}

pub fn events(follow: bool, json_out: bool, last: usize) -> Result<()> {
    let path = state::events_log();
    let file = std::fs::File::open(&path)
        .with_context(|| format!("{}: no event log (is `sipshield run` active?)", path.display()))?;
    let mut reader = std::io::BufReader::new(file);
    let print = |line: &str| -> Result<()> {
        if json_out {
            println!("{}", line.trim_end());
        } else if let Ok(v) = serde_json::from_str::<Value>(line) {
            println!("{}", crate::events::human(&v));
        }
        std::io::stdout().flush()?;
        Ok(())
    };
    let lines: Vec<String> = (&mut reader).lines().map_while(|l| l.ok()).collect();
    for l in lines.iter().skip(lines.len().saturating_sub(last)) {
        print(l)?;
    }
    if !follow {
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
        print(&line)?;
    }
}

pub fn geo_lookup(ip: &str) -> Result<()> {
    let f = open()?;
    let ip = parse_ip(ip)?;
    let (country, drops) = crate::geo::lookup_live(&f, ip)?;
    let cfg = f.config()?;
    let enabled = cfg.flags & CFG_GEO_ENABLED != 0;
    println!(
        "{ip}: country {} -> {}",
        crate::countries::code_of(country),
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
