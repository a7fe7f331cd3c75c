//! The stages of `sipshield-bench blacklist`, in the order they run.
use std::os::fd::AsFd;
use std::path::Path;

use anyhow::{anyhow, Result};
use aya::maps::lpm_trie::Key;
use aya::maps::{LpmTrie, Map};
use serde_json::{json, Value};
use sipshield::filter::map_data;
use sipshield::lists::IpList;

use super::experiments;
use super::BlArgs;
use super::PREV_BL_V4_CAPACITY;

mod filter;
mod peers;
mod second;

pub use filter::{breakdown, capped, load, Breakdown, Capped, Load, NO_BITMAP};
pub use peers::{peers, PeerResult};
pub use second::{second_instance, Second};

/// The IPv4 ranges of `list` as (network, prefix length).
pub fn ranges4(list: &IpList) -> Vec<([u8; 4], u32)> {
    list.net4.iter().map(|(a, l)| (*a, *l as u32)).collect()
}

/// Every IPv4 entry of `list` as a prefix: the ranges, then the addresses as /32s.
pub fn v4_entries(list: &IpList) -> Vec<([u8; 4], u32)> {
    ranges4(list).into_iter().chain(list.v4.iter().map(|a| (*a, 32))).collect()
}

/// Insert (prefix, addr) pairs into an IPv4 LPM trie: `BPF_MAP_UPDATE_BATCH` when the kernel
/// supports it for tries (through `sipshield::bpfsys`: aya 0.14 has no batch operations), else
/// one `BPF_MAP_UPDATE_ELEM` per entry. Returns the method used.
pub fn lpm_fill(m: &mut Map, entries: &[([u8; 4], u32)]) -> Result<&'static str> {
    let keys = lpm_keys(entries);
    let ones = vec![1u32; keys.len()];
    match sipshield::bpfsys::update_batch(map_data(m).fd().as_fd(), &keys, &ones) {
        Ok(()) => Ok("BPF_MAP_UPDATE_BATCH"),
        Err(e)
            if matches!(e.raw_os_error(), Some(libc::EINVAL) | Some(524) /* ENOTSUPP */ | Some(libc::EOPNOTSUPP)) =>
        {
            lpm_insert_each(m, entries)?;
            Ok("BPF_MAP_UPDATE_ELEM per entry")
        }
        Err(e) => Err(anyhow!("LPM batch insert: {e}")),
    }
}

/// One `BPF_MAP_UPDATE_ELEM` per entry (what `swap_list` does for ranges).
pub fn lpm_insert_each(m: &mut Map, entries: &[([u8; 4], u32)]) -> Result<()> {
    let mut t: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(m)?;
    for (a, l) in entries {
        t.insert(&Key::new(*l, *a), 1, 0)
            .map_err(|e| anyhow!("LPM insert {}/{l}: {e}", std::net::Ipv4Addr::from(*a)))?;
    }
    Ok(())
}

/// The kernel's `struct bpf_lpm_trie_key` of each entry (aya's `Key`, plain old data).
pub fn lpm_keys(entries: &[([u8; 4], u32)]) -> Vec<Key<[u8; 4]>> {
    entries.iter().map(|(a, l)| Key::new(*l, *a)).collect()
}

/// The side measurements of the design comparison: the preallocated hash, one stand-alone
/// array shaped like the table, and the lean parser. Errors are reported in the JSON.
pub fn side_experiments(a: &BlArgs, list: &IpList, list_path: &Path) -> (Value, Value, Value) {
    eprintln!("design comparison: preallocated hash (stand-alone, max_entries {PREV_BL_V4_CAPACITY}) ...");
    let keys4: Vec<[u8; 4]> = list.v4.iter().copied().collect();
    let prealloc =
        experiments::prealloc_hash(&keys4, PREV_BL_V4_CAPACITY).unwrap_or_else(|e| json!({"error": e.to_string()}));
    drop(keys4);
    let tab_check = experiments::table_array_check(a.settle()).unwrap_or_else(|e| json!({"error": e.to_string()}));
    let lean = experiments::lean_parse(list_path)
        .map(|(s, a4, n4)| json!({"secs": s, "v4": a4, "net4": n4}))
        .unwrap_or_else(|e| json!({"error": e.to_string()}));
    (prealloc, tab_check, lean)
}
