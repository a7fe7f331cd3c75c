//! The decision, in the kernel's order (`xdp-ebpf/src/verdict.rs` `decide`): allowlist, ban,
//! blacklist, GeoIP, malformed L4, then for packets to a SIP port the scanner signatures and
//! the rate limits; and the exit (`judge` + `exit`): a new ban is installed unless dry-run,
//! and a drop is an `XDP_DROP` unless dry-run. Each later check is one more step of
//! [`decide`], at the place it takes in the kernel.
use xdp_common::{Reason, METHOD_NONE, METHOD_RESPONSE};

use crate::parse::{self, Parsed, Pkt, IPPROTO_TCP, IPPROTO_UDP};
use crate::ratelimit::RateVerdict;
use crate::{geo, reputation, sip, Policy, State};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

/// The model's verdict on one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Outcome {
    pub action: Action,
    pub reason: Reason,
    /// `METHOD_*` of an inspected SIP message (0 when not inspected).
    pub method: u8,
    /// Signature id of a scanner drop.
    pub sig: Option<usize>,
    /// Country index of a GeoIP drop.
    pub country: u8,
    /// Expiry of the ban this packet triggered (installed unless dry-run).
    pub ban_until: Option<u64>,
}

/// The decision before the exit: the reason and whether it drops.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub reason: Reason,
    pub drop: bool,
    pub method: u8,
    pub sig: Option<usize>,
    pub country: u8,
    pub ban_until: Option<u64>,
}

impl Decision {
    fn new(reason: Reason, drop: bool) -> Decision {
        Decision { reason, drop, method: METHOD_NONE, sig: None, country: 0, ban_until: None }
    }
}

/// Does the packet go to a protected SIP port over an inspected transport?
pub fn to_sip_port(p: &Policy, pkt: &Pkt) -> bool {
    pkt.has_l4
        && (pkt.proto == IPPROTO_UDP || (pkt.proto == IPPROTO_TCP && p.sip_tcp))
        && sip::is_sip_port(p, pkt.dport)
}

/// Decide the fate of an IP packet; the first rule that matches wins.
pub fn decide(p: &Policy, st: &mut State, frame: &[u8], pkt: &Pkt, now: u64) -> Decision {
    if reputation::allowlisted(p, pkt) {
        return Decision::new(Reason::Allowlisted, false);
    }
    if st.bans.banned(p, pkt, now) {
        return Decision::new(Reason::Banned, true);
    }
    if reputation::blacklisted(p, pkt) {
        return Decision::new(Reason::Blacklisted, true);
    }
    let sip_port = to_sip_port(p, pkt);
    if let Some(c) = geo::denied(p.geo.as_ref(), pkt, sip_port) {
        return Decision { country: c, ..Decision::new(Reason::Geo, true) };
    }
    if pkt.l4_malformed {
        return Decision::new(Reason::Malformed, p.drop_malformed);
    }
    let ratelimit = !p.rules.is_empty();
    if sip_port && (p.scanners_enabled || ratelimit) {
        let r = sip::inspect(p, frame, pkt);
        if r.sig.is_some() {
            return Decision { method: r.method, sig: r.sig, ..Decision::new(Reason::Scanner, true) };
        }
        if ratelimit && r.method != METHOD_NONE && r.method != METHOD_RESPONSE {
            if let RateVerdict::Excess { ban_until } = st.rate.check(p, pkt, r.method, now) {
                return Decision { method: r.method, ban_until, ..Decision::new(Reason::RateLimit, true) };
            }
        }
        return Decision { method: r.method, ..Decision::new(Reason::Pass, false) };
    }
    Decision::new(Reason::Pass, false)
}

/// Parse, decide, act: install a triggered ban (unless dry-run) and turn the decision into
/// an action (dry-run passes everything, counting the reason it would have dropped for).
pub fn run(p: &Policy, st: &mut State, frame: &[u8], now: u64) -> Outcome {
    let d = match parse::parse(frame) {
        Parsed::NotIp => Decision::new(Reason::Pass, false),
        Parsed::Malformed => Decision::new(Reason::Malformed, p.drop_malformed),
        Parsed::Ip(pkt) => {
            let d = decide(p, st, frame, &pkt, now);
            if let (Some(until), false) = (d.ban_until, p.dry_run) {
                st.bans.install(p, &pkt, until);
                st.bans_installed += 1;
            }
            d
        }
    };
    Outcome {
        action: if d.drop && !p.dry_run { Action::Drop } else { Action::Pass },
        reason: d.reason,
        method: d.method,
        sig: d.sig,
        country: d.country,
        ban_until: d.ban_until,
    }
}
