//! The synthetic database (fallback only, when the real one cannot be had): a minimal MaxMind
//! DB writer and a deterministic country database of real-size shape.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use sipshield_bench::harness::Rng;

const EMPTY: u32 = u32::MAX;
const DATA: u32 = 1 << 31;

struct Tree {
    nodes: Vec<[u32; 2]>,
}

impl Tree {
    fn insert(&mut self, bits: u128, len: u32, data_off: u32) {
        let mut n = 0usize;
        for d in 0..len {
            let bit = ((bits >> (127 - d)) & 1) as usize;
            if d == len - 1 {
                self.nodes[n][bit] = DATA | data_off;
                return;
            }
            let r = self.nodes[n][bit];
            if r == EMPTY {
                self.nodes.push([EMPTY, EMPTY]);
                let i = (self.nodes.len() - 1) as u32;
                self.nodes[n][bit] = i;
                n = i as usize;
            } else if r & DATA != 0 {
                return; // overlaps a shorter network: keep the shorter one
            } else {
                n = r as usize;
            }
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    assert!(s.len() < 29);
    out.push(0x40 | s.len() as u8);
    out.extend_from_slice(s.as_bytes());
}
fn uint16(out: &mut Vec<u8>, v: u16) {
    out.push(0xA2);
    out.extend_from_slice(&v.to_be_bytes());
}
fn uint32(out: &mut Vec<u8>, v: u32) {
    out.push(0xC4);
    out.extend_from_slice(&v.to_be_bytes());
}
fn uint64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&[0x08, 0x02]);
    out.extend_from_slice(&v.to_be_bytes());
}

/// Write an IPv6 (IPv4 under ::/96) database with flat `country_code` records.
pub fn write(path: &Path, v4: &[(u32, u8, &str)], v6: &[(u128, u8, &str)]) -> Result<()> {
    let mut data = Vec::new();
    let mut offsets: BTreeMap<&str, u32> = BTreeMap::new();
    for c in v4.iter().map(|x| x.2).chain(v6.iter().map(|x| x.2)) {
        if !offsets.contains_key(c) {
            offsets.insert(c, data.len() as u32);
            data.push(0xE1);
            string(&mut data, "country_code");
            string(&mut data, c);
        }
    }
    let mut t = Tree { nodes: vec![[EMPTY, EMPTY]] };
    for &(a, len, c) in v4 {
        t.insert(a as u128, 96 + len as u32, offsets[c]);
    }
    for &(a, len, c) in v6 {
        t.insert(a, len as u32, offsets[c]);
    }
    let n = t.nodes.len() as u32;
    let mut out = Vec::with_capacity(t.nodes.len() * 8 + data.len() + 512);
    for node in &t.nodes {
        for &r in node {
            let v = if r == EMPTY {
                n
            } else if r & DATA != 0 {
                n + 16 + (r & !DATA)
            } else {
                r
            };
            out.extend_from_slice(&v.to_be_bytes());
        }
    }
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xab\xcd\xefMaxMind.com");
    out.push(0xE0 | 9);
    string(&mut out, "binary_format_major_version");
    uint16(&mut out, 2);
    string(&mut out, "binary_format_minor_version");
    uint16(&mut out, 0);
    string(&mut out, "build_epoch");
    uint64(&mut out, 1_700_000_000);
    string(&mut out, "database_type");
    string(&mut out, "synthetic-country");
    string(&mut out, "description");
    out.push(0xE1);
    string(&mut out, "en");
    string(&mut out, "sipshield-bench synthetic");
    string(&mut out, "ip_version");
    uint16(&mut out, 6);
    string(&mut out, "languages");
    out.extend_from_slice(&[0x01, 0x04]);
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint32(&mut out, n);
    string(&mut out, "record_size");
    uint16(&mut out, 32);
    std::fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}

/// Deterministic synthetic country database with a real-size shape: ~500k IPv4 networks
/// (/16 split down to /24, a few longer), 500k IPv6 networks, Zipf-like country sizes.
pub fn write_synthetic(path: &Path) -> Result<()> {
    let codes: Vec<&str> = "US CN DE GB JP FR KR BR IT NL CA RU AU IN ES SE PL MX TW CH"
        .split(' ')
        .chain("AR BE AT NO DK FI IE PT CZ RO UA TR ZA IL SG HK ID TH VN MY PH CL CO NZ".split(' '))
        .collect();
    let mut rng = Rng(0x0519_56E0);
    let mut pick = |rng: &mut Rng| -> &str {
        // Zipf-like: code i with weight 1/(i+1).
        let total: f64 = (0..codes.len()).map(|i| 1.0 / (i + 1) as f64).sum();
        let mut x = (rng.below(1 << 30) as f64 / (1u64 << 30) as f64) * total;
        for (i, c) in codes.iter().enumerate() {
            x -= 1.0 / (i + 1) as f64;
            if x <= 0.0 {
                return c;
            }
        }
        codes[0]
    };
    let mut v4: Vec<(u32, u8, &str)> = vec![];
    fn split<'a>(
        rng: &mut Rng,
        a: u32,
        len: u8,
        out: &mut Vec<(u32, u8, &'a str)>,
        pick: &mut dyn FnMut(&mut Rng) -> &'a str,
    ) {
        let stop = match len {
            16..=23 => rng.below(100) < 38,
            24..=27 => rng.below(1000) < 995,
            _ => true,
        };
        if stop {
            out.push((a, len, pick(rng)));
            return;
        }
        split(rng, a, len + 1, out, pick);
        split(rng, a | 1 << (31 - len), len + 1, out, pick);
    }
    for o1 in 1u32..224 {
        if [10, 127, 100].contains(&o1) {
            continue;
        }
        for o2 in 0u32..256 {
            if rng.below(100) < 25 {
                continue; // not allocated
            }
            split(&mut rng, o1 << 24 | o2 << 16, 16, &mut v4, &mut pick);
        }
    }
    let mut v6: Vec<(u128, u8, &str)> = vec![];
    let mut seen = std::collections::HashSet::new();
    while v6.len() < 500_000 {
        let p32 = 0x2400_0000u32 + rng.below(0x0700_0000) as u32;
        if seen.insert(p32) {
            v6.push(((p32 as u128) << 96, 32, pick(&mut rng)));
        }
    }
    v6.sort();
    write(path, &v4, &v6)
}
