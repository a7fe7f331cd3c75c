//! sipshield XDP program.
//!
//! Pipeline: parse (Ethernet, up to two VLAN tags, IPv4/IPv6 with options, extension headers and
//! fragments, UDP/TCP) → decide (allowlist, ban, blacklist, GeoIP, SIP scanner signatures, SIP
//! rate limits) → one exit that counts the verdict per interface and reason and emits a sampled
//! event for drops.
#![no_std]
#![no_main]

use core::ffi::c_void;
use core::mem::size_of;

use aya_ebpf::{
    bindings::{xdp_action, BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns, bpf_loop},
    macros::{map, xdp},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
    programs::XdpContext,
};
use xdp_common::*;

// ------------------------------------------------------------------------------------------
// Maps. Names are part of the contract with userspace (xdp-user/src/maps.rs).
// ------------------------------------------------------------------------------------------

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);
#[map]
static IFACE_SLOT: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);
/// Bitmap of protected SIP ports: bit `port % 64` of word `port / 64`.
#[map]
static SIP_PORTS: Array<u64> = Array::with_max_entries(1024, 0);

// Allowlist, two generations (the active one is `Config::allowlist_gen`).
#[map]
static AL_V4_0: HashMap<[u8; 4], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static AL_V4_1: HashMap<[u8; 4], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static AL_V6_0: HashMap<[u8; 16], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static AL_V6_1: HashMap<[u8; 16], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static AL_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);
#[map]
static AL_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);
#[map]
static AL_NET6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);
#[map]
static AL_NET6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);

// Blacklist, two generations (`Config::blacklist_gen`). Exact addresses in hash maps, true
// ranges in LPM tries.
#[map]
static BL_V4_0: HashMap<[u8; 4], u32> = HashMap::with_max_entries(BL_V4_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static BL_V4_1: HashMap<[u8; 4], u32> = HashMap::with_max_entries(BL_V4_CAPACITY, BPF_F_NO_PREALLOC);
/// Exact IPv4 addresses: bucketized table (see `xdp_common::Bucket4`), written by userspace
/// through mmap.
#[map]
static BL_TAB4_0: Array<Bucket4> = Array::with_max_entries(BL4_BUCKETS, BPF_F_MMAPABLE);
#[map]
static BL_TAB4_1: Array<Bucket4> = Array::with_max_entries(BL4_BUCKETS, BPF_F_MMAPABLE);
#[map]
static BL_V6_0: HashMap<[u8; 16], u32> = HashMap::with_max_entries(BL_V6_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static BL_V6_1: HashMap<[u8; 16], u32> = HashMap::with_max_entries(BL_V6_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
static BL_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);
#[map]
static BL_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);
#[map]
static BL_NET6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);
#[map]
static BL_NET6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);

/// Timed bans: value is the expiry on the boot clock (ns).
#[map]
static BANS_V4: LruHashMap<[u8; 4], u64> = LruHashMap::with_max_entries(BAN_CAPACITY, 0);
#[map]
static BANS_V6: LruHashMap<BanKey6, u64> = LruHashMap::with_max_entries(BAN_CAPACITY, 0);
/// `BAN_PRESENT_V4`/`_V6`: non-zero when that ban map may hold entries (empty maps are skipped).
#[map]
static BAN_PRESENT: Array<u32> = Array::with_max_entries(2, 0);

// GeoIP, two generations (`Config::geo_gen`).
#[map]
static GEO_V4_0: Array<GeoRow> = Array::with_max_entries(GEO_V4_ROWS, 0);
#[map]
static GEO_V4_1: Array<GeoRow> = Array::with_max_entries(GEO_V4_ROWS, 0);
#[map]
static GEO_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(GEO_NET_V4_CAPACITY, 0);
#[map]
static GEO_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(GEO_NET_V4_CAPACITY, 0);
#[map]
static GEO_V6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(GEO_V6_CAPACITY, 0);
#[map]
static GEO_V6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(GEO_V6_CAPACITY, 0);
/// Policy per generation and country index (`gen * 256 + country`): 1 = drop.
#[map]
static GEO_POLICY: Array<u32> = Array::with_max_entries(2 * GEO_COUNTRIES, 0);
/// Drops per country index.
#[map]
static GEO_DROPS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(GEO_COUNTRIES, 0);

// SIP scanner signatures, two generations (`Config::sig_gen`). Value: signature id.
#[map]
static SIG_0: LpmTrie<SigKeyData, u32> = LpmTrie::with_max_entries(SIG_MAX, 0);
#[map]
static SIG_1: LpmTrie<SigKeyData, u32> = LpmTrie::with_max_entries(SIG_MAX, 0);
/// Per generation: which (header, first two bytes) can start a signature.
#[map]
static SIG_PREFILTER: Array<SigPrefilter> = Array::with_max_entries(2, 0);

// SIP rate limits.
#[map]
static RL_RULES: Array<RateRule> = Array::with_max_entries(NUM_METHOD_SLOTS, 0);
/// Rate-limit buckets: `RL_SETS` sets of `RL_WAYS` (see `xdp_common::RateSlot`).
#[map]
static RL_TABLE: Array<RateSet> = Array::with_max_entries(RL_SETS, 0);
/// Random seed of the bucket hash (`xdp_common::rl_set`), set once by the controller.
#[map]
static RL_SEED: Array<u64> = Array::with_max_entries(1, 0);

// Events.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);
#[map]
static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVSTAT_ENTRIES, 0);
/// Per-CPU theoretical arrival time of the event sampler.
#[map]
static EVENT_TAT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU copy of the L4 payload for SIP inspection.
#[map]
static SCRATCH: PerCpuArray<[u64; SCRATCH_WORDS]> = PerCpuArray::with_max_entries(1, 0);

// ------------------------------------------------------------------------------------------
// Parsing.
// ------------------------------------------------------------------------------------------

const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

const FRAG_NONE: u8 = 0;
const FRAG_FIRST: u8 = 1;
const FRAG_LATER: u8 = 2;

/// Everything the decision needs from the headers.
struct Pkt {
    src: [u8; 16],
    family: u8,
    proto: u8,
    frag: u8,
    /// The L3 header is fine but something after it is truncated/invalid.
    l4_malformed: bool,
    /// An L4 header (UDP/TCP) was parsed.
    has_l4: bool,
    sport: u16,
    dport: u16,
    /// Offset of the L4 payload from the start of the frame.
    payload_off: usize,
}

/// The one bounds-checked accessor: a pointer to a `T` at `off`, if it lies inside the packet.
#[inline(always)]
fn ptr_at<T>(ctx: &XdpContext, off: usize) -> Option<*const T> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + size_of::<T>() > end {
        return None;
    }
    Some((start + off) as *const T)
}

#[inline(always)]
fn be16(ctx: &XdpContext, off: usize) -> Option<u16> {
    let p: *const [u8; 2] = ptr_at(ctx, off)?;
    Some(u16::from_be_bytes(unsafe { *p }))
}

#[inline(always)]
fn byte(ctx: &XdpContext, off: usize) -> Option<u8> {
    let p: *const u8 = ptr_at(ctx, off)?;
    Some(unsafe { *p })
}

enum Parsed {
    /// Not IPv4/IPv6: passed without further checks.
    NotIp,
    /// L2/L3 headers malformed or truncated: no usable source address.
    Malformed,
    Ip(Pkt),
}

#[inline(always)]
fn parse(ctx: &XdpContext) -> Parsed {
    let mut off = 14usize;
    let mut proto = match be16(ctx, 12) {
        Some(p) => p,
        None => return Parsed::Malformed,
    };
    // Up to two VLAN tags (802.1ad outer, 802.1Q inner, or two 802.1Q).
    for _ in 0..2 {
        if proto == ETH_P_8021Q || proto == ETH_P_8021AD {
            proto = match be16(ctx, off + 2) {
                Some(p) => p,
                None => return Parsed::Malformed,
            };
            off += 4;
        }
    }
    let mut pkt = Pkt {
        src: [0; 16],
        family: 0,
        proto: 0,
        frag: FRAG_NONE,
        l4_malformed: false,
        has_l4: false,
        sport: 0,
        dport: 0,
        payload_off: 0,
    };
    let l4_off;
    if proto == ETH_P_IP {
        let hdr: *const [u8; 20] = match ptr_at(ctx, off) {
            Some(p) => p,
            None => return Parsed::Malformed,
        };
        let h = unsafe { &*hdr };
        let ihl = ((h[0] & 0x0f) as usize) * 4;
        if h[0] >> 4 != 4 || ihl < 20 {
            return Parsed::Malformed;
        }
        let tot_len = u16::from_be_bytes([h[2], h[3]]) as usize;
        if tot_len < ihl || ctx.data() + off + ihl > ctx.data_end() {
            return Parsed::Malformed;
        }
        pkt.family = FAMILY_V4;
        pkt.src[0] = h[12];
        pkt.src[1] = h[13];
        pkt.src[2] = h[14];
        pkt.src[3] = h[15];
        pkt.proto = h[9];
        let frag = u16::from_be_bytes([h[6], h[7]]);
        if frag & 0x1fff != 0 {
            pkt.frag = FRAG_LATER;
        } else if frag & 0x2000 != 0 {
            pkt.frag = FRAG_FIRST;
        }
        l4_off = off + ihl;
    } else if proto == ETH_P_IPV6 {
        let hdr: *const [u8; 40] = match ptr_at(ctx, off) {
            Some(p) => p,
            None => return Parsed::Malformed,
        };
        let h = unsafe { &*hdr };
        if h[0] >> 4 != 6 {
            return Parsed::Malformed;
        }
        pkt.family = FAMILY_V6;
        let mut i = 0;
        while i < 16 {
            pkt.src[i] = h[8 + i];
            i += 1;
        }
        let mut next = h[6];
        let mut cur = off + 40;
        // Bounded walk over extension headers.
        for _ in 0..8 {
            match next {
                0 | 43 | 60 => {
                    // Hop-by-hop, routing, destination options: (len + 1) * 8 bytes.
                    let (nh, len) = match (byte(ctx, cur), byte(ctx, cur + 1)) {
                        (Some(a), Some(b)) => (a, b),
                        _ => {
                            pkt.l4_malformed = true;
                            return Parsed::Ip(pkt);
                        }
                    };
                    next = nh;
                    cur += (len as usize + 1) * 8;
                }
                51 => {
                    // Authentication header: (len + 2) * 4 bytes.
                    let (nh, len) = match (byte(ctx, cur), byte(ctx, cur + 1)) {
                        (Some(a), Some(b)) => (a, b),
                        _ => {
                            pkt.l4_malformed = true;
                            return Parsed::Ip(pkt);
                        }
                    };
                    next = nh;
                    cur += (len as usize + 2) * 4;
                }
                44 => {
                    let fh: *const [u8; 8] = match ptr_at(ctx, cur) {
                        Some(p) => p,
                        None => {
                            pkt.l4_malformed = true;
                            return Parsed::Ip(pkt);
                        }
                    };
                    let fh = unsafe { &*fh };
                    let fo = u16::from_be_bytes([fh[2], fh[3]]);
                    next = fh[0];
                    cur += 8;
                    if fo & 0xfff8 != 0 {
                        pkt.frag = FRAG_LATER;
                        pkt.proto = next;
                        return Parsed::Ip(pkt);
                    }
                    if fo & 1 != 0 {
                        pkt.frag = FRAG_FIRST;
                    }
                }
                _ => break,
            }
        }
        pkt.proto = next;
        l4_off = cur;
    } else {
        return Parsed::NotIp;
    }

    if pkt.frag == FRAG_LATER {
        return Parsed::Ip(pkt);
    }
    if pkt.proto == IPPROTO_UDP {
        let uh: *const [u8; 8] = match ptr_at(ctx, l4_off) {
            Some(p) => p,
            None => {
                pkt.l4_malformed = true;
                return Parsed::Ip(pkt);
            }
        };
        let uh = unsafe { &*uh };
        pkt.sport = u16::from_be_bytes([uh[0], uh[1]]);
        pkt.dport = u16::from_be_bytes([uh[2], uh[3]]);
        let ulen = u16::from_be_bytes([uh[4], uh[5]]);
        if ulen != 0 && ulen < 8 {
            pkt.l4_malformed = true;
            return Parsed::Ip(pkt);
        }
        pkt.has_l4 = true;
        pkt.payload_off = l4_off + 8;
    } else if pkt.proto == IPPROTO_TCP {
        let th: *const [u8; 20] = match ptr_at(ctx, l4_off) {
            Some(p) => p,
            None => {
                pkt.l4_malformed = true;
                return Parsed::Ip(pkt);
            }
        };
        let th = unsafe { &*th };
        let doff = ((th[12] >> 4) as usize) * 4;
        if doff < 20 || ctx.data() + l4_off + doff > ctx.data_end() {
            pkt.l4_malformed = true;
            return Parsed::Ip(pkt);
        }
        pkt.sport = u16::from_be_bytes([th[0], th[1]]);
        pkt.dport = u16::from_be_bytes([th[2], th[3]]);
        pkt.has_l4 = true;
        pkt.payload_off = l4_off + doff;
    }
    Parsed::Ip(pkt)
}

// ------------------------------------------------------------------------------------------
// Address checks.
// ------------------------------------------------------------------------------------------

#[inline(always)]
fn v4(pkt: &Pkt) -> [u8; 4] {
    [pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]]
}

#[inline(always)]
fn in_set(
    cfg: &Config,
    pkt: &Pkt,
    e4: &HashMap<[u8; 4], u32>,
    n4: &LpmTrie<[u8; 4], u32>,
    e6: &HashMap<[u8; 16], u32>,
    n6: &LpmTrie<[u8; 16], u32>,
) -> bool {
    // Only the allowlist uses this; empty structures are skipped.
    let p = cfg.present;
    if pkt.family == FAMILY_V4 {
        let a = v4(pkt);
        (p & PRESENT_AL_V4 != 0 && unsafe { e4.get(&a) }.is_some())
            || (p & PRESENT_AL_NET4 != 0 && n4.get(Key::new(32, a)).is_some())
    } else {
        (p & PRESENT_AL_V6 != 0 && unsafe { e6.get(&pkt.src) }.is_some())
            || (p & PRESENT_AL_NET6 != 0 && n6.get(Key::new(128, pkt.src)).is_some())
    }
}

#[inline(always)]
fn allowlisted(cfg: &Config, pkt: &Pkt) -> bool {
    if cfg.allowlist_gen == 0 {
        in_set(cfg, pkt, &AL_V4_0, &AL_NET4_0, &AL_V6_0, &AL_NET6_0)
    } else {
        in_set(cfg, pkt, &AL_V4_1, &AL_NET4_1, &AL_V6_1, &AL_NET6_1)
    }
}

/// Is `k` in one of its two buckets?
#[inline(always)]
fn in_tab4(tab: &Array<Bucket4>, k: u32) -> bool {
    if k == 0 {
        return false;
    }
    for h in [bl4_hash1(k), bl4_hash2(k)] {
        if let Some(b) = tab.get(h) {
            let mut i = 0;
            while i < BL4_SLOTS {
                if b.keys[i] == k {
                    return true;
                }
                i += 1;
            }
        }
    }
    false
}

#[inline(always)]
fn blacklisted_in(
    cfg: &Config,
    pkt: &Pkt,
    tab: &Array<Bucket4>,
    e4: &HashMap<[u8; 4], u32>,
    n4: &LpmTrie<[u8; 4], u32>,
    e6: &HashMap<[u8; 16], u32>,
    n6: &LpmTrie<[u8; 16], u32>,
) -> bool {
    if pkt.family == FAMILY_V4 {
        let a = v4(pkt);
        (cfg.bl4_table != 0 && in_tab4(tab, u32::from_ne_bytes(a)))
            || (cfg.bl4_overflow != 0 && unsafe { e4.get(&a) }.is_some())
            || (cfg.present & PRESENT_BL_NET4 != 0 && n4.get(Key::new(32, a)).is_some())
    } else {
        (cfg.present & PRESENT_BL_V6 != 0 && unsafe { e6.get(&pkt.src) }.is_some())
            || (cfg.present & PRESENT_BL_NET6 != 0 && n6.get(Key::new(128, pkt.src)).is_some())
    }
}

#[inline(always)]
fn blacklisted(cfg: &Config, pkt: &Pkt) -> bool {
    if cfg.blacklist_gen == 0 {
        blacklisted_in(cfg, pkt, &BL_TAB4_0, &BL_V4_0, &BL_NET4_0, &BL_V6_0, &BL_NET6_0)
    } else {
        blacklisted_in(cfg, pkt, &BL_TAB4_1, &BL_V4_1, &BL_NET4_1, &BL_V6_1, &BL_NET6_1)
    }
}

#[inline(always)]
fn banned(cfg: &Config, pkt: &Pkt, now: u64) -> bool {
    let idx = if pkt.family == FAMILY_V4 { BAN_PRESENT_V4 } else { BAN_PRESENT_V6 };
    match BAN_PRESENT.get(idx) {
        Some(p) if *p != 0 => {}
        _ => return false,
    }
    if pkt.family == FAMILY_V4 {
        if let Some(until) = unsafe { BANS_V4.get(&v4(pkt)) } {
            return *until > now;
        }
        return false;
    }
    let k = BanKey6 { addr: pkt.src, prefix: 128 };
    if let Some(until) = unsafe { BANS_V6.get(&k) } {
        if *until > now {
            return true;
        }
    }
    let p = cfg.rl_v6_prefix;
    if p == 0 || p >= 128 {
        return false;
    }
    let k = BanKey6 { addr: mask_prefix6(pkt.src, p), prefix: p };
    match unsafe { BANS_V6.get(&k) } {
        Some(until) => *until > now,
        None => false,
    }
}

/// Country index of the source in the active GeoIP generation (0 = unknown).
#[inline(always)]
fn country_of(cfg: &Config, pkt: &Pkt) -> u32 {
    if pkt.family == FAMILY_V4 {
        let a = v4(pkt);
        let row_idx = u16::from_be_bytes([a[0], a[1]]) as u32;
        let row = if cfg.geo_gen == 0 { GEO_V4_0.get(row_idx) } else { GEO_V4_1.get(row_idx) };
        let c = match row {
            Some(r) => r.country[a[2] as usize],
            None => GEO_UNKNOWN,
        };
        if c != GEO_SPLIT {
            return c as u32;
        }
        let hit = if cfg.geo_gen == 0 { GEO_NET4_0.get(Key::new(32, a)) } else { GEO_NET4_1.get(Key::new(32, a)) };
        hit.copied().unwrap_or(GEO_UNKNOWN as u32)
    } else {
        let hit =
            if cfg.geo_gen == 0 { GEO_V6_0.get(Key::new(128, pkt.src)) } else { GEO_V6_1.get(Key::new(128, pkt.src)) };
        hit.copied().unwrap_or(GEO_UNKNOWN as u32)
    }
}

#[inline(always)]
fn is_sip_port(port: u16) -> bool {
    match SIP_PORTS.get((port >> 6) as u32) {
        Some(w) => (*w >> (port & 63)) & 1 == 1,
        None => false,
    }
}

// ------------------------------------------------------------------------------------------
// SIP inspection.
// ------------------------------------------------------------------------------------------

const WORD_MASK: usize = SCRATCH_SIZE / 8 - 1;

/// 8 bytes of the scratch buffer starting at byte `pos` (little-endian), from two aligned
/// loads. Positions are masked into the buffer, so this never reads outside the map value.
#[inline(always)]
fn load_at(buf: *const u64, pos: usize) -> u64 {
    let wi = (pos >> 3) & WORD_MASK;
    let sh = ((pos & 7) * 8) as u32;
    let w0 = unsafe { *buf.add(wi) };
    let w1 = unsafe { *buf.add(wi + 1) };
    if sh == 0 {
        w0
    } else {
        (w0 >> sh) | (w1 << (64 - sh))
    }
}

/// Keep buffer positions in [0, SCRATCH_SIZE): the verifier then sees every position as the same
/// bounded range, so loop and callback states converge instead of being explored per offset.
#[inline(always)]
fn clamp(buf: *const u64, pos: usize) -> usize {
    // The last scratch word is never written, so it is always 0 and this equals
    // `pos & (SIZE - 1)`; but to the verifier it is an unknown map value, so the result is the
    // whole range [0, SIZE) and loop/callback states converge instead of growing each round.
    let zero = unsafe { *buf.add(SCRATCH_WORDS - 1) } as usize;
    (pos | zero) & (SCRATCH_SIZE - 1)
}

/// Byte index (0..8) of the first byte flagged in a `bytes_eq` mask (non-zero), computed with a
/// multiply instead of branches so the result is an unknown-but-bounded scalar to the verifier.
#[inline(always)]
fn first_flagged(m: u64) -> usize {
    let low = (m & m.wrapping_neg()) >> 7; // 1 << 8k
    (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize & 7
}

/// Little-endian u64 of up to 8 ASCII bytes (compile-time).
const fn lit(s: &[u8]) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < s.len() {
        v |= (s[i] as u64) << (8 * i);
        i += 1;
    }
    v
}

const fn mask(n: u32) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// Method from the first bytes of the payload (two words).
#[inline(always)]
fn method_of(w0: u64, w1: u64) -> u8 {
    let b8 = w1 & 0xff;
    if w0 == lit(b"REGISTER") && b8 == b' ' as u64 {
        METHOD_REGISTER
    } else if w0 == lit(b"SIP/2.0 ") {
        METHOD_RESPONSE
    } else if w0 & mask(7) == lit(b"INVITE ") {
        METHOD_INVITE
    } else if w0 == lit(b"OPTIONS ") {
        METHOD_OPTIONS
    } else if w0 & mask(4) == lit(b"ACK ") {
        METHOD_ACK
    } else if w0 & mask(4) == lit(b"BYE ") {
        METHOD_BYE
    } else if w0 & mask(7) == lit(b"CANCEL ") {
        METHOD_CANCEL
    } else if w0 == lit(b"SUBSCRIB") && w1 & mask(2) == lit(b"E ") {
        METHOD_SUBSCRIBE
    } else if w0 & mask(7) == lit(b"NOTIFY ") {
        METHOD_NOTIFY
    } else if w0 == lit(b"MESSAGE ") {
        METHOD_MESSAGE
    } else if w0 & mask(5) == lit(b"INFO ") {
        METHOD_INFO
    } else if w0 & mask(6) == lit(b"PRACK ") {
        METHOD_PRACK
    } else if w0 & mask(7) == lit(b"UPDATE ") {
        METHOD_UPDATE
    } else if w0 & mask(6) == lit(b"REFER ") {
        METHOD_REFER
    } else if w0 == lit(b"PUBLISH ") {
        METHOD_PUBLISH
    } else {
        // Another token of three or more upper-case letters: an unknown request method.
        let mut i = 0;
        while i < 3 {
            let c = (w0 >> (8 * i)) as u8;
            if !c.is_ascii_uppercase() {
                return METHOD_NONE;
            }
            i += 1;
        }
        METHOD_OTHER
    }
}

/// State shared with the `bpf_loop` callback (lives on the caller's stack).
#[repr(C)]
struct ScanState {
    /// Start of the line to examine next.
    pos: u64,
    /// Valid bytes in the scratch buffer.
    len: u64,
    sig_headers: u32,
    sig_gen: u32,
    /// 1 + matched signature id, or 0.
    found: u32,
    /// Bit (c - 'a') set for every lowercase first letter of a header that has signatures.
    letters: u32,
    /// Where the newline scan resumes.
    rp: u32,
    _pad: u32,
}

/// First letters (as `1 << (c - 'a')`) of the header names and compact forms in `sig_headers`.
#[inline(always)]
fn header_letters(sig_headers: u32) -> u32 {
    const fn bit(c: u8) -> u32 {
        1 << (c - b'a')
    }
    let mut m = 0;
    if sig_headers & (1 << HDR_USER_AGENT) != 0 {
        m |= bit(b'u');
    }
    if sig_headers & (1 << HDR_FROM) != 0 {
        m |= bit(b'f');
    }
    if sig_headers & (1 << HDR_TO) != 0 {
        m |= bit(b't');
    }
    if sig_headers & (1 << HDR_CONTACT) != 0 {
        m |= bit(b'c') | bit(b'm');
    }
    if sig_headers & (1 << HDR_VIA) != 0 {
        m |= bit(b'v');
    }
    if sig_headers & (1 << HDR_CALL_ID) != 0 {
        m |= bit(b'c') | bit(b'i');
    }
    if sig_headers & ((1 << HDR_SUBJECT) | (1 << HDR_SERVER)) != 0 {
        m |= bit(b's');
    }
    m
}

/// Header id and name length of the line starting at `pos`, or (0, 0).
#[inline(always)]
fn header_at(buf: *const u64, pos: usize) -> (u32, usize) {
    let h = lower8(load_at(buf, pos));
    let h2 = lower8(load_at(buf, pos + 8));
    let (id, n) = if h == lit(b"user-age") && h2 & mask(2) == lit(b"nt") {
        (HDR_USER_AGENT, 10)
    } else if h & mask(4) == lit(b"from") {
        (HDR_FROM, 4)
    } else if h & mask(7) == lit(b"contact") {
        (HDR_CONTACT, 7)
    } else if h & mask(7) == lit(b"call-id") {
        (HDR_CALL_ID, 7)
    } else if h & mask(7) == lit(b"subject") {
        (HDR_SUBJECT, 7)
    } else if h & mask(6) == lit(b"server") {
        (HDR_SERVER, 6)
    } else if h & mask(3) == lit(b"via") {
        (HDR_VIA, 3)
    } else if h & mask(2) == lit(b"to") {
        (HDR_TO, 2)
    } else {
        match h as u8 {
            b'f' => (HDR_FROM, 1),
            b't' => (HDR_TO, 1),
            b'm' => (HDR_CONTACT, 1),
            b'v' => (HDR_VIA, 1),
            b'i' => (HDR_CALL_ID, 1),
            b's' => (HDR_SUBJECT, 1),
            _ => (0, 0),
        }
    };
    if id == 0 {
        return (0, 0);
    }
    // The name must be followed by optional whitespace and the colon.
    let c = if n >= 8 { (h2 >> (8 * (n - 8) as u32)) as u8 } else { (h >> (8 * n as u32)) as u8 };
    if c == b':' || c == b' ' || c == b'\t' {
        (id, n)
    } else {
        (0, 0)
    }
}

/// The value word at `pos`, lowercased and cut at the end of the line; `alive` becomes 0 once
/// the line has ended, so later words read as zero.
#[inline(always)]
fn value_word(buf: *const u64, pos: usize, alive: &mut u64) -> u64 {
    let w = load_at(buf, pos) & *alive;
    let (cut, hit) = cut_at(w, bytes_eq(w, b'\r') | bytes_eq(w, b'\n'));
    if hit {
        *alive = 0;
    }
    lower8(cut)
}

/// Examine the header line at `st.pos` against the signatures. Returns true when a signature
/// matched (stored in `st.found`).
#[inline(always)]
fn check_line(buf: *const u64, st: &mut ScanState) -> bool {
    let pos = clamp(buf, st.pos as usize);
    // Cheap pre-filter: only lines whose first letter starts a header with signatures.
    let c0 = (byte_at(buf, pos) | 0x20).wrapping_sub(b'a') as u32;
    if c0 >= 26 || (st.letters >> c0) & 1 == 0 {
        return false;
    }
    let (hdr, n) = header_at(buf, pos);
    if hdr == 0 || st.sig_headers & (1 << hdr) == 0 {
        return false;
    }
    // Skip whitespace, the colon, whitespace and folded continuation (CRLF + SP/HT).
    let mut p = clamp(buf, pos + n);
    let mut seen_colon = false;
    for _ in 0..12 {
        let c = byte_at(buf, p);
        if c == b' ' || c == b'\t' {
            p = clamp(buf, p + 1);
        } else if c == b':' && !seen_colon {
            seen_colon = true;
            p = clamp(buf, p + 1);
        } else if c == b'\r' && seen_colon {
            let c3 = byte_at(buf, p + 2);
            if byte_at(buf, p + 1) == b'\n' && (c3 == b' ' || c3 == b'\t') {
                p = clamp(buf, p + 3);
            } else {
                break;
            }
        } else {
            break;
        }
    }
    if !seen_colon {
        return false;
    }
    // A display name in From/To/Contact may be quoted: match what is inside the quotes.
    if (hdr == HDR_FROM || hdr == HDR_TO || hdr == HDR_CONTACT) && byte_at(buf, p) == b'"' {
        p = clamp(buf, p + 1);
    }
    let mut words = [0u64; SIG_MAX_LEN / 8];
    // Bytes past the payload are zero (see copy_payload); stop at the end of the line.
    let mut alive = u64::MAX;
    words[0] = value_word(buf, p, &mut alive);
    // Only values whose first two bytes can start a signature of this header go to the trie.
    match SIG_PREFILTER.get(st.sig_gen & 1) {
        Some(pf) if pf.may_match(hdr, words[0] as u8, (words[0] >> 8) as u8) => {}
        _ => return false,
    }
    let mut k = 1usize;
    while k < SIG_MAX_LEN / 8 {
        words[k] = value_word(buf, clamp(buf, p + 8 * k), &mut alive);
        k += 1;
    }
    // SAFETY: [u64; 4] and [u8; 32] have the same size; byte order is little-endian as in userspace.
    let data = SigKeyData {
        header: hdr,
        value: unsafe { core::mem::transmute::<[u64; SIG_MAX_LEN / 8], [u8; SIG_MAX_LEN]>(words) },
    };
    let key = Key::new(32 + 8 * SIG_MAX_LEN as u32, data);
    let hit = if st.sig_gen == 0 { SIG_0.get(&key) } else { SIG_1.get(&key) };
    if let Some(id) = hit {
        st.found = *id + 1;
        return true;
    }
    false
}

/// Can the candidate line at `p` be passed over without `check_line`? Only for the two common
/// headers in canonical form, `User-Agent: v…` and `From: v…` (one space after the colon, no
/// quote): true when the prefilter rules the value out. Straight-line code run inside the scan,
/// so a legitimate message's User-Agent and From cost no extra scan step; anything else
/// (other headers, spacing, folding, quotes, a possible match) goes to `check_line`, which
/// decides exactly.
#[inline(always)]
fn quick_reject(buf: *const u64, st: &ScanState, pf: Option<&SigPrefilter>, p: usize) -> bool {
    let pf = match pf {
        Some(pf) => pf,
        None => return false,
    };
    let w = lower8(load_at(buf, p));
    let (hdr, vw) = if w == lit(b"user-age") {
        let w2 = lower8(load_at(buf, clamp(buf, p + 8)));
        if w2 & mask(4) != lit(b"nt: ") {
            return false;
        }
        (HDR_USER_AGENT, w2 >> 32)
    } else if w & mask(6) == lit(b"from: ") {
        (HDR_FROM, w >> 48)
    } else {
        return false;
    };
    if st.sig_headers & (1 << hdr) == 0 {
        return true;
    }
    let v0 = vw as u8;
    let v1 = (vw >> 8) as u8;
    if v0 == b' ' || v0 == b'\t' || v0 == b'"' || v0 == b'\r' || v0 == b'\n' {
        return false;
    }
    // As in `check_line`: the value ends at the line end.
    let v1 = if v1 == b'\r' || v1 == b'\n' { 0 } else { v1 };
    !pf.may_match(hdr, v0, v1)
}

/// Flags (0x80) bytes below 0x10 (`\t`, `\n`, `\r`, NUL) somewhere in `w` (AND with 0x80..80):
/// a pair of words without any holds no line end and is skipped with ~7 instructions per word.
/// (May also flag a byte above such a byte; callers recheck exactly.)
#[inline(always)]
fn ctl_bytes(w: u64) -> u64 {
    w.wrapping_sub(0x1010_1010_1010_1010) & !w
}

/// Byte `pos` (< SCRATCH_SIZE) of the scratch buffer.
#[inline(always)]
fn byte_at(buf: *const u64, pos: usize) -> u8 {
    unsafe { *(buf as *const u8).add(pos & (SCRATCH_SIZE - 1)) }
}

/// Rounds per scan step (each round covers 16 bytes or one line end).
const SCAN_ROUNDS: usize = 64;

/// Scan steps per message: a step scans up to `SCAN_ROUNDS` rounds or checks one candidate
/// header line. 1536 bytes hold at most 256 header lines of 6 bytes ("f: x\r\n"), so every
/// line of an inspected payload is reached; the bound also caps the work a crafted packet can
/// cause.
const SCAN_STEPS: u32 = 320;

/// `bpf_loop` callback. Two kinds of steps: if `st.pos` holds a candidate line, check it
/// against the signatures; otherwise scan forward from `st.rp`, 16 bytes per round, for the
/// next line whose first letter can start a header that has signatures (other lines cost only
/// the scan). Returns 1 to stop (match, end of headers or end of data).
extern "C" fn scan_lines(_i: u64, ctx: *mut c_void) -> i64 {
    let st = unsafe { &mut *(ctx as *mut ScanState) };
    let buf = match SCRATCH.get_ptr(0) {
        Some(p) => p as *const u64,
        None => return 1,
    };
    let len = st.len as usize;
    if st.pos != 0 {
        if check_line(buf, st) {
            return 1;
        }
        st.pos = 0;
    }
    let pf = SIG_PREFILTER.get(st.sig_gen & 1);
    // `from`: first byte not examined yet. Laundered each round (see `clamp`) so the verifier
    // sees one bounded state per round whatever path led there.
    let mut from = st.rp as usize;
    for _ in 0..SCAN_ROUNDS {
        let at = clamp(buf, from);
        let wi = at >> 3;
        let keep = u64::MAX << (8 * (at & 7));
        let w0 = unsafe { *buf.add(wi) };
        let w1 = unsafe { *buf.add(wi + 1) };
        let next_pair = (wi << 3) + 16;
        let c0 = ctl_bytes(w0) & keep & 0x8080_8080_8080_8080;
        let c1 = ctl_bytes(w1) & 0x8080_8080_8080_8080;
        if c0 | c1 == 0 {
            if next_pair >= len {
                return 1;
            }
            from = next_pair;
            continue;
        }
        // The first control byte decides: "\r\n" or a bare '\n' ends the line; anything else
        // ('\t', a lone '\r', NUL) is stepped over.
        let q = if c0 != 0 { (wi << 3) + first_flagged(c0) } else { (wi << 3) + 8 + first_flagged(c1) };
        if q >= len {
            return 1;
        }
        let ch = byte_at(buf, q);
        let p = if ch == b'\n' {
            q + 1
        } else if ch == b'\r' && byte_at(buf, q + 1) == b'\n' {
            q + 2
        } else {
            from = q + 1;
            continue;
        };
        if p >= len {
            return 1;
        }
        let c = byte_at(buf, p);
        if c == b'\r' || c == b'\n' {
            return 1; // empty line: end of the header section
        }
        let l = (c | 0x20).wrapping_sub(b'a') as u32;
        if l < 26 && (st.letters >> l) & 1 != 0 && !quick_reject(buf, st, pf, p) {
            st.pos = p as u64;
            st.rp = p as u32;
            return 0;
        }
        from = p;
    }
    st.rp = clamp(buf, from) as u32;
    0
}

/// One 8-byte load from packet memory at any alignment (x86-64, arm64 and the verifier accept
/// unaligned packet loads; `read_unaligned` would be split into eight byte loads).
///
/// # Safety
/// `p..p + 8` must have been checked against `data_end`.
#[inline(always)]
unsafe fn load_u64(p: usize) -> u64 {
    unsafe { core::ptr::read_volatile(p as *const u64) }
}

/// Copy `len` (8..=SIP_SCAN_MAX) payload bytes at `off` into the scratch buffer, 32 bytes per
/// round with direct packet reads (no helper call: a call and its return cost more than the
/// copy on CPUs with return-stack mitigations), then zero the bytes after them (up to 40) so
/// value reads past the end see zeros. False if the packet is shorter than claimed.
#[inline(always)]
fn copy_payload(ctx: &XdpContext, off: usize, len: usize, buf: *mut u64) -> bool {
    // Header offsets are below 16 KiB in any XDP frame (the parser checked them against the
    // frame); the mask only bounds the pointer for the verifier.
    let src = ctx.data() + (off & 0x3fff);
    let end = ctx.data_end();
    let words = len >> 3;
    let mut i = 0usize;
    // Whole 32-byte blocks (at most SIP_SCAN_MAX / 32 rounds).
    while i < SIP_SCAN_MAX as usize / 8 {
        if i + 4 > words {
            break;
        }
        let p = src + i * 8;
        if p + 32 > end {
            return false;
        }
        unsafe {
            *buf.add(i) = load_u64(p);
            *buf.add(i + 1) = load_u64(p + 8);
            *buf.add(i + 2) = load_u64(p + 16);
            *buf.add(i + 3) = load_u64(p + 24);
        }
        i += 4;
    }
    // Up to three more whole words.
    let mut k = 0;
    while k < 3 {
        if i >= words {
            break;
        }
        let p = src + (i & 0xff) * 8;
        if p + 8 > end {
            return false;
        }
        unsafe { *buf.add(i & 0xff) = load_u64(p) };
        i += 1;
        k += 1;
    }
    let wl = words & 0xff;
    let rest = len & 7;
    // The last 1..7 bytes: the word ending at the payload's end, shifted down (len >= 8).
    let last = if rest != 0 {
        // (black_box: LLVM would address the load as (src + len) - 8, the verifier needs the
        // checked pointer itself.)
        let p = src + core::hint::black_box(len - 8);
        if p + 8 > end {
            return false;
        }
        let w = unsafe { load_u64(p) };
        w >> (8 * (8 - rest))
    } else {
        0
    };
    // Volatile stores: LLVM would otherwise merge them into a call to a BPF `memset`.
    unsafe {
        core::ptr::write_volatile(buf.add(wl), last);
        let mut j = 1;
        while j <= 5 {
            core::ptr::write_volatile(buf.add(wl + j), 0);
            j += 1;
        }
    }
    true
}

struct SipResult {
    method: u8,
    sig: u32,
}

#[inline(always)]
fn sip_inspect(ctx: &XdpContext, pkt: &Pkt) -> SipResult {
    let r = sip_scan(ctx.ctx, pkt.payload_off as u32);
    SipResult { method: (r & 0xff) as u8, sig: (r >> 8) as u32 }
}

/// Copy the payload into the scratch buffer, read the method and look for scanner signatures.
/// Returns `method | (1 + signature id) << 8` (0 in the upper bits: no match).
///
/// A global (non-inlined, exported) function: the verifier checks it once, on its own, instead
/// of once per path of the header parser that reaches it.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sip_scan(ctx: *mut aya_ebpf::bindings::xdp_md, payload_off: u32) -> u64 {
    let ctx = XdpContext::new(ctx);
    let mut res = SipResult { method: METHOD_NONE, sig: 0 };
    let out = |r: &SipResult| r.method as u64 | (r.sig as u64) << 8;
    let total = ctx.data_end() - ctx.data();
    let payload_off = payload_off as usize;
    if payload_off + 8 > total {
        return out(&res);
    }
    let avail = total - payload_off;
    let capped = if avail > SIP_SCAN_MAX as usize { SIP_SCAN_MAX as usize } else { avail };
    // Bounds the verifier can follow: (len - 8) masked and checked, then + 8 => [8, SIP_SCAN_MAX].
    let extra = core::hint::black_box((capped - 8) as u32) & 0x7ff;
    if extra > SIP_SCAN_MAX - 8 {
        return out(&res);
    }
    let len = (extra + 8) as usize;
    let buf = match SCRATCH.get_ptr_mut(0) {
        Some(p) => p as *mut u64,
        None => return out(&res),
    };
    if !copy_payload(&ctx, payload_off, len, buf) {
        return out(&res);
    }
    let buf = buf as *const u64;
    res.method = method_of(unsafe { *buf }, unsafe { *buf.add(1) });
    if res.method == METHOD_NONE || res.method == METHOD_RESPONSE {
        return out(&res);
    }
    // The scan settings are read here rather than passed in: fewer values live across the copy.
    let (sig_headers, sig_gen) = match CONFIG.get(0) {
        Some(c) if c.flags & CFG_SCANNERS_ENABLED != 0 && c.sig_headers != 0 => (c.sig_headers, c.sig_gen),
        _ => return out(&res),
    };
    // The request line is not a header: the scan starts with the line after the first '\n'.
    //
    // `pos`, `rp` and `found` start at 0, read from the scratch buffer's last word (never
    // written, always 0; see `clamp`) rather than as constants. The verifier checks the
    // `bpf_loop` callback once per distinct state of these fields at its entry, comparing them
    // by range: starting from "unknown" instead of the constant 0, the first check covers every
    // later state and the callback is verified once, not once per shape of (pos, rp, found)
    // (the kernel 6.18 verifier otherwise goes past its 1M-instruction limit).
    let zero = unsafe { *buf.add(SCRATCH_WORDS - 1) };
    let mut st = ScanState {
        pos: zero,
        len: len as u64,
        sig_headers,
        sig_gen,
        found: zero as u32,
        letters: header_letters(sig_headers),
        rp: zero as u32,
        _pad: 0,
    };
    unsafe {
        bpf_loop(SCAN_STEPS, scan_lines as *mut c_void, &mut st as *mut ScanState as *mut c_void, 0);
    }
    res.sig = st.found;
    out(&res)
}

/// GCRA rate limit for one rule on the bucket of (`addr`, `tag`) in `RL_TABLE`. Returns
/// (excess, ban_until) where ban_until != 0 when this packet triggered a new ban.
///
/// The set is one array element (an inline lookup, no helper call); its buckets are compared
/// in turn. A new bucket takes, in order of preference, an unused slot, a slot that remembers
/// nothing (bucket full again, no excess counted), a slot without excess, and only then one
/// counting excess in its current window; the least recently seen within the class. Updates
/// are not atomic: a CPU that found its bucket in the same instant another CPU evicted it may
/// write that one packet's update into the new owner's bucket (a packet-scale race on one
/// set; a new key is published only after its bucket is filled).
#[inline(always)]
fn rate_check(rule: &RateRule, addr: [u64; 2], tag: u32, seed: u64, now: u64) -> (bool, u64) {
    let set = match RL_TABLE.get_ptr_mut(rl_set(addr, tag, seed)) {
        Some(p) => unsafe { &mut *p },
        None => return (false, 0),
    };
    let mut hit = RL_WAYS;
    let mut victim = 0;
    let mut victim_rank = u64::MAX;
    let mut i = 0;
    while i < RL_WAYS {
        let s = &set.slots[i];
        if s.tag == tag && s.addr[0] == addr[0] && s.addr[1] == addr[1] {
            hit = i;
            break;
        }
        // Replace unused first, then idle (nothing to forget), then buckets without excess
        // (a one-packet spoofed source, or a client mid-burst: it comes back full), and only
        // then a bucket counting excess towards a ban; least recently seen within a class.
        let class: u64 = if s.tag == 0 {
            0
        } else if s.excess != 0 && now - s.window_start <= rule.window_ns {
            3
        } else if s.tat <= now {
            1
        } else {
            2
        };
        let rank = class << 62 | s.seen >> 2;
        if rank < victim_rank {
            victim_rank = rank;
            victim = i;
        }
        i += 1;
    }
    if hit == RL_WAYS {
        let s: *mut RateSlot = &mut set.slots[victim & (RL_WAYS - 1)];
        // Invalidate, fill, then publish the key: another CPU cannot match the new key on a
        // half-written bucket still holding the evicted one's state.
        unsafe {
            core::ptr::write_volatile(&mut (*s).tag, 0);
            (*s).addr = addr;
            (*s).excess = 0;
            (*s).tat = now + rule.interval_ns;
            (*s).window_start = now;
            (*s).seen = now;
            core::ptr::write_volatile(&mut (*s).tag, tag);
        }
        return (false, 0);
    }
    let st = &mut set.slots[hit & (RL_WAYS - 1)];
    st.seen = now;
    let tat = if st.tat > now { st.tat } else { now };
    if tat - now <= rule.tolerance_ns {
        st.tat = tat + rule.interval_ns;
        return (false, 0);
    }
    if now - st.window_start > rule.window_ns {
        st.window_start = now;
        st.excess = 0;
    }
    st.excess += 1;
    if rule.ban_after != 0 && st.excess >= rule.ban_after {
        st.excess = 0;
        st.window_start = now;
        return (true, now + rule.ban_ttl_ns);
    }
    (true, 0)
}

// ------------------------------------------------------------------------------------------
// Verdict.
// ------------------------------------------------------------------------------------------

struct Verdict {
    reason: u32,
    drop: bool,
    method: u8,
    sig: u32,
    country: u32,
    ban_until: u64,
}

#[inline(always)]
fn decide(ctx: &XdpContext, cfg: &Config, pkt: &Pkt, now: u64) -> Verdict {
    let mut v = Verdict { reason: REASON_PASS, drop: false, method: 0, sig: 0, country: 0, ban_until: 0 };
    if allowlisted(cfg, pkt) {
        v.reason = REASON_ALLOWLISTED;
        return v;
    }
    v.drop = true;
    if banned(cfg, pkt, now) {
        v.reason = REASON_BANNED;
        return v;
    }
    if blacklisted(cfg, pkt) {
        v.reason = REASON_BLACKLISTED;
        return v;
    }
    let sip_port = pkt.has_l4
        && (pkt.proto == IPPROTO_UDP || (pkt.proto == IPPROTO_TCP && cfg.flags & CFG_SIP_TCP != 0))
        && is_sip_port(pkt.dport);
    if cfg.flags & CFG_GEO_ENABLED != 0 && (cfg.flags & CFG_GEO_SCOPE_ALL != 0 || sip_port) {
        let c = country_of(cfg, pkt);
        let idx = cfg.geo_gen * GEO_COUNTRIES + (c & 0xff);
        if let Some(p) = GEO_POLICY.get(idx) {
            if *p != 0 {
                v.reason = REASON_GEO;
                v.country = c;
                return v;
            }
        }
    }
    if pkt.l4_malformed {
        v.reason = REASON_MALFORMED;
        v.drop = cfg.flags & CFG_DROP_MALFORMED != 0;
        return v;
    }
    if sip_port && cfg.flags & (CFG_SCANNERS_ENABLED | CFG_RATELIMIT_ENABLED) != 0 {
        let r = sip_inspect(ctx, pkt);
        v.method = r.method;
        if r.sig != 0 {
            v.reason = REASON_SCANNER;
            v.sig = r.sig - 1;
            return v;
        }
        if cfg.flags & CFG_RATELIMIT_ENABLED != 0 && r.method != METHOD_NONE && r.method != METHOD_RESPONSE {
            let addr = rl_addr(pkt.family, pkt.src, cfg.rl_v6_prefix);
            let seed = RL_SEED.get(0).copied().unwrap_or(0);
            for slot in [r.method, METHOD_ANY] {
                if let Some(rule) = RL_RULES.get(slot as u32) {
                    if rule.interval_ns != 0 {
                        let (excess, ban_until) = rate_check(rule, addr, rl_tag(pkt.family, slot), seed, now);
                        if excess {
                            v.reason = REASON_RATELIMIT;
                            v.ban_until = ban_until;
                            return v;
                        }
                    }
                }
            }
        }
    }
    v.drop = false;
    v
}

#[inline(always)]
fn bump(counter: Option<*mut Counter>, bytes: u64) {
    if let Some(c) = counter {
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

#[inline(always)]
fn evstat(idx: u32) {
    if let Some(c) = EVENT_STATS.get_ptr_mut(idx) {
        unsafe { *c += 1 };
    }
}

/// Kernel-side event sampling: a per-CPU GCRA allowing one event per `event_interval_ns`
/// with a burst of `event_burst_ns`.
#[inline(always)]
fn event_allowed(cfg: &Config, now: u64) -> bool {
    if cfg.event_interval_ns == 0 {
        return true;
    }
    let tat = match EVENT_TAT.get_ptr_mut(0) {
        Some(p) => unsafe { &mut *p },
        None => return false,
    };
    let t = if *tat > now { *tat } else { now };
    if t - now > cfg.event_burst_ns {
        return false;
    }
    *tat = t + cfg.event_interval_ns;
    true
}

#[inline(always)]
fn emit_event(ctx: &XdpContext, cfg: &Config, pkt: &Pkt, v: &Verdict, now: u64) {
    let new_ban = v.ban_until != 0;
    if !new_ban {
        if cfg.event_reasons & (1 << v.reason) == 0 {
            return;
        }
        if !event_allowed(cfg, now) {
            evstat(EVSTAT_SUPPRESSED);
            return;
        }
    }
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(Event {
                ts_ns: now,
                ban_until_ns: v.ban_until,
                src: pkt.src,
                ifindex: ctx.ingress_ifindex() as u32,
                sig_id: v.sig,
                sport: pkt.sport,
                dport: pkt.dport,
                reason: v.reason as u8,
                family: pkt.family,
                method: v.method,
                flags: (if new_ban { EVF_NEW_BAN } else { 0 })
                    | (if cfg.flags & CFG_DRY_RUN != 0 { EVF_DRY_RUN } else { 0 }),
                country: v.country as u8,
                proto: pkt.proto,
                _pad: 0,
                _pad2: 0,
            });
            entry.submit(0);
            evstat(EVSTAT_EMITTED);
        }
        None => evstat(EVSTAT_RING_FULL),
    }
}

#[inline(always)]
fn install_ban(cfg: &Config, pkt: &Pkt, until: u64) -> bool {
    let (r, idx) = if pkt.family == FAMILY_V4 {
        (BANS_V4.insert(&v4(pkt), &until, 0), BAN_PRESENT_V4)
    } else {
        let p = if cfg.rl_v6_prefix == 0 || cfg.rl_v6_prefix > 128 { 128 } else { cfg.rl_v6_prefix };
        (BANS_V6.insert(&BanKey6 { addr: mask_prefix6(pkt.src, p), prefix: p }, &until, 0), BAN_PRESENT_V6)
    };
    // After the insert: the controller clears the flag only when it then sees the map empty.
    if let Some(p) = BAN_PRESENT.get_ptr_mut(idx) {
        unsafe { core::ptr::write_volatile(p, 1) };
    }
    r.is_ok()
}

#[xdp]
pub fn sipshield(ctx: XdpContext) -> u32 {
    let bytes = (ctx.data_end() - ctx.data()) as u64;
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = if ifindex < MAX_IFINDEX { IFACE_SLOT.get(ifindex).copied().unwrap_or(0) % MAX_IFACE_SLOTS } else { 0 };
    let cfg = match CONFIG.get(0) {
        Some(c) => c,
        None => return xdp_action::XDP_PASS,
    };
    // CLOCK_MONOTONIC at tick resolution, from jiffies (inlined: no helper call, no TSC read;
    // the precise clock was a sixth of the whole SIP path on a VM). Rate limits keep their
    // long-run rate exactly (GCRA advances by the interval, not by the clock); bans expire at
    // most a tick late.
    let now = if cfg.clock_ns != 0 {
        cfg.clock_ns
    } else {
        match CLOCK.get(0) {
            Some(c) if c.jiffy_ns != 0 => unsafe { bpf_jiffies64() }.wrapping_mul(c.jiffy_ns).wrapping_add(c.base_ns),
            _ => unsafe { bpf_ktime_get_coarse_ns() },
        }
    };

    let (reason, drop) = match parse(&ctx) {
        Parsed::NotIp => (REASON_PASS, false),
        Parsed::Malformed => (REASON_MALFORMED, cfg.flags & CFG_DROP_MALFORMED != 0),
        Parsed::Ip(pkt) => {
            let mut v = decide(&ctx, cfg, &pkt, now);
            if v.ban_until != 0 {
                if cfg.flags & CFG_DRY_RUN == 0 && install_ban(cfg, &pkt, v.ban_until) {
                    evstat(EVSTAT_BANS);
                } else if cfg.flags & CFG_DRY_RUN == 0 {
                    evstat(EVSTAT_BAN_FAILED);
                    v.ban_until = 0;
                }
            }
            if v.drop {
                emit_event(&ctx, cfg, &pkt, &v, now);
                if v.reason == REASON_GEO {
                    bump(GEO_DROPS.get_ptr_mut(v.country & 0xff), bytes);
                }
            }
            (v.reason, v.drop)
        }
    };

    // Single exit: count once per interface slot and reason.
    bump(STATS.get_ptr_mut(slot * REASON_SLOTS + reason), bytes);
    if drop && cfg.flags & CFG_DRY_RUN == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}

// ------------------------------------------------------------------------------------------
// Benchmark helpers (never attached by the controller).
// ------------------------------------------------------------------------------------------

/// Target ifindex of `sipshield_gen`.
#[map]
static GEN_IFINDEX: Array<u32> = Array::with_max_entries(1, 0);

/// Traffic generator for benchmarks: run with BPF_PROG_TEST_RUN + live frames, it redirects
/// every frame out of the interface in `GEN_IFINDEX`.
#[xdp]
pub fn sipshield_gen(_ctx: XdpContext) -> u32 {
    let ifindex = GEN_IFINDEX.get(0).copied().unwrap_or(0);
    unsafe { aya_ebpf::helpers::bpf_redirect(ifindex, 0) as u32 }
}

/// The program's clock parameters (`ClockParams`); `sipshield_clock` stores its probe there.
#[map]
static CLOCK: Array<ClockParams> = Array::with_max_entries(1, 0);

/// Clock calibration (run by the controller with BPF_PROG_TEST_RUN, never attached): stores
/// `bpf_jiffies64()` so the controller can relate jiffies to CLOCK_MONOTONIC.
#[xdp]
pub fn sipshield_clock(_ctx: XdpContext) -> u32 {
    if let Some(p) = CLOCK.get_ptr_mut(0) {
        unsafe { (*p).probe = bpf_jiffies64() };
    }
    xdp_action::XDP_PASS
}

/// The empty program: the baseline of per-packet cost ratios, and the XDP program that gives
/// a veth NAPI for redirected frames when a peer (nftables, iptables) is measured instead.
#[xdp]
pub fn sipshield_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
