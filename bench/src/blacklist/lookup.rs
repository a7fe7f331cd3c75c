//! Lookup cost of a blacklist layout: `BPF_PROG_TEST_RUN` of the probe frames, hot and cold,
//! with the XDP action of every run checked against the expected verdict.
use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use sipshield::filter::{XDP_DROP, XDP_PASS};

use super::list::Probes;
use super::BlArgs;
use crate::harness::stats;

/// One program run: (frame, repeat) → (XDP action, ns per run).
pub type RunFn<'a> = dyn FnMut(&[u8], u32) -> Result<(u32, f64)> + 'a;

/// What a row measures: the program instance, the layout and how many entries it holds.
#[derive(Clone, Copy, Debug)]
pub struct Scenario<'a> {
    /// 1 = the sipshield filter (its table is probed when it holds addresses), 2 = the second
    /// instance (BL_TAB4_* shrunk to one bucket: no table).
    pub instance: u8,
    pub name: &'a str,
    pub entries: usize,
}

#[derive(Clone, Debug)]
pub struct Lookup {
    pub scenario: String,
    pub instance: u8,
    pub entries: usize,
    pub probe: &'static str,
    pub hot1_ns: f64,
    pub hotk_ns: f64,
    pub hotk_sources: usize,
    /// Median of the single runs (robust against preemption and interrupts).
    pub cold_ns: f64,
    pub cold_p90_ns: f64,
    pub cold_mean_ns: f64,
    pub cold_sources: usize,
    pub actions: BTreeMap<u32, usize>,
    pub expected: u32,
}

impl Lookup {
    pub fn action(&self) -> String {
        let name = |a: u32| match a {
            XDP_DROP => "DROP".to_string(),
            XDP_PASS => "PASS".to_string(),
            o => format!("action {o}"),
        };
        if self.actions.len() == 1 {
            name(*self.actions.keys().next().unwrap())
        } else {
            let parts: Vec<String> = self.actions.iter().map(|(a, n)| format!("{}×{n}", name(*a))).collect();
            format!("MIXED {}", parts.join(" "))
        }
    }

    /// Every run gave the expected action.
    pub fn ok(&self) -> bool {
        self.actions.len() == 1 && self.actions.contains_key(&self.expected)
    }

    pub fn json(&self, empty_cold: f64, empty_hotk: f64, base_cold: Option<f64>) -> Value {
        json!({
            "scenario": self.scenario,
            "instance": self.instance,
            "entries": self.entries,
            "probe": self.probe,
            "action": self.action(),
            "action_as_expected": self.ok(),
            "hot_1_source_ns": self.hot1_ns,
            "hot_k_sources_ns": self.hotk_ns,
            "hot_k_sources": self.hotk_sources,
            "cold_median_ns": self.cold_ns,
            "cold_p90_ns": self.cold_p90_ns,
            "cold_mean_ns": self.cold_mean_ns,
            "cold_sources": self.cold_sources,
            "hot_k_minus_empty_ns": self.hotk_ns - empty_hotk,
            "cold_median_minus_empty_ns": self.cold_ns - empty_cold,
            "cold_median_minus_no_table_base_ns": base_cold.map(|b| self.cold_ns - b),
        })
    }
}

/// Three measurements of one probe set:
/// * hot, 1 source: `repeat` runs of one frame in one syscall (everything cache-hot);
/// * hot, K sources: K frames, each `repeat/K` runs in one syscall, averaged;
/// * cold: up to `cold` distinct frames, one run per syscall (the syscall evicts most of L1/L2
///   between lookups, and the map elements of many sources do not stay cached): median, p90
///   and mean. Includes the kernel timer overhead of a single run; compare with the empty row.
pub fn measure(
    run: &mut RunFn<'_>,
    sc: Scenario<'_>,
    probe: &'static str,
    frames: &[Vec<u8>],
    expected: u32,
    a: &BlArgs,
) -> Result<Lookup> {
    if frames.is_empty() {
        bail!("no probe frames for {}/{probe}", sc.name);
    }
    let mut actions = BTreeMap::new();
    let mut count = |act: u32| *actions.entry(act).or_insert(0) += 1;
    run(&frames[0], 10_000)?; // warm-up
    let (act, hot1) = run(&frames[0], a.repeat)?;
    count(act);
    let k = a.diverse.clamp(1, frames.len());
    let per = (a.repeat / k as u32).max(1);
    let mut hot = Vec::with_capacity(k);
    for f in &frames[..k] {
        let (act, ns) = run(f, per)?;
        count(act);
        hot.push(ns);
    }
    let c = a.cold.clamp(1, frames.len());
    let mut cold = Vec::with_capacity(c);
    for f in &frames[..c] {
        let (act, ns) = run(f, 1)?;
        count(act);
        cold.push(ns);
    }
    let l = Lookup {
        scenario: sc.name.to_string(),
        instance: sc.instance,
        entries: sc.entries,
        probe,
        hot1_ns: hot1,
        hotk_ns: stats::mean(&hot),
        hotk_sources: k,
        cold_ns: stats::percentile(&cold, 0.5),
        cold_p90_ns: stats::percentile(&cold, 0.9),
        cold_mean_ns: stats::mean(&cold),
        cold_sources: c,
        actions,
        expected,
    };
    eprintln!(
        "  {:<40} {:<6} {:>6.1} ns hot, {:>6.1} ns hot×{}, {:>6.1} ns cold×{} (median)  {}",
        sc.name,
        probe,
        l.hot1_ns,
        l.hotk_ns,
        k,
        l.cold_ns,
        c,
        l.action()
    );
    Ok(l)
}

/// A listed layout's rows: `miss` (PASS), `hit/32` with `hits` (DROP) and, when the list has
/// ranges, `range` (DROP).
pub fn measure_listed(
    run: &mut RunFn<'_>,
    sc: Scenario<'_>,
    probes: &Probes,
    hits: &[Vec<u8>],
    a: &BlArgs,
) -> Result<Vec<Lookup>> {
    let mut rows =
        vec![measure(run, sc, "miss", &probes.miss, XDP_PASS, a)?, measure(run, sc, "hit/32", hits, XDP_DROP, a)?];
    if !probes.range.is_empty() {
        rows.push(measure(run, sc, "range", &probes.range, XDP_DROP, a)?);
    }
    Ok(rows)
}
