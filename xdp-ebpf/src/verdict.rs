//! The decision (allowlist, ban, blacklist, port rule sources, GeoIP, malformed, SIP scanner,
//! port rule methods, toll fraud, SIP rate limits, in that order) and the single exit that
//! counts every packet once, per interface slot and reason.
use aya_ebpf::{bindings::xdp_action, programs::XdpContext};
use xdp_common::*;

use crate::events::{self, evstat};
use crate::maps::{IFACE_SLOT, STATS, TF_HITS};
use crate::parse::{Pkt, IPPROTO_TCP, IPPROTO_UDP};
use crate::ratelimit::{self, RateVerdict};
use crate::{auth, geo, port, reputation, sip, tollfraud};

pub struct Verdict {
    pub reason: Reason,
    pub drop: bool,
    /// `METHOD_*` of a SIP request (0 when not inspected).
    pub method: u8,
    /// Signature id of a scanner drop.
    pub sig: u32,
    /// Country index of a GeoIP drop.
    pub country: u32,
    /// Non-zero when this packet triggered a new ban: its expiry.
    pub ban_until: u64,
    /// Rule id of a toll-fraud drop (`TF_HITS` index).
    pub tf_rule: u32,
}

/// Decide the fate of an IP packet; the first rule that matches wins.
///
/// Order and why: the allowlist passes everything; bans and the blacklist are known-bad
/// sources whatever the port; then the `[[port]]` rule of the destination (its source groups,
/// then its countries): a trusted-only port drops strangers as `port` before the global GeoIP
/// and SIP checks spend anything on them; then the global GeoIP; then, for SIP requests, the
/// scanner signatures (the most specific diagnosis), the rule's methods (`method`), the
/// toll-fraud guard on INVITE/MESSAGE, and last the rate limits, so a request dropped for
/// another reason never consumes a rate-limit token.
#[inline(always)]
fn decide(ctx: &XdpContext, cfg: &Config, pkt: &Pkt, now: u64) -> Verdict {
    let mut v = Verdict { reason: Reason::Pass, drop: false, method: 0, sig: 0, country: 0, ban_until: 0, tf_rule: 0 };
    if reputation::allowlisted(cfg, pkt) {
        v.reason = Reason::Allowlisted;
        return v;
    }
    v.drop = true;
    if reputation::banned(cfg, pkt, now) {
        v.reason = Reason::Banned;
        return v;
    }
    if reputation::blacklisted(cfg, pkt) {
        v.reason = Reason::Blacklisted;
        return v;
    }
    let rule = port::rule_of(cfg, pkt);
    let mut groups = 0;
    if let Some(r) = rule {
        if r.allow | r.known != 0 {
            groups = port::groups_of(cfg, pkt);
        }
        if r.allow != 0 && groups & r.allow == 0 {
            v.reason = Reason::Port;
            return v;
        }
        if r.flags & PR_COUNTRIES != 0 {
            let c = geo::country_of(cfg, pkt);
            if r.country_denied(c) {
                v.reason = Reason::Geo;
                v.country = c;
                return v;
            }
        }
    }
    let sip_port = pkt.has_l4
        && (pkt.proto == IPPROTO_UDP || (pkt.proto == IPPROTO_TCP && cfg.flags & CFG_SIP_TCP != 0))
        && sip::is_sip_port(cfg, pkt.dport);
    if let Some(country) = geo::denied(cfg, pkt, sip_port) {
        v.reason = Reason::Geo;
        v.country = country;
        return v;
    }
    if pkt.l4_malformed {
        v.reason = Reason::Malformed;
        v.drop = cfg.flags & CFG_DROP_MALFORMED != 0;
        return v;
    }
    let rule_needs_method = match rule {
        Some(r) => port::needs_method(r),
        None => false,
    };
    if sip_port
        && (cfg.flags & (CFG_SCANNERS_ENABLED | CFG_RATELIMIT_ENABLED | CFG_TOLLFRAUD | CFG_AUTH_RECORD) != 0
            || rule_needs_method)
    {
        let r = sip::inspect(ctx, pkt);
        v.method = r.method;
        if r.sig != 0 {
            v.reason = Reason::Scanner;
            v.sig = r.sig - 1;
            return v;
        }
        if let Some(rl) = rule {
            if port::method_denied(rl, r.method, groups) {
                v.reason = Reason::Method;
                return v;
            }
        }
        if cfg.flags & CFG_TOLLFRAUD != 0 && (r.method == METHOD_INVITE || r.method == METHOD_MESSAGE) {
            let hit = tollfraud::tf_check(r.method as u32, cfg.policy_gen);
            if hit != 0 {
                v.reason = Reason::TollFraud;
                v.tf_rule = (hit - 1) as u32;
                return v;
            }
        }
        if cfg.flags & CFG_RATELIMIT_ENABLED != 0 && r.method != METHOD_NONE && r.method != METHOD_RESPONSE {
            if let RateVerdict::Excess { ban_until } = ratelimit::check(cfg, pkt, r.method, now) {
                v.reason = Reason::RateLimit;
                v.ban_until = ban_until;
                return v;
            }
        }
        if cfg.flags & CFG_AUTH_RECORD != 0 {
            auth::record(pkt, r.method, r.len, now);
        }
    }
    v.drop = false;
    v
}

/// Decide, then act on the decision: install a new ban (unless dry-run), emit the event of a
/// drop, count a GeoIP drop per country. Returns (reason, drop).
#[inline(always)]
pub fn judge(ctx: &XdpContext, cfg: &Config, pkt: &Pkt, now: u64) -> (Reason, bool) {
    let mut v = decide(ctx, cfg, pkt, now);
    if v.ban_until != 0 {
        if cfg.flags & CFG_DRY_RUN == 0 && reputation::install_ban(cfg, pkt, v.ban_until) {
            evstat(EVSTAT_BANS);
        } else if cfg.flags & CFG_DRY_RUN == 0 {
            evstat(EVSTAT_BAN_FAILED);
            v.ban_until = 0;
        }
    }
    if v.drop {
        events::emit(ctx, cfg, pkt, &v, now);
        if v.reason == Reason::Geo {
            geo::count_drop(v.country, frame_bytes(ctx));
        } else if v.reason == Reason::TollFraud {
            bump(TF_HITS.get_ptr_mut(v.tf_rule % TF_RULES_MAX), frame_bytes(ctx));
        }
    }
    (v.reason, v.drop)
}

/// Add one packet of `bytes` to a counter.
#[inline(always)]
pub fn bump(counter: Option<*mut Counter>, bytes: u64) {
    if let Some(c) = counter {
        unsafe {
            (*c).packets += 1;
            (*c).bytes += bytes;
        }
    }
}

#[inline(always)]
fn frame_bytes(ctx: &XdpContext) -> u64 {
    (ctx.data_end() - ctx.data()) as u64
}

/// The single exit: count the packet once under its interface slot and reason, then drop it
/// or pass it (`dry_run` counts the reason but passes).
#[inline(always)]
pub fn exit(ctx: &XdpContext, cfg: &Config, reason: Reason, drop: bool) -> u32 {
    let ifindex = ctx.ingress_ifindex() as u32;
    let slot = if ifindex < MAX_IFINDEX { IFACE_SLOT.get(ifindex).copied().unwrap_or(0) % MAX_IFACE_SLOTS } else { 0 };
    bump(STATS.get_ptr_mut(slot * REASON_SLOTS + reason as u32), frame_bytes(ctx));
    if drop && cfg.flags & CFG_DRY_RUN == 0 {
        xdp_action::XDP_DROP
    } else {
        xdp_action::XDP_PASS
    }
}
