//! Address lists in the kernel (allowlist, blacklist): one [`gen::Part`] each, and reading the
//! live generation back.
//!
//! Layout of generation `g`: exact IPv4 addresses (blacklist: the bucket table `BL_TAB4_g` plus
//! the overflow hash `BL_V4_g`; allowlist: the hash `AL_V4_g`), exact IPv6 addresses in a hash,
//! true ranges in one LPM trie per family.
use std::borrow::Cow;
use std::os::fd::AsFd;

use anyhow::{anyhow, bail, Result};
use aya::maps::{HashMap, LpmTrie};
use xdp_common::*;

use crate::bpfsys;
use crate::filter::{map_data, Filter};
use crate::gen::Part;
use crate::lists::IpList;
use crate::trie;

/// Which address list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListKind {
    Blacklist,
    Allowlist,
}

impl ListKind {
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Blacklist => "blacklist",
            ListKind::Allowlist => "allowlist",
        }
    }

    /// Maps of generation `g`: (v4 exact, v6 exact, v4 ranges, v6 ranges).
    pub fn map_names(self, g: u32) -> [&'static str; 4] {
        let g = (g & 1) as usize;
        match self {
            ListKind::Blacklist => [maps::BL_V4[g], maps::BL_V6[g], maps::BL_NET4[g], maps::BL_NET6[g]],
            ListKind::Allowlist => [maps::AL_V4[g], maps::AL_V6[g], maps::AL_NET4[g], maps::AL_NET6[g]],
        }
    }

    /// (v4 exact, v6 exact, v4 ranges, v6 ranges) capacities.
    pub fn capacity(self) -> (u32, u32, u32, u32) {
        match self {
            ListKind::Blacklist => (BL4_TABLE_CAPACITY, BL_V6_CAPACITY, BL_NET_CAPACITY, BL_NET_CAPACITY),
            ListKind::Allowlist => (AL_CAPACITY, AL_CAPACITY, AL_NET_CAPACITY, AL_NET_CAPACITY),
        }
    }

    fn live(self, c: &Config) -> u32 {
        match self {
            ListKind::Blacklist => c.blacklist_gen,
            ListKind::Allowlist => c.allowlist_gen,
        }
    }
}

fn map_err(name: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("map {name}: {e}")
}

/// Entry counts of a list as loaded.
#[derive(Clone, Debug, Default, serde::Serialize, PartialEq, Eq)]
pub struct ListCounts {
    pub v4: usize,
    pub v6: usize,
    pub net4: usize,
    pub net6: usize,
}

impl ListCounts {
    pub fn of(l: &IpList) -> ListCounts {
        ListCounts { v4: l.v4.len(), v6: l.v6.len(), net4: l.net4.len(), net6: l.net6.len() }
    }
    pub fn total(&self) -> usize {
        self.v4 + self.v6 + self.net4 + self.net6
    }

    /// The object `status --json` shows per list (stable keys).
    pub fn status_json(&self) -> serde_json::Value {
        serde_json::json!({"v4": self.v4, "v6": self.v6, "ranges_v4": self.net4, "ranges_v6": self.net6})
    }
}

/// A list prepared for the kernel: the IPv4 bucket table and the per-/24 bitmap are built here,
/// once, before any write.
pub struct ListPart<'a> {
    kind: ListKind,
    list: Cow<'a, IpList>,
    /// Blacklist only: the bucket table and the addresses that did not fit it.
    table: Option<Vec<Bucket4>>,
    keys4: Vec<[u8; 4]>,
    /// Blacklist only: the per-/24 bitmap of every IPv4 entry (`build_bitmap4`).
    bitmap: Option<Vec<u64>>,
}

impl<'a> ListPart<'a> {
    pub fn new(kind: ListKind, list: &'a IpList) -> ListPart<'a> {
        Self::build(kind, Cow::Borrowed(list))
    }

    /// A part that owns its list (kept by a prepared policy until it is committed).
    pub fn owned(kind: ListKind, list: IpList) -> ListPart<'static> {
        ListPart::build(kind, Cow::Owned(list))
    }

    fn build(kind: ListKind, list: Cow<'a, IpList>) -> ListPart<'a> {
        let (table, keys4, bitmap) = match kind {
            ListKind::Blacklist => {
                let (t, overflow) = build_table4(list.v4.iter().copied());
                (Some(t), overflow, Some(build_bitmap4(&list)))
            }
            ListKind::Allowlist => (None, list.v4.iter().copied().collect(), None),
        };
        ListPart { kind, list, table, keys4, bitmap }
    }

    pub fn list(&self) -> &IpList {
        &self.list
    }

    fn overflow(&self) -> u32 {
        (self.table.is_some() && !self.keys4.is_empty()) as u32
    }

    fn in_table(&self) -> u32 {
        (self.table.is_some() && self.list.v4.len() > self.keys4.len()) as u32
    }

    /// (mask of this list's `PRESENT_*` bits, the bits the new generation needs).
    fn present(&self) -> (u32, u32) {
        let l = &*self.list;
        let bit = |b: u32, n: usize| if n > 0 { b } else { 0 };
        match self.kind {
            ListKind::Blacklist => (
                PRESENT_BL_ALL,
                bit(PRESENT_BL_V6, l.v6.len())
                    | bit(PRESENT_BL_NET4, l.net4.len())
                    | bit(PRESENT_BL_NET6, l.net6.len()),
            ),
            ListKind::Allowlist => (
                PRESENT_AL_ALL,
                bit(PRESENT_AL_V4, l.v4.len())
                    | bit(PRESENT_AL_NET4, l.net4.len())
                    | bit(PRESENT_AL_V6, l.v6.len())
                    | bit(PRESENT_AL_NET6, l.net6.len()),
            ),
        }
    }
}

impl Part for ListPart<'_> {
    fn name(&self) -> &'static str {
        self.kind.name()
    }

    fn live(&self, c: &Config) -> u32 {
        self.kind.live(c)
    }

    fn set_live(&self, c: &mut Config, g: u32) {
        match self.kind {
            ListKind::Blacklist => c.blacklist_gen = g,
            ListKind::Allowlist => c.allowlist_gen = g,
        }
    }

    fn check(&self) -> Result<()> {
        check_capacity(self.kind, &self.list)?;
        if self.table.is_some() && self.keys4.len() > BL_V4_CAPACITY as usize {
            bail!("blacklist: {} IPv4 addresses overflow the table (capacity {BL_V4_CAPACITY})", self.keys4.len());
        }
        Ok(())
    }

    fn fill(&self, f: &mut Filter, g: u32) -> Result<()> {
        let [n4, n6, nn4, nn6] = self.kind.map_names(g);
        if let Some(t) = &self.table {
            let mut m = mmap_table4(f, g)?;
            m.slice_mut::<Bucket4>()[..t.len()].copy_from_slice(t);
        }
        if let Some(b) = &self.bitmap {
            mmap_bitmap4(f, g)?.slice_mut::<u64>()[..b.len()].copy_from_slice(b);
        }
        let ones4 = vec![1u32; self.keys4.len()];
        bpfsys::update_batch(map_data(f.map(n4)?).fd().as_fd(), &self.keys4, &ones4).map_err(|e| map_err(n4, e))?;
        let keys6: Vec<[u8; 16]> = self.list.v6.iter().copied().collect();
        let ones6 = vec![1u32; keys6.len()];
        bpfsys::update_batch(map_data(f.map(n6)?).fd().as_fd(), &keys6, &ones6).map_err(|e| map_err(n6, e))?;
        let net4: Vec<([u8; 4], u32, u32)> = self.list.net4.iter().map(|(a, l)| (*a, *l as u32, 1)).collect();
        trie::fill(f, nn4, &net4)?;
        let net6: Vec<([u8; 16], u32, u32)> = self.list.net6.iter().map(|(a, l)| (*a, *l as u32, 1)).collect();
        trie::fill(f, nn6, &net6)
    }

    fn clear(&self, f: &mut Filter, g: u32) -> Result<()> {
        clear_generation(f, self.kind, g)
    }

    fn widen(&self, c: &mut Config) {
        c.present |= self.present().1;
        if self.kind == ListKind::Blacklist {
            c.bl4_overflow |= self.overflow();
            c.bl4_table |= self.in_table();
        }
    }

    fn narrow(&self, c: &mut Config) {
        let (mask, bits) = self.present();
        c.present = (c.present & !mask) | bits;
        if self.kind == ListKind::Blacklist {
            c.bl4_overflow = self.overflow();
            c.bl4_table = self.in_table();
            // Only now: from the flip until here the old generation may still have been live
            // (or been filled by an earlier build, without a bitmap). `widen` never sets it.
            c.present |= PRESENT_BL_BM4;
        }
    }
}

/// Does `list` fit the kernel maps of `kind`? The error names the family and the capacity.
pub fn check_capacity(kind: ListKind, list: &IpList) -> Result<()> {
    let (c4, c6, cn4, cn6) = kind.capacity();
    let checks = [
        ("IPv4 addresses", list.v4.len(), c4),
        ("IPv6 addresses", list.v6.len(), c6),
        ("IPv4 ranges", list.net4.len(), cn4),
        ("IPv6 ranges", list.net6.len(), cn6),
    ];
    for (what, n, cap) in checks {
        if n > cap as usize {
            bail!("{}: {n} {what} exceed the capacity of {cap}", kind.name());
        }
    }
    Ok(())
}

fn mmap_table4(f: &Filter, g: u32) -> Result<bpfsys::MmapRegion> {
    let name = maps::BL_TAB4[(g & 1) as usize];
    let len = BL4_BUCKETS as usize * std::mem::size_of::<Bucket4>();
    bpfsys::MmapRegion::map(map_data(f.map(name)?).fd().as_fd(), len, true)
        .map_err(|e| map_err(name, format!("mmap: {e}")))
}

fn mmap_bitmap4(f: &Filter, g: u32) -> Result<bpfsys::MmapRegion> {
    let name = maps::BL_BM4[(g & 1) as usize];
    bpfsys::MmapRegion::map(map_data(f.map(name)?).fd().as_fd(), BL4_BITMAP_WORDS as usize * 8, true)
        .map_err(|e| map_err(name, format!("mmap: {e}")))
}

fn clear_generation(f: &mut Filter, kind: ListKind, g: u32) -> Result<()> {
    let [n4, n6, nn4, nn6] = kind.map_names(g);
    if kind == ListKind::Blacklist {
        mmap_table4(f, g)?.slice_mut::<u64>().fill(0);
        mmap_bitmap4(f, g)?.slice_mut::<u64>().fill(0);
    }
    bpfsys::drain_hash(map_data(f.map(n4)?).fd().as_fd(), 4, 4).map_err(|e| map_err(n4, e))?;
    bpfsys::drain_hash(map_data(f.map(n6)?).fd().as_fd(), 16, 4).map_err(|e| map_err(n6, e))?;
    trie::clear::<[u8; 4], u32>(f, nn4)?;
    trie::clear::<[u8; 16], u32>(f, nn6)?;
    Ok(())
}

/// The live list of `kind`, read back from the kernel.
pub fn read_live(f: &Filter, kind: ListKind) -> Result<IpList> {
    let g = kind.live(&f.config()?) & 1;
    let [n4, n6, nn4, nn6] = kind.map_names(g);
    let mut out = IpList::default();
    if kind == ListKind::Blacklist {
        let m = mmap_table4(f, g)?;
        out.v4 = m.slice::<u32>().iter().filter(|k| **k != 0).map(|k| k.to_ne_bytes()).collect();
    }
    let h4: HashMap<_, [u8; 4], u32> = HashMap::try_from(f.map(n4)?)?;
    for k in h4.keys() {
        out.v4.insert(k.map_err(|e| map_err(n4, e))?);
    }
    let h6: HashMap<_, [u8; 16], u32> = HashMap::try_from(f.map(n6)?)?;
    for k in h6.keys() {
        out.v6.insert(k.map_err(|e| map_err(n6, e))?);
    }
    let t4: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(f.map(nn4)?)?;
    for k in t4.keys() {
        let k = k.map_err(|e| map_err(nn4, e))?;
        out.net4.insert((k.data(), k.prefix_len() as u8));
    }
    let t6: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(f.map(nn6)?)?;
    for k in t6.keys() {
        let k = k.map_err(|e| map_err(nn6, e))?;
        out.net6.insert((k.data(), k.prefix_len() as u8));
    }
    Ok(out)
}

/// The per-/24 bitmap of a blacklist's IPv4 entries: the /24 of every address, every /24 inside
/// a range of /24 or shorter, and the /24 holding a longer range. A set bit only means "look
/// further" (the table, the overflow hash, the trie decide), so a /28 sets its whole /24.
pub fn build_bitmap4(list: &IpList) -> Vec<u64> {
    let mut bm = vec![0u64; BL4_BITMAP_WORDS as usize];
    let mut set = |a: [u8; 4]| {
        let (w, bit) = bl4_bitmap_pos(a);
        bm[w as usize] |= bit;
    };
    for a in &list.v4 {
        set(*a);
    }
    let mut spans = vec![];
    for (a, len) in &list.net4 {
        if *len > 24 {
            set(*a);
        } else {
            // The /24s of the range: its first one (host bits cleared) and 2^(24 - len) of them.
            let first = (u32::from_be_bytes(*a) >> 8) & !((1u32 << (24 - len)) - 1);
            spans.push((first, 1u32 << (24 - len)));
        }
    }
    for (first, n) in spans {
        set_bits(&mut bm, first, n);
    }
    bm
}

/// Set bits `first..first + n` of `bm` (whole words at a time: a /8 is 65,536 bits).
fn set_bits(bm: &mut [u64], first: u32, n: u32) {
    let (mut i, end) = (first as usize, first as usize + n as usize);
    while i < end {
        let (w, b) = (i / 64, i % 64);
        let take = (64 - b).min(end - i);
        let mask = if take == 64 { u64::MAX } else { ((1u64 << take) - 1) << b };
        bm[w] |= mask;
        i += take;
    }
}

/// Place IPv4 addresses in the bucket table: each goes to the less loaded of its two buckets
/// (at most half full, so both being full is rare); returns the table and the overflow.
/// 0.0.0.0 cannot be stored (0 marks an empty slot) and goes to the overflow hash.
pub fn build_table4(addrs: impl Iterator<Item = [u8; 4]>) -> (Vec<Bucket4>, Vec<[u8; 4]>) {
    let mut t = vec![Bucket4 { keys: [0; BL4_SLOTS] }; BL4_BUCKETS as usize];
    let mut fill = vec![0u8; BL4_BUCKETS as usize];
    let mut overflow = vec![];
    for a in addrs {
        let k = u32::from_ne_bytes(a);
        if k == 0 {
            overflow.push(a);
            continue;
        }
        let (b1, b2) = (bl4_hash1(k) as usize, bl4_hash2(k) as usize);
        let b = if fill[b2] < fill[b1] { b2 } else { b1 };
        if (fill[b] as usize) < BL4_SLOTS {
            t[b].keys[fill[b] as usize] = k;
            fill[b] += 1;
        } else {
            overflow.push(a);
        }
    }
    (t, overflow)
}
