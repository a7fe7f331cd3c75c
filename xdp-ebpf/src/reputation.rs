//! Source reputation: the allowlist, timed bans and the blacklist (each list in two
//! generations, the live one named by the config).
// Map keys and values are passed by reference on purpose: passed by value (as clippy
// suggests), they are copied to new stack slots first and the program grows by a quarter.
#![allow(clippy::needless_borrows_for_generic_args)]
use aya_ebpf::maps::{lpm_trie::Key, Array, HashMap, LpmTrie};
use xdp_common::*;

use crate::maps::*;
use crate::parse::Pkt;

/// Is the source in one of the allowlist structures (empty ones are skipped)?
#[inline(always)]
fn in_set(
    cfg: &Config,
    pkt: &Pkt,
    e4: &HashMap<[u8; 4], u32>,
    n4: &LpmTrie<[u8; 4], u32>,
    e6: &HashMap<[u8; 16], u32>,
    n6: &LpmTrie<[u8; 16], u32>,
) -> bool {
    let p = cfg.present;
    if pkt.family == FAMILY_V4 {
        let a = pkt.v4();
        (p & PRESENT_AL_V4 != 0 && unsafe { e4.get(&a) }.is_some())
            || (p & PRESENT_AL_NET4 != 0 && n4.get(Key::new(32, a)).is_some())
    } else {
        (p & PRESENT_AL_V6 != 0 && unsafe { e6.get(&pkt.src) }.is_some())
            || (p & PRESENT_AL_NET6 != 0 && n6.get(Key::new(128, pkt.src)).is_some())
    }
}

/// Is the source on the live allowlist (`Config::allowlist_gen`)?
#[inline(always)]
pub fn allowlisted(cfg: &Config, pkt: &Pkt) -> bool {
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

/// Can `a` be on the IPv4 part of the list? With a complete bitmap (`PRESENT_BL_BM4`), a clear
/// /24 bit rules out the table, the overflow hash and the range trie with one array read: the
/// common case of a legitimate source. Without one (a generation filled by an earlier build),
/// every structure is looked up.
#[inline(always)]
fn may_be_listed4(cfg: &Config, bm: &Array<u64>, a: [u8; 4]) -> bool {
    if cfg.present & PRESENT_BL_BM4 == 0 {
        return true;
    }
    let (word, bit) = bl4_bitmap_pos(a);
    match bm.get(word) {
        Some(w) => *w & bit != 0,
        None => true,
    }
}

#[inline(always)]
#[allow(clippy::too_many_arguments)] // one generation's maps, as statics: no struct of references
fn blacklisted_in(
    cfg: &Config,
    pkt: &Pkt,
    tab: &Array<Bucket4>,
    bm: &Array<u64>,
    e4: &HashMap<[u8; 4], u32>,
    n4: &LpmTrie<[u8; 4], u32>,
    e6: &HashMap<[u8; 16], u32>,
    n6: &LpmTrie<[u8; 16], u32>,
) -> bool {
    if pkt.family == FAMILY_V4 {
        let a = pkt.v4();
        if cfg.bl4_table == 0 && cfg.bl4_overflow == 0 && cfg.present & PRESENT_BL_NET4 == 0 {
            return false;
        }
        if !may_be_listed4(cfg, bm, a) {
            return false;
        }
        (cfg.bl4_table != 0 && in_tab4(tab, u32::from_ne_bytes(a)))
            || (cfg.bl4_overflow != 0 && unsafe { e4.get(&a) }.is_some())
            || (cfg.present & PRESENT_BL_NET4 != 0 && n4.get(Key::new(32, a)).is_some())
    } else {
        (cfg.present & PRESENT_BL_V6 != 0 && unsafe { e6.get(&pkt.src) }.is_some())
            || (cfg.present & PRESENT_BL_NET6 != 0 && n6.get(Key::new(128, pkt.src)).is_some())
    }
}

/// Is the source on the live blacklist (`Config::blacklist_gen`)?
#[inline(always)]
pub fn blacklisted(cfg: &Config, pkt: &Pkt) -> bool {
    if cfg.blacklist_gen == 0 {
        blacklisted_in(cfg, pkt, &BL_TAB4_0, &BL_BM4_0, &BL_V4_0, &BL_NET4_0, &BL_V6_0, &BL_NET6_0)
    } else {
        blacklisted_in(cfg, pkt, &BL_TAB4_1, &BL_BM4_1, &BL_V4_1, &BL_NET4_1, &BL_V6_1, &BL_NET6_1)
    }
}

/// Does the source (IPv6: the address, or its rate-limit prefix) have a ban that has not
/// expired at `now`? An empty ban map (`BAN_PRESENT` flag clear) is not looked up.
#[inline(always)]
pub fn banned(cfg: &Config, pkt: &Pkt, now: u64) -> bool {
    let idx = if pkt.family == FAMILY_V4 { BAN_PRESENT_V4 } else { BAN_PRESENT_V6 };
    match BAN_PRESENT.get(idx) {
        Some(p) if *p != 0 => {}
        _ => return false,
    }
    if pkt.family == FAMILY_V4 {
        if let Some(until) = unsafe { BANS_V4.get(&pkt.v4()) } {
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

/// Ban the source (IPv6: its rate-limit prefix) until `until`; false if the insert failed.
#[inline(always)]
pub fn install_ban(cfg: &Config, pkt: &Pkt, until: u64) -> bool {
    let (r, idx) = if pkt.family == FAMILY_V4 {
        (BANS_V4.insert(&pkt.v4(), &until, 0), BAN_PRESENT_V4)
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
