//! The peers on the same list, in a throwaway namespace `sipshield-bench-<pid>`: `ipset restore`
//! and `nft -f`, each timed, checked and torn down, with the meminfo deltas of the load.
use std::fs;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use serde_json::{json, Value};

use crate::blacklist::list::{ip, mask, Generated, Probes};
use crate::blacklist::mem::Mem;
use crate::blacklist::BlArgs;
use crate::harness::testbed::Netns;
use crate::peers;

pub struct PeerResult {
    pub name: &'static str,
    pub what: String,
    pub load_secs: f64,
    pub delete_secs: f64,
    pub mem: Mem,
    pub extra: Value,
}

/// Both peers (none with `--skip-peers`). The maps dropped before are freed by the kernel in the
/// background (RCU, deferred vfree); that is let finish before the peers' memory baselines.
pub fn peers(a: &BlArgs, g: &Generated, probes: &Probes, dir: &Path) -> Result<Vec<PeerResult>> {
    if a.skip_peers {
        return Ok(vec![]);
    }
    std::thread::sleep(a.settle() * 2);
    let hit = *probes.hit_srcs.first().ok_or_else(|| anyhow!("no listed address"))?;
    let timeout = Duration::from_secs(a.peer_timeout);
    let ns = Netns::create(&format!("sipshield-bench-{}", std::process::id()))?;
    Ok(vec![ipset(&ns, g, dir, hit, timeout, a.settle())?, nft(&ns, g, dir, hit, timeout, a.settle())?])
}

/// ipset: hash:ip for addresses, hash:net for ranges, sized up front (its best case).
fn ipset(ns: &Netns, g: &Generated, dir: &Path, hit: u32, timeout: Duration, settle: Duration) -> Result<PeerResult> {
    let total = g.total();
    let file = dir.join("blacklist.ipset");
    fs::write(&file, peers::ipset_text(&g.addrs, &g.ranges))?;
    eprintln!("ipset restore of {total} entries (netns {}) ...", ns.name);
    let before = Mem::settled(settle)?;
    let load = peers::ipset_restore(ns, &file, timeout)?;
    let after = Mem::settled(settle)?;
    let l = peers::ipset_listing(ns, timeout)?;
    if l.entries_v4 as usize != g.addrs.len() || l.entries_net4 as usize != g.ranges.len() {
        bail!(
            "ipset holds {} + {} entries, expected {} + {}",
            l.entries_v4,
            l.entries_net4,
            g.addrs.len(),
            g.ranges.len()
        );
    }
    peers::ipset_check(ns, ip(hit), timeout)?;
    let del = peers::ipset_destroy(ns, timeout)?;
    eprintln!("  ipset restore {load:.3} s, destroy {del:.3} s");
    let _ = fs::remove_file(&file);
    Ok(PeerResult {
        name: "ipset",
        what: "ipset restore: hash:ip + hash:net (hashsize preset, no resize)".into(),
        load_secs: load,
        delete_secs: del,
        mem: after.minus(before),
        extra: json!({"entries_v4": l.entries_v4, "entries_net4": l.entries_net4,
                      "ipset_size_in_memory_bytes": l.size_in_memory,
                      "ipset_bytes_per_entry": l.size_in_memory as f64 / total as f64}),
    })
}

/// nftables: one plain ipv4_addr set (addresses) and one interval set (ranges), one `nft -f`.
fn nft(ns: &Netns, g: &Generated, dir: &Path, hit: u32, timeout: Duration, settle: Duration) -> Result<PeerResult> {
    let file = dir.join("blacklist.nft");
    fs::write(&file, peers::nft_blacklist_text(&g.addrs, &g.ranges))?;
    eprintln!("nft -f of {} entries ...", g.total());
    let before = Mem::settled(settle)?;
    let load = peers::nft_load(ns, &file, timeout)?;
    let after = Mem::settled(settle)?;
    peers::nft_check(ns, "bl4", ip(hit), timeout)?;
    if let Some((n, l)) = g.ranges.first() {
        peers::nft_check(ns, "bl4net", ip(*n | (!mask(*l as u32) & 0x5)), timeout)?;
    }
    let del = peers::nft_delete_table(ns, peers::NFT_TABLE, timeout)?;
    eprintln!("  nft -f {load:.3} s, delete table {del:.3} s");
    let _ = fs::remove_file(&file);
    Ok(PeerResult {
        name: "nft",
        what: "nft -f: plain ipv4_addr set (size preset) + interval set".into(),
        load_secs: load,
        delete_secs: del,
        mem: after.minus(before),
        extra: json!({}),
    })
}
