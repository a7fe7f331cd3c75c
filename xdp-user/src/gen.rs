//! The one generation swap: every double-buffered kernel structure (allowlist, blacklist,
//! scanner signatures, GeoIP tables, SIP ports and rate rules) is a [`Part`] with two
//! generations, the live one named by a field of the program's `Config`.
//!
//! [`swap`] changes any set of parts at once:
//! 1. check every part against its capacities (nothing written yet);
//! 2. fill each part's idle generation; on any failure the idle generations are emptied again
//!    and the live ones were never touched;
//! 3. widen the "present" bits so the program looks into the new structures, then flip every
//!    part's generation (and the scalar settings) with **one** `CONFIG` write, then narrow the
//!    bits: a packet sees the old policy or the new one, and a rejected change is never partly
//!    applied;
//! 4. release the previous generations (a failure there is logged, not a failed swap: the next
//!    swap empties an idle generation before filling it anyway).
use std::time::Instant;

use anyhow::Result;
use xdp_common::Config;

use crate::filter::Filter;

/// One double-buffered structure of the program.
pub trait Part {
    /// Name in errors and reports ("blacklist", "geoip", ...).
    fn name(&self) -> &'static str;
    /// Live generation according to `c`.
    fn live(&self, c: &Config) -> u32;
    /// Make generation `g` live in `c`.
    fn set_live(&self, c: &mut Config, g: u32);
    /// Capacity and consistency checks, before anything is written.
    fn check(&self) -> Result<()> {
        Ok(())
    }
    /// Fill the (empty) generation `g`.
    fn fill(&self, f: &mut Filter, g: u32) -> Result<()>;
    /// Empty generation `g`.
    fn clear(&self, f: &mut Filter, g: u32) -> Result<()>;

    /// Before the flip: enable every lookup the new generation needs (a superset of old and
    /// new; looking into an empty structure is harmless).
    fn widen(&self, _c: &mut Config) {}
    /// With the flip: settings that belong to the new generation.
    fn configure(&self, _c: &mut Config) {}
    /// After the flip: keep only the lookups the new generation needs.
    fn narrow(&self, _c: &mut Config) {}
}

/// What a swap did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SwapReport {
    /// Seconds from the start until the new generations were live.
    pub load_secs: f64,
    /// Seconds spent releasing the previous generations.
    pub cleanup_secs: f64,
}

/// Swap `parts` (and the scalar settings `scalar`) in as one change. See the module docs.
pub fn swap(f: &mut Filter, parts: &[&dyn Part], scalar: impl FnOnce(&mut Config)) -> Result<SwapReport> {
    let _lock = f.write_lock()?;
    let t0 = Instant::now();
    for p in parts {
        p.check()?;
    }
    let cfg = f.config()?;
    let live: Vec<u32> = parts.iter().map(|p| p.live(&cfg) & 1).collect();
    let mut filled = 0;
    let mut result = Ok(());
    for (p, l) in parts.iter().zip(&live) {
        let next = 1 - l;
        result = p.clear(f, next).and_then(|_| p.fill(f, next));
        filled += 1;
        if result.is_err() {
            break;
        }
    }
    if let Err(e) = result {
        for (p, l) in parts.iter().zip(&live).take(filled) {
            if let Err(c) = p.clear(f, 1 - l) {
                log::warn!("{}: emptying the unused generation after a failed load: {c:#}", p.name());
            }
        }
        let names: Vec<&str> = parts.iter().map(|p| p.name()).collect();
        return Err(e.context(format!("nothing was changed: the filter keeps its current {}", names.join(", "))));
    }
    f.update_config(|c| parts.iter().for_each(|p| p.widen(c)))?;
    f.update_config(|c| {
        for (p, l) in parts.iter().zip(&live) {
            p.set_live(c, 1 - l);
            p.configure(c);
        }
        scalar(c);
    })?;
    f.update_config(|c| parts.iter().for_each(|p| p.narrow(c)))?;
    let load_secs = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    for (p, l) in parts.iter().zip(&live) {
        if let Err(e) = p.clear(f, *l) {
            log::warn!("{}: releasing generation {l} after the swap: {e:#}", p.name());
        }
    }
    Ok(SwapReport { load_secs, cleanup_secs: t1.elapsed().as_secs_f64() })
}
