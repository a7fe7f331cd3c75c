//! The peers sipshield is compared with, each set up and torn down inside a namespace of the
//! benchmark (commands started with `setns()`, under a time limit):
//! * `ipset` and `nftables` holding the blacklist (`sipshield-bench blacklist`);
//! * `iptables` raw-table rules dropping SIP scanners (`sip_bench`);
//! * an `nftables` interval set of a country's networks (`geo_bench`).
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::harness::live::{run_peer, Run};
use crate::harness::testbed::{run_limited, Input, Netns, Testbed};

/// Time limit of a peer command of the live benchmarks.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Time limit of loading the country set with `nft -f` (`geo_bench`).
pub const NFT_SET_TIMEOUT: Duration = Duration::from_secs(300);

/// `prog args…` inside `ns` with `input` on stdin, killed after `timeout`; (seconds, stdout).
pub fn ns_run(ns: &Netns, prog: &str, args: &[&str], input: Input<'_>, timeout: Duration) -> Result<(f64, String)> {
    let tag = format!("{prog} {} (netns {})", args.join(" "), ns.name);
    run_limited(ns.cmd(prog, args), input, &tag, timeout)
}

fn ns_out(ns: &Netns, prog: &str, args: &[&str]) -> Result<String> {
    Ok(ns_run(ns, prog, args, Input::Null, COMMAND_TIMEOUT)?.1)
}

// ------------------------------------------------------------------------------ blacklist

/// The ipset sets of the blacklist: addresses (`hash:ip`) and ranges (`hash:net`).
pub const IPSET_V4: &str = "sipshield_bench_v4";
pub const IPSET_NET4: &str = "sipshield_bench_net4";
/// The nft table of the blacklist (sets `bl4` and `bl4net`).
pub const NFT_TABLE: &str = "sipshield_bench";

/// `ipset restore` input: a `hash:ip` set for the addresses and a `hash:net` set for the
/// ranges, sized up front (hashsize the next power of two, maxelem N + 1024: no resize).
pub fn ipset_text(addrs: &[u32], ranges: &[(u32, u8)]) -> String {
    let mut s = String::with_capacity((addrs.len() + ranges.len()) * 40 + 512);
    let hs = addrs.len().max(1024).next_power_of_two();
    let hn = ranges.len().max(1024).next_power_of_two();
    let _ = writeln!(s, "create {IPSET_V4} hash:ip family inet hashsize {hs} maxelem {}", addrs.len() + 1024);
    let _ = writeln!(s, "create {IPSET_NET4} hash:net family inet hashsize {hn} maxelem {}", ranges.len() + 1024);
    for a in addrs {
        let _ = writeln!(s, "add {IPSET_V4} {}", Ipv4Addr::from(*a));
    }
    for (n, l) in ranges {
        let _ = writeln!(s, "add {IPSET_NET4} {}/{l}", Ipv4Addr::from(*n));
    }
    s
}

/// `nft -f` input: table [`NFT_TABLE`] with a plain `ipv4_addr` set `bl4` (size preset) for the
/// addresses and an interval set `bl4net` for the ranges.
pub fn nft_blacklist_text(addrs: &[u32], ranges: &[(u32, u8)]) -> String {
    let mut s = String::with_capacity((addrs.len() + ranges.len()) * 20 + 512);
    let _ = writeln!(s, "table ip {NFT_TABLE} {{");
    let _ = writeln!(s, "  set bl4 {{\n    type ipv4_addr\n    size {}", addrs.len() + 1024);
    let elems: Vec<String> = addrs.iter().map(|a| Ipv4Addr::from(*a).to_string()).collect();
    nft_elements(&mut s, &elems);
    s.push_str("  }\n");
    s.push_str("  set bl4net {\n    type ipv4_addr\n    flags interval\n");
    let elems: Vec<String> = ranges.iter().map(|(n, l)| format!("{}/{l}", Ipv4Addr::from(*n))).collect();
    nft_elements(&mut s, &elems);
    s.push_str("  }\n}\n");
    s
}

fn nft_elements(s: &mut String, elems: &[String]) {
    if elems.is_empty() {
        return;
    }
    s.push_str("    elements = {\n");
    for e in elems {
        let _ = writeln!(s, "      {e},");
    }
    s.push_str("    }\n");
}

/// What `ipset list -t` says about the blacklist's sets.
#[derive(Clone, Copy, Debug, Default)]
pub struct IpsetListing {
    pub entries_v4: u64,
    pub entries_net4: u64,
    /// "Size in memory" of both sets, bytes.
    pub size_in_memory: u64,
}

pub fn ipset_listing(ns: &Netns, timeout: Duration) -> Result<IpsetListing> {
    let (_, listing) = ns_run(ns, "ipset", &["list", "-t"], Input::Null, timeout)?;
    let field = |set: &str, key: &str| -> u64 {
        let mut in_set = false;
        for l in listing.lines() {
            if let Some(n) = l.strip_prefix("Name: ") {
                in_set = n.trim() == set;
            } else if in_set {
                if let Some(v) = l.strip_prefix(key) {
                    return v.trim().parse().unwrap_or(0);
                }
            }
        }
        0
    };
    Ok(IpsetListing {
        entries_v4: field(IPSET_V4, "Number of entries:"),
        entries_net4: field(IPSET_NET4, "Number of entries:"),
        size_in_memory: field(IPSET_V4, "Size in memory:") + field(IPSET_NET4, "Size in memory:"),
    })
}

/// `ipset restore < file`: seconds.
pub fn ipset_restore(ns: &Netns, file: &Path, timeout: Duration) -> Result<f64> {
    Ok(ns_run(ns, "ipset", &["restore"], Input::File(file), timeout)?.0)
}

/// `ipset test` of an address that must be in the address set.
pub fn ipset_check(ns: &Netns, addr: Ipv4Addr, timeout: Duration) -> Result<()> {
    let a = addr.to_string();
    ns_run(ns, "ipset", &["test", IPSET_V4, &a], Input::Null, timeout).context("ipset test of a listed address")?;
    Ok(())
}

/// `ipset destroy` (every set of the namespace): seconds.
pub fn ipset_destroy(ns: &Netns, timeout: Duration) -> Result<f64> {
    Ok(ns_run(ns, "ipset", &["destroy"], Input::Null, timeout)?.0)
}

/// `nft -f file`: seconds.
pub fn nft_load(ns: &Netns, file: &Path, timeout: Duration) -> Result<f64> {
    let path = file.to_string_lossy();
    Ok(ns_run(ns, "nft", &["-f", &path], Input::Null, timeout)?.0)
}

/// `nft get element` of `addr` in `set` of [`NFT_TABLE`] (fails when it is not there).
pub fn nft_check(ns: &Netns, set: &str, addr: Ipv4Addr, timeout: Duration) -> Result<()> {
    let elem = format!("{{ {addr} }}");
    ns_run(ns, "nft", &["get", "element", "ip", NFT_TABLE, set, &elem], Input::Null, timeout)
        .with_context(|| format!("nft get element {addr} of set {set}"))?;
    Ok(())
}

/// `nft delete table` of `table`: seconds.
pub fn nft_delete_table(ns: &Netns, table: &str, timeout: Duration) -> Result<f64> {
    Ok(ns_run(ns, "nft", &["delete", "table", "ip", table], Input::Null, timeout)?.0)
}

// ------------------------------------------------------------------------------ iptables

/// The scanner job with iptables in raw PREROUTING: drop `scanner_ua` (Boyer-Moore string
/// match), and limit REGISTERs per source with hashlimit (5/s, burst 20).
pub fn iptables_rules(ns: &Netns, scanner_ua: &str) -> Result<()> {
    iptables_flush(ns)?;
    let rule = |needle: &str, extra: &[&str]| -> Result<()> {
        let mut args = vec!["-t", "raw", "-A", "PREROUTING", "-p", "udp", "--dport", "5060"];
        args.extend(["-m", "string", "--algo", "bm", "--string", needle]);
        args.extend(extra);
        args.extend(["-j", "DROP"]);
        ns_out(ns, "iptables", &args).map(|_| ())
    };
    rule(scanner_ua, &[])?;
    let limit = ["--hashlimit-above", "5/sec", "--hashlimit-burst", "20", "--hashlimit-mode", "srcip"];
    rule("REGISTER ", &[&["-m", "hashlimit"][..], &limit, &["--hashlimit-name", "reg"]].concat())
}

pub fn iptables_flush(ns: &Netns) -> Result<()> {
    ns_out(ns, "iptables", &["-t", "raw", "-F", "PREROUTING"]).map(|_| ())
}

/// Packet counters of the rules of raw PREROUTING, in order.
pub fn iptables_counters(ns: &Netns) -> Result<Vec<u64>> {
    let text = ns_out(ns, "iptables", &["-t", "raw", "-L", "PREROUTING", "-v", "-x", "-n"])?;
    let mut v = vec![];
    for line in text.lines().skip(2) {
        if let Some(first) = line.split_whitespace().next() {
            v.push(first.parse::<u64>().with_context(|| format!("iptables counter line {line:?}"))?);
        }
    }
    Ok(v)
}

/// One iptables run: the rules in the receiving namespace, then [`run_peer`] counting the
/// scanner rule's drops (the first rule), then the rules flushed again.
pub fn iptables_run(tb: &Testbed, frames: &[Vec<u8>], per: u32, scanner_ua: &str) -> Result<Run> {
    iptables_rules(&tb.rx, scanner_ua)?;
    let r = run_peer(tb, frames, per, || Ok(iptables_counters(&tb.rx)?.first().copied().unwrap_or(0)));
    let _ = iptables_flush(&tb.rx);
    r
}

// ------------------------------------------------------------------------------ nft country set

/// The nft table of `geo_bench`.
pub const NFT_GEO_TABLE: &str = "ssbench_geo";

/// Table [`NFT_GEO_TABLE`]: an interval set `denied` of `nets` and a prerouting chain at raw
/// priority (-300) with `ip saddr @denied counter drop`.
pub fn nft_geo_text(nets: &[([u8; 4], u8)]) -> String {
    let elems: Vec<String> = nets.iter().map(|(a, l)| format!("{}/{l}", Ipv4Addr::from(*a))).collect();
    format!(
        "table ip {NFT_GEO_TABLE} {{\n  set denied {{\n    type ipv4_addr; flags interval;\n    elements = {{ {} }}\n  }}\n  \
         chain prerouting {{\n    type filter hook prerouting priority -300; policy accept;\n    ip saddr @denied counter drop\n  }}\n}}\n",
        elems.join(", ")
    )
}

/// `nft -f -` of `text` in `ns`: seconds.
pub fn nft_geo_load(ns: &Netns, text: &str) -> Result<f64> {
    Ok(ns_run(ns, "nft", &["-f", "-"], Input::Bytes(text.as_bytes()), NFT_SET_TIMEOUT)?.0)
}

/// Packets counted by the drop rule of the country chain.
pub fn nft_geo_counter(ns: &Netns) -> Result<u64> {
    let out = ns_out(ns, "nft", &["-j", "list", "chain", "ip", NFT_GEO_TABLE, "prerouting"])?;
    let v: Value = serde_json::from_str(&out).context("parsing nft -j")?;
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["rule"]["expr"].as_array().into_iter().flatten() {
            if let Some(p) = e["counter"]["packets"].as_u64() {
                return Ok(p);
            }
        }
    }
    bail!("no counter in the nft chain")
}

/// One nftables run (the table loaded before): [`run_peer`] counting the drop rule's packets.
pub fn nft_geo_run(tb: &Testbed, frames: &[Vec<u8>], per: u32) -> Result<Run> {
    run_peer(tb, frames, per, || nft_geo_counter(&tb.rx))
}

// ------------------------------------------------------------------------------ live blacklist

/// The nft table of `bl_live`: the blacklist on the netdev ingress hook of the receiver.
pub const NFT_BL_NETDEV: &str = "ssbench_bl";

/// Table `netdev` [`NFT_BL_NETDEV`]: the sets of [`nft_blacklist_text`] and an ingress chain on
/// `dev` (the earliest nftables hook) dropping sources in either set.
pub fn nft_netdev_blacklist_text(addrs: &[u32], ranges: &[(u32, u8)], dev: &str) -> String {
    let sets = nft_blacklist_text(addrs, ranges);
    let body = sets
        .strip_prefix(&format!("table ip {NFT_TABLE} {{\n"))
        .and_then(|b| b.strip_suffix("}\n"))
        .unwrap_or_default();
    format!(
        "table netdev {NFT_BL_NETDEV} {{\n{body}  chain ingress {{\n    type filter hook ingress device \"{dev}\" priority -500; policy accept;\n    \
         ip saddr @bl4 counter drop\n    ip saddr @bl4net counter drop\n  }}\n}}\n"
    )
}

/// Packets counted by the drop rules of the netdev chain (both sets).
pub fn nft_netdev_counter(ns: &Netns) -> Result<u64> {
    let out = ns_out(ns, "nft", &["-j", "list", "chain", "netdev", NFT_BL_NETDEV, "ingress"])?;
    let v: Value = serde_json::from_str(&out).context("parsing nft -j")?;
    let mut sum = 0;
    for item in v["nftables"].as_array().into_iter().flatten() {
        for e in item["rule"]["expr"].as_array().into_iter().flatten() {
            sum += e["counter"]["packets"].as_u64().unwrap_or(0);
        }
    }
    Ok(sum)
}

/// Load the netdev table (`nft -f -`): seconds.
pub fn nft_netdev_load(ns: &Netns, text: &str) -> Result<f64> {
    Ok(ns_run(ns, "nft", &["-f", "-"], Input::Bytes(text.as_bytes()), NFT_SET_TIMEOUT)?.0)
}

pub fn nft_netdev_delete(ns: &Netns) -> Result<()> {
    ns_out(ns, "nft", &["delete", "table", "netdev", NFT_BL_NETDEV]).map(|_| ())
}

/// `ipset restore` of [`ipset_text`] and two iptables raw PREROUTING rules dropping sources in
/// either set: seconds of the restore.
pub fn ipset_iptables_load(ns: &Netns, text: &str) -> Result<f64> {
    iptables_flush(ns)?;
    let secs = ns_run(ns, "ipset", &["restore"], Input::Bytes(text.as_bytes()), NFT_SET_TIMEOUT)?.0;
    for set in [IPSET_V4, IPSET_NET4] {
        ns_out(
            ns,
            "iptables",
            &["-t", "raw", "-A", "PREROUTING", "-m", "set", "--match-set", set, "src", "-j", "DROP"],
        )?;
    }
    Ok(secs)
}

/// Remove the rules, then the sets.
pub fn ipset_iptables_delete(ns: &Netns) -> Result<()> {
    iptables_flush(ns)?;
    ipset_destroy(ns, COMMAND_TIMEOUT).map(|_| ())
}
