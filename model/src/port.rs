//! Per-port policy, as the kernel's `port.rs` decides it: the rule of the destination port and
//! protocol (UDP/TCP packets with a parsed L4 header), whether the source is in one of the
//! rule's groups, the countries the rule drops, and the SIP methods it accepts.
use std::collections::BTreeSet;

use xdp_common::{METHOD_NONE, METHOD_OPTIONS, METHOD_RESPONSE};

use crate::parse::{Pkt, IPPROTO_TCP, IPPROTO_UDP};
use crate::reputation::source;
use crate::{AddrSet, Policy};

/// One `[[port]]` rule in semantic form.
#[derive(Clone, Debug, Default)]
pub struct PortRule {
    pub udp: BTreeSet<u16>,
    pub tcp: BTreeSet<u16>,
    /// Indexes (into `Policy::groups`) of the groups that may reach the ports; empty: anyone.
    pub allow: Vec<usize>,
    /// Groups whose OPTIONS pass with `unknown_options_drop` (besides `allow`).
    pub known: Vec<usize>,
    /// `METHOD_*` codes accepted; empty: every method.
    pub methods: BTreeSet<u8>,
    pub unknown_options_drop: bool,
    /// Country indexes dropped at these ports (0: not in the database).
    pub countries_drop: Option<BTreeSet<u8>>,
}

/// The rule of the packet's destination, if any.
pub fn rule_of<'p>(p: &'p Policy, pkt: &Pkt) -> Option<&'p PortRule> {
    if !pkt.has_l4 {
        return None;
    }
    let tcp = match pkt.proto {
        IPPROTO_TCP => true,
        IPPROTO_UDP => false,
        _ => return None,
    };
    p.port_rules.iter().find(|r| if tcp { &r.tcp } else { &r.udp }.contains(&pkt.dport))
}

fn in_any(groups: &[AddrSet], which: &[usize], pkt: &Pkt) -> bool {
    let ip = source(pkt);
    which.iter().any(|g| groups.get(*g).is_some_and(|s| s.contains(ip)))
}

/// The source is not in any of the rule's `allow` groups.
pub fn source_denied(p: &Policy, r: &PortRule, pkt: &Pkt) -> bool {
    !r.allow.is_empty() && !in_any(&p.groups, &r.allow, pkt)
}

/// The country index when the rule's countries drop the source.
pub fn country_denied(p: &Policy, r: &PortRule, pkt: &Pkt) -> Option<u8> {
    let drop = r.countries_drop.as_ref()?;
    let c = p.geo.as_ref().map_or(0, |g| g.country_of(source(pkt)));
    drop.contains(&c).then_some(c)
}

/// Does the rule refuse this request method (or this OPTIONS from an unknown source)?
pub fn method_denied(p: &Policy, r: &PortRule, method: u8, pkt: &Pkt) -> bool {
    if method == METHOD_NONE || method == METHOD_RESPONSE {
        return false;
    }
    if !r.methods.is_empty() && !r.methods.contains(&method) {
        return true;
    }
    method == METHOD_OPTIONS
        && r.unknown_options_drop
        && !in_any(&p.groups, &r.allow, pkt)
        && !in_any(&p.groups, &r.known, pkt)
}

/// Does the rule need the request method?
pub fn needs_method(r: &PortRule) -> bool {
    !r.methods.is_empty() || r.unknown_options_drop
}
