//! The egress program's logic: the SIP server's own answers tell a failed authentication
//! (401/407/403 to a request recorded with credentials by `auth::record`) and extension
//! enumeration (404/484, optionally 403 without credentials, to REGISTER/INVITE/OPTIONS for
//! distinct users) apart from normal traffic. Failures and distinct users are counted per peer
//! (IPv6: per `Config::rl_v6_prefix`, the prefix bans use) in a window; reaching the threshold
//! installs a timed ban through `reputation::install_ban`, which the XDP side enforces as
//! `banned`. Nothing is ever dropped here.
// Map keys and values are passed by reference on purpose (see `reputation`).
#![allow(clippy::needless_borrows_for_generic_args)]
use aya_ebpf::{bindings::BPF_ANY, programs::TcContext};
use xdp_common::*;

use crate::auth::authstat;
use crate::events::{emit_auth, AuthEvent};
use crate::maps::{AUTH_CFG, AUTH_ENUM, AUTH_FAIL, AUTH_REQ, AUTH_SCRATCH, CONFIG, SCRATCH};
use crate::parse::{self, Parsed, Pkt, IPPROTO_TCP, IPPROTO_UDP, PEER_IS_DST};
use crate::sip::fields::{sip_fields, status_of};
use crate::sip::{is_sip_port, sip_copy_skb};
use crate::{clock, reputation};

/// Inspect one egress packet (never changes its fate).
#[inline(always)]
pub fn inspect(ctx: &TcContext) {
    let ac = match AUTH_CFG.get(0) {
        Some(a) if a.flags & (AUTH_ENABLED | AUTH_ENUM_ENABLED) != 0 => a,
        _ => return,
    };
    let cfg = match CONFIG.get(0) {
        Some(c) => c,
        None => return,
    };
    let pkt = match parse::parse::<TcContext, PEER_IS_DST>(ctx) {
        Parsed::Ip(p) => p,
        _ => return,
    };
    if !pkt.has_l4
        || !(pkt.proto == IPPROTO_UDP || (pkt.proto == IPPROTO_TCP && cfg.flags & CFG_SIP_TCP != 0))
        || !is_sip_port(cfg, pkt.sport)
    {
        return;
    }
    // Packets from the SIP port: the payload must be in the linear part to be read directly.
    if ctx.data_end() - ctx.data() < ctx.len() as usize {
        let _ = ctx.pull_data(ctx.len());
    }
    let len = sip_copy_skb(ctx.skb.skb, pkt.payload_off as u32);
    if len == 0 {
        return;
    }
    let buf = match SCRATCH.get_ptr(0) {
        Some(p) => p as *const u64,
        None => return,
    };
    let status = status_of(unsafe { *buf }, unsafe { *buf.add(1) });
    if status == 0 {
        return;
    }
    authstat(AUTHSTAT_RESPONSES);
    let enum_status = status == 404 || status == 484 || (status == 403 && ac.flags & AUTH_ENUM_403 != 0);
    if !ac.is_failure(status) && !enum_status {
        return;
    }
    if sip_fields(len) == 0 {
        return;
    }
    let f = match AUTH_SCRATCH.get(0) {
        Some(f) => f,
        None => return,
    };
    let now = clock::now(cfg);
    let mut o = Outcome { until: 0, count: 0, counted: 0, ifindex: unsafe { (*ctx.skb.skb).ifindex }, reason: 0 };
    let key = AuthReqKey { addr: pkt.src, callid: f.callid, cseq: f.cseq, family: pkt.family as u32 };
    if let Some(r) = AUTH_REQ.get_ptr_mut(&key) {
        // An answer to a credentialed request: a failure if its status says so.
        let r = unsafe { &mut *r };
        if ac.flags & AUTH_ENABLED != 0 && ac.is_failure(status) && r.state == AUTH_REQ_OPEN {
            r.state = AUTH_REQ_COUNTED;
            o.reason = Reason::AuthFail as u32;
            failure(&pkt, now, &mut o);
        }
    } else {
        if status == 401 || status == 407 {
            authstat(AUTHSTAT_CHALLENGES);
        }
        let m = f.cseq_method;
        if enum_status
            && ac.flags & AUTH_ENUM_ENABLED != 0
            && f.to_hash != 0
            && (m == METHOD_REGISTER as u32 || m == METHOD_INVITE as u32 || m == METHOD_OPTIONS as u32)
        {
            o.reason = Reason::Enumeration as u32;
            enumeration(&pkt, now, &mut o);
        }
    }
    if o.counted == 0 {
        return;
    }
    if o.until != 0 {
        if ban(&pkt, o.until) {
            authstat(if o.reason == Reason::AuthFail as u32 { AUTHSTAT_FAIL_BANS } else { AUTHSTAT_ENUM_BANS });
        } else {
            o.until = 0;
        }
    }
    report(&pkt, &o, now);
}

/// What counting an answer gave. The counting, the ban and the event are separate functions
/// called one after the other from `inspect`, not nested and not inlined: each has its own
/// stack frame, and the deepest chain stays within the 512-byte stack limit.
struct Outcome {
    /// Non-zero: the threshold was reached, ban until then.
    until: u64,
    /// Failures / distinct users in the window.
    count: u32,
    /// Non-zero when the answer was counted.
    counted: u32,
    ifindex: u32,
    /// `Reason` code.
    reason: u32,
}

/// Is the peer allowlisted? (An allowlisted peer is never counted.)
#[inline(never)]
fn allowlisted(pkt: &Pkt) -> bool {
    match CONFIG.get(0) {
        Some(cfg) => reputation::allowlisted(cfg, pkt),
        None => false,
    }
}

/// Install the ban of a peer that reached a threshold (not in dry-run); false if it failed.
#[inline(never)]
fn ban(pkt: &Pkt, until: u64) -> bool {
    let cfg = match CONFIG.get(0) {
        Some(c) => c,
        None => return false,
    };
    if cfg.flags & CFG_DRY_RUN != 0 {
        return true;
    }
    if reputation::install_ban(cfg, pkt, until) {
        true
    } else {
        authstat(AUTHSTAT_BAN_FAILED);
        false
    }
}

/// The event of a counted answer.
#[inline(never)]
fn report(pkt: &Pkt, o: &Outcome, now: u64) {
    let (Some(cfg), Some(f)) = (CONFIG.get(0), AUTH_SCRATCH.get(0)) else { return };
    let reason = if o.reason == Reason::AuthFail as u32 { Reason::AuthFail } else { Reason::Enumeration };
    let e = AuthEvent {
        reason,
        ban_until: o.until,
        ifindex: o.ifindex,
        count: o.count,
        method: f.cseq_method as u8,
        user: &f.user,
    };
    emit_auth(cfg, pkt, &e, now);
}

/// Count a failed authentication of the peer; at `ban_after` in the window, ask for a ban.
#[inline(never)]
fn failure(pkt: &Pkt, now: u64, o: &mut Outcome) {
    let (Some(cfg), Some(ac)) = (CONFIG.get(0), AUTH_CFG.get(0)) else { return };
    authstat(AUTHSTAT_FAILURES);
    if allowlisted(pkt) {
        authstat(AUTHSTAT_ALLOWLISTED);
        return;
    }
    let key = AuthSrc { addr: rl_addr(pkt.family, pkt.src, cfg.rl_v6_prefix) };
    let c = match AUTH_FAIL.get_ptr_mut(&key) {
        Some(c) => unsafe { &mut *c },
        None => {
            let fresh = AuthCount { window_start: now, count: 0, _pad: 0 };
            if AUTH_FAIL.insert(&key, &fresh, BPF_ANY as u64).is_err() {
                return;
            }
            match AUTH_FAIL.get_ptr_mut(&key) {
                Some(c) => unsafe { &mut *c },
                None => return,
            }
        }
    };
    if now.wrapping_sub(c.window_start) > ac.window_ns {
        c.window_start = now;
        c.count = 0;
    }
    c.count += 1;
    o.count = c.count;
    o.counted = 1;
    if ac.ban_after != 0 && c.count >= ac.ban_after {
        c.count = 0;
        c.window_start = now;
        o.until = now + ac.ban_ttl_ns;
    }
}

/// Count a 404/484 for a user not seen yet in the peer's window; at `enum_distinct`, ask for
/// a ban.
#[inline(never)]
fn enumeration(pkt: &Pkt, now: u64, o: &mut Outcome) {
    let (Some(cfg), Some(ac), Some(f)) = (CONFIG.get(0), AUTH_CFG.get(0), AUTH_SCRATCH.get(0)) else { return };
    if allowlisted(pkt) {
        authstat(AUTHSTAT_ALLOWLISTED);
        return;
    }
    let key = AuthSrc { addr: rl_addr(pkt.family, pkt.src, cfg.rl_v6_prefix) };
    let e = match AUTH_ENUM.get_ptr_mut(&key) {
        Some(e) => unsafe { &mut *e },
        None => {
            let fresh = EnumState { window_start: now, distinct: 0, _pad: 0, bloom: [0; ENUM_BLOOM_WORDS] };
            if AUTH_ENUM.insert(&key, &fresh, BPF_ANY as u64).is_err() {
                return;
            }
            match AUTH_ENUM.get_ptr_mut(&key) {
                Some(e) => unsafe { &mut *e },
                None => return,
            }
        }
    };
    if now.wrapping_sub(e.window_start) > ac.enum_window_ns {
        e.window_start = now;
        e.distinct = 0;
        clear_bloom(e);
    }
    let (w, bit) = enum_bit(f.to_hash);
    let word = &mut e.bloom[w & (ENUM_BLOOM_WORDS - 1)];
    if *word & bit != 0 {
        return; // this user was counted already in the window
    }
    *word |= bit;
    e.distinct += 1;
    authstat(AUTHSTAT_ENUM_MISSES);
    o.count = e.distinct;
    o.counted = 1;
    if ac.enum_distinct != 0 && e.distinct >= ac.enum_distinct {
        e.distinct = 0;
        e.window_start = now;
        clear_bloom(e);
        o.until = now + ac.ban_ttl_ns;
    }
}

#[inline(always)]
fn clear_bloom(e: &mut EnumState) {
    let mut i = 0;
    while i < ENUM_BLOOM_WORDS {
        // Volatile: LLVM would merge the stores into a call to a BPF `memset`.
        unsafe { core::ptr::write_volatile(&mut e.bloom[i], 0) };
        i += 1;
    }
}
