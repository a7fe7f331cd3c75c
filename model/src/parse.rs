//! Header parsing, as the kernel's `parse.rs` treats every layout and truncation: Ethernet and
//! up to two VLAN tags (802.1Q or 802.1ad, in any order), IPv4 (IHL, options, fragments), IPv6
//! (at most eight extension headers: hop-by-hop, routing, destination options, AH, fragment),
//! UDP and TCP. Written over byte slices, independently of the kernel's pointer arithmetic.
use xdp_common::{FAMILY_V4, FAMILY_V6};

pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;

const ETH_LEN: usize = 14;
const VLAN_LEN: usize = 4;
const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const MAX_VLAN_TAGS: usize = 2;
const IPV4_MIN: usize = 20;
const IPV6_LEN: usize = 40;
const MAX_IPV6_EXT: usize = 8;
const UDP_LEN: usize = 8;
const TCP_MIN: usize = 20;

/// Fragment state of a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frag {
    None,
    /// Offset 0, more fragments follow: the L4 header is here.
    First,
    /// Non-zero offset: no L4 header.
    Later,
}

/// What the decision needs from the headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pkt {
    /// `FAMILY_V4` / `FAMILY_V6`.
    pub family: u8,
    /// IPv4: the first 4 bytes.
    pub src: [u8; 16],
    pub proto: u8,
    pub frag: Frag,
    /// The L3 header is fine but an extension or L4 header is truncated or invalid.
    pub l4_malformed: bool,
    /// A UDP or TCP header was parsed (ports and payload are valid).
    pub has_l4: bool,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the L4 payload in the frame.
    pub payload_off: usize,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4/IPv6: passed unchecked.
    NotIp,
    /// L2/L3 headers truncated or invalid: no source address.
    Malformed,
    Ip(Pkt),
}

fn be16(f: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*f.get(off)?, *f.get(off + 1)?]))
}

/// Does the frame hold `len` bytes at `off`?
fn holds(f: &[u8], off: usize, len: usize) -> bool {
    off + len <= f.len()
}

pub fn parse(f: &[u8]) -> Parsed {
    let Some((ether_type, l3)) = link(f) else { return Parsed::Malformed };
    let mut pkt = Pkt {
        family: 0,
        src: [0; 16],
        proto: 0,
        frag: Frag::None,
        l4_malformed: false,
        has_l4: false,
        sport: 0,
        dport: 0,
        payload_off: 0,
    };
    let l4 = match ether_type {
        ETH_P_IPV4 => ipv4(f, l3, &mut pkt),
        ETH_P_IPV6 => ipv6(f, l3, &mut pkt),
        _ => return Parsed::NotIp,
    };
    match l4 {
        Err(()) => Parsed::Malformed,
        Ok(None) => Parsed::Ip(pkt),
        Ok(Some(_)) if pkt.frag == Frag::Later => Parsed::Ip(pkt),
        Ok(Some(off)) => {
            transport(f, off, &mut pkt);
            Parsed::Ip(pkt)
        }
    }
}

/// The EtherType after the Ethernet header and up to two VLAN tags, and where L3 starts.
fn link(f: &[u8]) -> Option<(u16, usize)> {
    let mut t = be16(f, 12)?;
    let mut off = ETH_LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if t == ETH_P_8021Q || t == ETH_P_8021AD {
            if !holds(f, off, VLAN_LEN) {
                return None;
            }
            t = be16(f, off + 2)?;
            off += VLAN_LEN;
        }
    }
    Some((t, off))
}

/// IPv4: `Err` = malformed; `Ok(Some(l4 offset))`.
fn ipv4(f: &[u8], off: usize, pkt: &mut Pkt) -> Result<Option<usize>, ()> {
    if !holds(f, off, IPV4_MIN) {
        return Err(());
    }
    let version = f[off] >> 4;
    let ihl = (f[off] & 0x0f) as usize * 4;
    let tot_len = be16(f, off + 2).ok_or(())? as usize;
    if version != 4 || ihl < IPV4_MIN || tot_len < ihl || !holds(f, off, ihl) {
        return Err(());
    }
    pkt.family = FAMILY_V4;
    pkt.src[..4].copy_from_slice(&f[off + 12..off + 16]);
    pkt.proto = f[off + 9];
    let frag = be16(f, off + 6).ok_or(())?;
    pkt.frag = if frag & 0x1fff != 0 {
        Frag::Later
    } else if frag & 0x2000 != 0 {
        Frag::First
    } else {
        Frag::None
    };
    Ok(Some(off + ihl))
}

/// IPv6 and its extension headers: `Err` = malformed; `Ok(None)` = nothing after (a later
/// fragment, or a truncated extension header: `l4_malformed`).
fn ipv6(f: &[u8], off: usize, pkt: &mut Pkt) -> Result<Option<usize>, ()> {
    if !holds(f, off, IPV6_LEN) || f[off] >> 4 != 6 {
        return Err(());
    }
    pkt.family = FAMILY_V6;
    pkt.src.copy_from_slice(&f[off + 8..off + 24]);
    let mut next = f[off + 6];
    let mut cur = off + IPV6_LEN;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            kind @ (0 | 43 | 60 | 51) => {
                if !holds(f, cur, 2) {
                    pkt.l4_malformed = true;
                    return Ok(None);
                }
                let len = f[cur + 1] as usize;
                next = f[cur];
                // AH (RFC 4302): (len + 2) units of 4 bytes; hop-by-hop, routing and
                // destination options (RFC 8200): (len + 1) units of 8 bytes.
                cur += if kind == 51 { (len + 2) * 4 } else { (len + 1) * 8 };
            }
            44 => {
                if !holds(f, cur, 8) {
                    pkt.l4_malformed = true;
                    return Ok(None);
                }
                let fo = u16::from_be_bytes([f[cur + 2], f[cur + 3]]);
                next = f[cur];
                cur += 8;
                if fo & 0xfff8 != 0 {
                    pkt.frag = Frag::Later;
                    pkt.proto = next;
                    return Ok(None);
                }
                if fo & 1 != 0 {
                    pkt.frag = Frag::First;
                }
            }
            _ => break,
        }
    }
    pkt.proto = next;
    Ok(Some(cur))
}

/// UDP or TCP at `off` (other protocols: nothing to parse).
fn transport(f: &[u8], off: usize, pkt: &mut Pkt) {
    match pkt.proto {
        IPPROTO_UDP => {
            if !holds(f, off, UDP_LEN) {
                pkt.l4_malformed = true;
                return;
            }
            pkt.sport = u16::from_be_bytes([f[off], f[off + 1]]);
            pkt.dport = u16::from_be_bytes([f[off + 2], f[off + 3]]);
            // Length 0 is accepted (jumbograms, and what some stacks send); 1..7 is invalid.
            let len = u16::from_be_bytes([f[off + 4], f[off + 5]]) as usize;
            if len != 0 && len < UDP_LEN {
                pkt.l4_malformed = true;
                return;
            }
            pkt.has_l4 = true;
            pkt.payload_off = off + UDP_LEN;
        }
        IPPROTO_TCP => {
            if !holds(f, off, TCP_MIN) {
                pkt.l4_malformed = true;
                return;
            }
            let doff = (f[off + 12] >> 4) as usize * 4;
            if doff < TCP_MIN || !holds(f, off, doff) {
                pkt.l4_malformed = true;
                return;
            }
            pkt.sport = u16::from_be_bytes([f[off], f[off + 1]]);
            pkt.dport = u16::from_be_bytes([f[off + 2], f[off + 3]]);
            pkt.has_l4 = true;
            pkt.payload_off = off + doff;
        }
        _ => {}
    }
}
