//! Timed bans: the `BANS_V4`/`BANS_V6` maps of deadlines on the program's clock, written by the
//! rate limiter in the kernel and by the CLI, swept of expired entries by the controller.
use std::net::IpAddr;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use aya::maps::{Array, HashMap, Map, MapError};
use xdp_common::*;

use crate::filter::{clock_ns, duration_ns, Filter};

/// The longest ban: ten years. Deadlines are u64 nanoseconds of the program's clock (which
/// would wrap after 584 years); a bound far below that keeps every deadline representable.
pub const MAX_BAN_TTL: Duration = Duration::from_secs(10 * 365 * 86400);

/// Check a ban duration against what the kernel can hold.
pub fn check_ttl(what: &str, ttl: Duration) -> Result<()> {
    if ttl < Duration::from_secs(1) || ttl > MAX_BAN_TTL {
        bail!("{what}: {} is out of range: a ban lasts from 1s to 10 years", humantime::format_duration(ttl));
    }
    Ok(())
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Ban {
    pub address: String,
    pub prefix: u32,
    /// Seconds until expiry.
    pub expires_in: f64,
}

/// `Ok(true)` when the key was removed, `Ok(false)` when there was none, an error otherwise.
fn removed(r: Result<(), MapError>, map: &str) -> Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(MapError::KeyNotFound) => Ok(false),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(anyhow!("map {map}: {e}")),
    }
}

/// Ban `ip` for `ttl` (as a /32 or /128). User input is checked with [`check_ttl`] first; here
/// only what the kernel cannot represent is refused.
pub fn add(filter: &mut Filter, ip: IpAddr, ttl: Duration) -> Result<()> {
    if ttl.is_zero() || ttl > MAX_BAN_TTL {
        check_ttl("ban duration", ttl)?;
    }
    let until = clock_ns() + duration_ns(ttl);
    match ip {
        IpAddr::V4(a) => {
            let mut m: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map_mut(maps::BANS_V4)?)?;
            m.insert(a.octets(), until, 0).map_err(|e| anyhow!("map {}: {e}", maps::BANS_V4))?;
            filter.mark_bans_present(BAN_PRESENT_V4)?;
        }
        IpAddr::V6(a) => {
            let mut m: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map_mut(maps::BANS_V6)?)?;
            m.insert(BanKey6 { addr: a.octets(), prefix: 128 }, until, 0)
                .map_err(|e| anyhow!("map {}: {e}", maps::BANS_V6))?;
            filter.mark_bans_present(BAN_PRESENT_V6)?;
        }
    }
    Ok(())
}

/// Lift a ban. `Ok(false)` if there was none; a map failure is an error. For IPv6 this also
/// lifts a rate-limiter ban on the address's prefix.
pub fn del(filter: &mut Filter, ip: IpAddr) -> Result<bool> {
    match ip {
        IpAddr::V4(a) => {
            let mut m: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map_mut(maps::BANS_V4)?)?;
            removed(m.remove(&a.octets()), maps::BANS_V4)
        }
        IpAddr::V6(a) => {
            let prefix = filter.config()?.rl_v6_prefix;
            let mut m: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map_mut(maps::BANS_V6)?)?;
            let full = removed(m.remove(&BanKey6 { addr: a.octets(), prefix: 128 }), maps::BANS_V6)?;
            let net = removed(m.remove(&BanKey6 { addr: mask_prefix6(a.octets(), prefix), prefix }), maps::BANS_V6)?;
            Ok(full || net)
        }
    }
}

/// Active (unexpired) bans.
pub fn list(filter: &Filter) -> Result<Vec<Ban>> {
    let now = clock_ns();
    let mut out = vec![];
    let m4: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map(maps::BANS_V4)?)?;
    for kv in m4.iter() {
        let (k, until) = kv.map_err(|e| anyhow!("map {}: {e}", maps::BANS_V4))?;
        if until > now {
            out.push(Ban { address: IpAddr::from(k).to_string(), prefix: 32, expires_in: (until - now) as f64 / 1e9 });
        }
    }
    let m6: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map(maps::BANS_V6)?)?;
    for kv in m6.iter() {
        let (k, until) = kv.map_err(|e| anyhow!("map {}: {e}", maps::BANS_V6))?;
        if until > now {
            out.push(Ban {
                address: IpAddr::from(k.addr).to_string(),
                prefix: k.prefix,
                expires_in: (until - now) as f64 / 1e9,
            });
        }
    }
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(out)
}

/// Remove expired bans (the kernel already ignores them; this frees the entries). Returns
/// (removed, still active).
pub fn gc(filter: &mut Filter) -> Result<(usize, usize)> {
    let now = clock_ns();
    let mut n = 0;
    let mut active = 0;
    let mut m4: HashMap<_, [u8; 4], u64> = HashMap::try_from(filter.map_mut(maps::BANS_V4)?)?;
    let all: Vec<([u8; 4], u64)> = m4.iter().filter_map(|kv| kv.ok()).collect();
    active += all.iter().filter(|(_, u)| *u > now).count();
    for (k, _) in all.iter().filter(|(_, u)| *u <= now) {
        n += removed(m4.remove(k), maps::BANS_V4)? as usize;
    }
    let mut m6: HashMap<_, BanKey6, u64> = HashMap::try_from(filter.map_mut(maps::BANS_V6)?)?;
    let all: Vec<(BanKey6, u64)> = m6.iter().filter_map(|kv| kv.ok()).collect();
    active += all.iter().filter(|(_, u)| *u > now).count();
    for (k, _) in all.iter().filter(|(_, u)| *u <= now) {
        n += removed(m6.remove(k), maps::BANS_V6)? as usize;
    }
    // Empty maps are no longer looked up by the program.
    filter.refresh_ban_present()?;
    Ok((n, active))
}

impl Filter {
    /// Set the `BAN_PRESENT` flag of a family (after inserting a ban from userspace).
    pub fn mark_bans_present(&mut self, idx: u32) -> Result<()> {
        self.set_ban_present(idx, 1)
    }

    fn set_ban_present(&mut self, idx: u32, value: u32) -> Result<()> {
        let mut a: Array<_, u32> = Array::try_from(self.map_mut(maps::BAN_PRESENT)?)?;
        a.set(idx, value, 0).map_err(|e| anyhow!("map {}: {e}", maps::BAN_PRESENT))
    }

    /// Clear the `BAN_PRESENT` flag of each family whose ban map is empty. Clear first, then
    /// look again: a ban installed meanwhile (the program sets the flag after its insert) is
    /// either seen here and re-flagged, or sets the flag itself after this clear.
    pub fn refresh_ban_present(&mut self) -> Result<()> {
        for idx in [BAN_PRESENT_V4, BAN_PRESENT_V6] {
            if !self.ban_map_is_empty(idx)? {
                self.set_ban_present(idx, 1)?;
                continue;
            }
            self.set_ban_present(idx, 0)?;
            if !self.ban_map_is_empty(idx)? {
                self.set_ban_present(idx, 1)?;
            }
        }
        Ok(())
    }

    /// Is the ban map of family `idx` (`BAN_PRESENT_V4`/`_V6`) empty?
    fn ban_map_is_empty(&self, idx: u32) -> Result<bool> {
        fn empty<K: aya::Pod>(m: &Map, name: &str) -> Result<bool> {
            let h: HashMap<_, K, u64> = HashMap::try_from(m)?;
            match h.keys().next() {
                None => Ok(true),
                Some(Ok(_)) => Ok(false),
                Some(Err(e)) => Err(anyhow!("{name}: reading keys: {e}")),
            }
        }
        if idx == BAN_PRESENT_V4 {
            empty::<[u8; 4]>(self.map(maps::BANS_V4)?, maps::BANS_V4)
        } else {
            empty::<BanKey6>(self.map(maps::BANS_V6)?, maps::BANS_V6)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ban_ttl_bounds() {
        for ok in [Duration::from_secs(1), Duration::from_secs(900), MAX_BAN_TTL] {
            check_ttl("ban add --ttl", ok).unwrap();
        }
        for bad in [Duration::ZERO, Duration::from_millis(999), MAX_BAN_TTL + Duration::from_secs(1)] {
            let e = check_ttl("ban add --ttl", bad).unwrap_err().to_string();
            assert!(e.starts_with("ban add --ttl: ") && e.contains("from 1s to 10 years"), "{e}");
        }
        assert_eq!(MAX_BAN_TTL, Duration::from_secs(3650 * 86400));
    }
}
