//! Applying a configuration to a filter (shared by `run`, `reload` and `replay`), timed bans and
//! rate-limit rules.
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use aya::maps::{Array, HashMap};
use xdp_common::*;

use crate::config::Config;
use crate::filter::{clock_ns, duration_ns, Filter, ListKind, LoadReport};
use crate::lists::{self, IpList};
use crate::sig;

/// Everything read from disk/network for a config, before anything is written to the kernel.
pub struct Prepared {
    pub blacklist: IpList,
    pub allowlist: IpList,
    pub signatures: Vec<sig::Signature>,
    pub geo: Option<crate::geo::GeoDb>,
}

#[derive(Debug, Default, serde::Serialize)]
pub struct ApplyReport {
    pub blacklist: LoadReport,
    pub allowlist: LoadReport,
    pub signatures: usize,
    pub geo: Option<crate::geo::GeoReport>,
    pub skipped_lines: Vec<String>,
}

/// Read every source of `cfg` (lists, URLs, GeoIP database). Fails without side effects.
pub fn prepare(cfg: &Config) -> Result<Prepared> {
    let bl = &cfg.blacklist;
    let blacklist =
        lists::load_sources(&bl.files, &bl.urls, &bl.entries, bl.skip_invalid, bl.timeout).context("blacklist")?;
    let al = &cfg.allowlist;
    let allowlist =
        lists::load_sources(&al.files, &al.urls, &al.entries, al.skip_invalid, al.timeout).context("allowlist")?;
    let signatures = sig::from_config(&cfg.scanners)?;
    let geo = match &cfg.geoip {
        Some(g) => Some(crate::geo::read_db(&g.database)?),
        None => None,
    };
    Ok(Prepared { blacklist, allowlist, signatures, geo })
}

/// Write a prepared config into the filter. Lists are swapped generation by generation; the
/// allowlist goes first so a newly trusted source is never dropped by a newly listed range.
pub fn apply(filter: &mut Filter, cfg: &Config, p: &Prepared) -> Result<ApplyReport> {
    let mut report = ApplyReport::default();
    filter.set_sip_ports(&cfg.sip.ports)?;
    set_rate_rules(filter, cfg)?;
    report.allowlist = filter.swap_list(ListKind::Allowlist, &p.allowlist)?;
    report.blacklist = filter.swap_list(ListKind::Blacklist, &p.blacklist)?;
    sig::load(filter, &p.signatures)?;
    report.signatures = p.signatures.len();
    if let (Some(g), Some(db)) = (&cfg.geoip, &p.geo) {
        report.geo = Some(crate::geo::load_geo(filter, db, &crate::geo::GeoPolicy::from(g))?);
    }
    let flags = cfg.flags();
    let reasons = cfg
        .events
        .reasons
        .iter()
        .filter_map(|r| REASON_NAMES.iter().position(|n| n == r))
        .fold(0u32, |m, i| m | 1 << i);
    let rate = cfg.events.rate.max(1) as u64;
    filter.update_config(|c| {
        c.flags = flags;
        c.rl_v6_prefix = cfg.ratelimit.ipv6_prefix;
        c.event_reasons = reasons;
        c.event_interval_ns = 1_000_000_000 / rate;
        c.event_burst_ns = c.event_interval_ns * cfg.events.burst.max(1) as u64;
    })?;
    report.skipped_lines = p.blacklist.skipped.iter().chain(&p.allowlist.skipped).cloned().collect();
    Ok(report)
}

pub fn set_rate_rules(filter: &mut Filter, cfg: &Config) -> Result<()> {
    let mut rules = [RateRule::default(); NUM_METHOD_SLOTS as usize];
    for (name, r) in &cfg.ratelimit.rules {
        let slot = crate::config::method_slot(name).expect("validated") as usize;
        let interval = (1e9 / r.rate).round().max(1.0) as u64;
        rules[slot] = RateRule {
            interval_ns: interval,
            tolerance_ns: interval * (r.burst as u64 - 1),
            ban_ttl_ns: duration_ns(r.ban_ttl),
            window_ns: duration_ns(r.window),
            ban_after: r.ban_after,
            _pad: 0,
        };
    }
    let mut a: Array<_, RateRule> = Array::try_from(filter.map_mut("RL_RULES")?)?;
    for (i, r) in rules.iter().enumerate() {
        a.set(i as u32, r, 0)?;
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------
// Timed bans.
// ------------------------------------------------------------------------------------------

#[derive(Debug, Clone, serde::Serialize)]
pub struct Ban {
    pub address: String,
    pub prefix: u32,
    /// Seconds until expiry.
    pub expires_in: f64,
}

/// Ban `ip` for `ttl` (as a /32 or /128).
pub fn ban_add(filter: &mut Filter, ip: IpAddr, ttl: Duration) -> Result<()> {
    let until = clock_ns() + duration_ns(ttl);
    match ip {
        IpAddr::V4(a) => {
            let mut m: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map_mut("BANS_V4")?)?;
            m.insert(a.octets(), until, 0)?;
            filter.mark_bans_present(BAN_PRESENT_V4)?;
        }
        IpAddr::V6(a) => {
            let mut m: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map_mut("BANS_V6")?)?;
            m.insert(BanKey6 { addr: a.octets(), prefix: 128 }, until, 0)?;
            filter.mark_bans_present(BAN_PRESENT_V6)?;
        }
    }
    Ok(())
}

/// Lift a ban. Returns false if there was none. For IPv6 this also lifts a rate-limiter ban on
/// the address's prefix.
pub fn ban_del(filter: &mut Filter, ip: IpAddr) -> Result<bool> {
    match ip {
        IpAddr::V4(a) => {
            let mut m: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map_mut("BANS_V4")?)?;
            Ok(m.remove(&a.octets()).is_ok())
        }
        IpAddr::V6(a) => {
            let prefix = filter.config()?.rl_v6_prefix;
            let mut m: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map_mut("BANS_V6")?)?;
            let full = m.remove(&BanKey6 { addr: a.octets(), prefix: 128 }).is_ok();
            let net = m.remove(&BanKey6 { addr: mask_prefix6(a.octets(), prefix), prefix }).is_ok();
            Ok(full || net)
        }
    }
}

/// Active (unexpired) bans.
pub fn ban_list(filter: &Filter) -> Result<Vec<Ban>> {
    let now = clock_ns();
    let mut out = vec![];
    let m4: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map("BANS_V4")?)?;
    for kv in m4.iter() {
        let (k, until) = kv?;
        if until > now {
            out.push(Ban { address: IpAddr::from(k).to_string(), prefix: 32, expires_in: (until - now) as f64 / 1e9 });
        }
    }
    let m6: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map("BANS_V6")?)?;
    for kv in m6.iter() {
        let (k, until) = kv?;
        if until > now {
            out.push(Ban {
                address: IpAddr::from(k.addr).to_string(),
                prefix: k.prefix,
                expires_in: (until - now) as f64 / 1e9,
            });
        }
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// Remove expired bans (the kernel already ignores them; this frees the entries).
pub fn ban_gc(filter: &mut Filter) -> Result<usize> {
    let now = clock_ns();
    let mut n = 0;
    let mut m4: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map_mut("BANS_V4")?)?;
    let dead: Vec<[u8; 4]> = m4.iter().filter_map(|kv| kv.ok()).filter(|(_, u)| *u <= now).map(|(k, _)| k).collect();
    for k in dead {
        n += m4.remove(&k).is_ok() as usize;
    }
    let mut m6: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map_mut("BANS_V6")?)?;
    let dead: Vec<BanKey6> = m6.iter().filter_map(|kv| kv.ok()).filter(|(_, u)| *u <= now).map(|(k, _)| k).collect();
    for k in dead {
        n += m6.remove(&k).is_ok() as usize;
    }
    // Empty maps are no longer looked up by the program.
    filter.refresh_ban_present()?;
    Ok(n)
}
