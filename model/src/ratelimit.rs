//! SIP rate limits, as the kernel's `ratelimit.rs` applies them: GCRA per (source, method
//! slot) then per (source, `ANY`), on the program clock; excess packets counted in a window,
//! `ban_after` of them ban the source for `ban_ttl`.
//!
//! Evictions: the kernel keeps buckets in a set-associative table (`RL_SETS` sets of
//! `RL_WAYS`), and a new key evicts a bucket of its set. The model mirrors that table
//! exactly — same set (`xdp_common::rl_set` with the table's seed), same victim order (unused,
//! then full-again without excess, then without excess, then counting excess; least recently
//! seen first) — so it agrees with the kernel even when sets overflow (the difftest's
//! many-sources sequences do overflow some). The bucket arithmetic itself is written here
//! from the GCRA definition.
use std::collections::HashMap;

use xdp_common::{rl_addr, rl_set, rl_tag, METHOD_ANY, RL_WAYS};

use crate::parse::Pkt;
use crate::{Policy, Rule};

/// One bucket: the key and its GCRA state.
#[derive(Clone, Copy, Debug, Default)]
pub struct Bucket {
    /// `None`: unused.
    pub key: Option<([u64; 2], u32)>,
    /// Theoretical arrival time.
    pub tat: u64,
    pub excess: u32,
    pub window_start: u64,
    /// Last packet (LRU order).
    pub seen: u64,
}

/// The bucket table: sets (only the ones touched) of `RL_WAYS` buckets.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub seed: u64,
    pub sets: HashMap<u32, [Bucket; RL_WAYS]>,
}

/// Outcome for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RateVerdict {
    Conforms,
    /// Over a limit; `ban_until` is `Some` when this packet triggers a ban.
    Excess {
        ban_until: Option<u64>,
    },
}

impl Table {
    pub fn new(seed: u64) -> Table {
        Table { seed, sets: HashMap::new() }
    }

    /// Apply the rule of `method`, then the `ANY` rule (the first excess decides).
    pub fn check(&mut self, p: &Policy, pkt: &Pkt, method: u8, now: u64) -> RateVerdict {
        let addr = rl_addr(pkt.family, pkt.src, p.rl_v6_prefix);
        for slot in [method, METHOD_ANY] {
            let Some(rule) = p.rules.get(&slot).filter(|r| r.interval_ns != 0) else { continue };
            let key = (addr, rl_tag(pkt.family, slot));
            if let Some(v) = self.bucket_check(rule, key, now) {
                return v;
            }
        }
        RateVerdict::Conforms
    }

    /// One rule on one key: `Some` when the packet is in excess.
    fn bucket_check(&mut self, rule: &Rule, key: ([u64; 2], u32), now: u64) -> Option<RateVerdict> {
        let set = self.sets.entry(rl_set(key.0, key.1, self.seed)).or_default();
        let Some(b) = set.iter_mut().find(|b| b.key == Some(key)) else {
            // A new key: it takes the bucket with the least to lose, full (one request spent).
            let v = victim(set, rule, now);
            set[v] = Bucket { key: Some(key), tat: now + rule.interval_ns, excess: 0, window_start: now, seen: now };
            return None;
        };
        b.seen = now;
        let tat = b.tat.max(now);
        // GCRA: conforming while the bucket is at most `burst - 1` intervals ahead of now.
        if tat - now <= rule.interval_ns * (rule.burst - 1) {
            b.tat = tat + rule.interval_ns;
            return None;
        }
        if now.wrapping_sub(b.window_start) > rule.window_ns {
            b.window_start = now;
            b.excess = 0;
        }
        b.excess += 1;
        if rule.ban_after != 0 && b.excess >= rule.ban_after {
            b.excess = 0;
            b.window_start = now;
            return Some(RateVerdict::Excess { ban_until: Some(now + rule.ban_ttl_ns) });
        }
        Some(RateVerdict::Excess { ban_until: None })
    }
}

/// The bucket a new key replaces: by class (unused < full again < no excess < counting excess
/// in its window), then least recently seen (at the kernel's resolution: `seen / 4`), then the
/// first.
fn victim(set: &[Bucket; RL_WAYS], rule: &Rule, now: u64) -> usize {
    let rank = |b: &Bucket| -> (u8, u64) {
        let class = match b.key {
            None => 0,
            Some(_) if b.excess != 0 && now.wrapping_sub(b.window_start) <= rule.window_ns => 3,
            Some(_) if b.tat <= now => 1,
            Some(_) => 2,
        };
        (class, b.seen >> 2)
    };
    let mut best = 0;
    for i in 1..RL_WAYS {
        if rank(&set[i]) < rank(&set[best]) {
            best = i;
        }
    }
    best
}
