//! The blacklist benchmark's table, section by section.
use std::fmt::Write as _;

use serde_json::Value;
use xdp_common::{BL4_BUCKETS, BL4_SLOTS, BL_V4_CAPACITY};

use super::{pass_ratio, Derived};
use crate::blacklist::mem::BL_GROUPS;
use crate::blacklist::TARGET_SPEEDUP;
use crate::blacklist::{BlArgs, Results, PREV_BL_V4_CAPACITY, TARGET_BYTES_PER_ENTRY, TARGET_LOAD_SECS_PER_1M};

fn pf(b: bool) -> &'static str {
    if b {
        "PASS"
    } else {
        "FAIL"
    }
}

fn pfo(b: Option<bool>) -> &'static str {
    b.map(pf).unwrap_or("n/a")
}

/// `1.23×` or n/a.
fn fx(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}×")).unwrap_or_else(|| "n/a".into())
}

/// A JSON number with 3 decimals, or n/a.
fn f(v: &Value) -> String {
    v.as_f64().map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into())
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

pub fn table(a: &BlArgs, r: &Results, d: &Derived, out: &Value, design: &[Value]) -> String {
    let mut s = String::new();
    header(&mut s, a, r, out);
    load_time(&mut s, r, d);
    ratios(&mut s, d);
    memory(&mut s, a, r, d);
    lookup(&mut s, a, r, d);
    lookup_summary(&mut s, r, d);
    breakdown(&mut s, r, out);
    design_table(&mut s, r, design);
    slab_caches(&mut s, r, d);
    targets(&mut s, a, d);
    s
}

fn header(s: &mut String, a: &BlArgs, r: &Results, out: &Value) {
    let g = &r.listing.g;
    let _ = writeln!(
        s,
        "\nsipshield-bench blacklist — kernel {}, {} CPUs, seed {:#x}",
        out["kernel"].as_str().unwrap_or(""),
        out["cpus"],
        a.seed
    );
    let _ = writeln!(
        s,
        "list: {} addresses + {} ranges (/16../24) = {} entries, {:.1} MB",
        g.addrs.len(),
        g.ranges.len(),
        g.total(),
        out["list_file_bytes"].as_u64().unwrap_or(0) as f64 / 1e6
    );
    let _ = writeln!(s, "sipshield IPv4 layout: /32s in a bucketized table (BL_TAB4_g, {BL4_BUCKETS} × {BL4_SLOTS} slots), ranges in an LPM trie");
}

fn load_time(s: &mut String, r: &Results, d: &Derived) {
    let l = &r.load;
    let _ = writeln!(s, "\nLOAD TIME                                              seconds");
    let _ = writeln!(s, "  sipshield parse (read_list_file)                     {:>8.3}", l.parse_secs);
    let _ = writeln!(s, "  sipshield load  (swap_list until live)               {:>8.3}", l.load_secs);
    let _ = writeln!(s, "  sipshield total (parse + load)                       {:>8.3}", d.sip_total);
    let _ = writeln!(s, "  sipshield cleanup of the old (empty) generation      {:>8.3}", l.cleanup_secs);
    let _ = writeln!(s, "  sipshield reload: parse                              {:>8.3}", l.reparse_secs);
    let _ = writeln!(s, "  sipshield reload: load (2nd swap, until live)        {:>8.3}", l.reload_load_secs);
    let _ = writeln!(s, "  sipshield reload: total (parse + load)               {:>8.3}", d.reload_total);
    let _ = writeln!(s, "  sipshield reload: cleanup (clear old generation)     {:>8.3}", l.reload_cleanup_secs);
    for p in &r.peers {
        let label =
            if p.name == "ipset" { "ipset restore (hash:ip + hash:net)" } else { "nft -f (plain set + interval set)" };
        let _ = writeln!(s, "  {label:<52} {:>8.3}   (delete {:.3} s)", p.load_secs, p.delete_secs);
    }
    if let Some(second) = &r.second {
        let h = &second.prev_hash;
        let _ = writeln!(
            s,
            "  {:<52} {:>8}   (drain {} s)",
            "previous: /32s into the no-prealloc hash (batch)",
            f(&h["fill_secs"]),
            f(&h["drain_secs"])
        );
        let l = &second.lpm_full;
        let label = format!("rejected all-in-LPM fill ({})", l["fill_method"].as_str().unwrap_or(""));
        let _ = writeln!(s, "  {label:<52} {:>8.3}", l["fill_secs"].as_f64().unwrap_or(0.0));
    }
}

fn ratios(s: &mut String, d: &Derived) {
    let _ = writeln!(s, "\nRATIOS (peer / sipshield)             vs parse+load (fair)   vs load only");
    let _ =
        writeln!(s, "  ipset_restore_secs / sipshield        {:>20}   {:>12}", fx(d.r_ipset_total), fx(d.r_ipset_load));
    let _ = writeln!(s, "  nft_secs / sipshield                  {:>20}   {:>12}", fx(d.r_nft_total), fx(d.r_nft_load));
    let _ = writeln!(
        s,
        "  (ipset restore and nft -f parse their own text input, so parse + load is the like-for-like figure)"
    );
}

fn memory(s: &mut String, a: &BlArgs, r: &Results, d: &Derived) {
    let l = &r.load;
    let _ = writeln!(
        s,
        "\nMEMORY (kernel, after {} ms settle; per entry = / {} entries)   bytes/entry",
        a.settle_ms, d.total
    );
    let _ = writeln!(s, "  load: SUnreclaim delta                                   {:>8.1}", d.per_entry_sunreclaim);
    let _ = writeln!(s, "  load: Slab delta                                         {:>8.1}", d.per_entry_slab);
    let _ = writeln!(s, "  load: kmalloc-cg-* caches only (slabinfo)                {:>8.1}", d.per_entry_cg);
    let _ = writeln!(s, "  load: VmallocUsed delta                                  {:>8.1}   (the table memory exists before the load)", d.per_entry_vmalloc);
    let _ = writeln!(
        s,
        "  program load: VmallocUsed delta {:.1} MB (all vmalloc'd maps of the whole object, not only the blacklist)",
        l.mem_prog.vmalloc as f64 / 1e6
    );
    let tc = &r.tab_check;
    if tc.get("error").is_none() {
        let _ = writeln!(
            s,
            "  one BL_TAB4-shaped array created alone: VmallocUsed {:+.2} MB, Slab {:+.2} MB, memlock {:.2} MB",
            tc["vmalloc_delta_bytes"].as_i64().unwrap_or(0) as f64 / 1e6,
            tc["slab_delta_bytes"].as_i64().unwrap_or(0) as f64 / 1e6,
            tc["memlock_bytes"].as_u64().unwrap_or(0) as f64 / 1e6
        );
    }
    memlock_groups(s, r, d);
    let _ = writeln!(
        s,
        "  TOTAL = max(Slab, SUnreclaim) delta + all BL maps' memlock  {:>8.1}   {} (target ≤ {TARGET_BYTES_PER_ENTRY}; {:.1} MB)",
        d.per_entry_total,
        pf(d.pass_mem),
        d.total_bytes / 1e6
    );
    let _ = writeln!(
        s,
        "  (memlock of the loaded maps also counts the ranges' trie nodes that are in the slab delta; without that: {:.1})",
        d.per_entry_total_nodup
    );
    let _ = writeln!(
        s,
        "  after reload + clear: SUnreclaim delta vs before the load {:>8.1}",
        d.per(l.mem_reload.sunreclaim as f64)
    );
    peer_memory(s, r, d);
}

fn memlock_groups(s: &mut String, r: &Results, d: &Derived) {
    let l = &r.load;
    let _ = writeln!(s, "  memlock of the blacklist maps, both generations, loaded (empty → loaded):");
    for (pair, p, what) in BL_GROUPS {
        let (e, ld) = (l.ml_empty.group(pair), l.ml_loaded.group(pair));
        let _ = writeln!(
            s,
            "    {:<12} {what:<40} {:>8.1}   ({:.2} → {:.2} MB)",
            format!("{p}_0+1"),
            d.per(ld as f64),
            mb(e),
            mb(ld)
        );
    }
    let _ = writeln!(
        s,
        "    {:<53} {:>8.1}   ({:.2} → {:.2} MB)",
        "all 12 BL maps",
        d.per(d.ml_loaded_sum as f64),
        mb(d.ml_empty_sum),
        mb(d.ml_loaded_sum)
    );
}

fn peer_memory(s: &mut String, r: &Results, d: &Derived) {
    for p in &r.peers {
        let _ = writeln!(
            s,
            "  {:<6} SUnreclaim {:>6.1} | Slab {:>6.1} | Slab+Vmalloc {:>6.1}",
            p.name,
            d.per(p.mem.sunreclaim as f64),
            d.per(p.mem.slab as f64),
            d.per((p.mem.slab + p.mem.vmalloc) as f64)
        );
        if let Some(b) = p.extra.get("ipset_bytes_per_entry").and_then(|v| v.as_f64()) {
            let _ = writeln!(s, "  ipset  own \"Size in memory\"                    {b:>8.1}");
        }
    }
    if let Some(second) = &r.second {
        let (l, m) = (&second.lpm_full, &second.lpm_full["memory"]);
        let _ = writeln!(
            s,
            "  rejected all-in-LPM: SUnreclaim {:.1}, Slab {:.1}, memlock {:.1}",
            m["sunreclaim_bytes_per_entry"].as_f64().unwrap_or(0.0),
            m["slab_bytes_per_entry"].as_f64().unwrap_or(0.0),
            l["memlock_bytes_per_entry"].as_f64().unwrap_or(0.0)
        );
    }
}

fn lookup(s: &mut String, a: &BlArgs, r: &Results, d: &Derived) {
    let _ = writeln!(s, "\nLOOKUP (BPF_PROG_TEST_RUN, ns per packet; UDP → :5060)");
    let _ = writeln!(
        s,
        "  hot×1 = 1 source × {} runs; hot×K = K sources × repeat/K; cold = median over K sources × 1 run per syscall",
        a.repeat
    );
    let _ = writeln!(
        s,
        "  −empty = cold − the empty row of the same instance; −base = cold − \"empty (2nd instance, no table)\""
    );
    let _ = writeln!(
        s,
        "  {:<40} {:>8} {:<7} {:<6} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "scenario", "entries", "probe", "action", "hot×1", "hot×K", "cold", "−empty", "−base"
    );
    for (l, j) in r.lookups.iter().zip(&d.lookups_json) {
        let _ = writeln!(
            s,
            "  {:<40} {:>8} {:<7} {:<6} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>8}{}",
            l.scenario,
            l.entries,
            l.probe,
            l.action(),
            l.hot1_ns,
            l.hotk_ns,
            l.cold_ns,
            j["cold_median_minus_empty_ns"].as_f64().unwrap_or(0.0),
            j["cold_median_minus_no_table_base_ns"].as_f64().map(|v| format!("{v:.1}")).unwrap_or_else(|| "n/a".into()),
            if l.ok() { "" } else { "  <-- unexpected action" }
        );
    }
    let _ = writeln!(
        s,
        "  (K = {} for hot×K, {} for cold; capped rows hold {} entries = BL_NET_CAPACITY)",
        r.lookups[0].hotk_sources, r.lookups[0].cold_sources, r.capped.total
    );
    let _ = writeln!(
        s,
        "  instance 1 = the sipshield filter: its 8 MB table is probed on every IPv4 packet, even when empty."
    );
    let _ = writeln!(s, "  \"previous: hash /32 + LPM, capped\": the /32s in the overflow hash BL_V4_g (no-prealloc, at most {BL_V4_CAPACITY}), the");
    let _ = writeln!(
        s,
        "    table empty but still probed first; it measures a hash lookup at {} /32s, not at 1M.",
        r.capped.v4
    );
    let _ = writeln!(s, "  instance 2 = the same object with BL_TAB4_* shrunk to 1 bucket (no table probe): previous design at full size");
    let _ = writeln!(
        s,
        "    (1M /32s in a no-prealloc hash of max_entries {PREV_BL_V4_CAPACITY}) and the rejected all-in-LPM layout."
    );
}

/// Cold medians side by side.
fn lookup_summary(s: &mut String, r: &Results, d: &Derived) {
    let find = |sc: &str, probe: &str| r.lookups.iter().find(|l| l.scenario == sc && l.probe == probe);
    let _ = writeln!(
        s,
        "\nLOOKUP SUMMARY (cold median ns, and − the no-table base)        miss               hit/32             range"
    );
    let rows = [
        "empty blacklist",
        "table /32 + LPM ranges",
        crate::blacklist::stages::NO_BITMAP,
        "previous: hash /32 + LPM, full size",
        "rejected: all in LPM, full size",
        "table /32 + LPM, capped",
        "previous: hash /32 + LPM, capped",
        "rejected: all in LPM, capped",
        "empty (2nd instance, no table)",
    ];
    for sc in rows {
        if !r.lookups.iter().any(|l| l.scenario == sc) {
            continue;
        }
        let mut line = format!("  {sc:<61}");
        for probe in ["miss", "hit/32", "range"] {
            let cell = match find(sc, probe) {
                Some(l) => match d.base_cold() {
                    Some(b) => format!("{:>7.1} ({:>+7.1})", l.cold_ns, l.cold_ns - b),
                    None => format!("{:>7.1}", l.cold_ns),
                },
                None => format!("{:>7}", "-"),
            };
            let _ = write!(line, " {cell:<18}");
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
}

fn breakdown(s: &mut String, r: &Results, out: &Value) {
    let (b, bd) = (&out["swap_breakdown"], &r.breakdown);
    let _ =
        writeln!(s, "\nSWAP BREAKDOWN (the /32 steps of swap_list, timed separately on the idle generation)   seconds");
    let brows = [
        (
            format!("build_table4: place {} /32s in the userspace table", r.listing.g.addrs.len()),
            f(&b["build_table4_secs"]),
        ),
        (
            format!("copy the table into BL_TAB4_g through mmap ({:.1} MB)", bd.tab_len as f64 / 1e6),
            f(&b["mmap_copy_secs"]),
        ),
        ("zero BL_TAB4_g through mmap (as clear_list_gen does)".to_string(), f(&b["mmap_zero_secs"])),
        (
            format!("{} ranges into the LPM trie, one syscall each (as swap_list does)", bd.ranges),
            f(&b["lpm_ranges_single_insert_secs"]),
        ),
        ("the same ranges with one BPF_MAP_UPDATE_BATCH".to_string(), f(&b["lpm_ranges_batch_insert_secs"])),
    ];
    for (l, v) in brows {
        let _ = writeln!(s, "  {l:<78} {v:>8}");
    }
    let _ = writeln!(
        s,
        "  table: load factor {:.3}, max bucket fill {}/{BL4_SLOTS}, {} full buckets, overflow {} keys (bl4_overflow = {})",
        b["table_load_factor"].as_f64().unwrap_or(0.0),
        bd.max_fill,
        bd.full_buckets,
        bd.overflow,
        r.load.cfg.bl4_overflow
    );
    let _ = writeln!(
        s,
        "  reference: lean IPv4 parser (Vec + sort + dedup): {} s vs read_list_file {:.3} s",
        f(&r.lean["secs"]),
        r.load.parse_secs
    );
}

fn design_table(s: &mut String, r: &Results, design: &[Value]) {
    let _ = writeln!(
        s,
        "\nDESIGN COMPARISON: the /32 store, {} keys (bytes per key; fixed = two generations' maps)",
        r.listing.g.addrs.len()
    );
    let _ = writeln!(
        s,
        "  {:<52} {:>14} {:>9} {:>8} {:>8} {:>8}",
        "design", "fill s", "cleanup s", "fixed B", "slab B", "total B"
    );
    for d in design {
        let fill = match d.get("create_secs").and_then(|v| v.as_f64()) {
            Some(c) => format!("{c:.3}+{}", f(&d["fill_secs"])),
            None => f(&d["fill_secs"]),
        };
        let _ = writeln!(
            s,
            "  {:<52} {:>14} {:>9} {:>8.1} {:>8.1} {:>8.1}",
            d["design"].as_str().unwrap_or(""),
            fill,
            f(&d["cleanup_secs"]),
            d["fixed_bytes_per_key"].as_f64().unwrap_or(0.0),
            d["element_slab_bytes_per_key"].as_f64().unwrap_or(0.0),
            d["total_bytes_per_key"].as_f64().unwrap_or(0.0)
        );
    }
    let _ = writeln!(s, "  (preallocated hash: create+fill; slab B = max(Slab, SUnreclaim) delta of the fill; all hashes max_entries {PREV_BL_V4_CAPACITY})");
    if let Some(e) = r.prealloc.get("error") {
        let _ = writeln!(s, "  preallocated hash: {e}");
    }
}

fn slab_caches(s: &mut String, r: &Results, d: &Derived) {
    if r.load.slab_top.is_empty() {
        return;
    }
    let _ = writeln!(s, "\nSLAB CACHES THAT GREW DURING THE LOAD (/proc/slabinfo)");
    for (k, v) in &r.load.slab_top {
        let _ = writeln!(s, "  {k:<28} {:>+9.1} MB  ({:+.1} B/entry)", *v as f64 / 1e6, d.per(*v as f64));
    }
}

fn targets(s: &mut String, a: &BlArgs, d: &Derived) {
    let _ = writeln!(s, "\nTARGETS (pass/fail on parse + load and on total kernel memory)");
    let _ = writeln!(
        s,
        "  load ≤ {:.2} s:              parse+load {:.3} s {}   (load only {:.3} s {}; reload parse+load {:.3} s)",
        d.target_load,
        d.sip_total,
        pf(d.sip_total <= d.target_load),
        d.sip_load,
        pf(d.sip_load <= d.target_load),
        d.reload_total
    );
    for (peer, total, load) in
        [("ipset:  ", d.r_ipset_total, d.r_ipset_load), ("nft:    ", d.r_nft_total, d.r_nft_load)]
    {
        let _ = writeln!(
            s,
            "  ≥ {TARGET_SPEEDUP}× faster than {peer} parse+load {} {}   (load only {} {})",
            fx(total),
            pfo(pass_ratio(total)),
            fx(load),
            pfo(pass_ratio(load))
        );
    }
    let _ = writeln!(
        s,
        "  ≤ {TARGET_BYTES_PER_ENTRY} B/entry:           total {:.1} {}   = slab delta {:.1} + BL maps' memlock {:.1} (of which table {:.1})",
        d.per_entry_total,
        pf(d.pass_mem),
        d.per(d.slab_part as f64),
        d.per(d.ml_loaded_sum as f64),
        d.per(d.tab_ml as f64)
    );
    if a.entries != 1_000_000 {
        let _ = writeln!(s, "  (load target scaled linearly from {TARGET_LOAD_SECS_PER_1M} s per 1M addresses)");
    }
}
