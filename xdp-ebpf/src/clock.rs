//! The program's clock: CLOCK_MONOTONIC at tick resolution, from jiffies.
use aya_ebpf::helpers::{bpf_jiffies64, bpf_ktime_get_coarse_ns};
use xdp_common::Config;

use crate::maps::CLOCK;

/// "Now" in CLOCK_MONOTONIC ns: `Config::clock_ns` when set (replay, tests), else jiffies
/// scaled with the calibration in `CLOCK` (inlined by the verifier: no helper call, no TSC
/// read; the precise clock was a sixth of the whole SIP path on a VM), else, when the clock is
/// not calibrated, `bpf_ktime_get_coarse_ns`. Rate limits keep their long-run rate exactly
/// (GCRA advances by the interval, not by the clock); bans expire at most a tick late.
#[inline(always)]
pub fn now(cfg: &Config) -> u64 {
    if cfg.clock_ns != 0 {
        return cfg.clock_ns;
    }
    match CLOCK.get(0) {
        Some(c) if c.jiffy_ns != 0 => unsafe { bpf_jiffies64() }.wrapping_mul(c.jiffy_ns).wrapping_add(c.base_ns),
        _ => unsafe { bpf_ktime_get_coarse_ns() },
    }
}

/// Store `bpf_jiffies64()` in `CLOCK.probe`, so the controller can relate jiffies to
/// CLOCK_MONOTONIC (the calibration program `sipshield_clock`); returns it.
#[inline(always)]
pub fn probe() -> u64 {
    let j = unsafe { bpf_jiffies64() };
    if let Some(p) = CLOCK.get_ptr_mut(0) {
        unsafe { (*p).probe = j };
    }
    j
}
