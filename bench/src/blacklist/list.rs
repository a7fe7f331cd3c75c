//! The deterministic blacklist (public-looking IPv4 addresses and non-overlapping ranges) and
//! the probe frames of the lookup measurements.
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use anyhow::{bail, Result};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;

use crate::harness::Rng;

pub fn mask(len: u32) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - len)
    }
}

pub fn ip(a: u32) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

/// Not public-looking: 0/8, 10/8, 127/8, 224/4 and above, the host's 192.0.2.0/24, and the
/// other special-purpose blocks (CGN, link-local, RFC 1918, benchmarking, documentation).
pub fn excluded(a: u32) -> bool {
    let o = a >> 24;
    let within = |net: u32, len: u32| a & mask(len) == net;
    o == 0
        || o == 10
        || o == 127
        || o >= 224
        || within(0x6440_0000, 10) // 100.64.0.0/10
        || within(0xA9FE_0000, 16) // 169.254.0.0/16
        || within(0xAC10_0000, 12) // 172.16.0.0/12
        || within(0xC000_0000, 24) // 192.0.0.0/24
        || within(0xC000_0200, 24) // 192.0.2.0/24 (the host's)
        || within(0xC0A8_0000, 16) // 192.168.0.0/16
        || within(0xC612_0000, 15) // 198.18.0.0/15
        || within(0xC633_6400, 24) // 198.51.100.0/24
        || within(0xCB00_7100, 24) // 203.0.113.0/24
}

/// Does the /16 `net16` (high 16 bits) touch an excluded block?
fn excluded16(net16: u32) -> bool {
    let first = net16 << 16;
    let last = first | 0xffff;
    // Blocks of length <= 16 contain the whole /16; the /24 blocks lie in these /16s.
    excluded(first) || excluded(last) || matches!(net16, 0xC000 | 0xC633 | 0xCB00)
}

pub struct Generated {
    /// Addresses in generation (random) order.
    pub addrs: Vec<u32>,
    pub set: HashSet<u32>,
    /// (network, prefix length), each in its own /16, so ranges never overlap.
    pub ranges: Vec<(u32, u8)>,
    by16: HashMap<u32, (u32, u8)>,
}

impl Generated {
    /// `n` distinct addresses and `n_ranges` ranges, a pure function of the arguments.
    pub fn new(n: usize, n_ranges: usize, seed: u64) -> Result<Generated> {
        let mut rng = Rng(seed);
        let (addrs, set) = Self::addresses(&mut rng, n)?;
        let mut ranges = Vec::with_capacity(n_ranges);
        let mut by16 = HashMap::with_capacity(n_ranges);
        let mut tries = 0u64;
        while ranges.len() < n_ranges {
            tries += 1;
            if tries > 100 * n_ranges as u64 + 1000 {
                bail!("could not place {n_ranges} non-overlapping ranges (one per /16)");
            }
            let net16 = rng.u32() >> 16;
            if excluded16(net16) || by16.contains_key(&net16) {
                continue;
            }
            let len = 16 + rng.below(9) as u32; // 16..=24
            let net = ((net16 << 16) | (rng.u32() & 0xffff)) & mask(len);
            by16.insert(net16, (net, len as u8));
            ranges.push((net, len as u8));
        }
        Ok(Generated { addrs, set, ranges, by16 })
    }

    fn addresses(rng: &mut Rng, n: usize) -> Result<(Vec<u32>, HashSet<u32>)> {
        let mut set = HashSet::with_capacity(n);
        let mut addrs = Vec::with_capacity(n);
        let max_tries = 100 * n as u64 + 1000;
        let mut tries = 0u64;
        while addrs.len() < n {
            tries += 1;
            if tries > max_tries {
                bail!("could not generate {n} distinct addresses in {max_tries} draws");
            }
            let a = rng.u32();
            if !excluded(a) && set.insert(a) {
                addrs.push(a);
            }
        }
        Ok((addrs, set))
    }

    fn in_range(&self, a: u32) -> bool {
        self.by16.get(&(a >> 16)).is_some_and(|(n, l)| a & mask(*l as u32) == *n)
    }

    pub fn contains(&self, a: u32) -> bool {
        self.set.contains(&a) || self.in_range(a)
    }

    pub fn total(&self) -> usize {
        self.addrs.len() + self.ranges.len()
    }

    /// The list as a sipshield list file.
    pub fn list_text(&self) -> String {
        let mut s = String::with_capacity(self.total() * 16 + 128);
        let _ = writeln!(
            s,
            "# sipshield-bench generated blacklist: {} addresses, {} ranges",
            self.addrs.len(),
            self.ranges.len()
        );
        for a in &self.addrs {
            let _ = writeln!(s, "{}", ip(*a));
        }
        for (n, l) in &self.ranges {
            let _ = writeln!(s, "{}/{l}", ip(*n));
        }
        s
    }
}

/// The host the probes are sent to.
const HOST: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);

/// UDP frames to :5060 carrying `payload`, one per source.
fn frames(srcs: &[u32], payload: &[u8]) -> Vec<Vec<u8>> {
    srcs.iter()
        .enumerate()
        .map(|(i, s)| {
            PacketBuilder::udp(IpAddr::V4(ip(*s)), IpAddr::V4(HOST), 5060 + (i % 1000) as u16, 5060)
                .payload(payload)
                .build()
        })
        .collect()
}

/// Probe frames of the lookup measurements (a SIP OPTIONS each).
pub struct Probes {
    /// Sources not in the list.
    pub miss: Vec<Vec<u8>>,
    /// Listed addresses.
    pub hit: Vec<Vec<u8>>,
    /// Addresses inside a range (not listed themselves).
    pub range: Vec<Vec<u8>>,
    /// Source addresses of `hit`, in the same order.
    pub hit_srcs: Vec<u32>,
}

impl Probes {
    /// `count` probes of each kind (hits: at most the number of addresses, spread over them).
    pub fn new(g: &Generated, count: usize, seed: u64) -> Result<Probes> {
        let mut rng = Rng(seed ^ 0xD1FF_E4E7_0000_0001);
        let payload = SipMessage::request("OPTIONS", "100", "sip.example.com").build();
        let miss = misses(g, &mut rng, count)?;
        let n = g.addrs.len();
        let hits = count.min(n);
        let hit_srcs: Vec<u32> = (0..hits).map(|i| g.addrs[i * n / hits.max(1)]).collect();
        let range = in_ranges(g, &mut rng, count)?;
        Ok(Probes {
            miss: frames(&miss, &payload),
            hit: frames(&hit_srcs, &payload),
            range: frames(&range, &payload),
            hit_srcs,
        })
    }

    /// The hit probes whose source `keep` accepts.
    pub fn hits_where(&self, keep: impl Fn(u32) -> bool) -> Vec<Vec<u8>> {
        self.hit.iter().zip(&self.hit_srcs).filter(|(_, s)| keep(**s)).map(|(f, _)| f.clone()).collect()
    }
}

fn misses(g: &Generated, rng: &mut Rng, count: usize) -> Result<Vec<u32>> {
    let mut miss = Vec::with_capacity(count);
    let mut seen = HashSet::new();
    let mut tries = 0;
    while miss.len() < count {
        tries += 1;
        if tries > 100 * count + 1000 {
            bail!("could not draw {count} source addresses outside the list");
        }
        let a = rng.u32();
        if !excluded(a) && !g.contains(a) && seen.insert(a) {
            miss.push(a);
        }
    }
    Ok(miss)
}

fn in_ranges(g: &Generated, rng: &mut Rng, count: usize) -> Result<Vec<u32>> {
    let mut range = Vec::with_capacity(count);
    let mut tries = 0;
    while !g.ranges.is_empty() && range.len() < count {
        tries += 1;
        if tries > 100 * count + 1000 {
            bail!("could not draw {count} sources inside ranges");
        }
        let (net, len) = g.ranges[rng.below(g.ranges.len() as u64) as usize];
        let a = net | (rng.u32() & !mask(len as u32));
        if !g.set.contains(&a) {
            range.push(a);
        }
    }
    Ok(range)
}
