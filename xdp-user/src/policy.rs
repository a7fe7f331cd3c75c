//! All-or-nothing policy changes, for start, reload and replay alike.
//!
//! [`Sources::read`] reads everything a configuration names (list files and URLs, the GeoIP
//! database, signatures) without touching the kernel; [`Policy::new`] merges the operator's
//! runtime edits, computes every kernel value and checks every capacity. Only then does
//! [`Policy::commit`] write: one [`gen::swap`] of every part (allowlist, blacklist,
//! signatures, GeoIP, SIP ports and rate rules) and the scalar settings, so the program sees
//! the old policy or the new one. A rejected policy changes nothing.
use anyhow::{anyhow, Context, Result};
use xdp_common::{maps, RateRule, CFG_DRY_RUN, NUM_METHOD_SLOTS, REASON_NAMES, SIP_PORT_WORDS};

type KConfig = xdp_common::Config;

use crate::addrlist::{ListCounts, ListKind, ListPart};
use crate::config::Config;
use crate::filter::Filter;
use crate::gen::{self, Part};
use crate::geo::{GeoPart, GeoReport};
use crate::lists::{self, IpList};
use crate::portpolicy::{Groups, PortTables};
use crate::sig::{self, SigPart, Signature};
use crate::state::Runtime;

/// What a configuration's sources hold, read from disk and network.
#[derive(Clone)]
pub struct Sources {
    pub blacklist: IpList,
    /// The configuration's allowlist (without the CLI's additions).
    pub allowlist: IpList,
    /// The configuration's signatures (without the CLI's edits).
    pub signatures: Vec<Signature>,
    pub geo: Option<crate::geo::GeoDb>,
    /// The configuration's source groups (without the CLI's additions).
    pub groups: Groups,
}

impl Sources {
    /// Read every source of `cfg`. Fails without side effects, naming the file, URL or key.
    pub fn read(cfg: &Config) -> Result<Sources> {
        let (sources, mut errors) = Self::read_all(cfg);
        match sources {
            Some(s) => Ok(s),
            None if errors.len() == 1 => Err(errors.remove(0)),
            None => Err(anyhow!("{}", errors.iter().map(|e| format!("{e:#}")).collect::<Vec<_>>().join("\n"))),
        }
    }

    /// Read every source of `cfg`, going on after a failure: the sources when all were read,
    /// else every error (`sipshield check` lists them all).
    pub fn read_all(cfg: &Config) -> (Option<Sources>, Vec<anyhow::Error>) {
        fn keep<T>(errors: &mut Vec<anyhow::Error>, r: Result<T>) -> Option<T> {
            r.map_err(|e| errors.push(e)).ok()
        }
        let mut errors = vec![];
        let blacklist = keep(&mut errors, read_list(cfg, ListKind::Blacklist));
        let allowlist = keep(&mut errors, read_list(cfg, ListKind::Allowlist));
        let signatures = keep(&mut errors, sig::from_config(&cfg.scanners));
        let geo = match &cfg.geoip {
            Some(g) => keep(&mut errors, crate::geo::read_db(&g.database).map(Some)),
            None => Some(None),
        };
        let groups = keep(&mut errors, read_groups(cfg));
        match (blacklist, allowlist, signatures, geo, groups) {
            (Some(blacklist), Some(allowlist), Some(signatures), Some(geo), Some(groups)) => {
                (Some(Sources { blacklist, allowlist, signatures, geo, groups }), errors)
            }
            _ => (None, errors),
        }
    }
}

/// Read one list section of `cfg` (entries, files, URLs).
pub fn read_list(cfg: &Config, kind: ListKind) -> Result<IpList> {
    let l = match kind {
        ListKind::Blacklist => &cfg.blacklist,
        ListKind::Allowlist => &cfg.allowlist,
    };
    lists::load_sources(l).with_context(|| kind.name().to_string())
}

/// Read every `[groups.NAME]` of `cfg` (entries, files, URLs).
pub fn read_groups(cfg: &Config) -> Result<Groups> {
    let mut out = Groups::new();
    for (name, l) in &cfg.groups {
        out.insert(name.clone(), lists::load_sources(l).with_context(|| format!("groups.{name}"))?);
    }
    Ok(out)
}

/// The configuration's groups with the CLI's additions.
pub fn merged_groups(src: &Groups, rt: &Runtime) -> Groups {
    let mut out = src.clone();
    for (name, l) in out.iter_mut() {
        l.merge(rt.group_list(name));
        l.skipped.clear();
    }
    out
}

/// Everything the kernel will hold, computed and checked: each part is built once here (the
/// blacklist's bucket table, the GeoIP tables) and written as it is by [`Policy::commit`].
pub struct Policy {
    pub cfg: Config,
    pub blacklist: ListPart<'static>,
    pub allowlist: ListPart<'static>,
    pub signatures: Vec<Signature>,
    pub geo: Option<GeoPart>,
    pub ports: PolicyPart,
    /// Config flags with the runtime dry-run override applied.
    pub flags: u32,
    pub skipped_lines: Vec<String>,
}

/// What a commit did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ApplyReport {
    pub blacklist: ListCounts,
    pub allowlist: ListCounts,
    pub signatures: usize,
    pub geo: Option<GeoReport>,
    pub load_secs: f64,
    pub cleanup_secs: f64,
    pub skipped_lines: Vec<String>,
}

/// The configuration's allowlist with the CLI's additions.
pub fn merged_allowlist(src: &IpList, rt: &Runtime) -> IpList {
    let mut l = src.clone();
    l.merge(rt.allow_list());
    l.skipped.clear();
    l
}

/// Sources a decision from outside (CrowdSec) must never drop: the allowlist and the members of
/// every group a `[[port]]` rule trusts (`allow`), with the CLI's additions. A trunk banned by
/// another site's decision would otherwise lose every port, its trusted ones included.
pub fn never_banned(cfg: &Config, src: &Sources, rt: &Runtime) -> IpList {
    let mut l = merged_allowlist(&src.allowlist, rt);
    let mut groups = merged_groups(&src.groups, rt);
    for name in cfg.ports.iter().flat_map(|p| &p.allow) {
        if let Some(g) = groups.remove(name) {
            l.merge(g);
        }
    }
    l
}

/// The configuration's signatures with the CLI's additions and exclusions.
pub fn merged_signatures(src: &[Signature], rt: &Runtime) -> Result<Vec<Signature>> {
    let mut out: Vec<Signature> = src.to_vec();
    for (h, t) in &rt.scanners_del {
        let id = sig::header_id(h).ok_or_else(|| anyhow!("runtime scanner exclusion: unknown header {h:?}"))?;
        out.retain(|s| !(s.header == id && s.text == t.to_ascii_lowercase()));
    }
    for (h, t) in &rt.scanners_add {
        let id = sig::header_id(h).ok_or_else(|| anyhow!("runtime scanner: unknown header {h:?}"))?;
        let s = Signature::new(id, t)?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// Config flags of `cfg` with the CLI's dry-run override.
pub fn flags(cfg: &Config, rt: &Runtime) -> u32 {
    let mut f = cfg.flags();
    match rt.dry_run {
        Some(true) => f |= CFG_DRY_RUN,
        Some(false) => f &= !CFG_DRY_RUN,
        None => {}
    }
    f
}

impl Policy {
    /// Merge `rt` into `src` and compute every kernel value of `cfg`; checks every capacity.
    pub fn new(cfg: &Config, src: &Sources, rt: &Runtime) -> Result<Policy> {
        let allowlist = merged_allowlist(&src.allowlist, rt);
        let signatures = merged_signatures(&src.signatures, rt)?;
        let geo = match (&cfg.geoip, &src.geo) {
            (Some(g), Some(db)) => Some(GeoPart::new(db, &crate::geo::GeoPolicy::from(g))?),
            _ => None,
        };
        let p = Policy {
            cfg: cfg.clone(),
            blacklist: ListPart::owned(ListKind::Blacklist, src.blacklist.clone()),
            allowlist: ListPart::owned(ListKind::Allowlist, allowlist),
            signatures,
            geo,
            ports: PolicyPart::new(cfg, &merged_groups(&src.groups, rt))?,
            flags: flags(cfg, rt),
            skipped_lines: src
                .blacklist
                .skipped
                .iter()
                .chain(&src.allowlist.skipped)
                .chain(src.groups.values().flat_map(|g| &g.skipped))
                .cloned()
                .collect(),
        };
        // Every capacity, before anything is written.
        p.with_parts(|parts| parts.iter().try_for_each(|part| part.check()))?;
        Ok(p)
    }

    /// Run `f` on every part of the policy (the signature part is a view, nothing to build).
    fn with_parts<R>(&self, f: impl FnOnce(&[&dyn Part]) -> R) -> R {
        let sigs = SigPart::new(&self.signatures);
        let mut parts: Vec<&dyn Part> = vec![&self.allowlist, &self.blacklist, &sigs, &self.ports];
        if let Some(g) = &self.geo {
            parts.push(g);
        }
        f(&parts)
    }

    /// The scalar settings written with the flip.
    fn scalars(&self, c: &mut KConfig) {
        let cfg = &self.cfg;
        c.flags = self.flags;
        c.rl_v6_prefix = cfg.ratelimit.ipv6_prefix;
        c.event_reasons = cfg.events.reasons.iter().filter_map(|r| reason_index(r)).fold(0u32, |m, i| m | 1 << i);
        c.event_interval_ns = 1_000_000_000 / cfg.events.rate.max(1) as u64;
        c.event_burst_ns = c.event_interval_ns * cfg.events.burst.max(1) as u64;
    }

    /// Write the whole policy as one change (see the module docs).
    pub fn commit(&self, filter: &mut Filter) -> Result<ApplyReport> {
        let r = self.with_parts(|parts| gen::swap(filter, parts, |c| self.scalars(c)))?;
        // After the flip (which sets `CFG_AUTH_RECORD`): one write of a single array value.
        filter.set_auth_config(&self.cfg.authfail.kernel())?;
        Ok(ApplyReport {
            blacklist: ListCounts::of(self.blacklist.list()),
            allowlist: ListCounts::of(self.allowlist.list()),
            signatures: self.signatures.len(),
            geo: self.geo.as_ref().map(|g| g.report(r.load_secs)),
            load_secs: r.load_secs,
            cleanup_secs: r.cleanup_secs,
            skipped_lines: self.skipped_lines.clone(),
        })
    }
}

fn reason_index(name: &str) -> Option<usize> {
    REASON_NAMES.iter().position(|n| *n == name)
}

/// SIP ports, rate rules, `[[port]]` rules with their source groups, and the toll-fraud
/// prefixes: two generations (`SIP_PORTS`/`SIP_PORTS_1`, `RL_RULES`/`RL_RULES_1`,
/// `PORT_RULE_*`, `PORT_DEF_*`, `GRP_*`, `TF_PREFIX_*`) selected by `Config::policy_gen`,
/// flipped with the rest of the policy. A group refresh or a `group add|del` swaps this part.
#[derive(Clone)]
pub struct PolicyPart {
    ports: Vec<u64>,
    rules: Vec<RateRule>,
    pub tables: PortTables,
}

impl PolicyPart {
    /// Build the part of `cfg` with the group lists `groups` (configuration plus CLI
    /// additions); checks the capacities.
    pub fn new(cfg: &Config, groups: &Groups) -> Result<PolicyPart> {
        let mut ports = vec![0u64; SIP_PORT_WORDS as usize];
        for p in &cfg.sip.ports {
            ports[(*p >> 6) as usize] |= 1u64 << (p & 63);
        }
        let mut rules = vec![RateRule::default(); NUM_METHOD_SLOTS as usize];
        for (name, r) in &cfg.ratelimit.rules {
            let slot = crate::config::method_slot(name).expect("validated") as usize;
            rules[slot] = r.kernel_rule();
        }
        Ok(PolicyPart { ports, rules, tables: PortTables::new(cfg, groups)? })
    }
}

impl Part for PolicyPart {
    fn name(&self) -> &'static str {
        "SIP ports, rate rules, port rules, groups and toll-fraud prefixes"
    }
    fn live(&self, c: &KConfig) -> u32 {
        c.policy_gen
    }
    fn set_live(&self, c: &mut KConfig, g: u32) {
        c.policy_gen = g;
    }
    fn fill(&self, f: &mut Filter, g: u32) -> Result<()> {
        let g = (g & 1) as usize;
        f.fill_array(maps::SIP_PORTS_GEN[g], 0, &self.ports)?;
        f.fill_array(maps::RL_RULES_GEN[g], 0, &self.rules)?;
        self.tables.fill(f, g)
    }
    fn clear(&self, f: &mut Filter, g: u32) -> Result<()> {
        // Arrays: a fill overwrites every slot; the group and prefix maps are emptied.
        PortTables::clear(f, (g & 1) as usize)
    }
}

/// Swap one address list in (a refresh or a CLI edit).
pub fn swap_list(filter: &mut Filter, kind: ListKind, list: &IpList) -> Result<gen::SwapReport> {
    gen::swap(filter, &[&ListPart::new(kind, list)], |_| {})
}

/// Swap the signature set in (a CLI edit).
pub fn swap_signatures(filter: &mut Filter, sigs: &[Signature]) -> Result<gen::SwapReport> {
    gen::swap(filter, &[&SigPart::new(sigs)], |_| {})
}

/// Swap the policy part in with new group lists (a group refresh or a CLI edit): the rest of
/// the configuration is unchanged.
pub fn swap_groups(filter: &mut Filter, cfg: &Config, groups: &Groups) -> Result<gen::SwapReport> {
    gen::swap(filter, &[&PolicyPart::new(cfg, groups)?], |_| {})
}

/// Read `cfg`'s sources and commit them to `filter` (replay, tests and benchmarks: no runtime
/// edits).
pub fn apply_config(filter: &mut Filter, cfg: &Config) -> Result<ApplyReport> {
    let sources = Sources::read(cfg)?;
    Policy::new(cfg, &sources, &Runtime::default())?.commit(filter)
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
