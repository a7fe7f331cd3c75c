//! The stages on the sipshield filter itself (instance 1): load and reload, the swap
//! breakdown, and the three layouts at the capped size.
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sipshield::bpfsys::MmapRegion;
use sipshield::filter::{build_table4, map_data, Filter, ListKind, XDP_PASS};
use sipshield::lists::{read_list_file, IpList};
use xdp_common::{
    maps, Bucket4, Config, BL4_BUCKETS, BL4_SLOTS, BL4_TABLE_CAPACITY, BL_NET_CAPACITY, BL_V4_CAPACITY, PRESENT_BL_BM4,
};

use super::{lpm_fill, lpm_insert_each, lpm_keys, ranges4, v4_entries};
use crate::blacklist::experiments::{slab_cg_delta, slab_top, slabinfo};
use crate::blacklist::list::{Generated, Probes};
use crate::blacklist::lookup::{measure, measure_listed, Lookup, Scenario};
use crate::blacklist::mem::{BlMemlock, Mem};
use crate::blacklist::{BlArgs, Listing};

/// The full list without its /24 bitmap (`PRESENT_BL_BM4` cleared): the miss path before it.
pub const NO_BITMAP: &str = "table /32 + LPM, no /24 bitmap";

/// What loading the list into the filter measured.
pub struct Load {
    pub program_load_secs: f64,
    /// Loading the program and its maps (all of them, not only the blacklist).
    pub mem_prog: Mem,
    pub ml_empty: BlMemlock,
    pub parse_secs: f64,
    pub load_secs: f64,
    pub cleanup_secs: f64,
    pub swap_wall_secs: f64,
    pub mem_load: Mem,
    pub slab_top: Vec<(String, i64)>,
    pub cg_delta: i64,
    pub ml_loaded: BlMemlock,
    /// The config right after the first swap.
    pub cfg: Config,
    pub reparse_secs: f64,
    pub reload_load_secs: f64,
    pub reload_cleanup_secs: f64,
    pub reload_wall_secs: f64,
    /// Generation the reload swapped in.
    pub reload_generation: u32,
    pub mem_reload: Mem,
}

/// Load the program, measure the empty list, parse + swap the list in, measure it, reload it.
/// Returns the filter (list live) and the parsed list too.
pub fn load(
    a: &BlArgs,
    listing: &Listing,
    probes: &Probes,
    lookups: &mut Vec<Lookup>,
) -> Result<(Filter, Load, IpList)> {
    let total = listing.g.total();
    // The table arrays (BL_TAB4_0/1, 8 MB each) are vmalloc'd here, at map creation, not
    // during a list load.
    let mem0 = Mem::settled(Duration::from_millis(200))?;
    let t = Instant::now();
    let mut filter = Filter::load_private()?;
    let program_load_secs = t.elapsed().as_secs_f64();
    let mem_prog = Mem::settled(a.settle())?.minus(mem0);
    let ml_empty = BlMemlock::of(&filter);
    eprintln!(
        "sipshield program + maps loaded in {program_load_secs:.3} s (VmallocUsed {:+.1} MB, BL_TAB4_0+1 memlock {:.1} MB); lookups with the empty blacklist:",
        mem_prog.vmalloc as f64 / 1e6,
        ml_empty.group(maps::BL_TAB4) as f64 / 1e6
    );
    let run = &mut |f: &[u8], r: u32| filter.test_run_repeat(f, r);
    let empty = Scenario { instance: 1, name: "empty blacklist", entries: 0 };
    lookups.push(measure(run, empty, "miss", &probes.miss, XDP_PASS, a)?);

    let (list, first) = swap_in(a, &mut filter, listing)?;
    let run = &mut |f: &[u8], r: u32| filter.test_run_repeat(f, r);
    let full = Scenario { instance: 1, name: "table /32 + LPM ranges", entries: total };
    lookups.extend(measure_listed(run, full, probes, &probes.hit, a)?);
    // The same generation without its /24 bitmap (the lookup before the bitmap): the miss is
    // the row the bitmap changes.
    filter.update_config(|c| c.present &= !PRESENT_BL_BM4)?;
    let run = &mut |f: &[u8], r: u32| filter.test_run_repeat(f, r);
    let no_bitmap = Scenario { instance: 1, name: NO_BITMAP, entries: total };
    lookups.push(measure(run, no_bitmap, "miss", &probes.miss, XDP_PASS, a)?);
    filter.update_config(|c| c.present |= PRESENT_BL_BM4)?;
    let reload = reload(&mut filter, listing, a.settle(), first.mem_before)?;
    let ml_loaded = first.ml_loaded;
    let load = Load {
        program_load_secs,
        mem_prog,
        ml_empty,
        parse_secs: first.parse_secs,
        load_secs: first.load_secs,
        cleanup_secs: first.cleanup_secs,
        swap_wall_secs: first.swap_wall_secs,
        mem_load: first.mem_load,
        slab_top: first.slab_top,
        cg_delta: first.cg_delta,
        ml_loaded,
        cfg: first.cfg,
        reparse_secs: reload.parse_secs,
        reload_load_secs: reload.load_secs,
        reload_cleanup_secs: reload.cleanup_secs,
        reload_wall_secs: reload.wall_secs,
        reload_generation: reload.generation,
        mem_reload: reload.mem,
    };
    Ok((filter, load, list))
}

/// The first parse + swap and its memory.
struct FirstSwap {
    parse_secs: f64,
    load_secs: f64,
    cleanup_secs: f64,
    swap_wall_secs: f64,
    mem_before: Mem,
    mem_load: Mem,
    slab_top: Vec<(String, i64)>,
    cg_delta: i64,
    ml_loaded: BlMemlock,
    cfg: Config,
}

fn parse(listing: &Listing) -> Result<(IpList, f64)> {
    let t = Instant::now();
    let list = read_list_file(&listing.path, &Default::default()).map_err(|e| anyhow!("{e}"))?;
    Ok((list, t.elapsed().as_secs_f64()))
}

fn swap_in(a: &BlArgs, filter: &mut Filter, listing: &Listing) -> Result<(IpList, FirstSwap)> {
    let (g, total) = (&listing.g, listing.g.total());
    eprintln!("sipshield: parse + swap of {total} entries ...");
    let before = Mem::settled(a.settle())?;
    let slab_before = slabinfo();
    let (list, parse_secs) = parse(listing)?;
    if list.v4.len() != g.addrs.len() || list.net4.len() != g.ranges.len() {
        bail!(
            "parsed {} addresses + {} ranges, generated {} + {}",
            list.v4.len(),
            list.net4.len(),
            g.addrs.len(),
            g.ranges.len()
        );
    }
    let t = Instant::now();
    let r1 = filter.swap_list(ListKind::Blacklist, &list)?;
    let swap_wall_secs = t.elapsed().as_secs_f64();
    let after = Mem::settled(a.settle())?;
    let slab_after = slabinfo();
    let mem_load = after.minus(before);
    let per = |v: i64| v as f64 / total as f64;
    eprintln!(
        "  parse {parse_secs:.3} s, swap (until live) {:.3} s, cleanup {:.4} s; SUnreclaim {:+.1} B/entry, Slab {:+.1} B/entry, VmallocUsed {:+.1} B/entry",
        r1.load_secs,
        r1.cleanup_secs,
        per(mem_load.sunreclaim),
        per(mem_load.slab),
        per(mem_load.vmalloc)
    );
    if filter.list_len(ListKind::Blacklist)? != total {
        bail!("the kernel holds a different number of entries than loaded");
    }
    let first = FirstSwap {
        parse_secs,
        load_secs: r1.load_secs,
        cleanup_secs: r1.cleanup_secs,
        swap_wall_secs,
        mem_before: before,
        mem_load,
        slab_top: slab_top(&slab_before, &slab_after, 5),
        cg_delta: slab_cg_delta(&slab_before, &slab_after),
        ml_loaded: BlMemlock::of(filter),
        cfg: filter.config()?,
    };
    Ok((list, first))
}

struct Reload {
    parse_secs: f64,
    load_secs: f64,
    cleanup_secs: f64,
    wall_secs: f64,
    generation: u32,
    mem: Mem,
}

/// Reload from the file: parse again, swap into the other generation while the first one is
/// live, then clear the first one. Memory against `before` (before the first load).
fn reload(filter: &mut Filter, listing: &Listing, settle: Duration, before: Mem) -> Result<Reload> {
    eprintln!("sipshield: reload (parse + second swap of the same list) ...");
    let t = Instant::now();
    let (list2, parse_secs) = parse(listing)?;
    let r2 = filter.swap_list(ListKind::Blacklist, &list2)?;
    let wall_secs = t.elapsed().as_secs_f64();
    drop(list2);
    let mem = Mem::settled(settle)?.minus(before);
    eprintln!("  reload parse {parse_secs:.3} s, swap {:.3} s, cleanup {:.3} s", r2.load_secs, r2.cleanup_secs);
    Ok(Reload {
        parse_secs,
        load_secs: r2.load_secs,
        cleanup_secs: r2.cleanup_secs,
        wall_secs,
        generation: r2.generation,
        mem,
    })
}

/// The steps of `swap_list` for the /32s, timed one by one on the idle generation.
pub struct Breakdown {
    pub build_secs: f64,
    pub copy_secs: f64,
    pub zero_secs: f64,
    pub max_fill: usize,
    pub full_buckets: usize,
    pub overflow: usize,
    pub ranges: usize,
    /// Bytes of one generation's table.
    pub tab_len: usize,
    pub json: Value,
}

/// Time the /32 steps (build, copy through mmap, zero) and the range inserts (one by one,
/// batch delete, batch insert) on the idle generation (the reload's cleanup emptied it;
/// `swap_list` clears it again before a fill).
pub fn breakdown(filter: &mut Filter, load: &Load, list: &IpList) -> Result<Breakdown> {
    let idle = (1 - (load.reload_generation & 1)) as usize;
    let t = table_steps(filter, idle, list)?;
    let ranges = ranges4(list);
    let n4_idle = maps::BL_NET4[idle];
    let t0 = Instant::now();
    lpm_insert_each(filter.map_mut(n4_idle)?, &ranges)?;
    let lpm_single_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let lpm_delete = sipshield::bpfsys::delete_batch(map_data(filter.map(n4_idle)?).fd().as_fd(), &lpm_keys(&ranges));
    let lpm_delete_batch_secs = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let lpm_batch = lpm_fill(filter.map_mut(n4_idle)?, &ranges);
    let lpm_batch_secs = t0.elapsed().as_secs_f64();
    let json = json!({
        "build_table4_secs": t.build_secs,
        "mmap_copy_secs": t.copy_secs,
        "mmap_zero_secs": t.zero_secs,
        "table_buckets": BL4_BUCKETS,
        "table_slots_per_bucket": BL4_SLOTS,
        "table_capacity": BL4_TABLE_CAPACITY,
        "table_keys_stored": t.stored,
        "table_load_factor": t.stored as f64 / (BL4_BUCKETS as f64 * BL4_SLOTS as f64),
        "table_max_bucket_fill": t.max_fill,
        "table_full_buckets": t.full_buckets,
        "overflow_keys": t.overflow,
        "config_bl4_overflow_after_load": load.cfg.bl4_overflow,
        "ranges": ranges.len(),
        "lpm_ranges_single_insert_secs": lpm_single_secs,
        "lpm_ranges_delete_batch_secs": lpm_delete.as_ref().map(|_| lpm_delete_batch_secs).ok(),
        "lpm_ranges_delete_batch_error": lpm_delete.err().map(|e| e.to_string()),
        "lpm_ranges_batch_insert_secs": lpm_batch.as_ref().map(|_| lpm_batch_secs).ok(),
        "lpm_ranges_batch_insert_method": lpm_batch.as_ref().ok(),
    });
    eprintln!(
        "  breakdown: build_table4 {:.3} s, mmap copy {:.3} s, zero {:.3} s; overflow {} keys, max bucket fill {}/{BL4_SLOTS}; {} ranges one by one {lpm_single_secs:.3} s",
        t.build_secs, t.copy_secs, t.zero_secs, t.overflow, t.max_fill, ranges.len()
    );
    Ok(Breakdown {
        build_secs: t.build_secs,
        copy_secs: t.copy_secs,
        zero_secs: t.zero_secs,
        max_fill: t.max_fill,
        full_buckets: t.full_buckets,
        overflow: t.overflow,
        ranges: ranges.len(),
        tab_len: t.tab_len,
        json,
    })
}

struct TableSteps {
    build_secs: f64,
    copy_secs: f64,
    zero_secs: f64,
    stored: usize,
    max_fill: usize,
    full_buckets: usize,
    overflow: usize,
    tab_len: usize,
}

fn table_steps(filter: &mut Filter, idle: usize, list: &IpList) -> Result<TableSteps> {
    let t = Instant::now();
    let (table, overflow) = build_table4(list.v4.iter().copied());
    let build_secs = t.elapsed().as_secs_f64();
    let fills: Vec<usize> = table.iter().map(|b| b.keys.iter().filter(|k| **k != 0).count()).collect();
    let tab_name = maps::BL_TAB4[idle];
    let tab_len = BL4_BUCKETS as usize * std::mem::size_of::<Bucket4>();
    let fd = map_data(filter.map(tab_name)?).fd().as_fd();
    let mut region = MmapRegion::map(fd, tab_len, true).map_err(|e| anyhow!("mmap of {tab_name}: {e}"))?;
    let t = Instant::now();
    region.slice_mut::<Bucket4>()[..table.len()].copy_from_slice(&table);
    let copy_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    region.slice_mut::<u64>().fill(0);
    let zero_secs = t.elapsed().as_secs_f64();
    Ok(TableSteps {
        build_secs,
        copy_secs,
        zero_secs,
        stored: fills.iter().sum(),
        max_fill: fills.iter().copied().max().unwrap_or(0),
        full_buckets: fills.iter().filter(|f| **f == BL4_SLOTS).count(),
        overflow: overflow.len(),
        tab_len,
    })
}

/// The capped comparison: the same entries in the three layouts.
pub struct Capped {
    pub total: usize,
    pub v4: usize,
    pub swap_load_secs: f64,
    pub hash_fill_secs: f64,
    pub lpm_fill_secs: f64,
    pub lpm_method: &'static str,
}

/// The three layouts at the same 65,536 entries, in the filter's own maps (the range trie and
/// the overflow hash hold at most 65,536 entries): table, previous hash, all-in-LPM.
pub fn capped(
    a: &BlArgs,
    filter: &mut Filter,
    g: &Generated,
    list: &IpList,
    probes: &Probes,
    lookups: &mut Vec<Lookup>,
) -> Result<Capped> {
    let cap_v4 =
        (BL_NET_CAPACITY as usize).saturating_sub(g.ranges.len()).min(g.addrs.len()).min(BL_V4_CAPACITY as usize);
    let mut capped = IpList::default();
    for a4 in probes.hit_srcs.iter().chain(g.addrs.iter()) {
        if capped.v4.len() >= cap_v4 {
            break;
        }
        capped.v4.insert(a4.to_be_bytes());
    }
    capped.net4 = list.net4.clone();
    let total = capped.len();
    let hits = probes.hits_where(|s| capped.v4.contains(&s.to_be_bytes()));
    eprintln!("capped comparison at {total} entries (BL_NET_CAPACITY = BL_V4_CAPACITY = {BL_NET_CAPACITY}) ...");
    let rc = filter.swap_list(ListKind::Blacklist, &capped)?;
    let mut rows = |filter: &mut Filter, name: &str| -> Result<()> {
        let run = &mut |f: &[u8], r: u32| filter.test_run_repeat(f, r);
        lookups.extend(measure_listed(run, Scenario { instance: 1, name, entries: total }, probes, &hits, a)?);
        Ok(())
    };
    rows(filter, "table /32 + LPM, capped")?;
    let hash_fill_secs = previous_hash_capped(filter, &capped)?;
    rows(filter, "previous: hash /32 + LPM, capped")?;
    let (lpm_fill_secs, lpm_method) = all_in_lpm_capped(filter, &capped)?;
    rows(filter, "rejected: all in LPM, capped")?;
    Ok(Capped { total, v4: capped.v4.len(), swap_load_secs: rc.load_secs, hash_fill_secs, lpm_fill_secs, lpm_method })
}

/// Previous design in the filter's own maps: the ranges through swap_list (so the live table
/// is empty), then the /32s straight into that generation's overflow hash BL_V4_g
/// (no-prealloc, capacity BL_V4_CAPACITY) and bl4_overflow = 1. Returns the fill time.
fn previous_hash_capped(filter: &mut Filter, capped: &IpList) -> Result<f64> {
    let ranges_only = IpList { net4: capped.net4.clone(), ..Default::default() };
    let ro = filter.swap_list(ListKind::Blacklist, &ranges_only)?;
    let hname = maps::BL_V4[(ro.generation & 1) as usize];
    let hkeys: Vec<[u8; 4]> = capped.v4.iter().copied().collect();
    let hones = vec![1u32; hkeys.len()];
    let t = Instant::now();
    sipshield::bpfsys::update_batch(map_data(filter.map(hname)?).fd().as_fd(), &hkeys, &hones)
        .with_context(|| format!("filling {hname}"))?;
    let secs = t.elapsed().as_secs_f64();
    // The /24 bitmap of this generation knows only the ranges: the previous design had none.
    filter.update_config(|c| {
        c.bl4_overflow = 1;
        c.present &= !PRESENT_BL_BM4;
    })?;
    Ok(secs)
}

/// Rejected design in the filter's own maps: every /32 as a prefix in the (empty) other
/// generation's BL_NET4 trie, its table and hash empty, then switch the program to it.
fn all_in_lpm_capped(filter: &mut Filter, capped: &IpList) -> Result<(f64, &'static str)> {
    let idle = 1 - (filter.config()?.blacklist_gen & 1);
    let t = Instant::now();
    let method = lpm_fill(filter.map_mut(maps::BL_NET4[idle as usize])?, &v4_entries(capped))?;
    let secs = t.elapsed().as_secs_f64();
    filter.update_config(|c| {
        c.blacklist_gen = idle;
        c.bl4_overflow = 0;
        c.present &= !PRESENT_BL_BM4;
    })?;
    Ok((secs, method))
}
