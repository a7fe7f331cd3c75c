//! `sipshield-bench hash-fill`: the previous design's hash fill and drain on their own (e.g.
//! under `perf record -g`), and the parallel fill/delete also used by the design comparison.
use std::os::fd::BorrowedFd;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;

use super::experiments::{map_fd, standalone_hash, BPF_F_NO_PREALLOC};
use super::list::Generated;
use super::PREV_BL_V4_CAPACITY;

#[derive(Args, Clone)]
pub struct HashFillArgs {
    /// Keys to insert.
    #[arg(long, default_value_t = 1_000_000)]
    pub entries: usize,
    /// max_entries of the map (its bucket array is sized from this); the default is the
    /// previous design's BL_V4 capacity.
    #[arg(long, default_value_t = PREV_BL_V4_CAPACITY)]
    pub capacity: u32,
    /// Preallocated map (flags 0) instead of BPF_F_NO_PREALLOC.
    #[arg(long)]
    pub prealloc: bool,
    /// Insert the keys in ascending order instead of random order.
    #[arg(long)]
    pub sorted: bool,
    /// Also time a fill / delete from this many threads (0 = skip).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Fill/drain rounds.
    #[arg(long, default_value_t = 3)]
    pub rounds: u32,
}

pub fn hash_fill(a: HashFillArgs) -> Result<()> {
    if a.entries > a.capacity as usize {
        bail!("--entries exceeds --capacity");
    }
    let g = Generated::new(a.entries, 0, 0x5195_B1E1)?;
    let mut keys: Vec<[u8; 4]> = g.addrs.iter().map(|x| x.to_be_bytes()).collect();
    if a.sorted {
        keys.sort_unstable();
    }
    let ones = vec![1u32; keys.len()];
    let flags = if a.prealloc { 0 } else { BPF_F_NO_PREALLOC };
    let map = standalone_hash(a.capacity, flags)?;
    let fd = map_fd(&map);
    for r in 0..a.rounds.clamp(1, 100) {
        let t = Instant::now();
        sipshield::bpfsys::update_batch(fd, &keys, &ones)?;
        let fill = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let n = sipshield::bpfsys::drain_hash(fd, 4, 4)?;
        let drain = t.elapsed().as_secs_f64();
        println!(
            "round {r}: fill {} keys (capacity {}, {}{}) {fill:.3} s = {:.0} ns/key; drain {n} {drain:.3} s = {:.0} ns/key",
            keys.len(),
            a.capacity,
            if a.prealloc { "prealloc" } else { "no-prealloc" },
            if a.sorted { ", sorted" } else { "" },
            fill * 1e9 / keys.len() as f64,
            drain * 1e9 / n.max(1) as f64
        );
        if a.threads > 0 {
            let (f, d) = parallel_fill_drain(fd, &keys, a.threads.min(64))?;
            println!("         {} threads: fill {f:.3} s, delete (BPF_MAP_DELETE_BATCH) {d:.3} s", a.threads.min(64));
        }
    }
    Ok(())
}

/// Fill `map` with `keys` from `threads` threads (disjoint chunks, concurrent
/// BPF_MAP_UPDATE_BATCH calls; the hash map locks per bucket), then delete them the same way
/// with BPF_MAP_DELETE_BATCH. Returns (fill secs, delete secs).
pub fn parallel_fill_drain(map: BorrowedFd<'_>, keys: &[[u8; 4]], threads: usize) -> Result<(f64, f64)> {
    let ones = vec![1u32; keys.len()];
    let chunk = keys.len().div_ceil(threads.max(1)).max(1);
    let t = Instant::now();
    let r: Vec<std::io::Result<()>> = std::thread::scope(|sc| {
        let hs: Vec<_> = keys
            .chunks(chunk)
            .zip(ones.chunks(chunk))
            .map(|(k, v)| sc.spawn(move || sipshield::bpfsys::update_batch(map, k, v)))
            .collect();
        hs.into_iter().map(|h| h.join().expect("fill thread")).collect()
    });
    let fill = t.elapsed().as_secs_f64();
    for x in r {
        x.context("parallel fill")?;
    }
    let t = Instant::now();
    let r: Vec<std::io::Result<()>> = std::thread::scope(|sc| {
        let hs: Vec<_> =
            keys.chunks(chunk).map(|k| sc.spawn(move || sipshield::bpfsys::delete_batch(map, k))).collect();
        hs.into_iter().map(|h| h.join().expect("delete thread")).collect()
    });
    let del = t.elapsed().as_secs_f64();
    for x in r {
        x.context("parallel delete")?;
    }
    Ok((fill, del))
}
