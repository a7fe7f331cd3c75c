//! GeoIP: the country of the source in the live generation (`Config::geo_gen`) and its policy.
use aya_ebpf::maps::lpm_trie::Key;
use xdp_common::*;

use crate::maps::*;
use crate::parse::Pkt;

/// Country index of the source in the active GeoIP generation (0 = unknown). IPv4: one byte
/// per /24 in a flat table, a trie only for the /24s that longer networks split.
#[inline(always)]
pub fn country_of(cfg: &Config, pkt: &Pkt) -> u32 {
    if pkt.family == FAMILY_V4 {
        let a = pkt.v4();
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

/// The country index when the GeoIP policy drops this packet (GeoIP enabled and in scope:
/// every packet with `scope = "all"`, else only packets to a SIP port).
#[inline(always)]
pub fn denied(cfg: &Config, pkt: &Pkt, sip_port: bool) -> Option<u32> {
    if cfg.flags & CFG_GEO_ENABLED == 0 || (cfg.flags & CFG_GEO_SCOPE_ALL == 0 && !sip_port) {
        return None;
    }
    let c = country_of(cfg, pkt);
    let idx = cfg.geo_gen * GEO_COUNTRIES + (c & 0xff);
    match GEO_POLICY.get(idx) {
        Some(p) if *p != 0 => Some(c),
        _ => None,
    }
}

/// Count a GeoIP drop under its country.
#[inline(always)]
pub fn count_drop(country: u32, bytes: u64) {
    crate::verdict::bump(GEO_DROPS.get_ptr_mut(country & 0xff), bytes);
}
