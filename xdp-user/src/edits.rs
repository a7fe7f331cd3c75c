//! Runtime edits from the CLI (allowlist, scanner signatures, dry-run), applied the same way by
//! the controller (one writer, through the control socket) and by the CLI itself when no
//! controller runs (under the writer lock).
//!
//! Every edit is checked, then **persisted** (`runtime.json`, atomically), then made live; if
//! making it live fails, the previous `runtime.json` is restored. So an edit is live only once
//! it survives a restart, and a full disk fails the edit cleanly with the live filter unchanged.
//!
//! Semantics: an entry that comes from the configuration (entries, files, URLs) cannot be
//! deleted from the CLI (the error says where it comes from); `add` then `del` returns exactly
//! to the previous state; deleting a configured signature is an explicit, persistent exclusion
//! listed by `scanners list`; `dry-run on|off` overrides the config's `dry_run` until
//! `dry-run config`.
use std::path::Path;

use anyhow::{anyhow, bail, Result};
use xdp_common::CFG_DRY_RUN;

use crate::addrlist::{check_capacity, ListKind};
use crate::config::Config;
use crate::control::DryRun;
use crate::filter::Filter;
use crate::gen::Part;
use crate::lists::{self, IpList};
use crate::policy;
use crate::sig::{self, SigPart, Signature};
use crate::state::Runtime;

/// What the configuration contributes, which runtime edits are merged into.
pub struct Base<'a> {
    pub cfg: &'a Config,
    pub config_path: &'a Path,
    pub allowlist: &'a IpList,
    pub signatures: &'a [Signature],
    /// The configuration's source groups (`[groups.NAME]`, without the CLI's additions).
    pub groups: &'a crate::portpolicy::Groups,
}

/// Which part of the kernel state an edit changes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Target {
    Allowlist,
    Signatures,
    DryRun,
    Groups,
}

/// Persist `new`, make it live, or roll back: see the module docs.
fn commit(f: &mut Filter, rt: &mut Runtime, new: Runtime, base: &Base<'_>, target: Target) -> Result<()> {
    let allow = policy::merged_allowlist(base.allowlist, &new);
    let sigs = policy::merged_signatures(base.signatures, &new)?;
    let groups = policy::merged_groups(base.groups, &new);
    // Capacities before anything is persisted.
    match target {
        Target::Allowlist => check_capacity(ListKind::Allowlist, &allow)?,
        Target::Signatures => SigPart::new(&sigs).check()?,
        Target::DryRun => {}
        Target::Groups => {
            policy::PolicyPart::new(base.cfg, &groups)?;
        }
    }
    new.save()?;
    let live = match target {
        Target::Allowlist => policy::swap_list(f, ListKind::Allowlist, &allow).map(|_| ()),
        Target::Signatures => policy::swap_signatures(f, &sigs).map(|_| ()),
        Target::DryRun => {
            let on = policy::flags(base.cfg, &new) & CFG_DRY_RUN != 0;
            f.update_config(|c| if on { c.flags |= CFG_DRY_RUN } else { c.flags &= !CFG_DRY_RUN }).map(|_| ())
        }
        Target::Groups => policy::swap_groups(f, base.cfg, &groups).map(|_| ()),
    };
    if let Err(e) = live {
        return match rt.save() {
            Ok(()) => Err(e.context("the edit was not applied; runtime.json is back to its previous content")),
            Err(r) => Err(e.context(format!("the edit was not applied, and restoring runtime.json failed too: {r:#}"))),
        };
    }
    *rt = new;
    Ok(())
}

/// Canonical text of an allowlist entry given on the command line.
fn canonical(entry: &str) -> Result<ipnet::IpNet> {
    let net =
        lists::parse_entry(entry.trim()).ok_or_else(|| anyhow!("{entry:?} is not an IPv4/IPv6 address or CIDR"))?;
    if net.prefix_len() == 0 {
        bail!("{entry:?} matches every address; an allowlist entry that bypasses every check is refused from the CLI");
    }
    Ok(net.trunc())
}

/// How an entry is written in `runtime.json` and messages: an address without `/32` or
/// `/128`, a range as CIDR.
fn entry_text(net: ipnet::IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn in_list(l: &IpList, net: ipnet::IpNet) -> bool {
    let mut one = IpList::default();
    one.insert(net);
    one.v4.iter().all(|a| l.v4.contains(a))
        && one.v6.iter().all(|a| l.v6.contains(a))
        && one.net4.iter().all(|a| l.net4.contains(a))
        && one.net6.iter().all(|a| l.net6.contains(a))
}

pub fn allow_add(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, entry: &str) -> Result<String> {
    let net = canonical(entry)?;
    if rt.allow.iter().any(|a| lists::parse_entry(a) == Some(net)) {
        bail!("{} is already on the allowlist (added from the CLI)", entry_text(net));
    }
    let mut new = rt.clone();
    new.allow.push(entry_text(net));
    commit(f, rt, new, base, Target::Allowlist)?;
    let also = if in_list(base.allowlist, net) { " (also in the configuration)" } else { "" };
    Ok(format!("allowlist: added {}{also}", entry_text(net)))
}

pub fn allow_del(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, entry: &str) -> Result<String> {
    let net = canonical(entry)?;
    let from_config = in_list(base.allowlist, net);
    let text = entry_text(net);
    if !rt.allow.iter().any(|a| lists::parse_entry(a) == Some(net)) {
        if from_config {
            bail!(
                "{text} comes from the configuration ([allowlist] entries, files or urls of {}); remove it there and reload",
                base.config_path.display()
            );
        }
        bail!("{text} is not on the allowlist");
    }
    let mut new = rt.clone();
    new.allow.retain(|a| lists::parse_entry(a) != Some(net));
    commit(f, rt, new, base, Target::Allowlist)?;
    Ok(if from_config {
        format!("allowlist: removed the CLI entry {text}; it stays allowlisted by the configuration")
    } else {
        format!("allowlist: removed {text}")
    })
}

/// A group of the configuration (the CLI adds members, never groups: a group only means
/// something through the `[[port]]` rules that name it).
fn group_of<'b>(base: &'b Base<'_>, name: &str) -> Result<&'b IpList> {
    base.groups.get(name).ok_or_else(|| {
        let known: Vec<&str> = base.groups.keys().map(|s| s.as_str()).collect();
        anyhow!("no group {name:?} in {} (groups: {})", base.config_path.display(), known.join(", "))
    })
}

pub fn group_add(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, name: &str, entry: &str) -> Result<String> {
    let configured = group_of(base, name)?;
    let net = canonical(entry)?;
    let text = entry_text(net);
    let cli = rt.groups.get(name).map(Vec::as_slice).unwrap_or_default();
    if cli.iter().any(|a| lists::parse_entry(a) == Some(net)) {
        bail!("{text} is already in group {name} (added from the CLI)");
    }
    let mut new = rt.clone();
    new.groups.entry(name.to_string()).or_default().push(text.clone());
    commit(f, rt, new, base, Target::Groups)?;
    let also = if in_list(configured, net) { " (also in the configuration)" } else { "" };
    Ok(format!("group {name}: added {text}{also}"))
}

pub fn group_del(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, name: &str, entry: &str) -> Result<String> {
    let configured = group_of(base, name)?;
    let net = canonical(entry)?;
    let text = entry_text(net);
    let from_config = in_list(configured, net);
    let cli = rt.groups.get(name).map(Vec::as_slice).unwrap_or_default();
    if !cli.iter().any(|a| lists::parse_entry(a) == Some(net)) {
        if from_config {
            bail!(
                "{text} comes from the configuration ([groups.{name}] entries, files or urls of {}); remove it there and reload",
                base.config_path.display()
            );
        }
        bail!("{text} is not in group {name}");
    }
    let mut new = rt.clone();
    if let Some(v) = new.groups.get_mut(name) {
        v.retain(|a| lists::parse_entry(a) != Some(net));
        if v.is_empty() {
            new.groups.remove(name);
        }
    }
    commit(f, rt, new, base, Target::Groups)?;
    Ok(if from_config {
        format!("group {name}: removed the CLI entry {text}; it stays a member through the configuration")
    } else {
        format!("group {name}: removed {text}")
    })
}

fn signature(header: &str, text: &str) -> Result<Signature> {
    let id = sig::header_id(header)
        .ok_or_else(|| anyhow!("unknown header {header:?}; one of {}", xdp_common::HEADER_NAMES[1..].join(", ")))?;
    Signature::new(id, text)
}

fn key(s: &Signature) -> (String, String) {
    (s.header_name().to_string(), s.text.clone())
}

pub fn scanner_add(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, header: &str, text: &str) -> Result<String> {
    let s = signature(header, text)?;
    let k = key(&s);
    let mut new = rt.clone();
    let msg = if new.scanners_del.contains(&k) {
        new.scanners_del.retain(|x| *x != k);
        format!("scanners: {}: {:?} enabled again (from the configuration)", k.0, k.1)
    } else if base.signatures.contains(&s) || new.scanners_add.contains(&k) {
        bail!("signature {}: {:?} exists", k.0, k.1);
    } else {
        new.scanners_add.push(k.clone());
        format!("scanners: added {}: {:?}", k.0, k.1)
    };
    commit(f, rt, new, base, Target::Signatures)?;
    Ok(msg)
}

pub fn scanner_del(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, header: &str, text: &str) -> Result<String> {
    let s = signature(header, text)?;
    let k = key(&s);
    let mut new = rt.clone();
    let msg = if new.scanners_add.contains(&k) {
        new.scanners_add.retain(|x| *x != k);
        format!("scanners: removed {}: {:?}", k.0, k.1)
    } else if base.signatures.contains(&s) && !new.scanners_del.contains(&k) {
        new.scanners_del.push(k.clone());
        format!(
            "scanners: {}: {:?} comes from the configuration; it is now excluded (listed by `scanners list`, undone by `scanners add`)",
            k.0, k.1
        )
    } else {
        bail!("no signature {}: {:?}", k.0, k.1);
    };
    commit(f, rt, new, base, Target::Signatures)?;
    Ok(msg)
}

pub fn dry_run(f: &mut Filter, rt: &mut Runtime, base: &Base<'_>, mode: DryRun) -> Result<String> {
    let mut new = rt.clone();
    new.dry_run = match mode {
        DryRun::On => Some(true),
        DryRun::Off => Some(false),
        DryRun::Config => None,
    };
    commit(f, rt, new, base, Target::DryRun)?;
    let on = policy::flags(base.cfg, rt) & CFG_DRY_RUN != 0;
    let state = if on { "ON: drops are counted but every packet passes" } else { "off: the filter drops" };
    Ok(match mode {
        DryRun::Config => format!("dry-run {state} (following the configuration's dry_run)"),
        _ => format!("dry-run {state} (CLI override, kept across reloads and restarts until `dry-run config`)"),
    })
}

/// Where the live dry-run setting comes from, for `status`.
pub fn dry_run_source(rt: &Runtime) -> &'static str {
    if rt.dry_run.is_some() {
        "cli"
    } else {
        "config"
    }
}
