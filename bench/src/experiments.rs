//! Side measurements that explain the headline numbers: /proc/slabinfo deltas, a preallocated
//! hash for the design comparison (built with raw `BPF_MAP_CREATE`, outside the sipshield
//! object), and a lean parser as a reference for the parse time.
use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use serde_json::{json, Value};

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

// ------------------------------------------------------------------------------ raw maps

pub const BPF_MAP_TYPE_HASH: u32 = 1;
pub const BPF_MAP_TYPE_ARRAY: u32 = 2;
pub const BPF_F_MMAPABLE: u32 = 1 << 10;

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
    map_ifindex: u32,
    btf_fd: u32,
    btf_key_type_id: u32,
    btf_value_type_id: u32,
    btf_vmlinux_value_type_id: u32,
    map_extra: u64,
}

pub fn map_create(
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    flags: u32,
    name: &str,
) -> Result<OwnedFd> {
    let mut attr =
        MapCreateAttr { map_type, key_size, value_size, max_entries, map_flags: flags, ..Default::default() };
    for (d, s) in attr.map_name.iter_mut().zip(name.bytes().take(15)) {
        *d = s;
    }
    // SAFETY: attr is a valid, zero-padded bpf_attr prefix.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0 as libc::c_long,
            &mut attr as *mut MapCreateAttr,
            std::mem::size_of::<MapCreateAttr>() as u32,
        )
    };
    if fd < 0 {
        return Err(anyhow!("BPF_MAP_CREATE {name}: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the kernel returned a fresh fd that we now own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

pub fn fd_memlock(fd: &OwnedFd) -> u64 {
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("memlock:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

// ------------------------------------------------------------------------------ experiments

/// Fill a *preallocated* hash (flags 0) of `capacity` with `keys`.
pub fn prealloc_hash(keys: &[[u8; 4]], capacity: u32) -> Result<Value> {
    let t = Instant::now();
    let fd = map_create(BPF_MAP_TYPE_HASH, 4, 4, capacity, 0, "sb_prealloc")?;
    let create = t.elapsed().as_secs_f64();
    let ones = vec![1u32; keys.len()];
    let t = Instant::now();
    sipshield::bpfsys::update_batch(fd.as_fd(), keys, &ones).context("prealloc hash fill")?;
    let fill = t.elapsed().as_secs_f64();
    let ml = fd_memlock(&fd);
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
