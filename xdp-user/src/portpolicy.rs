//! Per-port policy and the toll-fraud guard: the `[groups.NAME]`, `[[port]]` and `[tollfraud]`
//! configuration, its checks, and the kernel tables built from it ([`PortTables`]), written
//! with the rest of the policy generation by `policy::PolicyPart` (one `Config::policy_gen`
//! flip: the port rules, the group maps and the toll-fraud prefixes change together).
//!
//! Kernel layout of policy generation `g`:
//! * `PORT_RULE_g[port]`: UDP rule id in the low byte, TCP rule id in the next (0 = no rule);
//! * `PORT_DEF_g[id]`: the [`PortRule`]; entry 0 is the header (`present` bits of the groups);
//! * `GRP_NET4_g`/`GRP_NET6_g`: address (as /32, /128) or range → group bits of the entry and
//!   of every range that covers it (one longest-prefix lookup gives every group of a source);
//! * `TF_PREFIX_g`: every prefix once per international prefix, value rule id | `TF_DROP`.
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use xdp_common::*;

use crate::config::{Config, Unknown};
use crate::filter::Filter;
use crate::lists::IpList;
use crate::trie;

/// `protocol` of a `[[port]]` rule.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Udp,
    Tcp,
    #[default]
    Both,
}

impl Protocol {
    fn covers(self, tcp: bool) -> bool {
        match self {
            Protocol::Udp => !tcp,
            Protocol::Tcp => tcp,
            Protocol::Both => true,
        }
    }
}

/// `unknown_options` of a `[[port]]` rule.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownOptions {
    #[default]
    Allow,
    Drop,
}

/// A port or a range `"5000-5100"` in `ports`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PortSpec {
    Number(i64),
    Range(String),
}

impl PortSpec {
    /// The inclusive range, or an error text.
    fn range(&self) -> Result<(u16, u16), String> {
        let port = |v: i64| -> Result<u16, String> {
            if (1..=65535).contains(&v) {
                Ok(v as u16)
            } else {
                Err(format!("port {v} is out of range 1..=65535"))
            }
        };
        match self {
            PortSpec::Number(n) => port(*n).map(|p| (p, p)),
            PortSpec::Range(s) => {
                let bad = || format!("{s:?} is not a port or a range \"LOW-HIGH\"");
                let (a, b) = s.split_once('-').unwrap_or((s, s));
                let a: i64 = a.trim().parse().map_err(|_| bad())?;
                let b: i64 = b.trim().parse().map_err(|_| bad())?;
                let (a, b) = (port(a)?, port(b)?);
                if a > b {
                    return Err(format!("range {s:?} is empty (its low port is above its high port)"));
                }
                Ok((a, b))
            }
        }
    }
}

/// One `[[port]]` rule.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PortCfg {
    /// Shown in errors and `status` (default: the rule's position).
    #[serde(default)]
    pub name: Option<String>,
    pub ports: Vec<PortSpec>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Only members of these groups may reach the ports (empty: every source).
    #[serde(default)]
    pub allow: Vec<String>,
    /// Groups whose OPTIONS pass with `unknown_options = "drop"` (besides `allow`'s).
    #[serde(default)]
    pub known: Vec<String>,
    #[serde(default)]
    pub allow_countries: Vec<String>,
    #[serde(default)]
    pub deny_countries: Vec<String>,
    /// SIP request methods accepted on these ports (empty: every method).
    #[serde(default)]
    pub methods: Vec<String>,
    #[serde(default)]
    pub unknown_options: UnknownOptions,
}

/// `[tollfraud]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TollFraudCfg {
    /// International destinations (country code and more, without the international prefix)
    /// whose INVITE/MESSAGE is dropped.
    #[serde(default)]
    pub deny_prefixes: Vec<String>,
    /// Allow-only: international destinations not covered here are dropped.
    #[serde(default)]
    pub allow_prefixes: Vec<String>,
    /// What starts an international number as dialled.
    #[serde(default = "default_intl")]
    pub international_prefixes: Vec<String>,
}

fn default_intl() -> Vec<String> {
    ["+", "00", "011"].iter().map(|s| s.to_string()).collect()
}

impl TollFraudCfg {
    /// Allow-only mode?
    pub fn allow_only(&self) -> bool {
        !self.allow_prefixes.is_empty()
    }

    /// The configured prefixes (deny or allow), normalised: digits only.
    pub fn prefixes(&self) -> &[String] {
        if self.allow_only() {
            &self.allow_prefixes
        } else {
            &self.deny_prefixes
        }
    }

    fn key(&self) -> &'static str {
        if self.allow_only() {
            "allow_prefixes"
        } else {
            "deny_prefixes"
        }
    }
}

/// Longest toll-fraud prefix (digits) and international prefix accepted.
pub const TF_PREFIX_MAX: usize = 16;
pub const TF_INTL_MAX: usize = 4;

/// A prefix as configured, normalised to its digits (an optional leading `+` and visual
/// separators are allowed for readability).
pub fn prefix_digits(p: &str) -> Option<String> {
    let body = p.trim().strip_prefix('+').unwrap_or(p.trim());
    let digits: String = body.chars().filter(|c| !tf_is_separator(*c as u8) || !c.is_ascii()).collect();
    if digits.is_empty() || digits.len() > TF_PREFIX_MAX || !digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(digits)
}

/// Display name of rule `i` in errors.
pub fn rule_name(cfg: &Config, i: usize) -> String {
    match &cfg.ports[i].name {
        Some(n) => format!("port[{i}] ({n:?})"),
        None => format!("port[{i}]"),
    }
}

/// SIP request methods a rule may name.
fn method_code(name: &str) -> Option<u8> {
    let up = name.to_ascii_uppercase();
    Method::ALL
        .iter()
        .find(|m| m.name() == up && !matches!(m, Method::None | Method::Response | Method::Any | Method::Other))
        .map(|m| *m as u8)
}

/// The checks of `[groups]`, `[[port]]` and `[tollfraud]` (called by `Config::validate`).
pub fn validate(cfg: &Config) -> Result<()> {
    if cfg.groups.len() > GROUPS_MAX as usize {
        bail!("groups: {} groups exceed the maximum of {GROUPS_MAX}", cfg.groups.len());
    }
    for (name, g) in &cfg.groups {
        if name.is_empty()
            || name.len() > 32
            || !name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
        {
            bail!("groups.{name}: a group name is 1..=32 of a-z, 0-9, '_', '-'");
        }
        g.check(&format!("groups.{name}"))?;
    }
    if cfg.ports.len() >= PORT_RULES_MAX as usize {
        bail!("port: {} rules exceed the maximum of {}", cfg.ports.len(), PORT_RULES_MAX - 1);
    }
    // (port, tcp) → the rule that covers it, to name both rules of an overlap.
    let mut owner: BTreeMap<(u16, bool), usize> = BTreeMap::new();
    for (i, r) in cfg.ports.iter().enumerate() {
        let name = rule_name(cfg, i);
        if r.ports.is_empty() {
            bail!("{name}.ports: at least one port or range is required");
        }
        for spec in &r.ports {
            let (lo, hi) = spec.range().map_err(|e| anyhow!("{name}.ports: {e}"))?;
            for p in lo..=hi {
                for tcp in [false, true] {
                    if !r.protocol.covers(tcp) {
                        continue;
                    }
                    if let Some(j) = owner.insert((p, tcp), i) {
                        if j != i {
                            let proto = if tcp { "tcp" } else { "udp" };
                            bail!("{} and {name} both cover {proto} port {p}", rule_name(cfg, j));
                        }
                    }
                }
            }
        }
        for (key, list) in [("allow", &r.allow), ("known", &r.known)] {
            for g in list {
                if !cfg.groups.contains_key(g) {
                    let defined: Vec<&str> = cfg.groups.keys().map(|s| s.as_str()).collect();
                    bail!("{name}.{key}: unknown group {g:?} (defined: {})", defined.join(", "));
                }
            }
        }
        if !r.allow_countries.is_empty() && !r.deny_countries.is_empty() {
            bail!("{name}: set at most one of allow_countries or deny_countries");
        }
        for (key, list) in [("allow_countries", &r.allow_countries), ("deny_countries", &r.deny_countries)] {
            for c in list {
                if crate::countries::index_of(c).is_none() {
                    bail!("{name}.{key}: {c:?} is not an ISO 3166-1 alpha-2 country code");
                }
            }
            if !list.is_empty() && cfg.geoip.is_none() {
                bail!("{name}.{key}: per-port countries need the [geoip] database");
            }
        }
        for m in &r.methods {
            if method_code(m).is_none() {
                bail!("{name}.methods: {m:?} is not a SIP request method (INVITE, ACK, BYE, CANCEL, OPTIONS, REGISTER, …)");
            }
        }
        if r.unknown_options == UnknownOptions::Drop && r.allow.is_empty() && r.known.is_empty() {
            bail!("{name}.unknown_options: \"drop\" needs the groups whose OPTIONS pass (allow or known)");
        }
        if !r.methods.is_empty() || r.unknown_options == UnknownOptions::Drop {
            for spec in &r.ports {
                let (lo, hi) = spec.range().map_err(|e| anyhow!("{name}.ports: {e}"))?;
                if let Some(p) = (lo..=hi).find(|p| !cfg.sip.ports.contains(p)) {
                    bail!("{name}: methods and unknown_options apply to SIP ports only; port {p} is not in sip.ports");
                }
            }
        }
    }
    if let Some(t) = &cfg.tollfraud {
        if t.deny_prefixes.is_empty() == t.allow_prefixes.is_empty() {
            bail!("tollfraud: set exactly one of deny_prefixes or allow_prefixes");
        }
        if t.international_prefixes.is_empty() {
            bail!("tollfraud.international_prefixes: at least one is required (e.g. [\"+\", \"00\"])");
        }
        for (i, p) in t.international_prefixes.iter().enumerate() {
            let ok = p == "+" || (!p.is_empty() && p.len() <= TF_INTL_MAX && p.bytes().all(|c| c.is_ascii_digit()));
            if !ok {
                bail!("tollfraud.international_prefixes[{i}]: {p:?} must be \"+\" or 1..={TF_INTL_MAX} digits");
            }
            for q in &t.international_prefixes[..i] {
                if p.starts_with(q.as_str()) || q.starts_with(p.as_str()) {
                    bail!("tollfraud.international_prefixes: {q:?} and {p:?} overlap");
                }
            }
        }
        let key = t.key();
        if t.prefixes().len() >= TF_RULES_MAX as usize {
            bail!("tollfraud.{key}: {} prefixes exceed the maximum of {}", t.prefixes().len(), TF_RULES_MAX - 1);
        }
        let mut seen = BTreeSet::new();
        for (i, p) in t.prefixes().iter().enumerate() {
            let d = prefix_digits(p)
                .ok_or_else(|| anyhow!("tollfraud.{key}[{i}]: {p:?} must be 1..={TF_PREFIX_MAX} digits"))?;
            if !seen.insert(d.clone()) {
                bail!("tollfraud.{key}[{i}]: {p:?} is listed twice");
            }
        }
    }
    Ok(())
}

/// Group lists by name (configuration plus the CLI's additions), in bit order.
pub type Groups = BTreeMap<String, IpList>;

/// Bit of each group (by name order, as `Config::groups` iterates).
pub fn group_bits(cfg: &Config) -> BTreeMap<&str, u32> {
    cfg.groups.keys().enumerate().map(|(i, n)| (n.as_str(), 1u32 << i)).collect()
}

/// Every kernel table of the per-port policy and the toll-fraud guard, built and checked
/// before anything is written.
#[derive(Clone, Default)]
pub struct PortTables {
    pub port_map: Vec<u32>,
    pub defs: Vec<PortRule>,
    pub grp_net4: Vec<([u8; 4], u32, u32)>,
    pub grp_net6: Vec<([u8; 16], u32, u32)>,
    pub tf: Vec<([u8; TF_KEY_LEN], u32, u32)>,
}

/// Group bits of every range, including the bits of the ranges that cover it (the kernel's
/// longest-prefix lookup returns one entry).
fn close_ranges<const N: usize>(ranges: &BTreeMap<([u8; N], u8), u32>) -> Vec<([u8; N], u32, u32)> {
    let mask = |a: [u8; N], len: u8| -> [u8; N] {
        let mut out = a;
        for (i, b) in out.iter_mut().enumerate() {
            let bit = i as u32 * 8;
            if bit >= len as u32 {
                *b = 0;
            } else if bit + 8 > len as u32 {
                *b &= 0xffu8 << (8 - (len as u32 - bit));
            }
        }
        out
    };
    ranges
        .iter()
        .map(|(&(a, len), &bits)| {
            let all = (0..len).filter_map(|l| ranges.get(&(mask(a, l), l))).fold(bits, |m, b| m | b);
            (a, len as u32, all)
        })
        .collect()
}

impl PortTables {
    /// Build the tables of `cfg` with the group lists `groups`; checks every capacity.
    pub fn new(cfg: &Config, groups: &Groups) -> Result<PortTables> {
        let bits = group_bits(cfg);
        let mut t = PortTables {
            port_map: vec![0; PORT_RULE_ENTRIES as usize],
            defs: vec![PortRule::default(); PORT_RULES_MAX as usize],
            ..Default::default()
        };
        let gbits = |names: &[String]| names.iter().filter_map(|n| bits.get(n.as_str())).fold(0u32, |m, b| m | b);
        for (i, r) in cfg.ports.iter().enumerate() {
            let id = i as u32 + 1;
            for spec in &r.ports {
                let (lo, hi) = spec.range().map_err(|e| anyhow!("{}.ports: {e}", rule_name(cfg, i)))?;
                for p in lo..=hi {
                    if r.protocol.covers(false) {
                        t.port_map[p as usize] |= id;
                    }
                    if r.protocol.covers(true) {
                        t.port_map[p as usize] |= id << 8;
                    }
                }
            }
            let mut def = PortRule {
                allow: gbits(&r.allow),
                known: gbits(&r.allow) | gbits(&r.known),
                methods: r.methods.iter().filter_map(|m| method_code(m)).fold(0u32, |m, c| m | 1 << c),
                ..Default::default()
            };
            if r.unknown_options == UnknownOptions::Drop {
                def.flags |= PR_UNKNOWN_OPTIONS_DROP;
            }
            if let Some(denied) = country_row(cfg, r) {
                def.flags |= PR_COUNTRIES;
                for c in denied {
                    def.countries[c as usize >> 6] |= 1 << (c & 63);
                }
            }
            t.defs[id as usize] = def;
        }
        // Addresses go into the tries as /32 and /128: one lookup per packet, and one map per
        // family and generation (a program may use at most 64 maps).
        let (mut n4, mut n6) = (BTreeMap::new(), BTreeMap::new());
        for (name, list) in groups {
            let Some(&bit) = bits.get(name.as_str()) else { continue };
            list.v4.iter().for_each(|a| *n4.entry((*a, 32)).or_default() |= bit);
            list.v6.iter().for_each(|a| *n6.entry((*a, 128)).or_default() |= bit);
            list.net4.iter().for_each(|k| *n4.entry(*k).or_default() |= bit);
            list.net6.iter().for_each(|k| *n6.entry(*k).or_default() |= bit);
        }
        t.grp_net4 = close_ranges(&n4);
        t.grp_net6 = close_ranges(&n6);
        let present = |b: u32, n: usize| if n > 0 { b } else { 0 };
        t.defs[0].present = present(GRP_PRESENT_NET4, t.grp_net4.len()) | present(GRP_PRESENT_NET6, t.grp_net6.len());
        if let Some(tf) = &cfg.tollfraud {
            t.tf = tollfraud_entries(tf);
        }
        t.check()?;
        Ok(t)
    }

    fn check(&self) -> Result<()> {
        for (what, n, cap) in [
            ("groups: IPv4 addresses and ranges", self.grp_net4.len(), GRP_NET_CAPACITY),
            ("groups: IPv6 addresses and ranges", self.grp_net6.len(), GRP_NET_CAPACITY),
            ("tollfraud: prefixes times international prefixes", self.tf.len(), TF_CAPACITY),
        ] {
            if n > cap as usize {
                bail!("{what}: {n} exceed the capacity of {cap}");
            }
        }
        Ok(())
    }

    /// Write generation `g` (emptied before).
    pub fn fill(&self, f: &mut Filter, g: usize) -> Result<()> {
        f.fill_array(maps::PORT_RULE_GEN[g], 0, &self.port_map)?;
        f.fill_array(maps::PORT_DEF_GEN[g], 0, &self.defs)?;
        trie::fill(f, maps::GRP_NET4_GEN[g], &self.grp_net4)?;
        trie::fill(f, maps::GRP_NET6_GEN[g], &self.grp_net6)?;
        trie::fill(f, maps::TF_PREFIX_GEN[g], &self.tf)
    }

    /// Empty the hash and trie maps of generation `g` (the arrays are overwritten by a fill).
    pub fn clear(f: &mut Filter, g: usize) -> Result<()> {
        trie::clear::<[u8; 4], u32>(f, maps::GRP_NET4_GEN[g])?;
        trie::clear::<[u8; 16], u32>(f, maps::GRP_NET6_GEN[g])?;
        trie::clear::<[u8; TF_KEY_LEN], u32>(f, maps::TF_PREFIX_GEN[g])?;
        Ok(())
    }

    /// Userspace model of the kernel's group lookup: the group bits of `ip`.
    pub fn groups_of(&self, ip: IpAddr) -> u32 {
        match ip {
            IpAddr::V4(a) => {
                let a = a.octets();
                self.grp_net4
                    .iter()
                    .filter(|(k, l, _)| u32::from_be_bytes(*k) == u32::from_be_bytes(a) & mask32(*l))
                    .max_by_key(|(_, l, _)| *l)
                    .map_or(0, |(_, _, b)| *b)
            }
            IpAddr::V6(a) => {
                let a = a.octets();
                self.grp_net6
                    .iter()
                    .filter(|(k, l, _)| mask_prefix6(a, *l) == *k)
                    .max_by_key(|(_, l, _)| *l)
                    .map_or(0, |(_, _, b)| *b)
            }
        }
    }
}

fn mask32(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

/// Country indexes a rule drops, if it has a country list. Sources the database does not
/// cover (index 0) follow `[geoip] unknown`.
fn country_row(cfg: &Config, r: &PortCfg) -> Option<Vec<u8>> {
    let unknown_drop = cfg.geoip.as_ref().is_some_and(|g| g.unknown == Unknown::Drop);
    let idx = |l: &[String]| -> BTreeSet<u8> { l.iter().filter_map(|c| crate::countries::index_of(c)).collect() };
    let mut out: Vec<u8> = if !r.allow_countries.is_empty() {
        let allowed = idx(&r.allow_countries);
        (1..GEO_SPLIT).filter(|c| !allowed.contains(c)).collect()
    } else if !r.deny_countries.is_empty() {
        idx(&r.deny_countries).into_iter().collect()
    } else {
        return None;
    };
    if unknown_drop {
        out.push(GEO_UNKNOWN);
    }
    Some(out)
}

/// Trie entries of the toll-fraud guard: each prefix behind each international prefix, and in
/// allow-only mode the bare international prefixes (dropping what no allowed prefix covers).
pub fn tollfraud_entries(t: &TollFraudCfg) -> Vec<([u8; TF_KEY_LEN], u32, u32)> {
    let key = |s: &str| {
        let mut k = [0u8; TF_KEY_LEN];
        k[..s.len()].copy_from_slice(s.as_bytes());
        (k, 8 * s.len() as u32)
    };
    let mut out = vec![];
    let allow = t.allow_only();
    for intl in &t.international_prefixes {
        if allow {
            let (k, l) = key(intl);
            out.push((k, l, TF_DROP));
        }
        for (i, p) in t.prefixes().iter().enumerate() {
            let d = prefix_digits(p).expect("validated");
            let (k, l) = key(&format!("{intl}{d}"));
            let id = i as u32 + 1;
            out.push((k, l, if allow { id } else { id | TF_DROP }));
        }
    }
    out
}

/// Userspace model of the kernel's toll-fraud decision for a Request-URI user part: `Some(rule
/// id)` when the INVITE/MESSAGE is dropped.
pub fn tollfraud_model(t: &TollFraudCfg, user: &str) -> Option<u32> {
    let (k, n) = tf_normalise(user.as_bytes());
    if n == 0 || (n == 1 && k[0] == b'+') {
        return None;
    }
    let entries = tollfraud_entries(t);
    let best = entries.iter().filter(|(p, l, _)| k[..(*l / 8) as usize] == p[..(*l / 8) as usize]).max_by_key(|e| e.1);
    match best {
        Some((_, _, v)) if v & TF_DROP != 0 => Some(v & !TF_DROP),
        _ => None,
    }
}

/// Names of the toll-fraud rule ids `0..=N` of `cfg` (empty without `[tollfraud]`), for stats
/// and metrics.
pub fn tollfraud_rule_names(cfg: &Config) -> Vec<String> {
    match &cfg.tollfraud {
        Some(t) => (0..=t.prefixes().len() as u32).map(|i| tollfraud_rule_name(t, i)).collect(),
        None => vec![],
    }
}

/// Text of a toll-fraud rule id for stats: the prefix, or the allow-only miss.
pub fn tollfraud_rule_name(t: &TollFraudCfg, id: u32) -> String {
    if id == 0 {
        return "not in allow_prefixes".to_string();
    }
    t.prefixes().get(id as usize - 1).and_then(|p| prefix_digits(p)).map(|d| format!("+{d}")).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn parse(t: &str) -> Result<Config> {
        Config::parse(t, Path::new("test.toml"))
    }

    const BASE: &str = "[groups.trunks]\nentries = [\"198.51.100.0/24\", \"203.0.113.5\"]\n[groups.admins]\nentries = [\"203.0.113.0/28\"]\n";

    #[test]
    fn config_errors_name_the_rule_and_key() {
        let cases: Vec<(String, Option<&str>)> = vec![
            (format!("{BASE}[[port]]\nports = [5060]\nallow = [\"trunks\"]"), None),
            (
                format!("{BASE}[[port]]\nports = [5060]\nallow = [\"trunk\"]"),
                Some("port[0].allow: unknown group \"trunk\" (defined: admins, trunks)"),
            ),
            (format!("{BASE}[[port]]\nports = [5060]\nknown = [\"x\"]"), Some("port[0].known: unknown group \"x\"")),
            (
                format!("{BASE}[[port]]\nports = [\"5000-5100\"]\n[[port]]\nname = \"sip\"\nports = [5060]"),
                Some("port[0] and port[1] (\"sip\") both cover udp port 5060"),
            ),
            (
                format!(
                    "{BASE}[[port]]\nports = [5060]\nprotocol = \"udp\"\n[[port]]\nports = [5060]\nprotocol = \"tcp\""
                ),
                None,
            ),
            (
                format!("{BASE}[[port]]\nports = [5060]\nprotocol = \"tcp\"\n[[port]]\nports = [5060]"),
                Some("port[0] and port[1] both cover tcp port 5060"),
            ),
            (format!("{BASE}[[port]]\nports = [\"5100-5000\"]"), Some("port[0].ports: range \"5100-5000\" is empty")),
            (format!("{BASE}[[port]]\nports = [\"50x0\"]"), Some("port[0].ports: \"50x0\" is not a port")),
            (format!("{BASE}[[port]]\nports = [0]"), Some("port[0].ports: port 0 is out of range")),
            (format!("{BASE}[[port]]\nports = [65536]"), Some("port[0].ports: port 65536")),
            (format!("{BASE}[[port]]\nports = [\"1-65535\"]"), None),
            (format!("{BASE}[[port]]\nports = []"), Some("port[0].ports: at least one")),
            (format!("{BASE}[[port]]\nports = [5060]\nprotocol = \"sctp\""), Some("sctp")),
            (format!("{BASE}[[port]]\nports = [5060]\nmethods = [\"INVITE\", \"bye\"]"), None),
            (
                format!("{BASE}[[port]]\nports = [5060]\nmethods = [\"RESPONSE\"]"),
                Some("port[0].methods: \"RESPONSE\""),
            ),
            (format!("{BASE}[[port]]\nports = [22]\nmethods = [\"INVITE\"]"), Some("port 22 is not in sip.ports")),
            (format!("{BASE}[[port]]\nports = [5060]\nunknown_options = \"drop\""), Some("port[0].unknown_options")),
            (format!("{BASE}[[port]]\nports = [5060]\nunknown_options = \"drop\"\nknown = [\"trunks\"]"), None),
            (
                format!("{BASE}[[port]]\nports = [5060]\nallow_countries = [\"FR\"]"),
                Some("port[0].allow_countries: per-port countries need the [geoip] database"),
            ),
            (
                format!("{BASE}[[port]]\nports = [5060]\ndeny_countries = [\"XY\"]"),
                Some("port[0].deny_countries: \"XY\""),
            ),
            (format!("{BASE}[[port]]\nports = [5060]\nbogus = 1"), Some("bogus")),
            ("[groups.Trunks]\nentries = []".into(), Some("groups.Trunks: a group name")),
            ("[groups.t]\nentries = [\"198.51.100.0/33\"]".into(), Some("groups.t.entries[0]")),
            ("[groups.t]\nrefresh = \"1s\"".into(), Some("groups.t.refresh")),
            ("[tollfraud]\ndeny_prefixes = [\"882\", \"+53\", \"4-4\"]".into(), None),
            (
                "[tollfraud]\ndeny_prefixes = [\"882\"]\nallow_prefixes = [\"33\"]".into(),
                Some("tollfraud: set exactly one"),
            ),
            ("[tollfraud]\n".into(), Some("tollfraud: set exactly one")),
            ("[tollfraud]\ndeny_prefixes = [\"88a\"]".into(), Some("tollfraud.deny_prefixes[0]: \"88a\"")),
            (
                "[tollfraud]\nallow_prefixes = [\"33\", \"3-3\"]".into(),
                Some("tollfraud.allow_prefixes[1]: \"3-3\" is listed twice"),
            ),
            (
                "[tollfraud]\ndeny_prefixes = [\"1\"]\ninternational_prefixes = [\"00\", \"0\"]".into(),
                Some("\"00\" and \"0\" overlap"),
            ),
            (
                "[tollfraud]\ndeny_prefixes = [\"1\"]\ninternational_prefixes = [\"x\"]".into(),
                Some("international_prefixes[0]"),
            ),
            ("[tollfraud]\ndeny_prefixes = [\"1\"]\ninternational_prefixes = []".into(), Some("at least one")),
        ];
        for (text, want) in &cases {
            match (parse(text), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    let e = format!("{e:#}");
                    assert!(e.starts_with("test.toml: ") && e.contains(w), "{text:?}: {e:?} should contain {w:?}");
                }
                (Ok(_), Some(w)) => panic!("{text:?} was accepted; expected an error containing {w:?}"),
                (Err(e), None) => panic!("{text:?} was refused: {e:#}"),
            }
        }
    }

    #[test]
    fn tables_hold_rules_groups_and_prefixes() {
        let cfg = parse(&format!(
            "{BASE}[sip]\nports = [5060, 6000, 6001, 6002]\n[[port]]\nports = [5060, \"6000-6002\"]\nprotocol = \"udp\"\nallow = [\"trunks\"]\nmethods = [\"INVITE\", \"ACK\"]\n[[port]]\nports = [22]\nprotocol = \"tcp\"\nallow = [\"admins\"]\n"
        ))
        .unwrap();
        let mut groups = Groups::new();
        for (n, g) in &cfg.groups {
            groups.insert(n.clone(), crate::lists::load_sources(g).unwrap());
        }
        let t = PortTables::new(&cfg, &groups).unwrap();
        assert_eq!(t.port_map[5060], 1);
        assert_eq!((t.port_map[5999], t.port_map[6000], t.port_map[6002], t.port_map[6003]), (0, 1, 1, 0));
        assert_eq!(t.port_map[22], 2 << 8);
        let (admins, trunks) = (1, 2); // bits by name order
        assert_eq!((t.defs[1].allow, t.defs[2].allow), (trunks, admins));
        assert_eq!(t.defs[1].methods, 1 << METHOD_INVITE | 1 << METHOD_ACK);
        assert_eq!(t.defs[0].present, GRP_PRESENT_NET4);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // 203.0.113.5 is an exact trunk and inside the admins' /28.
        assert_eq!(t.groups_of(ip("203.0.113.5")), admins | trunks);
        assert_eq!(t.groups_of(ip("203.0.113.6")), admins);
        assert_eq!(t.groups_of(ip("198.51.100.77")), trunks);
        assert_eq!(t.groups_of(ip("192.0.2.1")), 0);
    }

    #[test]
    fn nested_ranges_carry_the_bits_of_their_covers() {
        let mut r = BTreeMap::new();
        r.insert(([10, 0, 0, 0], 8), 1);
        r.insert(([10, 1, 0, 0], 16), 2);
        r.insert(([10, 1, 2, 0], 24), 4);
        r.insert(([11, 0, 0, 0], 8), 8);
        let c = close_ranges(&r);
        let get = |a: [u8; 4], l: u32| c.iter().find(|e| e.0 == a && e.1 == l).unwrap().2;
        assert_eq!((get([10, 0, 0, 0], 8), get([10, 1, 0, 0], 16), get([10, 1, 2, 0], 24)), (1, 3, 7));
        assert_eq!(get([11, 0, 0, 0], 8), 8);
    }

    #[test]
    fn tollfraud_model_strips_international_prefixes() {
        let deny = TollFraudCfg {
            deny_prefixes: vec!["882".into(), "+53".into(), "44 9".into()],
            allow_prefixes: vec![],
            international_prefixes: default_intl(),
        };
        for (user, want) in [
            ("+88212345", Some(1)),
            ("0088212345", Some(1)),
            ("01188212345", Some(1)),
            ("+53-7-123", Some(2)),
            ("(00) 53.7.123", None), // "(" then "00" then " 53": normalised "00537123"? see below
            ("+449012", Some(3)),
            ("+448012", None),
            ("88212345", None), // no international prefix: a national number or an extension
            ("+", None),
            ("alice", None),
            ("+1 (212) 555-0100", None),
        ] {
            let got = tollfraud_model(&deny, user);
            if user == "(00) 53.7.123" {
                // Separators are skipped anywhere, so this is 00537123: Cuba.
                assert_eq!(got, Some(2), "{user}");
                continue;
            }
            assert_eq!(got, want, "{user}");
        }
        let allow = TollFraudCfg {
            deny_prefixes: vec![],
            allow_prefixes: vec!["33".into(), "32".into()],
            international_prefixes: vec!["+".into(), "00".into()],
        };
        for (user, want) in [
            ("+33612345678", None),
            ("0032 2 123", None),
            ("+4420", Some(0)),
            ("00882", Some(0)),
            ("0612345678", None), // national
            ("011882", None),     // 011 is not an international prefix here
            ("1234", None),
        ] {
            assert_eq!(tollfraud_model(&allow, user), want, "{user}");
        }
        assert_eq!(tollfraud_rule_name(&deny, 2), "+53");
        assert_eq!(tollfraud_rule_name(&allow, 0), "not in allow_prefixes");
    }
}
