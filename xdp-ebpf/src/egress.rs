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
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    let key = AuthReqKey { addr: pkt.src, callid: f.callid, cseq: f.cseq, family: pkt.family as u32 };
    if let Some(r) = AUTH_REQ.get_ptr_mut(&key) {
        // An answer to a credentialed request: a failure if its status says so.
        let r = unsafe { &mut *r };
        if ac.flags & AUTH_ENABLED != 0 && ac.is_failure(status) && r.state == AUTH_REQ_OPEN {
            r.state = AUTH_REQ_COUNTED;
            failure(cfg, ac, &pkt, f, ifindex, now);
        }
        return;
    }
    if status == 401 || status == 407 {
        authstat(AUTHSTAT_CHALLENGES);
    }
    let m = f.cseq_method;
    if enum_status
        && ac.flags & AUTH_ENUM_ENABLED != 0
        && f.to_hash != 0
        && (m == METHOD_REGISTER as u32 || m == METHOD_INVITE as u32 || m == METHOD_OPTIONS as u32)
    {
        enumeration(cfg, ac, &pkt, f, ifindex, now);
    }
}

/// Install the ban of a peer that reached a threshold (not in dry-run); false if it failed.
#[inline(always)]
fn ban(cfg: &Config, pkt: &Pkt, until: u64) -> bool {
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

/// Count a failed authentication of the peer; ban it at `ban_after` in the window.
#[inline(always)]
fn failure(cfg: &Config, ac: &AuthConfig, pkt: &Pkt, f: &SipFields, ifindex: u32, now: u64) {
    authstat(AUTHSTAT_FAILURES);
    if reputation::allowlisted(cfg, pkt) {
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
    let count = c.count;
    let mut until = 0;
    if ac.ban_after != 0 && count >= ac.ban_after {
        c.count = 0;
        c.window_start = now;
        until = now + ac.ban_ttl_ns;
        if ban(cfg, pkt, until) {
            authstat(AUTHSTAT_FAIL_BANS);
        } else {
            until = 0;
        }
    }
    let e = AuthEvent {
        reason: Reason::AuthFail,
        ban_until: until,
        ifindex,
        count,
        method: f.cseq_method as u8,
        user: &f.user,
    };
    emit_auth(cfg, pkt, &e, now);
}

/// Count a 404/484 for a user not seen yet in the peer's window; ban at `enum_distinct`.
#[inline(always)]
fn enumeration(cfg: &Config, ac: &AuthConfig, pkt: &Pkt, f: &SipFields, ifindex: u32, now: u64) {
    if reputation::allowlisted(cfg, pkt) {
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
        let mut i = 0;
        while i < ENUM_BLOOM_WORDS {
            unsafe { core::ptr::write_volatile(&mut e.bloom[i], 0) };
            i += 1;
        }
    }
    let (w, bit) = enum_bit(f.to_hash);
    let word = &mut e.bloom[w & (ENUM_BLOOM_WORDS - 1)];
    if *word & bit != 0 {
        return; // this user was counted already in the window
    }
    *word |= bit;
    e.distinct += 1;
    authstat(AUTHSTAT_ENUM_MISSES);
    let count = e.distinct;
    let mut until = 0;
    if ac.enum_distinct != 0 && count >= ac.enum_distinct {
        e.distinct = 0;
        e.window_start = now;
        let mut i = 0;
        while i < ENUM_BLOOM_WORDS {
            unsafe { core::ptr::write_volatile(&mut e.bloom[i], 0) };
            i += 1;
        }
        until = now + ac.ban_ttl_ns;
        if ban(cfg, pkt, until) {
            authstat(AUTHSTAT_ENUM_BANS);
        } else {
            until = 0;
        }
    }
    let ev = AuthEvent {
        reason: Reason::Enumeration,
        ban_until: until,
        ifindex,
        count,
        method: f.cseq_method as u8,
        user: &f.user,
    };
    emit_auth(cfg, pkt, &ev, now);
}
