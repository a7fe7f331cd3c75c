//! The blacklist benchmark's report: figures derived from [`Results`], the JSON object (see
//! bench/README.md for its keys) and the table.
use std::fs;

use anyhow::Result;
use serde_json::{json, Value};

use super::stages::PeerResult;
use super::{BlArgs, Results, TARGET_BYTES_PER_ENTRY, TARGET_LOAD_SECS_PER_1M, TARGET_SPEEDUP};
use crate::report::{kernel_release, ncpus};
use xdp_common::maps;

mod table;

/// Figures derived from the measurements, shared by the JSON and the table.
pub struct Derived {
    pub total: usize,
    pub sip_load: f64,
    pub sip_total: f64,
    pub reload_total: f64,
    pub target_load: f64,
    pub per_entry_sunreclaim: f64,
    pub per_entry_slab: f64,
    pub per_entry_vmalloc: f64,
    pub per_entry_cg: f64,
    /// The slab part of the total: the larger of the two meminfo deltas (conservative).
    pub slab_part: i64,
    pub ml_loaded_sum: u64,
    pub ml_empty_sum: u64,
    pub tab_ml: u64,
    pub total_bytes: f64,
    pub per_entry_total: f64,
    pub per_entry_total_nodup: f64,
    pub pass_mem: bool,
    /// peer / sipshield load, peer / sipshield parse + load.
    pub r_ipset_load: Option<f64>,
    pub r_nft_load: Option<f64>,
    pub r_ipset_total: Option<f64>,
    pub r_nft_total: Option<f64>,
    /// Cold median and hot×K of the empty rows of instance 1, of instance 2 (if measured).
    pub empty1: (f64, f64),
    pub empty2: Option<(f64, f64)>,
    pub lookups_json: Vec<Value>,
}

impl Derived {
    pub fn per(&self, v: f64) -> f64 {
        v / self.total as f64
    }
    pub fn base_cold(&self) -> Option<f64> {
        self.empty2.map(|e| e.0)
    }
}

pub fn pass_ratio(r: Option<f64>) -> Option<bool> {
    r.map(|r| r >= TARGET_SPEEDUP)
}

fn derive(a: &BlArgs, r: &Results) -> Derived {
    let (l, total) = (&r.load, r.listing.g.total());
    let per = |v: f64| v / total as f64;
    let sip_total = l.parse_secs + l.load_secs;
    let slab_part = l.mem_load.slab_part();
    let (ml_loaded_sum, ml_empty_sum) = (l.ml_loaded.sum(), l.ml_empty.sum());
    let total_bytes = slab_part as f64 + ml_loaded_sum as f64;
    let peer = |n: &str| r.peers.iter().find(|p| p.name == n);
    let ratio = |p: Option<&PeerResult>, base: f64| p.map(|p| p.load_secs / base);
    let empty1 = (r.lookups[0].cold_ns, r.lookups[0].hotk_ns);
    let empty2 = r.lookups.iter().find(|x| x.instance == 2 && x.entries == 0).map(|x| (x.cold_ns, x.hotk_ns));
    let lookups_json = r
        .lookups
        .iter()
        .map(|x| {
            let (c, h) = if x.instance == 2 { empty2.unwrap_or(empty1) } else { empty1 };
            x.json(c, h, empty2.map(|e| e.0))
        })
        .collect();
    Derived {
        total,
        sip_load: l.load_secs,
        sip_total,
        reload_total: l.reparse_secs + l.reload_load_secs,
        target_load: TARGET_LOAD_SECS_PER_1M * a.entries as f64 / 1e6,
        per_entry_sunreclaim: per(l.mem_load.sunreclaim as f64),
        per_entry_slab: per(l.mem_load.slab as f64),
        per_entry_vmalloc: per(l.mem_load.vmalloc as f64),
        per_entry_cg: per(l.cg_delta as f64),
        slab_part,
        ml_loaded_sum,
        ml_empty_sum,
        tab_ml: l.ml_loaded.group(maps::BL_TAB4),
        total_bytes,
        per_entry_total: per(total_bytes),
        per_entry_total_nodup: per(slab_part as f64 + ml_empty_sum as f64),
        pass_mem: per(total_bytes) <= TARGET_BYTES_PER_ENTRY,
        r_ipset_load: ratio(peer("ipset"), l.load_secs),
        r_nft_load: ratio(peer("nft"), l.load_secs),
        r_ipset_total: ratio(peer("ipset"), sip_total),
        r_nft_total: ratio(peer("nft"), sip_total),
        empty1,
        empty2,
        lookups_json,
    }
}

/// The table and the JSON object.
pub fn report(a: &BlArgs, r: &Results) -> Result<(String, Value)> {
    let d = derive(a, r);
    let design = design_rows(r, &d);
    let out = json!({
        "benchmark": "blacklist",
        "kernel": kernel_release(),
        "cpus": ncpus(),
        "seed": a.seed,
        "addresses": r.listing.g.addrs.len(),
        "ranges": r.listing.g.ranges.len(),
        "entries": d.total,
        "list_file_bytes": fs::metadata(&r.listing.path).map(|m| m.len()).unwrap_or(0),
        "generate_secs": r.listing.gen_secs,
        "sipshield": sipshield_json(r, &d),
        "peers": r.peers.iter().map(|p| (p.name.to_string(), json!({
            "what": p.what,
            "load_secs": p.load_secs,
            "delete_secs": p.delete_secs,
            "memory": p.mem.json(d.total),
            "extra": p.extra,
        }))).collect::<serde_json::Map<_, _>>(),
        "ratios": {
            "ipset_restore_secs / sipshield_load_secs": d.r_ipset_load,
            "nft_secs / sipshield_load_secs": d.r_nft_load,
            "ipset_restore_secs / sipshield_total_secs": d.r_ipset_total,
            "nft_secs / sipshield_total_secs": d.r_nft_total,
        },
        "lookup": d.lookups_json,
        "lpm_only_full": r.second.as_ref().map(|s| &s.lpm_full),
        "previous_hash_full": r.second.as_ref().map(|s| &s.prev_hash),
        "swap_breakdown": r.breakdown.json,
        "slab_top_growth_during_load": r.load.slab_top.iter().map(|(k, v)| json!({"cache": k, "bytes": v})).collect::<Vec<_>>(),
        "design_comparison": {
            "keys": r.listing.g.addrs.len(),
            "rows": design,
            "prealloc_hash": r.prealloc,
        },
        "lean_parse": r.lean,
        "table_array_check": r.tab_check,
        "capped": {
            "entries": r.capped.total,
            "lpm_fill_secs": r.capped.lpm_fill_secs,
            "lpm_fill_method": r.capped.lpm_method,
            "overflow_hash_fill_secs": r.capped.hash_fill_secs,
        },
        "targets": targets_json(&d),
    });
    let text = table::table(a, r, &d, &out, &design);
    Ok((text, out))
}

fn sipshield_json(r: &Results, d: &Derived) -> Value {
    let l = &r.load;
    json!({
        "ipv4_layout": "exact /32s: bucketized two-choice hash table in BL_TAB4_g (mmap-able array, written through mmap); overflow in BL_V4_g; ranges in BL_NET4_g",
        "program_load_secs": l.program_load_secs,
        "program_load_memory": l.mem_prog.json(0),
        "vmalloc_delta_program_load_bytes": l.mem_prog.vmalloc,
        "parse_secs": l.parse_secs,
        "load_secs": l.load_secs,
        "total_secs": d.sip_total,
        "swap_wall_secs": l.swap_wall_secs,
        "cleanup_secs": l.cleanup_secs,
        "reload_parse_secs": l.reparse_secs,
        "reload_load_secs": l.reload_load_secs,
        "reload_total_secs": d.reload_total,
        "reload_cleanup_secs": l.reload_cleanup_secs,
        "reload_wall_secs": l.reload_wall_secs,
        "capped_swap_load_secs": r.capped.swap_load_secs,
        "live_generation_after_load": l.cfg.blacklist_gen & 1,
        "memory": l.mem_load.json(d.total),
        "memory_after_reload": l.mem_reload.json(d.total),
        "vmalloc_delta_load_bytes": l.mem_load.vmalloc,
        "kmalloc_cg_slab_delta_bytes": l.cg_delta,
        "kmalloc_cg_slab_bytes_per_entry": d.per_entry_cg,
        "memlock_bl_maps_empty": l.ml_empty.json(),
        "memlock_bl_maps_loaded": l.ml_loaded.json(),
        "memlock_bl_maps_empty_bytes": d.ml_empty_sum,
        "memlock_bl_maps_loaded_bytes": d.ml_loaded_sum,
        "memlock_bl_tab4_bytes": d.tab_ml,
        "memlock_bl_maps_bytes_per_entry": d.per(d.ml_loaded_sum as f64),
        "slab_part_bytes": d.slab_part,
        "total_kernel_bytes": d.total_bytes,
        "total_kernel_bytes_per_entry": d.per_entry_total,
        "total_kernel_bytes_per_entry_without_double_count": d.per_entry_total_nodup,
    })
}

fn targets_json(d: &Derived) -> Value {
    json!({
        "load_secs_max": d.target_load,
        "load_pass": d.sip_total <= d.target_load,
        "load_counts": "parse + load (read_list_file + swap_list until live)",
        "load_pass_swap_only": d.sip_load <= d.target_load,
        "speedup_min": TARGET_SPEEDUP,
        "faster_than_ipset_pass": pass_ratio(d.r_ipset_total),
        "faster_than_nft_pass": pass_ratio(d.r_nft_total),
        "speedup_counts": "peer time / sipshield parse + load",
        "faster_than_ipset_pass_swap_only": pass_ratio(d.r_ipset_load),
        "faster_than_nft_pass_swap_only": pass_ratio(d.r_nft_load),
        "bytes_per_entry_max": TARGET_BYTES_PER_ENTRY,
        "memory_pass": d.pass_mem,
        "memory_counts": "max(Slab, SUnreclaim) delta of the load + memlock of all 12 BL maps (both generations, loaded), / entries",
        "memory_total_bytes_per_entry": d.per_entry_total,
        "memory_pass_slab_delta_only": d.per_entry_slab.max(d.per_entry_sunreclaim) <= TARGET_BYTES_PER_ENTRY,
    })
}

/// Design comparison rows, per /32 key: fill s, cleanup s, fixed bytes for two generations,
/// per-element slab bytes, note.
fn design_rows(r: &Results, d: &Derived) -> Vec<Value> {
    let (l, b) = (&r.load, &r.breakdown);
    let mut design = vec![
        json!({
            "design": "chosen: table in mmap array (swap_list, whole list)",
            "fill_secs": l.load_secs,
            "cleanup_secs": l.reload_cleanup_secs,
            "fixed_bytes_two_generations": d.tab_ml,
            "element_slab_bytes": d.slab_part,
            "note": "fill = swap_list until live (includes the ranges and zeroing the generation first); slab = the whole load's delta (the ranges' trie nodes)",
        }),
        json!({
            "design": "chosen: table, /32 part (build_table4 + mmap copy)",
            "fill_secs": b.build_secs + b.copy_secs,
            "cleanup_secs": b.zero_secs,
            "fixed_bytes_two_generations": d.tab_ml,
            "element_slab_bytes": 0,
            "note": "cleanup = zeroing the 8 MB generation through the mmap",
        }),
    ];
    if let Some(s) = &r.second {
        design.extend(previous_hash_rows(&s.prev_hash));
    }
    if r.prealloc.get("error").is_none() {
        let ml = r.prealloc["memlock_bytes"].as_u64().unwrap_or(0);
        design.push(json!({
            "design": "preallocated hash, one BPF_MAP_UPDATE_BATCH",
            "fill_secs": r.prealloc["fill_secs"],
            "create_secs": r.prealloc["create_secs"],
            "cleanup_secs": Value::Null,
            "fixed_bytes_two_generations": 2 * ml,
            "element_slab_bytes": 0,
            "note": "all elements preallocated at map creation (counted in memlock)",
        }));
    }
    let nk = r.listing.g.addrs.len() as f64;
    for row in &mut design {
        let fixed = row["fixed_bytes_two_generations"].as_f64().unwrap_or(0.0);
        let slab = row["element_slab_bytes"].as_f64().unwrap_or(0.0);
        row["fixed_bytes_per_key"] = json!(fixed / nk);
        row["element_slab_bytes_per_key"] = json!(slab / nk);
        row["total_bytes_per_key"] = json!((fixed + slab) / nk);
    }
    design
}

fn previous_hash_rows(h: &Value) -> [Value; 2] {
    let fixed = 2 * h["memlock_empty_bytes"].as_u64().unwrap_or(0);
    let m = &h["memory"];
    let slab = m["slab_delta_bytes"].as_i64().unwrap_or(0).max(m["sunreclaim_delta_bytes"].as_i64().unwrap_or(0));
    [
        json!({
            "design": "previous: no-prealloc hash, one BPF_MAP_UPDATE_BATCH",
            "fill_secs": h["fill_secs"],
            "cleanup_secs": h["drain_secs"],
            "fixed_bytes_two_generations": fixed,
            "element_slab_bytes": slab,
            "note": format!("fixed = 2 × the empty map's memlock (bucket array); the loaded map's memlock is {:.1} MB", h["memlock_loaded_bytes"].as_u64().unwrap_or(0) as f64 / 1e6),
        }),
        json!({
            "design": format!("no-prealloc hash, {} threads (disjoint chunks)", h["threads"]),
            "fill_secs": h["parallel_fill_secs"],
            "cleanup_secs": h["parallel_delete_batch_secs"],
            "fixed_bytes_two_generations": fixed,
            "element_slab_bytes": slab,
            "note": "cleanup = BPF_MAP_DELETE_BATCH of the known keys from the same threads",
        }),
    ]
}
