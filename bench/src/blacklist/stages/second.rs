//! The second instance of the same object, with map sizes changed at load time
//! (`EbpfLoader::map_max_entries`; the program code is identical):
//! * `BL_TAB4_0/1` shrunk to one bucket: the table probe is two out-of-range array lookups (a
//!   bounds check each), so this instance is the program without the table;
//! * generation 0: every entry in `BL_NET4_0` (sized for all of them): rejected all-in-LPM;
//! * generation 1: the previous design at full size, the /32s in the no-prealloc hash
//!   `BL_V4_1` with its old capacity (1<<20), the ranges in `BL_NET4_1`.
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use anyhow::{anyhow, Context, Result};
use aya::programs::Xdp;
use aya::Ebpf;
use serde_json::{json, Value};
use sipshield::filter::{map_data, EBPF_OBJECT, PROGRAM_NAME, XDP_PASS};
use sipshield::lists::IpList;
use xdp_common::{maps, Config, BL_NET_CAPACITY, PRESENT_BL_NET4};

use super::{lpm_fill, lpm_insert_each, ranges4, v4_entries};
use crate::blacklist::hash_fill::parallel_fill_drain;
use crate::blacklist::list::Probes;
use crate::blacklist::lookup::{measure, measure_listed, Lookup, RunFn, Scenario};
use crate::blacklist::mem::{map_memlock, Mem};
use crate::blacklist::{BlArgs, PREV_BL_V4_CAPACITY};
use crate::harness::cost::run_repeat;

/// What the second instance measured (`lpm_only_full`, `previous_hash_full` in the JSON).
pub struct Second {
    pub lpm_full: Value,
    pub prev_hash: Value,
}

pub fn second_instance(a: &BlArgs, list: &IpList, probes: &Probes, lookups: &mut Vec<Lookup>) -> Result<Second> {
    eprintln!("second instance (no table; all-in-LPM in generation 0, previous hash design in generation 1) ...");
    let total = list.len();
    let cap = (total as u32).max(BL_NET_CAPACITY);
    let mut ebpf = aya::EbpfLoader::new()
        .map_max_entries(maps::BL_NET4[0], cap)
        .map_max_entries(maps::BL_V4[1], PREV_BL_V4_CAPACITY)
        .map_max_entries(maps::BL_TAB4[0], 1)
        .map_max_entries(maps::BL_TAB4[1], 1)
        .load(EBPF_OBJECT)
        .context("loading a second instance")?;
    program(&mut ebpf)?.load().map_err(|e| anyhow!("loading the XDP program: {e:#}"))?;
    let empty = Scenario { instance: 2, name: "empty (2nd instance, no table)", entries: 0 };
    let row = with_runner(&mut ebpf, |run| measure(run, empty, "miss", &probes.miss, XDP_PASS, a))?;
    lookups.push(row);
    let lpm_full = all_in_lpm_full(a, &mut ebpf, list, cap, probes, lookups)?;
    let prev_hash = previous_hash_full(a, &mut ebpf, list, probes, lookups)?;
    Ok(Second { lpm_full, prev_hash })
}

fn program(ebpf: &mut Ebpf) -> Result<&mut Xdp> {
    Ok(ebpf.program_mut(PROGRAM_NAME).ok_or_else(|| anyhow!("no program"))?.try_into()?)
}

/// Run `f` with the instance's program as the lookup runner.
fn with_runner<T>(ebpf: &mut Ebpf, f: impl FnOnce(&mut RunFn<'_>) -> Result<T>) -> Result<T> {
    let prog = program(ebpf)?;
    f(&mut |fr: &[u8], r: u32| run_repeat(prog, fr, r))
}

/// Every entry as a prefix in `BL_NET4_0` (generation 0, live by default), then its rows.
fn all_in_lpm_full(
    a: &BlArgs,
    ebpf: &mut Ebpf,
    list: &IpList,
    cap: u32,
    probes: &Probes,
    lookups: &mut Vec<Lookup>,
) -> Result<Value> {
    let total = list.len();
    let entries = v4_entries(list);
    let before = Mem::settled(a.settle())?;
    let t = Instant::now();
    let method = lpm_fill(ebpf.map_mut(maps::BL_NET4[0]).ok_or_else(|| anyhow!("no BL_NET4_0"))?, &entries)?;
    let fill_secs = t.elapsed().as_secs_f64();
    drop(entries);
    let mem = Mem::settled(a.settle())?.minus(before);
    let ml = map_memlock(ebpf.map(maps::BL_NET4[0]));
    eprintln!(
        "  all-in-LPM filled in {fill_secs:.3} s ({method}); SUnreclaim {:+.1} B/entry",
        mem.sunreclaim as f64 / total as f64
    );
    // The program looks in a generation's range trie only when the config says it holds
    // entries (swap_list sets that bit; this fill bypasses swap_list).
    update_config(ebpf, |c| c.present |= PRESENT_BL_NET4)?;
    let sc = Scenario { instance: 2, name: "rejected: all in LPM, full size", entries: total };
    lookups.extend(with_runner(ebpf, |run| measure_listed(run, sc, probes, &probes.hit, a))?);
    Ok(json!({
        "entries": total,
        "max_entries": cap,
        "fill_secs": fill_secs,
        "fill_method": method,
        "memory": mem.json(total),
        "memlock_bytes": ml,
        "memlock_bytes_per_entry": ml as f64 / total as f64,
    }))
}

/// The previous design: one `BPF_MAP_UPDATE_BATCH` of all /32s into the no-prealloc hash
/// `BL_V4_1` (what the previous swap_list did), the ranges one insert each into `BL_NET4_1`,
/// generation 1 live; its rows, its reload cleanup (drain), and the same fill/delete from
/// several threads.
fn previous_hash_full(
    a: &BlArgs,
    ebpf: &mut Ebpf,
    list: &IpList,
    probes: &Probes,
    lookups: &mut Vec<Lookup>,
) -> Result<Value> {
    let h1: OwnedFd =
        map_data(ebpf.map(maps::BL_V4[1]).ok_or_else(|| anyhow!("no BL_V4_1"))?).fd().as_fd().try_clone_to_owned()?;
    let hash_fixed = map_memlock(ebpf.map(maps::BL_V4[1]));
    let keys4: Vec<[u8; 4]> = list.v4.iter().copied().collect();
    let ones4 = vec![1u32; keys4.len()];
    let before = Mem::settled(a.settle())?;
    let t = Instant::now();
    sipshield::bpfsys::update_batch(h1.as_fd(), &keys4, &ones4).context("previous design: hash fill")?;
    let fill_secs = t.elapsed().as_secs_f64();
    let hmem = Mem::settled(a.settle())?.minus(before);
    let hash_loaded = map_memlock(ebpf.map(maps::BL_V4[1]));
    lpm_insert_each(ebpf.map_mut(maps::BL_NET4[1]).ok_or_else(|| anyhow!("no BL_NET4_1"))?, &ranges4(list))?;
    update_config(ebpf, |c| {
        c.blacklist_gen = 1;
        c.bl4_overflow = 1;
        c.present |= PRESENT_BL_NET4;
    })?;
    eprintln!(
        "  previous design: {} /32s into the no-prealloc hash in {fill_secs:.3} s; Slab {:+.1} B per /32, memlock {:.1} MB empty → {:.1} MB",
        keys4.len(),
        hmem.slab as f64 / keys4.len() as f64,
        hash_fixed as f64 / 1e6,
        hash_loaded as f64 / 1e6
    );
    let sc = Scenario { instance: 2, name: "previous: hash /32 + LPM, full size", entries: list.len() };
    lookups.extend(with_runner(ebpf, |run| measure_listed(run, sc, probes, &probes.hit, a))?);
    let t = Instant::now();
    let drained = sipshield::bpfsys::drain_hash(h1.as_fd(), 4, 4)?;
    let drain_secs = t.elapsed().as_secs_f64();
    let threads = crate::report::ncpus().clamp(1, 8);
    let (par_fill_secs, par_del_secs) = parallel_fill_drain(h1.as_fd(), &keys4, threads)?;
    eprintln!("  drain {drain_secs:.3} s; {threads} threads: fill {par_fill_secs:.3} s, delete {par_del_secs:.3} s");
    Ok(json!({
        "what": "BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC, max_entries 1<<20 (the previous BL_V4_g), one BPF_MAP_UPDATE_BATCH",
        "keys": keys4.len(),
        "capacity": PREV_BL_V4_CAPACITY,
        "fill_secs": fill_secs,
        "fill_ns_per_key": fill_secs * 1e9 / keys4.len().max(1) as f64,
        "drain_secs": drain_secs,
        "drained": drained,
        "threads": threads,
        "parallel_fill_secs": par_fill_secs,
        "parallel_delete_batch_secs": par_del_secs,
        "memory": hmem.json(keys4.len()),
        "memlock_empty_bytes": hash_fixed,
        "memlock_loaded_bytes": hash_loaded,
    }))
}

/// Read-modify-write of `CONFIG` in the instance.
fn update_config(ebpf: &mut Ebpf, f: impl FnOnce(&mut Config)) -> Result<()> {
    let mut arr: aya::maps::Array<_, Config> =
        aya::maps::Array::try_from(ebpf.map_mut(maps::CONFIG).ok_or_else(|| anyhow!("no map CONFIG"))?)?;
    let mut c = arr.get(&0, 0)?;
    f(&mut c);
    arr.set(0, c, 0)?;
    Ok(())
}
