//! Header parsing: Ethernet and up to two VLAN tags, IPv4 (options, fragments), IPv6 (bounded
//! walk over extension headers, AH and fragments), UDP and TCP. Every read goes through
//! `Cursor::header`, the one bounds-checked accessor: nothing is read past `data_end`.
//! Truncated or invalid headers never abort: the result says how far parsing got.
use core::mem::{offset_of, size_of};

use aya_ebpf::programs::{TcContext, XdpContext};
use network_types::{
    eth::{EthHdr, EtherType},
    ip::{IpProto, Ipv4Hdr, Ipv6Hdr},
    tcp::TcpHdr,
    udp::UdpHdr,
    vlan::VlanHdr,
};
use xdp_common::{FAMILY_V4, FAMILY_V6};

pub const IPPROTO_TCP: u8 = IpProto::Tcp as u8;
pub const IPPROTO_UDP: u8 = IpProto::Udp as u8;

/// `Pkt::frag`: not a fragment.
pub const FRAG_NONE: u8 = 0;
/// `Pkt::frag`: the first fragment (offset 0, more fragments follow): it has the L4 header.
pub const FRAG_FIRST: u8 = 1;
/// `Pkt::frag`: a later fragment (non-zero offset): no L4 header.
pub const FRAG_LATER: u8 = 2;

/// VLAN tags looked through (802.1ad outer + 802.1Q inner, or two 802.1Q).
const MAX_VLAN_TAGS: usize = 2;
/// Shortest IPv4 header (IHL 5, no options).
const IPV4_MIN_HDR_LEN: usize = Ipv4Hdr::LEN;
/// IPv4 fragment flag "more fragments" (`Ipv4Hdr::frag_flags`).
const IPV4_FLAG_MF: u8 = 0b001;
/// IPv6 extension headers walked at most.
const MAX_IPV6_EXT_HDRS: usize = 8;
/// Hop-by-hop, routing and destination options: `(hdr_ext_len + 1)` units of 8 bytes.
const IPV6_EXT_LEN_UNIT: usize = 8;
/// Authentication header: `(hdr_ext_len + 2)` units of 4 bytes.
const IPV6_AH_LEN_UNIT: usize = 4;
/// Fragment header: fragment offset (bits 15..3 of `frag_off`).
const IPV6_FRAG_OFFSET_MASK: u16 = 0xfff8;
/// Fragment header: "more fragments" (bit 0 of `frag_off`).
const IPV6_FRAG_MORE: u16 = 0x0001;
/// TCP data offset unit (32-bit words).
const TCP_DOFF_UNIT: usize = 4;

const NEXT_HOP_BY_HOP: u8 = IpProto::HopOpt as u8;
const NEXT_ROUTING: u8 = IpProto::Ipv6Route as u8;
const NEXT_FRAGMENT: u8 = IpProto::Ipv6Frag as u8;
const NEXT_AUTH: u8 = IpProto::Ah as u8;
const NEXT_DEST_OPTS: u8 = IpProto::Ipv6Opts as u8;

/// The first two bytes of an IPv6 hop-by-hop, routing, destination-options or authentication
/// header (RFC 8200 section 4, RFC 4302).
#[repr(C)]
struct Ipv6ExtHdr {
    next_hdr: u8,
    hdr_ext_len: u8,
}

/// IPv6 fragment header (RFC 8200 section 4.5).
#[repr(C)]
struct Ipv6FragHdr {
    next_hdr: u8,
    _reserved: u8,
    /// Fragment offset (13 bits), 2 reserved bits, M flag; big-endian.
    frag_off: [u8; 2],
    _id: [u8; 4],
}

/// A packet context with direct packet access (XDP on ingress, TC on egress).
pub trait Frame {
    fn data(&self) -> usize;
    fn data_end(&self) -> usize;
}

impl Frame for XdpContext {
    #[inline(always)]
    fn data(&self) -> usize {
        XdpContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        XdpContext::data_end(self)
    }
}

impl Frame for TcContext {
    #[inline(always)]
    fn data(&self) -> usize {
        TcContext::data(self)
    }
    #[inline(always)]
    fn data_end(&self) -> usize {
        TcContext::data_end(self)
    }
}

/// Which address `Pkt::src` holds: the source (ingress: the peer sent the packet) or the
/// destination (egress: the peer receives the server's answer).
pub const PEER_IS_SRC: bool = false;
pub const PEER_IS_DST: bool = true;

/// Everything the decision needs from the headers.
pub struct Pkt {
    /// The peer's address: the source on ingress, the destination on egress (`PEER_IS_DST`).
    pub src: [u8; 16],
    pub family: u8,
    pub proto: u8,
    /// `FRAG_*`.
    pub frag: u8,
    /// The L3 header is fine but something after it is truncated/invalid.
    pub l4_malformed: bool,
    /// An L4 header (UDP/TCP) was parsed.
    pub has_l4: bool,
    pub sport: u16,
    pub dport: u16,
    /// Offset of the L4 payload from the start of the frame.
    pub payload_off: usize,
}

impl Pkt {
    /// The IPv4 source address (`family == FAMILY_V4`).
    #[inline(always)]
    pub fn v4(&self) -> [u8; 4] {
        [self.src[0], self.src[1], self.src[2], self.src[3]]
    }
}

pub enum Parsed {
    /// Not IPv4/IPv6: passed without further checks.
    NotIp,
    /// L2/L3 headers malformed or truncated: no usable source address.
    Malformed,
    Ip(Pkt),
}

/// What follows a parsed L3 header.
enum Next {
    /// The L4 header starts at this offset (if the packet is not a later fragment).
    L4(usize),
    /// Nothing more to parse: a later fragment, or a truncated extension header
    /// (`Pkt::l4_malformed`).
    Done,
}

/// A header with an EtherType field (`EthHdr`, `VlanHdr`).
trait WithEtherType {
    /// # Safety
    /// `p` must point to a `Self` inside the packet.
    unsafe fn ether_type_ptr(p: *const Self) -> *const u16;
}

impl WithEtherType for EthHdr {
    #[inline(always)]
    unsafe fn ether_type_ptr(p: *const Self) -> *const u16 {
        unsafe { core::ptr::addr_of!((*p).ether_type) }
    }
}

impl WithEtherType for VlanHdr {
    #[inline(always)]
    unsafe fn ether_type_ptr(p: *const Self) -> *const u16 {
        unsafe { core::ptr::addr_of!((*p).ether_type) }
    }
}

/// Bounds-checked access to the frame.
struct Cursor<'a, C: Frame> {
    ctx: &'a C,
}

impl<C: Frame> Cursor<'_, C> {
    /// The one bounds-checked accessor: a pointer to a `T` at `off`, if it lies inside the
    /// packet.
    #[inline(always)]
    fn ptr_at<T>(&self, off: usize) -> Option<*const T> {
        let start = self.ctx.data();
        if start + off + size_of::<T>() > self.ctx.data_end() {
            return None;
        }
        Some((start + off) as *const T)
    }

    /// The header `T` at `off`, if it lies inside the packet. `T` is a byte-aligned header
    /// (packet data has no alignment guarantee).
    #[inline(always)]
    fn header<T>(&self, off: usize) -> Option<&T> {
        const { assert!(core::mem::align_of::<T>() == 1) };
        self.ptr_at::<T>(off).map(|p| unsafe { &*p })
    }

    /// The EtherType (network byte order, as `EtherType`) of the `T` at `off`.
    #[inline(always)]
    fn ether_type<T: WithEtherType>(&self, off: usize) -> Option<u16> {
        let p = self.ptr_at::<T>(off)?;
        Some(unsafe { T::ether_type_ptr(p).read_unaligned() })
    }

    /// Do the `len` bytes at `off` lie inside the packet?
    #[inline(always)]
    fn holds(&self, off: usize, len: usize) -> bool {
        self.ctx.data() + off + len <= self.ctx.data_end()
    }
}

/// Parse the headers of the frame.
#[inline(always)]
pub fn parse<C: Frame, const DST: bool>(ctx: &C) -> Parsed {
    let c = Cursor { ctx };
    let (ether_type, l3_off) = match parse_eth(&c) {
        Some(t) => t,
        None => return Parsed::Malformed,
    };
    let mut pkt = Pkt {
        src: [0; 16],
        family: 0,
        proto: 0,
        frag: FRAG_NONE,
        l4_malformed: false,
        has_l4: false,
        sport: 0,
        dport: 0,
        payload_off: 0,
    };
    let next = if ether_type == EtherType::Ipv4 as u16 {
        parse_ipv4::<C, DST>(&c, l3_off, &mut pkt)
    } else if ether_type == EtherType::Ipv6 as u16 {
        parse_ipv6::<C, DST>(&c, l3_off, &mut pkt)
    } else {
        return Parsed::NotIp;
    };
    match next {
        None => Parsed::Malformed,
        Some(Next::Done) => Parsed::Ip(pkt),
        Some(Next::L4(_)) if pkt.frag == FRAG_LATER => Parsed::Ip(pkt),
        Some(Next::L4(l4_off)) => {
            parse_l4(&c, l4_off, &mut pkt);
            Parsed::Ip(pkt)
        }
    }
}

/// Ethernet and up to two VLAN tags: the EtherType of the payload (network byte order, as
/// `EtherType`) and its offset.
#[inline(always)]
fn parse_eth<C: Frame>(c: &Cursor<'_, C>) -> Option<(u16, usize)> {
    let mut ether_type = c.ether_type::<EthHdr>(0)?;
    let mut off = EthHdr::LEN;
    for _ in 0..MAX_VLAN_TAGS {
        if ether_type == EtherType::Ieee8021q as u16 || ether_type == EtherType::Ieee8021ad as u16 {
            ether_type = c.ether_type::<VlanHdr>(off)?;
            off += VlanHdr::LEN;
        }
    }
    Some((ether_type, off))
}

/// IPv4 header (IHL validated, options skipped, fragments recognised). `None`: malformed.
#[inline(always)]
fn parse_ipv4<C: Frame, const DST: bool>(c: &Cursor<'_, C>, off: usize, pkt: &mut Pkt) -> Option<Next> {
    let h = c.header::<Ipv4Hdr>(off)?;
    let ihl = h.ihl() as usize;
    if h.version() != 4 || ihl < IPV4_MIN_HDR_LEN {
        return None;
    }
    if (h.tot_len() as usize) < ihl || !c.holds(off, ihl) {
        return None;
    }
    pkt.family = FAMILY_V4;
    let a = if DST { h.dst_addr } else { h.src_addr };
    pkt.src[0] = a[0];
    pkt.src[1] = a[1];
    pkt.src[2] = a[2];
    pkt.src[3] = a[3];
    pkt.proto = h.proto;
    if h.frag_offset() != 0 {
        pkt.frag = FRAG_LATER;
    } else if h.frag_flags() & IPV4_FLAG_MF != 0 {
        pkt.frag = FRAG_FIRST;
    }
    Some(Next::L4(off + ihl))
}

/// IPv6 header and its extension headers. `None`: malformed.
#[inline(always)]
fn parse_ipv6<C: Frame, const DST: bool>(c: &Cursor<'_, C>, off: usize, pkt: &mut Pkt) -> Option<Next> {
    let h = c.header::<Ipv6Hdr>(off)?;
    if h.version() != 6 {
        return None;
    }
    pkt.family = FAMILY_V6;
    let src = if DST { &h.dst_addr } else { &h.src_addr };
    let mut i = 0;
    while i < 16 {
        pkt.src[i] = src[i];
        i += 1;
    }
    Some(parse_ipv6_ext(c, h.next_hdr, off + Ipv6Hdr::LEN, pkt))
}

/// Bounded walk over IPv6 extension headers (hop-by-hop, routing, destination options,
/// authentication, fragment) starting with header `next` at `cur`; sets `pkt.proto` and the
/// fragment state.
#[inline(always)]
fn parse_ipv6_ext<C: Frame>(c: &Cursor<'_, C>, mut next: u8, mut cur: usize, pkt: &mut Pkt) -> Next {
    for _ in 0..MAX_IPV6_EXT_HDRS {
        match next {
            NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_DEST_OPTS => {
                let Some((nh, len)) = ipv6_ext_hdr(c, cur) else {
                    pkt.l4_malformed = true;
                    return Next::Done;
                };
                next = nh;
                cur += (len as usize + 1) * IPV6_EXT_LEN_UNIT;
            }
            NEXT_AUTH => {
                let Some((nh, len)) = ipv6_ext_hdr(c, cur) else {
                    pkt.l4_malformed = true;
                    return Next::Done;
                };
                next = nh;
                cur += (len as usize + 2) * IPV6_AH_LEN_UNIT;
            }
            NEXT_FRAGMENT => {
                let Some(f) = c.header::<Ipv6FragHdr>(cur) else {
                    pkt.l4_malformed = true;
                    return Next::Done;
                };
                let fo = u16::from_be_bytes(f.frag_off);
                next = f.next_hdr;
                cur += size_of::<Ipv6FragHdr>();
                if fo & IPV6_FRAG_OFFSET_MASK != 0 {
                    pkt.frag = FRAG_LATER;
                    pkt.proto = next;
                    return Next::Done;
                }
                if fo & IPV6_FRAG_MORE != 0 {
                    pkt.frag = FRAG_FIRST;
                }
            }
            _ => break,
        }
    }
    pkt.proto = next;
    Next::L4(cur)
}

/// (next header, header extension length) of the `Ipv6ExtHdr` at `cur`. Two byte reads: a
/// read of the whole struct here makes LLVM unroll the walk eight times (2.5x the parser's
/// code for the same work).
#[inline(always)]
fn ipv6_ext_hdr<C: Frame>(c: &Cursor<'_, C>, cur: usize) -> Option<(u8, u8)> {
    let next = c.header::<u8>(cur + offset_of!(Ipv6ExtHdr, next_hdr));
    let len = c.header::<u8>(cur + offset_of!(Ipv6ExtHdr, hdr_ext_len));
    match (next, len) {
        (Some(n), Some(l)) => Some((*n, *l)),
        _ => None,
    }
}

/// UDP or TCP header at `off` (other protocols: nothing to parse): ports and payload offset.
#[inline(always)]
fn parse_l4<C: Frame>(c: &Cursor<'_, C>, off: usize, pkt: &mut Pkt) {
    if pkt.proto == IPPROTO_UDP {
        let Some(u) = c.header::<UdpHdr>(off) else {
            pkt.l4_malformed = true;
            return;
        };
        pkt.sport = u.src_port();
        pkt.dport = u.dst_port();
        let len = u.len();
        if len != 0 && (len as usize) < UdpHdr::LEN {
            pkt.l4_malformed = true;
            return;
        }
        pkt.has_l4 = true;
        pkt.payload_off = off + UdpHdr::LEN;
    } else if pkt.proto == IPPROTO_TCP {
        let Some(t) = c.header::<TcpHdr>(off) else {
            pkt.l4_malformed = true;
            return;
        };
        let doff = t.doff() as usize * TCP_DOFF_UNIT;
        if doff < TcpHdr::LEN || !c.holds(off, doff) {
            pkt.l4_malformed = true;
            return;
        }
        pkt.sport = u16::from_be_bytes(t.source);
        pkt.dport = u16::from_be_bytes(t.dest);
        pkt.has_l4 = true;
        pkt.payload_off = off + doff;
    }
}
