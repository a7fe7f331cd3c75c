//! Drop and ban events on the ring buffer, sampled per CPU, and their counters.
use aya_ebpf::helpers::generated::bpf_xdp_load_bytes;
use aya_ebpf::programs::XdpContext;
use xdp_common::*;

use crate::maps::{EVENTS, EVENT_STATS, EVENT_TAT};
use crate::parse::Pkt;
use crate::verdict::Verdict;

/// Count one `EVSTAT_*` event statistic.
#[inline(always)]
pub fn evstat(idx: u32) {
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

/// Emit the event of a drop: always for a new ban, else when its reason is selected
/// (`Config::event_reasons`) and the sampler allows it.
#[inline(always)]
pub fn emit(ctx: &XdpContext, cfg: &Config, pkt: &Pkt, v: &Verdict, now: u64) {
    let new_ban = v.ban_until != 0;
    if !new_ban {
        if cfg.event_reasons & (1 << v.reason as u32) == 0 {
            return;
        }
        if !event_allowed(cfg, now) {
            evstat(EVSTAT_SUPPRESSED);
            return;
        }
    }
    // Toll fraud: the dialled number (normalised) and the rule id.
    let (num, count) =
        if v.reason == Reason::TollFraud { (crate::tollfraud::last_number(), v.tf_rule) } else { ([0u64; 3], 0) };
    // Built from words (a zero-initialised byte array would become a call to a BPF `memset`).
    let d32: [u32; 7] = [
        num[0] as u32,
        (num[0] >> 32) as u32,
        num[1] as u32,
        (num[1] >> 32) as u32,
        num[2] as u32,
        (num[2] >> 32) as u32,
        0,
    ];
    // SAFETY: [u32; 7] and [u8; 28] have the same size; byte order is little-endian as in userspace.
    let detail = unsafe { core::mem::transmute::<[u32; 7], [u8; 28]>(d32) };
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            let ev = entry.as_mut_ptr();
            // Field by field into the ring: an `Event` value (with its snapshot) built on the
            // stack would take 320 of the program's 512 stack bytes.
            unsafe {
                (*ev).ts_ns = now;
                (*ev).ban_until_ns = v.ban_until;
                (*ev).src = pkt.src;
                (*ev).ifindex = ctx.ingress_ifindex() as u32;
                (*ev).sig_id = v.sig;
                (*ev).sport = pkt.sport;
                (*ev).dport = pkt.dport;
                (*ev).reason = v.reason as u8;
                (*ev).family = pkt.family;
                (*ev).method = v.method;
                (*ev).flags = (if new_ban { EVF_NEW_BAN } else { 0 })
                    | (if cfg.flags & CFG_DRY_RUN != 0 { EVF_DRY_RUN } else { 0 });
                (*ev).country = v.country as u8;
                (*ev).proto = pkt.proto;
                (*ev)._pad = 0;
                (*ev)._pad2 = 0;
                (*ev).count = count;
                (*ev).detail = detail;
                (*ev)._pad3 = 0;
                snapshot(ctx, &mut *ev);
            }
            entry.submit(0);
            evstat(EVSTAT_EMITTED);
        }
        None => evstat(EVSTAT_RING_FULL),
    }
}

/// Copy the frame's first bytes into the event. `bpf_xdp_load_bytes` takes a length the
/// verifier must see within `1..=EVENT_SNAP`: the clamped length goes through `black_box` (LLVM
/// would drop a mask it can prove redundant) and is masked into that range.
#[inline(always)]
fn snapshot(ctx: &XdpContext, ev: &mut Event) {
    let len = ctx.data_end() - ctx.data();
    ev.pkt_len = if len > u16::MAX as usize { u16::MAX } else { len as u16 };
    ev.snap_len = 0;
    if len == 0 {
        return;
    }
    let n = if len > EVENT_SNAP { EVENT_SNAP } else { len } as u32;
    let n = ((core::hint::black_box(n) - 1) & (EVENT_SNAP as u32 - 1)) + 1;
    let copied = unsafe { bpf_xdp_load_bytes(ctx.ctx, 0, ev.snap.as_mut_ptr() as *mut _, n) };
    if copied == 0 {
        ev.snap_len = n as u16;
    }
}

/// What the egress program reports: a counted failure or enumeration miss of a peer.
pub struct AuthEvent<'a> {
    pub reason: Reason,
    /// Non-zero when this answer triggered a ban (or would have, in dry-run).
    pub ban_until: u64,
    pub ifindex: u32,
    /// Failures / distinct users counted in the window so far.
    pub count: u32,
    /// `METHOD_*` answered.
    pub method: u8,
    /// The user of the `To`, NUL-padded.
    pub user: &'a [u8; EVENT_DETAIL_LEN],
}

/// Emit the event of an authentication failure or enumeration miss counted on egress: always
/// when it bans, else when its reason is selected and the sampler allows it. `pkt.src` is the
/// peer (the destination of the answer); the ports are the peer's and the server's.
#[inline(always)]
pub fn emit_auth(cfg: &Config, pkt: &Pkt, e: &AuthEvent<'_>, now: u64) {
    let new_ban = e.ban_until != 0;
    if !new_ban {
        if cfg.event_reasons & (1 << e.reason as u32) == 0 {
            return;
        }
        if !event_allowed(cfg, now) {
            evstat(EVSTAT_SUPPRESSED);
            return;
        }
    }
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            // Field by field into the ring buffer: an `Event` built on the stack first costs 88
            // bytes of the egress program's 512.
            let ev = entry.as_mut_ptr();
            unsafe {
                (*ev).ts_ns = now;
                (*ev).ban_until_ns = e.ban_until;
                (*ev).src = pkt.src;
                (*ev).ifindex = e.ifindex;
                (*ev).sig_id = 0;
                (*ev).sport = pkt.dport;
                (*ev).dport = pkt.sport;
                (*ev).reason = e.reason as u8;
                (*ev).family = pkt.family;
                (*ev).method = e.method;
                (*ev).flags = (if new_ban { EVF_NEW_BAN } else { 0 })
                    | (if cfg.flags & CFG_DRY_RUN != 0 { EVF_DRY_RUN } else { 0 });
                (*ev).country = 0;
                (*ev).proto = pkt.proto;
                (*ev)._pad = 0;
                (*ev)._pad2 = 0;
                (*ev).count = e.count;
                // No frame: the answer is the server's, not the peer's packet.
                (*ev).pkt_len = 0;
                (*ev).snap_len = 0;
                (*ev)._pad3 = 0;
                let src = e.user as *const [u8; EVENT_DETAIL_LEN] as *const u32;
                let dst = &mut (*ev).detail as *mut [u8; EVENT_DETAIL_LEN] as *mut u32;
                let mut j = 0;
                while j < EVENT_DETAIL_LEN / 4 {
                    core::ptr::write_volatile(dst.add(j), core::ptr::read_volatile(src.add(j)));
                    j += 1;
                }
            }
            entry.submit(0);
            evstat(EVSTAT_EMITTED);
        }
        None => evstat(EVSTAT_RING_FULL),
    }
}
