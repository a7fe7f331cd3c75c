//! The decision stream (`GET /v1/decisions/stream`) parsed, and the decisions sipshield holds.
//!
//! A `ban` decision of scope `Ip` becomes a timed ban (`BANS_V4`/`BANS_V6`, deadline = now +
//! the decision's remaining duration), written in bulk with `BPF_MAP_UPDATE_BATCH`; a `Range`
//! decision becomes an entry of the blacklist part (a third source beside the config's files
//! and URLs), committed with the generation swap whenever the set of ranges changes. Decisions
//! are keyed by their LAPI id, so a duplicate (the same decision in two pulls) changes nothing
//! and an address banned by two decisions stays banned until the last one is deleted.
use std::collections::HashMap;
use std::net::IpAddr;
use std::os::fd::AsFd;
use std::time::Duration;

use anyhow::{anyhow, Result};
use aya::maps::HashMap as BpfHash;
use ipnet::IpNet;
use serde::Deserialize;
use xdp_common::*;

use super::CrowdsecCfg;
use crate::bpfsys;
use crate::filter::{duration_ns, map_data, Filter};
use crate::lists::IpList;

/// One decision as the LAPI sends it (unknown fields are ignored: the LAPI adds some).
#[derive(Deserialize, Debug, Default)]
pub struct RawDecision {
    #[serde(default)]
    pub id: Option<i64>,
    #[serde(default)]
    pub origin: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub value: String,
    #[serde(default)]
    pub duration: String,
    #[serde(default)]
    pub scenario: String,
}

#[derive(Deserialize, Debug, Default)]
pub struct RawStream {
    #[serde(default)]
    pub new: Option<Vec<RawDecision>>,
    #[serde(default)]
    pub deleted: Option<Vec<RawDecision>>,
}

/// What a decision applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Target {
    Ip(IpAddr),
    Range(IpNet),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub id: i64,
    pub target: Target,
    /// Remaining duration when the pull was answered.
    pub ttl: Duration,
}

/// One pull, parsed and filtered by the `[crowdsec]` filters.
#[derive(Debug, Default)]
pub struct Pull {
    /// The answer to `startup=true`: the complete set of current decisions.
    pub startup: bool,
    /// The configuration generation it was pulled for (stale pulls are dropped).
    pub generation: u64,
    pub new: Vec<Decision>,
    pub deleted: Vec<Decision>,
    /// Decisions not taken: another type (captcha), scope, origin or scenario, an
    /// unparseable value or an already elapsed duration.
    pub ignored: usize,
}

/// Parse a Go duration as the LAPI writes it ("3h59m58.77s", "-32.08ms", "1.5µs").
pub fn parse_go_duration(s: &str) -> Option<(bool, Duration)> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    if rest.is_empty() {
        return None;
    }
    if rest == "0" {
        return Some((false, Duration::ZERO));
    }
    let mut total = 0f64;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let n: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
        let secs = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += n * secs;
    }
    (total.is_finite() && total < 1e12).then(|| (neg, Duration::from_secs_f64(total)))
}

fn parse_target(scope: &str, value: &str) -> Option<Target> {
    let net = crate::lists::parse_entry(value.trim())?.trunc();
    let host = net.prefix_len() == net.max_prefix_len();
    match scope.to_ascii_lowercase().as_str() {
        "ip" if host => Some(Target::Ip(net.addr())),
        "range" if host => Some(Target::Ip(net.addr())),
        "range" => Some(Target::Range(net)),
        _ => None,
    }
}

/// A stable id for a decision the LAPI sent without one.
fn synthetic_id(d: &RawDecision) -> i64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (&d.scope, &d.value, &d.origin, &d.scenario).hash(&mut h);
    -((h.finish() >> 1) as i64) - 1
}

impl CrowdsecCfg {
    /// Is this decision one sipshield takes? (`ban`, a configured scope, origin and scenario.)
    fn wants(&self, d: &RawDecision) -> bool {
        d.kind.eq_ignore_ascii_case("ban")
            && self.takes_scope(&d.scope)
            && (self.origins.is_empty() || self.origins.iter().any(|o| o.eq_ignore_ascii_case(&d.origin)))
            && (self.scenarios.is_empty() || self.scenarios.iter().any(|s| d.scenario.contains(s.as_str())))
    }
}

impl Pull {
    /// Parse a stream answer, keeping what `cfg` takes.
    pub fn parse(body: &[u8], cfg: &CrowdsecCfg, startup: bool, generation: u64) -> Result<Pull> {
        let raw: RawStream =
            serde_json::from_slice(body).map_err(|e| anyhow!("decision stream: not valid JSON: {e}"))?;
        let mut p = Pull { startup, generation, ..Default::default() };
        for d in raw.new.unwrap_or_default() {
            match (cfg.wants(&d), parse_target(&d.scope, &d.value), parse_go_duration(&d.duration)) {
                (true, Some(target), Some((false, ttl))) if ttl >= Duration::from_secs(1) => {
                    let ttl = ttl.min(crate::bans::MAX_BAN_TTL);
                    p.new.push(Decision { id: d.id.unwrap_or_else(|| synthetic_id(&d)), target, ttl });
                }
                _ => p.ignored += 1,
            }
        }
        for d in raw.deleted.unwrap_or_default() {
            // Every deletion of a decision we could hold counts, whatever its remaining time.
            if let Some(target) = parse_target(&d.scope, &d.value) {
                p.deleted.push(Decision { id: d.id.unwrap_or_else(|| synthetic_id(&d)), target, ttl: Duration::ZERO });
            }
        }
        Ok(p)
    }
}

/// What the filter must do after a pull.
#[derive(Debug, Default, PartialEq)]
pub struct Changes {
    /// Ban until the deadline (program clock, ns).
    pub ban: Vec<(IpAddr, u64)>,
    /// Lift, if the kernel still holds the deadline we wrote (a longer ban written since by
    /// the rate limiter or the CLI is not ours to lift).
    pub unban: Vec<(IpAddr, u64)>,
    /// The set of ranges changed: swap the blacklist.
    pub ranges_changed: bool,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.ban.is_empty() && self.unban.is_empty() && !self.ranges_changed
    }
}

/// The decisions held, by target, and the deadline each banned address was given.
#[derive(Debug, Default)]
pub struct Held {
    /// Decision id → (target, deadline).
    by_id: HashMap<i64, (Target, u64)>,
    /// Target → ids of its decisions.
    targets: HashMap<Target, Vec<i64>>,
    /// Address → the deadline written to the kernel.
    installed: HashMap<IpAddr, u64>,
    /// Decisions not taken because the allowlist covers them (last pull that saw them).
    pub exempted: usize,
}

impl Held {
    pub fn ips(&self) -> usize {
        self.targets.keys().filter(|t| matches!(t, Target::Ip(_))).count()
    }

    pub fn ranges(&self) -> usize {
        self.targets.len() - self.ips()
    }

    /// The ranges held, as a list to merge into the blacklist.
    pub fn range_list(&self) -> IpList {
        let mut l = IpList::default();
        for t in self.targets.keys() {
            if let Target::Range(n) = t {
                l.insert(*n);
            }
        }
        l
    }

    fn deadline(&self, t: &Target) -> Option<u64> {
        self.targets.get(t)?.iter().filter_map(|id| self.by_id.get(id)).map(|(_, u)| *u).max()
    }

    /// Apply a pull received at `now` (program clock). `exempt` says whether a target must not
    /// be enforced (covered by the allowlist); such decisions are counted, not held.
    pub fn apply(&mut self, pull: &Pull, now: u64, exempt: impl Fn(&Target) -> bool) -> Changes {
        let mut ch = Changes::default();
        let mut touched: Vec<Target> = vec![];
        if pull.startup {
            // The complete set: whatever is held and not in it is lifted.
            touched.extend(self.targets.keys().copied());
            self.by_id.clear();
            self.targets.clear();
            self.exempted = 0;
        }
        for d in &pull.deleted {
            if let Some((t, _)) = self.by_id.remove(&d.id) {
                if let Some(ids) = self.targets.get_mut(&t) {
                    ids.retain(|i| *i != d.id);
                    if ids.is_empty() {
                        self.targets.remove(&t);
                    }
                }
                touched.push(t);
            }
        }
        let mut exempted = 0;
        for d in &pull.new {
            if exempt(&d.target) {
                exempted += 1;
                continue;
            }
            let until = now + duration_ns(d.ttl);
            if let Some((old, _)) = self.by_id.insert(d.id, (d.target, until)) {
                if old != d.target {
                    self.forget_id(old, d.id);
                    touched.push(old);
                }
            }
            let ids = self.targets.entry(d.target).or_default();
            if !ids.contains(&d.id) {
                ids.push(d.id);
            }
            touched.push(d.target);
        }
        self.exempted = if pull.startup { exempted } else { self.exempted.max(exempted) };
        touched.sort_unstable();
        touched.dedup();
        for t in touched {
            let want = self.deadline(&t);
            match (t, want) {
                (Target::Ip(ip), Some(until)) => {
                    if self.installed.get(&ip) != Some(&until) {
                        self.installed.insert(ip, until);
                        ch.ban.push((ip, until));
                    }
                }
                (Target::Ip(ip), None) => {
                    if let Some(until) = self.installed.remove(&ip) {
                        ch.unban.push((ip, until));
                    }
                }
                (Target::Range(_), _) => ch.ranges_changed = true,
            }
        }
        ch
    }

    fn forget_id(&mut self, t: Target, id: i64) {
        if let Some(ids) = self.targets.get_mut(&t) {
            ids.retain(|i| *i != id);
            if ids.is_empty() {
                self.targets.remove(&t);
            }
        }
    }

    /// Drop the decisions whose time is up. Expired addresses need no kernel change (the
    /// program ignores a passed deadline, the sweep frees it); expired ranges do.
    pub fn expire(&mut self, now: u64) -> Changes {
        let gone: Vec<(i64, Target)> =
            self.by_id.iter().filter(|(_, (_, u))| *u <= now).map(|(id, (t, _))| (*id, *t)).collect();
        let mut ch = Changes::default();
        for (id, t) in gone {
            self.by_id.remove(&id);
            self.forget_id(t, id);
            match t {
                Target::Ip(ip) if !self.targets.contains_key(&t) => {
                    self.installed.remove(&ip);
                }
                Target::Ip(_) => {}
                Target::Range(_) => ch.ranges_changed = true,
            }
        }
        ch
    }

    /// Lift everything (the `[crowdsec]` section was removed).
    pub fn clear(&mut self) -> Changes {
        let ranges = self.ranges() > 0;
        self.by_id.clear();
        self.targets.clear();
        self.exempted = 0;
        Changes { ban: vec![], unban: self.installed.drain().collect(), ranges_changed: ranges }
    }
}

/// Must a decision on `t` be left out? The allowlist always wins: an address it covers, or a
/// range it covers entirely, is never enforced from a decision (a range that merely contains
/// allowlisted addresses is enforced: the program checks the allowlist before the blacklist).
///
/// This is the one place where sources that must never be dropped are checked: the daemon
/// passes `policy::never_banned` (the allowlist and the groups `[[port]]` rules trust).
pub fn exempt(allowlist: &IpList, t: &Target) -> bool {
    match t {
        Target::Ip(ip) => allowlist.contains(*ip),
        Target::Range(net) => {
            let covers = |a: IpAddr, p: u8| IpNet::new(a, p).is_ok_and(|n| n.contains(net));
            match net {
                IpNet::V4(_) => allowlist.net4.iter().any(|(a, p)| covers(IpAddr::from(*a), *p)),
                IpNet::V6(_) => allowlist.net6.iter().any(|(a, p)| covers(IpAddr::from(*a), *p)),
            }
        }
    }
}

/// Write the address bans of `ch` to the kernel in bulk, and lift the ones to lift. A ban
/// already longer in the kernel (the rate limiter's, the CLI's) is kept as it is.
pub fn apply_bans(f: &mut Filter, ch: &Changes) -> Result<()> {
    let (mut k4, mut v4, mut k6, mut v6) = (vec![], vec![], vec![], vec![]);
    {
        let m4: BpfHash<_, [u8; 4], u64> = BpfHash::try_from(f.map(maps::BANS_V4)?)?;
        let m6: BpfHash<_, BanKey6, u64> = BpfHash::try_from(f.map(maps::BANS_V6)?)?;
        for (ip, until) in &ch.ban {
            match ip {
                IpAddr::V4(a) => {
                    if m4.get(&a.octets(), 0).map_or(true, |cur| cur < *until) {
                        k4.push(a.octets());
                        v4.push(*until);
                    }
                }
                IpAddr::V6(a) => {
                    let k = BanKey6 { addr: a.octets(), prefix: 128 };
                    if m6.get(&k, 0).map_or(true, |cur| cur < *until) {
                        k6.push(k);
                        v6.push(*until);
                    }
                }
            }
        }
    }
    let fd4 = map_data(f.map(maps::BANS_V4)?).fd().as_fd();
    bpfsys::update_batch(fd4, &k4, &v4).map_err(|e| anyhow!("map {}: {e}", maps::BANS_V4))?;
    let fd6 = map_data(f.map(maps::BANS_V6)?).fd().as_fd();
    bpfsys::update_batch(fd6, &k6, &v6).map_err(|e| anyhow!("map {}: {e}", maps::BANS_V6))?;
    if !k4.is_empty() {
        f.mark_bans_present(BAN_PRESENT_V4)?;
    }
    if !k6.is_empty() {
        f.mark_bans_present(BAN_PRESENT_V6)?;
    }
    for (ip, until) in &ch.unban {
        lift_if_ours(f, *ip, *until)?;
    }
    Ok(())
}

/// How much later than a decision's deadline a ban may end and still be the decision's: the
/// same decision pulled again after a controller restart lands a few milliseconds apart.
const SAME_BAN_SLACK_NS: u64 = 2_000_000_000;

/// Remove the ban of `ip` if its deadline is (still) the one a decision gave it; a ban that
/// ends later was written by someone else (`ban add`) and stays.
fn lift_if_ours(f: &mut Filter, ip: IpAddr, until: u64) -> Result<()> {
    fn lift<K: aya::Pod>(f: &mut Filter, name: &str, k: K, until: u64) -> Result<()> {
        let mut m: BpfHash<_, K, u64> = BpfHash::try_from(f.map_mut(name)?)?;
        if m.get(&k, 0).is_ok_and(|cur| cur <= until + SAME_BAN_SLACK_NS) {
            match m.remove(&k) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(anyhow!("map {name}: {e}")),
            }
        }
        Ok(())
    }
    match ip {
        IpAddr::V4(a) => lift(f, maps::BANS_V4, a.octets(), until),
        IpAddr::V6(a) => lift(f, maps::BANS_V6, BanKey6 { addr: a.octets(), prefix: 128 }, until),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str) -> CrowdsecCfg {
        let t = format!("[crowdsec]\nlapi_url = \"http://127.0.0.1:1\"\nbouncer_api_key = \"k\"\n{extra}");
        crate::config::Config::parse(&t, std::path::Path::new("t.toml")).unwrap().crowdsec.unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn go_durations() {
        let d = |s: &str| parse_go_duration(s);
        assert_eq!(d("59m58.77664147s"), Some((false, Duration::from_secs_f64(3598.77664147))));
        assert_eq!(d("1h59m59.776638646s").unwrap().1.as_secs(), 7199);
        assert_eq!(d("-32.085196ms"), Some((true, Duration::from_secs_f64(0.032085196))));
        assert_eq!(d("1.5µs"), Some((false, Duration::from_nanos(1500))));
        assert_eq!(d("0"), Some((false, Duration::ZERO)));
        assert_eq!(d("4h"), Some((false, Duration::from_secs(14400))));
        for bad in ["", "-", "5", "1d", "h", "1.2.3s", "10x"] {
            assert_eq!(d(bad), None, "{bad:?}");
        }
    }

    const STREAM: &str = r#"{"deleted":null,"new":[
        {"duration":"59m58.7s","id":1,"origin":"cscli","scenario":"manual 'ban' from 'x'","scope":"Ip","type":"ban","value":"198.51.100.7"},
        {"duration":"1h59m59s","id":2,"origin":"cscli","scenario":"manual","scope":"Range","type":"ban","value":"198.51.100.64/26"},
        {"duration":"10m","id":3,"origin":"crowdsec","scenario":"crowdsecurity/ssh-bf","scope":"Ip","type":"captcha","value":"198.51.100.8"},
        {"duration":"10m","id":4,"origin":"CAPI","scenario":"crowdsecurity/http-probing","scope":"Ip","type":"ban","value":"2001:db8::9"},
        {"duration":"10m","id":5,"origin":"cscli","scenario":"m","scope":"Country","type":"ban","value":"FR"},
        {"duration":"10m","id":6,"origin":"cscli","scenario":"m","scope":"Ip","type":"ban","value":"not-an-ip"},
        {"duration":"-3s","id":7,"origin":"cscli","scenario":"m","scope":"Ip","type":"ban","value":"198.51.100.10"},
        {"duration":"10m","id":8,"origin":"cscli","scenario":"m","scope":"Range","type":"ban","value":"198.51.100.11/32"},
        {"duration":"10m","origin":"lists","scenario":"firehol","scope":"Ip","type":"Ban","value":"203.0.113.5"}
    ]}"#;

    #[test]
    fn stream_is_parsed_and_filtered() {
        let p = Pull::parse(STREAM.as_bytes(), &cfg(""), true, 7).unwrap();
        let targets: Vec<Target> = p.new.iter().map(|d| d.target).collect();
        assert_eq!(
            targets,
            vec![
                Target::Ip(ip("198.51.100.7")),
                Target::Range("198.51.100.64/26".parse().unwrap()),
                Target::Ip(ip("2001:db8::9")),
                Target::Ip(ip("198.51.100.11")),
                Target::Ip(ip("203.0.113.5")),
            ]
        );
        assert_eq!(p.ignored, 4, "captcha, Country, a bad value, an elapsed duration");
        assert_eq!((p.startup, p.generation), (true, 7));
        assert!(p.new[4].id < 0, "an id is made up when the LAPI gives none");
        let same = Pull::parse(STREAM.as_bytes(), &cfg(""), true, 7).unwrap();
        assert_eq!(p.new[4].id, same.new[4].id, "and it is stable");

        let p = Pull::parse(STREAM.as_bytes(), &cfg("scopes = [\"range\"]"), false, 0).unwrap();
        assert_eq!(p.new.len(), 2, "{p:?}");
        let p = Pull::parse(STREAM.as_bytes(), &cfg("origins = [\"capi\", \"lists\"]"), false, 0).unwrap();
        assert_eq!(p.new.iter().map(|d| d.id).filter(|i| *i > 0).collect::<Vec<_>>(), vec![4]);
        let p = Pull::parse(STREAM.as_bytes(), &cfg("scenarios = [\"http-\", \"fire\"]"), false, 0).unwrap();
        assert_eq!(p.new.len(), 2, "{p:?}");
        assert!(Pull::parse(b"<html>", &cfg(""), false, 0).unwrap_err().to_string().contains("not valid JSON"));
        let p = Pull::parse(
            br#"{"new":null,"deleted":[{"id":1,"scope":"Ip","value":"198.51.100.7","duration":"-1s"}]}"#,
            &cfg(""),
            false,
            0,
        )
        .unwrap();
        assert_eq!(p.deleted.len(), 1);
    }

    fn dec(id: i64, t: &str, secs: u64) -> Decision {
        let target = if t.contains('/') { Target::Range(t.parse().unwrap()) } else { Target::Ip(ip(t)) };
        Decision { id, target, ttl: Duration::from_secs(secs) }
    }

    fn pull(startup: bool, new: Vec<Decision>, deleted: Vec<Decision>) -> Pull {
        Pull { startup, new, deleted, ..Default::default() }
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn held_decisions_follow_the_stream() {
        let mut h = Held::default();
        let no = |_: &Target| false;
        let a = ip("198.51.100.7");
        // Startup: one address, one range.
        let ch = h.apply(&pull(true, vec![dec(1, "198.51.100.7", 60), dec(2, "198.51.100.64/26", 60)], vec![]), 0, no);
        assert_eq!(ch, Changes { ban: vec![(a, 60 * S)], unban: vec![], ranges_changed: true });
        assert_eq!((h.ips(), h.ranges()), (1, 1));
        assert_eq!(h.range_list().net4.len(), 1);
        // The same decisions again (a repeated pull): nothing to do.
        let ch = h.apply(&pull(false, vec![dec(1, "198.51.100.7", 60)], vec![]), 0, no);
        assert!(ch.is_empty(), "{ch:?}");
        // A second, longer decision on the same address extends the ban.
        let ch = h.apply(&pull(false, vec![dec(3, "198.51.100.7", 120)], vec![]), 0, no);
        assert_eq!(ch.ban, vec![(a, 120 * S)]);
        // Deleting the longer one falls back to the other's deadline; deleting it twice is harmless.
        let ch = h.apply(&pull(false, vec![], vec![dec(3, "198.51.100.7", 0)]), 0, no);
        assert_eq!(ch.ban, vec![(a, 60 * S)]);
        let ch = h.apply(&pull(false, vec![], vec![dec(3, "198.51.100.7", 0)]), 0, no);
        assert!(ch.is_empty());
        // The last decision deleted: lift what we wrote.
        let ch = h.apply(&pull(false, vec![], vec![dec(1, "198.51.100.7", 0)]), 0, no);
        assert_eq!(ch, Changes { ban: vec![], unban: vec![(a, 60 * S)], ranges_changed: false });
        // A new startup without the range lifts it.
        let ch = h.apply(&pull(true, vec![dec(9, "2001:db8::1", 10)], vec![]), 5 * S, no);
        assert_eq!((ch.ban, ch.ranges_changed), (vec![(ip("2001:db8::1"), 15 * S)], true));
        assert_eq!((h.ips(), h.ranges()), (1, 0));
        // Expiry forgets; a later deletion of an expired decision changes nothing.
        assert!(h.expire(14 * S).is_empty());
        assert_eq!(h.ips(), 1);
        assert!(h.expire(15 * S).is_empty(), "addresses expire in the kernel by themselves");
        assert_eq!(h.ips(), 0);
        assert!(h.apply(&pull(false, vec![], vec![dec(9, "2001:db8::1", 0)]), 16 * S, no).is_empty());
        // Ranges expiring change the blacklist.
        h.apply(&pull(false, vec![dec(10, "203.0.113.0/24", 1)], vec![]), 0, no);
        assert!(h.expire(S).ranges_changed);
        // Clearing lifts everything held.
        h.apply(&pull(false, vec![dec(11, "198.51.100.9", 100), dec(12, "203.0.113.0/25", 100)], vec![]), 0, no);
        let ch = h.clear();
        assert_eq!((ch.unban, ch.ranges_changed), (vec![(ip("198.51.100.9"), 100 * S)], true));
    }

    #[test]
    fn the_allowlist_wins() {
        let mut allow = IpList::default();
        allow.insert("198.51.100.5/32".parse().unwrap());
        allow.insert("203.0.113.0/24".parse().unwrap());
        allow.insert("2001:db8:1::/48".parse().unwrap());
        let t = |s: &str| if s.contains('/') { Target::Range(s.parse().unwrap()) } else { Target::Ip(ip(s)) };
        for (target, want) in [
            ("198.51.100.5", true),
            ("198.51.100.6", false),
            ("203.0.113.77", true),
            ("203.0.113.0/25", true),
            ("203.0.113.0/24", true),
            ("203.0.112.0/23", false),
            ("198.51.100.0/24", false),
            ("2001:db8:1:2::/64", true),
            ("2001:db8::/32", false),
            ("2001:db8:1::9", true),
        ] {
            assert_eq!(exempt(&allow, &t(target)), want, "{target}");
        }
        let mut h = Held::default();
        let ch = h.apply(&pull(true, vec![dec(1, "198.51.100.5", 60), dec(2, "198.51.100.6", 60)], vec![]), 0, |t| {
            exempt(&allow, t)
        });
        assert_eq!(ch.ban, vec![(ip("198.51.100.6"), 60 * S)]);
        assert_eq!((h.ips(), h.exempted), (1, 1));
    }
}
