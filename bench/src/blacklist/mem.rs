//! Kernel memory: `/proc/meminfo` deltas and the kernel's own accounting of maps (`memlock`).
use std::collections::BTreeMap;
use std::fs;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

use anyhow::{Context, Result};
use aya::maps::Map;
use serde_json::{json, Value};
use sipshield::filter::{map_data, Filter};
use xdp_common::maps;

#[derive(Clone, Copy, Debug, Default)]
pub struct Mem {
    pub slab: i64,
    pub sunreclaim: i64,
    pub vmalloc: i64,
}

impl Mem {
    pub fn read() -> Result<Mem> {
        let text = fs::read_to_string("/proc/meminfo").context("reading /proc/meminfo")?;
        let mut m = Mem::default();
        for line in text.lines() {
            let mut it = line.split_whitespace();
            let (Some(k), Some(v)) = (it.next(), it.next()) else { continue };
            let bytes = v.parse::<i64>().unwrap_or(0) * 1024;
            match k {
                "Slab:" => m.slab = bytes,
                "SUnreclaim:" => m.sunreclaim = bytes,
                "VmallocUsed:" => m.vmalloc = bytes,
                _ => {}
            }
        }
        Ok(m)
    }

    /// [`Mem::read`] after waiting `settle` (deferred frees, RCU).
    pub fn settled(settle: Duration) -> Result<Mem> {
        std::thread::sleep(settle);
        Mem::read()
    }

    pub fn minus(self, o: Mem) -> Mem {
        Mem { slab: self.slab - o.slab, sunreclaim: self.sunreclaim - o.sunreclaim, vmalloc: self.vmalloc - o.vmalloc }
    }

    /// The slab part of a footprint: the larger of the two slab deltas (conservative).
    pub fn slab_part(self) -> i64 {
        self.slab.max(self.sunreclaim)
    }

    pub fn json(self, entries: usize) -> Value {
        let per = |v: i64| if entries == 0 { 0.0 } else { v as f64 / entries as f64 };
        json!({
            "slab_delta_bytes": self.slab,
            "sunreclaim_delta_bytes": self.sunreclaim,
            "vmalloc_delta_bytes": self.vmalloc,
            "slab_bytes_per_entry": per(self.slab),
            "sunreclaim_bytes_per_entry": per(self.sunreclaim),
            "slab_plus_vmalloc_bytes_per_entry": per(self.slab + self.vmalloc),
        })
    }
}

/// The kernel's own accounting of a map fd (`memlock:` in fdinfo; `map_mem_usage` since 6.4);
/// 0 when it cannot be read.
pub fn memlock(fd: BorrowedFd<'_>) -> u64 {
    fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("memlock:").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(0)
}

/// [`memlock`] of a map of an object (0 for a missing map).
pub fn map_memlock(m: Option<&Map>) -> u64 {
    m.map_or(0, |m| memlock(map_data(m).fd().as_fd()))
}

/// The blacklist map groups, in report order: (maps of both generations, label, what it holds).
pub const BL_GROUPS: [([&str; 2], &str, &str); 6] = [
    (maps::BL_TAB4, "BL_TAB4", "/32 table (mmap-able array, vmalloc)"),
    (maps::BL_BM4, "BL_BM4", "per-/24 bitmap of the IPv4 entries (mmap-able array, vmalloc)"),
    (maps::BL_V4, "BL_V4", "IPv4 overflow hash (no-prealloc)"),
    (maps::BL_NET4, "BL_NET4", "IPv4 range LPM trie"),
    (maps::BL_V6, "BL_V6", "IPv6 hash (no-prealloc)"),
    (maps::BL_NET6, "BL_NET6", "IPv6 range LPM trie"),
];

/// `memlock` of every blacklist map of the filter (both generations), by map name.
#[derive(Clone, Debug, Default)]
pub struct BlMemlock(pub BTreeMap<&'static str, u64>);

impl BlMemlock {
    pub fn of(filter: &Filter) -> BlMemlock {
        let names = BL_GROUPS.iter().flat_map(|(pair, _, _)| pair.iter().copied());
        BlMemlock(names.map(|m| (m, map_memlock(filter.map(m).ok()))).collect())
    }

    /// Both generations of one group.
    pub fn group(&self, pair: [&str; 2]) -> u64 {
        pair.iter().map(|m| self.0.get(m).copied().unwrap_or(0)).sum()
    }

    pub fn sum(&self) -> u64 {
        self.0.values().sum()
    }

    pub fn json(&self) -> Value {
        Value::Object(self.0.iter().map(|(k, v)| (k.to_string(), json!(v))).collect())
    }
}
