//! Per-port policy (`[[port]]` rules): the rule of the destination port and protocol (one array
//! read), the source groups of the source (group maps of the live policy generation), and the
//! SIP methods a rule accepts. Rule and group tables switch with `Config::policy_gen`.
// Map keys are passed by reference on purpose (see `reputation.rs`).
#![allow(clippy::needless_borrows_for_generic_args)]
use aya_ebpf::maps::{lpm_trie::Key, LpmTrie};
use xdp_common::*;

use crate::maps::*;
use crate::parse::{Pkt, IPPROTO_TCP, IPPROTO_UDP};

/// The rule of the packet's destination port and protocol in the live policy generation, if
/// rules are active and one covers it. Later fragments (no L4 header) have no port: no rule.
#[inline(always)]
pub fn rule_of(cfg: &Config, pkt: &Pkt) -> Option<&'static PortRule> {
    if cfg.flags & CFG_PORT_RULES == 0 || !pkt.has_l4 {
        return None;
    }
    let tcp = pkt.proto == IPPROTO_TCP;
    if !tcp && pkt.proto != IPPROTO_UDP {
        return None;
    }
    let gen1 = cfg.policy_gen & 1 != 0;
    let v = if gen1 { PORT_RULE_1.get(pkt.dport as u32) } else { PORT_RULE_0.get(pkt.dport as u32) };
    let id = port_rule_id(*v?, tcp);
    if id == 0 {
        return None;
    }
    if gen1 {
        PORT_DEF_1.get(id)
    } else {
        PORT_DEF_0.get(id)
    }
}

/// Group bits of the source in one generation's maps (structures without entries are skipped).
#[inline(always)]
fn groups_in(present: u32, pkt: &Pkt, n4: &LpmTrie<[u8; 4], u32>, n6: &LpmTrie<[u8; 16], u32>) -> u32 {
    let found = if pkt.family == FAMILY_V4 {
        if present & GRP_PRESENT_NET4 == 0 {
            return 0;
        }
        n4.get(Key::new(32, pkt.v4()))
    } else {
        if present & GRP_PRESENT_NET6 == 0 {
            return 0;
        }
        n6.get(Key::new(128, pkt.src))
    };
    found.copied().unwrap_or(0)
}

/// Bits of the groups the source belongs to, in the live policy generation.
#[inline(always)]
pub fn groups_of(cfg: &Config, pkt: &Pkt) -> u32 {
    if cfg.policy_gen & 1 == 0 {
        let present = PORT_DEF_0.get(0).map(|h| h.present).unwrap_or(0);
        groups_in(present, pkt, &GRP_NET4_0, &GRP_NET6_0)
    } else {
        let present = PORT_DEF_1.get(0).map(|h| h.present).unwrap_or(0);
        groups_in(present, pkt, &GRP_NET4_1, &GRP_NET6_1)
    }
}

/// Does the rule refuse this SIP request method from a source in `groups`? Not-requests
/// (responses, non-SIP payload) are never refused here.
#[inline(always)]
pub fn method_denied(rule: &PortRule, method: u8, groups: u32) -> bool {
    if method == METHOD_NONE || method == METHOD_RESPONSE {
        return false;
    }
    if rule.methods != 0 && (rule.methods >> (method as u32 & 31)) & 1 == 0 {
        return true;
    }
    method == METHOD_OPTIONS && rule.flags & PR_UNKNOWN_OPTIONS_DROP != 0 && groups & rule.known == 0
}

/// Does the rule need the SIP method (method list or unknown-OPTIONS policy)?
#[inline(always)]
pub fn needs_method(rule: &PortRule) -> bool {
    rule.methods != 0 || rule.flags & PR_UNKNOWN_OPTIONS_DROP != 0
}
