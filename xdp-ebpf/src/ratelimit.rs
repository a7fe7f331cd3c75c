//! SIP rate limits: GCRA token buckets per (source, method) in a set-associative table
//! (`RL_TABLE`), rules by method slot in the live policy generation (`Config::policy_gen`).
use xdp_common::*;

use crate::maps::{RL_RULES, RL_RULES_1, RL_SEED, RL_TABLE};
use crate::parse::Pkt;

/// Outcome of the rate limits for one request.
pub enum RateVerdict {
    /// Within the limits.
    Conforms,
    /// Over a limit; `ban_until` != 0 when this packet triggered a new ban.
    Excess { ban_until: u64 },
}

/// The rule of `slot` (a `METHOD_*` code) in the live policy generation, if enabled.
#[inline(always)]
fn rule(cfg: &Config, slot: u8) -> Option<&'static RateRule> {
    let r = if cfg.policy_gen & 1 == 0 { RL_RULES.get(slot as u32) } else { RL_RULES_1.get(slot as u32) };
    match r {
        Some(r) if r.interval_ns != 0 => Some(r),
        _ => None,
    }
}

/// Apply the rule of `method`, then the `ANY` rule, to the source of `pkt`.
#[inline(always)]
pub fn check(cfg: &Config, pkt: &Pkt, method: u8, now: u64) -> RateVerdict {
    let addr = rl_addr(pkt.family, pkt.src, cfg.rl_v6_prefix);
    let seed = RL_SEED.get(0).copied().unwrap_or(0);
    for slot in [method, METHOD_ANY] {
        if let Some(rule) = rule(cfg, slot) {
            let (excess, ban_until) = rate_check(rule, addr, rl_tag(pkt.family, slot), seed, now);
            if excess {
                return RateVerdict::Excess { ban_until };
            }
        }
    }
    RateVerdict::Conforms
}

/// GCRA rate limit for one rule on the bucket of (`addr`, `tag`) in `RL_TABLE`. Returns
/// (excess, ban_until) where ban_until != 0 when this packet triggered a new ban.
///
/// The set is one array element (an inline lookup, no helper call); its buckets are compared
/// in turn. A new bucket takes, in order of preference, an unused slot, a slot that remembers
/// nothing (bucket full again, no excess counted), a slot without excess, and only then one
/// counting excess in its current window; the least recently seen within the class. Updates
/// are not atomic: a CPU that found its bucket in the same instant another CPU evicted it may
/// write that one packet's update into the new owner's bucket (a packet-scale race on one
/// set; a new key is published only after its bucket is filled).
#[inline(always)]
fn rate_check(rule: &RateRule, addr: [u64; 2], tag: u32, seed: u64, now: u64) -> (bool, u64) {
    let set = match RL_TABLE.get_ptr_mut(rl_set(addr, tag, seed)) {
        Some(p) => unsafe { &mut *p },
        None => return (false, 0),
    };
    let mut hit = RL_WAYS;
    let mut victim = 0;
    let mut victim_rank = u64::MAX;
    let mut i = 0;
    while i < RL_WAYS {
        let s = &set.slots[i];
        if s.tag == tag && s.addr[0] == addr[0] && s.addr[1] == addr[1] {
            hit = i;
            break;
        }
        // Replace unused first, then idle (nothing to forget), then buckets without excess
        // (a one-packet spoofed source, or a client mid-burst: it comes back full), and only
        // then a bucket counting excess towards a ban; least recently seen within a class.
        let class: u64 = if s.tag == 0 {
            0
        } else if s.excess != 0 && now - s.window_start <= rule.window_ns {
            3
        } else if s.tat <= now {
            1
        } else {
            2
        };
        let rank = class << 62 | s.seen >> 2;
        if rank < victim_rank {
            victim_rank = rank;
            victim = i;
        }
        i += 1;
    }
    if hit == RL_WAYS {
        let s: *mut RateSlot = &mut set.slots[victim & (RL_WAYS - 1)];
        // Invalidate, fill, then publish the key: another CPU cannot match the new key on a
        // half-written bucket still holding the evicted one's state.
        unsafe {
            core::ptr::write_volatile(&mut (*s).tag, 0);
            (*s).addr = addr;
            (*s).excess = 0;
            (*s).tat = now + rule.interval_ns;
            (*s).window_start = now;
            (*s).seen = now;
            core::ptr::write_volatile(&mut (*s).tag, tag);
        }
        return (false, 0);
    }
    let st = &mut set.slots[hit & (RL_WAYS - 1)];
    st.seen = now;
    let tat = if st.tat > now { st.tat } else { now };
    if tat - now <= rule.tolerance_ns {
        st.tat = tat + rule.interval_ns;
        return (false, 0);
    }
    if now - st.window_start > rule.window_ns {
        st.window_start = now;
        st.excess = 0;
    }
    st.excess += 1;
    if rule.ban_after != 0 && st.excess >= rule.ban_after {
        st.excess = 0;
        st.window_start = now;
        return (true, now + rule.ban_ttl_ns);
    }
    (true, 0)
}
