//! Side measurements that explain the headline numbers: /proc/slabinfo deltas, stand-alone maps
//! outside the sipshield object (aya's `HashMap::create` / `Array::create`: a preallocated hash
//! for the design comparison, an array shaped like `BL_TAB4_g`), and a lean parser as a
//! reference for the parse time.
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use aya::maps::{Array, HashMap, IterableMap, MapData};
use aya::Pod;
use serde_json::{json, Value};
use xdp_common::{Bucket4, BL4_BUCKETS};

use super::mem::{memlock, Mem};

// ------------------------------------------------------------------------------ slabinfo

/// Bytes held per slab cache (num_slabs × pages per slab × page size).
pub fn slabinfo() -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    let Ok(text) = fs::read_to_string("/proc/slabinfo") else { return out };
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64;
    for line in text.lines().skip(2) {
        let f: Vec<&str> = line.split_whitespace().collect();
        // name active num objsize objperslab pagesperslab : tunables l b s : slabdata active num shared
        if f.len() < 16 {
            continue;
        }
        let (Ok(pps), Ok(num_slabs)) = (f[5].parse::<i64>(), f[14].parse::<i64>()) else { continue };
        out.insert(f[0].to_string(), num_slabs * pps * page);
    }
    out
}

/// Total growth of the memcg-accounted kmalloc caches (`kmalloc-cg-*`). BPF map elements are
/// allocated with __GFP_ACCOUNT and land there; most other kernel activity does not.
pub fn slab_cg_delta(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>) -> i64 {
    after
        .iter()
        .filter(|(k, _)| k.starts_with("kmalloc-cg-"))
        .map(|(k, v)| v - before.get(k).copied().unwrap_or(0))
        .sum()
}

/// The `n` caches that grew most between two snapshots, (name, bytes).
pub fn slab_top(before: &BTreeMap<String, i64>, after: &BTreeMap<String, i64>, n: usize) -> Vec<(String, i64)> {
    let mut d: Vec<(String, i64)> = after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v != 0)
        .collect();
    d.sort_by_key(|(_, v)| -v.abs());
    d.truncate(n);
    d
}

// ------------------------------------------------------------------------------ stand-alone maps

/// `BPF_F_NO_PREALLOC`: hash elements allocated on insert.
pub const BPF_F_NO_PREALLOC: u32 = 1;
/// `BPF_F_MMAPABLE`: an array userspace can mmap.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

/// A stand-alone IPv4 hash (key: the address, value: u32) outside the sipshield object.
pub fn standalone_hash(capacity: u32, flags: u32) -> Result<HashMap<MapData, [u8; 4], u32>> {
    HashMap::create(capacity, flags).with_context(|| format!("creating a hash of {capacity} (flags {flags:#x})"))
}

/// `memlock` of a stand-alone map.
pub fn map_memlock<K: Pod, V>(m: &impl IterableMap<K, V>) -> u64 {
    memlock(m.map().fd().as_fd())
}

/// The fd of a stand-alone map (for the batch operations of `sipshield::bpfsys`).
pub fn map_fd<K: Pod, V>(m: &impl IterableMap<K, V>) -> BorrowedFd<'_> {
    m.map().fd().as_fd()
}

// ------------------------------------------------------------------------------ experiments

/// Fill a *preallocated* hash (flags 0) of `capacity` with `keys`.
pub fn prealloc_hash(keys: &[[u8; 4]], capacity: u32) -> Result<Value> {
    let t = Instant::now();
    let map = standalone_hash(capacity, 0)?;
    let create = t.elapsed().as_secs_f64();
    let ones = vec![1u32; keys.len()];
    let t = Instant::now();
    sipshield::bpfsys::update_batch(map_fd(&map), keys, &ones).context("prealloc hash fill")?;
    let fill = t.elapsed().as_secs_f64();
    let ml = map_memlock(&map);
    Ok(json!({
        "what": "BPF_MAP_TYPE_HASH, preallocated (no BPF_F_NO_PREALLOC), same keys, BPF_MAP_UPDATE_BATCH",
        "capacity": capacity,
        "create_secs": create,
        "fill_secs": fill,
        "memlock_bytes": ml,
        "memlock_bytes_per_entry_one_generation": ml as f64 / keys.len() as f64,
        "memlock_bytes_per_entry_two_generations": 2.0 * ml as f64 / keys.len() as f64,
    }))
}

/// A lean IPv4 parser over the same file (Vec + sort + dedup instead of a BTreeSet of
/// ipnet-parsed entries), to show how much of the parse time is the data structure.
pub fn lean_parse(path: &Path) -> Result<(f64, usize, usize)> {
    let t = Instant::now();
    let text = fs::read_to_string(path)?;
    let mut v4: Vec<u32> = Vec::with_capacity(text.len() / 14);
    let mut n4: Vec<(u32, u8)> = vec![];
    for line in text.lines() {
        let l = line.split(['#', ';']).next().unwrap_or("").trim();
        let Some(tok) = l.split_whitespace().next() else { continue };
        match tok.split_once('/') {
            Some((a, p)) => {
                let a: Ipv4Addr = a.parse().map_err(|_| anyhow!("bad entry {tok}"))?;
                let p: u8 = p.parse().map_err(|_| anyhow!("bad entry {tok}"))?;
                let m = if p == 0 { 0 } else { u32::MAX << (32 - p as u32) };
                if p == 32 {
                    v4.push(u32::from(a));
                } else {
                    n4.push((u32::from(a) & m, p));
                }
            }
            None => v4.push(tok.parse::<Ipv4Addr>().map_err(|_| anyhow!("bad entry {tok}"))?.into()),
        }
    }
    v4.sort_unstable();
    v4.dedup();
    n4.sort_unstable();
    n4.dedup();
    Ok((t.elapsed().as_secs_f64(), v4.len(), n4.len()))
}

/// Where the table's memory comes from: create one array shaped like `BL_TAB4_g` on its own
/// and read the meminfo deltas and its memlock.
pub fn table_array_check(settle: Duration) -> Result<Value> {
    let before = Mem::settled(settle)?;
    let map: Array<MapData, Bucket4> =
        Array::create(BL4_BUCKETS, BPF_F_MMAPABLE).context("creating a BL_TAB4-shaped array")?;
    let m = Mem::settled(settle)?.minus(before);
    let ml = map_memlock(&map);
    drop(map);
    Ok(json!({
        "what": "one BPF_MAP_TYPE_ARRAY | BPF_F_MMAPABLE of BL4_BUCKETS × 64 B, created alone",
        "vmalloc_delta_bytes": m.vmalloc,
        "slab_delta_bytes": m.slab,
        "memlock_bytes": ml,
    }))
}
