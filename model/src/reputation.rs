//! Source reputation, as the kernel's `reputation.rs` decides it: the allowlist, timed bans
//! (with expiry on the program clock; IPv6 bans on the address or on its rate-limit prefix)
//! and the blacklist (exact addresses and ranges).
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use xdp_common::{mask_prefix6, FAMILY_V4};

use crate::parse::Pkt;
use crate::{AddrSet, Policy};

/// The source address of a parsed packet.
pub fn source(pkt: &Pkt) -> IpAddr {
    if pkt.family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(pkt.src))
    }
}

impl AddrSet {
    /// Is `ip` in one of the ranges (an address is a /32 or /128 range)?
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

pub fn allowlisted(p: &Policy, pkt: &Pkt) -> bool {
    p.allowlist.contains(source(pkt))
}

pub fn blacklisted(p: &Policy, pkt: &Pkt) -> bool {
    p.blacklist.contains(source(pkt))
}

/// Timed bans: (address masked to `prefix`, prefix) → expiry (program clock). IPv4 bans are
/// whole addresses (prefix 32).
#[derive(Clone, Debug, Default)]
pub struct Bans {
    pub v4: HashMap<[u8; 4], u64>,
    pub v6: HashMap<([u8; 16], u32), u64>,
}

/// The IPv6 prefix of a ban the rate limiter installs (the rate-limit key; out-of-range
/// values mean the whole address).
fn ban_prefix6(p: &Policy) -> u32 {
    if p.rl_v6_prefix == 0 || p.rl_v6_prefix > 128 {
        128
    } else {
        p.rl_v6_prefix
    }
}

impl Bans {
    /// Is there a ban on the source (IPv6: on the address, or on its rate-limit prefix) that
    /// has not expired at `now`? A ban expires at its `until` instant.
    pub fn banned(&self, p: &Policy, pkt: &Pkt, now: u64) -> bool {
        let live = |until: Option<&u64>| until.is_some_and(|u| *u > now);
        if pkt.family == FAMILY_V4 {
            return live(self.v4.get(&[pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]]));
        }
        if live(self.v6.get(&(pkt.src, 128))) {
            return true;
        }
        let pre = p.rl_v6_prefix;
        pre != 0 && pre < 128 && live(self.v6.get(&(mask_prefix6(pkt.src, pre), pre)))
    }

    /// Ban the source until `until` (replacing an older ban of the same key).
    pub fn install(&mut self, p: &Policy, pkt: &Pkt, until: u64) {
        if pkt.family == FAMILY_V4 {
            self.v4.insert([pkt.src[0], pkt.src[1], pkt.src[2], pkt.src[3]], until);
        } else {
            let pre = ban_prefix6(p);
            self.v6.insert((mask_prefix6(pkt.src, pre), pre), until);
        }
    }
}
