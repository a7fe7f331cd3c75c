//! Per-reason, per-interface and per-country counters, summed over CPUs.
use anyhow::Result;
use aya::maps::PerCpuArray;
use xdp_common::*;

use super::{map_err, Filter};

/// Per-reason counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `[slot][reason]`.
    pub slots: Vec<[Counter; NUM_REASONS as usize]>,
    /// Drops per country index.
    pub countries: Vec<Counter>,
    pub events: [u64; EVSTAT_ENTRIES as usize],
    /// `AUTHSTAT_*` counters (egress program and ingress bookkeeping).
    pub auth: [u64; AUTHSTAT_NAMES.len()],
}

impl Stats {
    pub fn reason_total(&self, reason: u32) -> Counter {
        let mut c = Counter::default();
        for s in &self.slots {
            c.packets += s[reason as usize].packets;
            c.bytes += s[reason as usize].bytes;
        }
        c
    }
    pub fn total_packets(&self) -> u64 {
        (0..NUM_REASONS).map(|r| self.reason_total(r).packets).sum()
    }
}

impl Filter {
    // ---------------------------------------------------------------- stats

    pub fn stats(&self) -> Result<Stats> {
        let a: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map(maps::STATS)?)?;
        let mut st = Stats::default();
        for slot in 0..MAX_IFACE_SLOTS {
            let mut row = [Counter::default(); NUM_REASONS as usize];
            for (r, c) in row.iter_mut().enumerate() {
                let vals = a.get(&(slot * REASON_SLOTS + r as u32), 0).map_err(|e| map_err("STATS", e))?;
                for v in vals.iter() {
                    c.packets += v.packets;
                    c.bytes += v.bytes;
                }
            }
            st.slots.push(row);
        }
        let g: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map(maps::GEO_DROPS)?)?;
        for i in 0..GEO_COUNTRIES {
            let mut c = Counter::default();
            for v in g.get(&i, 0).map_err(|e| map_err("GEO_DROPS", e))?.iter() {
                c.packets += v.packets;
                c.bytes += v.bytes;
            }
            st.countries.push(c);
        }
        let e: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map(maps::EVENT_STATS)?)?;
        for i in 0..EVSTAT_ENTRIES {
            st.events[i as usize] = e.get(&i, 0).map_err(|e| map_err("EVENT_STATS", e))?.iter().sum();
        }
        st.auth.copy_from_slice(&self.auth_stats()?);
        Ok(st)
    }

    /// Toll-fraud drops of rule ids `0..n` (`TF_HITS`; id 0: international numbers no allow
    /// prefix covers, id i: the i-th configured prefix).
    pub fn tollfraud_hits(&self, n: u32) -> Result<Vec<Counter>> {
        let a: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map(maps::TF_HITS)?)?;
        (0..n.min(TF_RULES_MAX))
            .map(|i| {
                let vals = a.get(&i, 0).map_err(|e| map_err("TF_HITS", e))?;
                Ok(vals.iter().fold(Counter::default(), |c, v| Counter {
                    packets: c.packets + v.packets,
                    bytes: c.bytes + v.bytes,
                }))
            })
            .collect()
    }

    /// Counters of slot 0 for one reason (cheap, used by replay to find each packet's reason).
    pub fn slot0_counts(&self) -> Result<[u64; NUM_REASONS as usize]> {
        let a: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map(maps::STATS)?)?;
        let mut out = [0u64; NUM_REASONS as usize];
        for (r, o) in out.iter_mut().enumerate() {
            *o = a.get(&(r as u32), 0)?.iter().map(|c| c.packets).sum();
        }
        Ok(out)
    }
}
