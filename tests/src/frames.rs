//! Ethernet frames for the tests, the benchmarks and the demo, built and decoded with
//! [`etherparse`].
//!
//! [`PacketBuilder`] describes a frame (MACs, VLAN tags, IPv4 or IPv6, UDP/TCP/ICMP and a
//! payload) and has etherparse write it, with real IPv4 header and UDP/TCP/ICMP checksums
//! (frames are also injected through veth pairs, where the kernel drops bad ones). Only what
//! etherparse cannot express is written here by hand: IPv6 extension-header chains in any order,
//! including the Authentication Header; fragments; and the malformations of the pipeline tests
//! (truncations, bad version/IHL, bad UDP length, bad TCP data offset). [`decode`] reads a frame
//! back with etherparse.
//!
//! Everything is deterministic, so tests are reproducible.
use std::net::IpAddr;

use etherparse::{
    ip_number, DoubleVlanHeader, IpFragOffset, IpHeaders, IpNumber, Ipv4Header, Ipv4Options, Ipv6FlowLabel,
    Ipv6FragmentHeader, Ipv6Header, LinkExtSlice, LinkSlice, NetSlice, SingleVlanHeader, SlicedPacket, TransportHeader,
    TransportSlice, VlanHeader, VlanId, VlanPcp,
};

/// Default source MAC (locally administered).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC (locally administered).
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// IPv6 Hop-by-Hop Options header.
pub const HOP_BY_HOP: u8 = 0;
/// IPv6 Routing header.
pub const ROUTING: u8 = 43;
/// IPv6 Fragment header.
pub const FRAGMENT: u8 = 44;
/// IP Authentication Header (RFC 4302).
pub const AUTH: u8 = 51;
/// IPv6 Destination Options header.
pub const DEST_OPTS: u8 = 60;

/// TCP flag bits (byte 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
pub const TCP_SYN: u8 = 0x02;
pub const TCP_RST: u8 = 0x04;
pub const TCP_PSH: u8 = 0x08;
pub const TCP_ACK: u8 = 0x10;
pub const TCP_URG: u8 = 0x20;

/// Layer-4 content of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    Udp {
        sport: u16,
        dport: u16,
    },
    /// TCP segment (seq 1, ack 1 if ACK is set, window 64240).
    Tcp {
        sport: u16,
        dport: u16,
        /// Flag byte, see `TCP_*`.
        flags: u8,
        /// Header length in 32-bit words, 5..=15; the option space is NOP filled.
        data_offset_words: u8,
    },
    /// ICMP echo request (v4: type 8) or ICMPv6 echo request (type 128), id 1, seq 1.
    Icmp,
}

/// One IPv6 extension header of a hand-written chain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ext {
    /// Hop-by-hop, routing or destination options: `(len + 1) * 8` bytes.
    Generic { code: u8, len: u8 },
    /// Authentication Header: `(len + 2) * 4` bytes.
    Auth { len: u8 },
}

impl Ext {
    fn code(self) -> u8 {
        match self {
            Ext::Generic { code, .. } => code,
            Ext::Auth { .. } => AUTH,
        }
    }

    fn size(self) -> usize {
        match self {
            Ext::Generic { len, .. } => (usize::from(len) + 1) * 8,
            Ext::Auth { len } => (usize::from(len) + 2) * 4,
        }
    }

    /// The header's bytes, its first byte (next header) set to `next`.
    fn bytes(self, next: u8, index: usize) -> Vec<u8> {
        let size = self.size();
        let mut out = Vec::with_capacity(size);
        match self {
            Ext::Generic { code, len } => {
                out.extend_from_slice(&[next, len]);
                if code == HOP_BY_HOP || code == DEST_OPTS {
                    push_padding_options(&mut out, size - 2);
                } else {
                    // Routing type 0, segments left 0: receivers skip it.
                    out.resize(size, 0);
                }
            }
            Ext::Auth { len } => {
                // Next header, payload length, reserved, SPI, sequence number, then the ICV.
                out.extend_from_slice(&[next, len, 0, 0]);
                out.extend_from_slice(&(0x100 + index as u32).to_be_bytes());
                out.extend_from_slice(&1u32.to_be_bytes());
                out.extend((0..size.saturating_sub(12)).map(|i| 0xa0 | (i as u8 & 0x0f)));
                out.truncate(size);
            }
        }
        out
    }
}

/// Fill `n` bytes of an options header with Pad1/PadN options.
fn push_padding_options(out: &mut Vec<u8>, mut n: usize) {
    while n > 0 {
        if n == 1 {
            out.push(0); // Pad1
            return;
        }
        let k = n.min(257);
        out.push(1); // PadN
        out.push((k - 2) as u8);
        out.resize(out.len() + k - 2, 0);
        n -= k;
    }
}

#[derive(Clone, Copy, Debug)]
enum Vlan {
    /// One 802.1Q tag.
    Single(u16),
    /// 802.1ad outer tag, 802.1Q inner tag.
    QinQ(u16, u16),
}

/// A complete Ethernet frame (optionally VLAN tagged) carrying IPv4 or IPv6 and UDP, TCP or
/// ICMP, written by [`etherparse::PacketBuilder`] with valid checksums.
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    payload: Vec<u8>,
    vlan: Option<Vlan>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ttl: u8,
    ipv4_opt_words: u8,
    exts: Vec<Ext>,
}

impl PacketBuilder {
    /// New builder. Panics if `src` and `dst` are of different families or if a TCP data offset
    /// is outside 5..=15.
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        assert!(src.is_ipv4() == dst.is_ipv4(), "PacketBuilder: {src} and {dst} must be the same address family");
        if let L4::Tcp { data_offset_words, .. } = l4 {
            assert!(
                (5..=15).contains(&data_offset_words),
                "PacketBuilder: TCP data offset {data_offset_words} not in 5..=15"
            );
        }
        Self {
            src,
            dst,
            l4,
            payload: Vec::new(),
            vlan: None,
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            ttl: 64,
            ipv4_opt_words: 0,
            exts: Vec::new(),
        }
    }

    /// UDP datagram.
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    /// TCP segment with PSH|ACK and no options.
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Tcp { sport, dport, flags: TCP_PSH | TCP_ACK, data_offset_words: 5 })
    }

    /// The L4 payload (replaces any previous one).
    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    /// One 802.1Q tag (VID masked to 12 bits).
    pub fn vlan(mut self, vid: u16) -> Self {
        self.vlan = Some(Vlan::Single(vid & 0x0fff));
        self
    }

    /// An outer 802.1ad tag followed by an inner 802.1Q tag.
    pub fn qinq(mut self, outer_vid: u16, inner_vid: u16) -> Self {
        self.vlan = Some(Vlan::QinQ(outer_vid & 0x0fff, inner_vid & 0x0fff));
        self
    }

    /// Source and destination MAC addresses.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// IPv4 TTL / IPv6 hop limit (default 64).
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// `words` 32-bit words of IPv4 options (NOPs ending with EOL); ignored for IPv6.
    pub fn ipv4_options(mut self, words: u8) -> Self {
        assert!(words <= 10, "PacketBuilder: at most 10 words of IPv4 options");
        self.ipv4_opt_words = words;
        self
    }

    /// Append an IPv6 extension header of the generic layout, `(len + 1) * 8` bytes: hop-by-hop
    /// (0) and destination options (60) are filled with Pad1/PadN options, routing (43) is type
    /// 0 with no segments left. Headers stay in call order. Ignored for IPv4.
    pub fn ipv6_ext(mut self, code: u8, len: u8) -> Self {
        assert!(
            matches!(code, HOP_BY_HOP | ROUTING | DEST_OPTS),
            "PacketBuilder::ipv6_ext: {code} is not hop-by-hop, routing or destination options \
             (use ipv6_ah for the Authentication Header, build_fragments for fragments)"
        );
        self.exts.push(Ext::Generic { code, len });
        self
    }

    /// Append an IPv6 Authentication Header (next header 51) whose payload-length field is
    /// `len`: the header is `(len + 2) * 4` bytes (12 bytes of fixed fields, then the ICV). An
    /// IPv6 AH is a multiple of 8 bytes, so `len` is even (4: a 96-bit ICV as HMAC-SHA1-96).
    pub fn ipv6_ah(mut self, len: u8) -> Self {
        assert!(len >= 1, "PacketBuilder::ipv6_ah: the AH has at least its 12 fixed bytes (len >= 1)");
        self.exts.push(Ext::Auth { len });
        self
    }

    fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }

    fn l4_proto(&self) -> u8 {
        match self.l4 {
            L4::Udp { .. } => ip_number::UDP.0,
            L4::Tcp { .. } => ip_number::TCP.0,
            L4::Icmp if self.is_v6() => ip_number::IPV6_ICMP.0,
            L4::Icmp => ip_number::ICMP.0,
        }
    }

    /// Offset of the IP header in the built frame.
    pub fn l3_offset(&self) -> usize {
        14 + match self.vlan {
            None => 0,
            Some(Vlan::Single(_)) => 4,
            Some(Vlan::QinQ(..)) => 8,
        }
    }

    /// Length of the IP header (IPv4 with options; IPv6 fixed header and extension chain).
    fn ip_header_len(&self) -> usize {
        if self.is_v6() {
            40 + self.exts.iter().map(|e| e.size()).sum::<usize>()
        } else {
            20 + 4 * usize::from(self.ipv4_opt_words)
        }
    }

    /// Offset of the L4 header in the built (unfragmented) frame.
    pub fn l4_offset(&self) -> usize {
        self.l3_offset() + self.ip_header_len()
    }

    fn ipv4_options_bytes(&self) -> Vec<u8> {
        let n = 4 * usize::from(self.ipv4_opt_words);
        let mut o = vec![1u8; n]; // NOP
        if let Some(last) = o.last_mut() {
            *last = 0; // EOL
        }
        o
    }

    /// The frame as etherparse writes it, without the IPv6 extension headers.
    fn base_frame(&self) -> Vec<u8> {
        let ip = match (self.src, self.dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let mut h = Ipv4Header::new(0, self.ttl, IpNumber(self.l4_proto()), s.octets(), d.octets())
                    .expect("an empty IPv4 payload fits");
                h.identification = 1;
                h.options = Ipv4Options::try_from(&self.ipv4_options_bytes()[..]).expect("at most 40 option bytes");
                IpHeaders::Ipv4(h, Default::default())
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
                Ipv6Header {
                    traffic_class: 0,
                    flow_label: Ipv6FlowLabel::ZERO,
                    payload_length: 0,
                    next_header: IpNumber(self.l4_proto()),
                    hop_limit: self.ttl,
                    source: s.octets(),
                    destination: d.octets(),
                },
                Default::default(),
            ),
            _ => unreachable!("checked in new()"),
        };
        let eth = etherparse::PacketBuilder::ethernet2(self.src_mac, self.dst_mac);
        let tag = |vid: u16| SingleVlanHeader {
            pcp: VlanPcp::ZERO,
            drop_eligible_indicator: false,
            vlan_id: VlanId::try_new(vid).expect("12-bit VID"),
            ether_type: Default::default(), // set by the builder
        };
        let step = match self.vlan {
            None => eth.ip(ip),
            Some(Vlan::Single(v)) => eth.vlan(VlanHeader::Single(tag(v))).ip(ip),
            Some(Vlan::QinQ(o, i)) => {
                eth.vlan(VlanHeader::Double(DoubleVlanHeader { outer: tag(o), inner: tag(i) })).ip(ip)
            }
        };
        let mut out = Vec::new();
        let written = match self.l4 {
            L4::Udp { sport, dport } => step.udp(sport, dport).write(&mut out, &self.payload),
            L4::Tcp { sport, dport, flags, data_offset_words } => {
                let mut t = step.tcp(sport, dport, 1, 64240);
                for (bit, set) in [(TCP_FIN, 0), (TCP_SYN, 1), (TCP_RST, 2), (TCP_PSH, 3), (TCP_URG, 4)] {
                    if flags & bit != 0 {
                        t = match set {
                            0 => t.fin(),
                            1 => t.syn(),
                            2 => t.rst(),
                            3 => t.psh(),
                            _ => t.urg(0),
                        };
                    }
                }
                if flags & TCP_ACK != 0 {
                    t = t.ack(1);
                }
                let opts = vec![1u8; 4 * (usize::from(data_offset_words) - 5)]; // NOP
                t.options_raw(&opts).expect("TCP options fit").write(&mut out, &self.payload)
            }
            L4::Icmp if self.is_v6() => step.icmpv6_echo_request(1, 1).write(&mut out, &self.payload),
            L4::Icmp => step.icmpv4_echo_request(1, 1).write(&mut out, &self.payload),
        };
        written.unwrap_or_else(|e| panic!("etherparse could not write the frame: {e}"));
        out
    }

    /// The extension-header chain whose last header points at `last_next`:
    /// (value of the IPv6 header's next-header field, bytes).
    fn ext_chain(&self, last_next: u8) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        for (i, e) in self.exts.iter().enumerate() {
            let next = self.exts.get(i + 1).map_or(last_next, |n| n.code());
            out.extend_from_slice(&e.bytes(next, i));
        }
        (self.exts.first().map_or(last_next, |e| e.code()), out)
    }

    /// The complete frame.
    pub fn build(&self) -> Vec<u8> {
        let mut f = self.base_frame();
        if self.is_v6() && !self.exts.is_empty() {
            // The L4 checksum covers the pseudo-header (addresses, upper-layer length, final
            // next header), which an extension header does not change.
            let l3 = self.l3_offset();
            let (first, chain) = self.ext_chain(self.l4_proto());
            let plen = u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) as usize + chain.len();
            f[l3 + 4..l3 + 6].copy_from_slice(&u16::try_from(plen).expect("IPv6 payload too long").to_be_bytes());
            f[l3 + 6] = first;
            f.splice(l3 + 40..l3 + 40, chain);
        }
        f
    }

    /// The IP payload of the unfragmented packet: the L4 header (with its checksum) and data.
    pub fn ip_payload(&self) -> Vec<u8> {
        self.build()[self.l4_offset()..].to_vec()
    }

    /// The packet as IP fragments of at most `max_frag_payload` bytes of IP payload each (rounded
    /// down to a multiple of 8). IPv4 fragments carry the options in the first fragment only;
    /// IPv6 fragments carry the extension chain, then a Fragment header. The first fragment
    /// always holds the whole L4 header. A payload that fits yields one frame with offset 0 and
    /// no more-fragments flag. Panics if `max_frag_payload < 8`.
    pub fn build_fragments(&self, max_frag_payload: usize, id: u32) -> Vec<Vec<u8>> {
        let whole = self.build();
        let seg = &whole[self.l4_offset()..];
        let l4_len = match self.l4 {
            L4::Udp { .. } | L4::Icmp => 8,
            L4::Tcp { data_offset_words, .. } => 4 * usize::from(data_offset_words),
        };
        let link = &whole[..self.l3_offset()];
        let ranges = fragment_ranges(seg.len(), max_frag_payload, l4_len);
        let n = ranges.len();
        ranges
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let more = i + 1 < n;
                let chunk = &seg[start..end];
                let offset = IpFragOffset::try_new((start / 8) as u16).expect("13-bit fragment offset");
                let mut f = link.to_vec();
                match (self.src, self.dst) {
                    (IpAddr::V4(s), IpAddr::V4(d)) => {
                        let mut h = Ipv4Header::new(
                            chunk.len() as u16,
                            self.ttl,
                            IpNumber(self.l4_proto()),
                            s.octets(),
                            d.octets(),
                        )
                        .expect("fragment fits");
                        h.identification = id as u16;
                        h.dont_fragment = false;
                        h.more_fragments = more;
                        h.fragment_offset = offset;
                        if i == 0 {
                            h.options = Ipv4Options::try_from(&self.ipv4_options_bytes()[..]).expect("options");
                            h.set_payload_len(chunk.len()).expect("fragment fits");
                        }
                        h.header_checksum = h.calc_header_checksum();
                        f.extend_from_slice(&h.to_bytes());
                    }
                    (IpAddr::V6(s), IpAddr::V6(d)) => {
                        let (first, chain) = self.ext_chain(FRAGMENT);
                        let fh = Ipv6FragmentHeader::new(IpNumber(self.l4_proto()), offset, more, id);
                        let h = Ipv6Header {
                            traffic_class: 0,
                            flow_label: Ipv6FlowLabel::ZERO,
                            payload_length: (chain.len() + 8 + chunk.len()) as u16,
                            next_header: IpNumber(first),
                            hop_limit: self.ttl,
                            source: s.octets(),
                            destination: d.octets(),
                        };
                        f.extend_from_slice(&h.to_bytes());
                        f.extend_from_slice(&chain);
                        f.extend_from_slice(&fh.to_bytes());
                    }
                    _ => unreachable!(),
                }
                f.extend_from_slice(chunk);
                f
            })
            .collect()
    }
}

/// Byte ranges of the fragments: all but the last a multiple of 8; the first at least
/// `first_min` bytes (rounded up to 8).
fn fragment_ranges(total: usize, max: usize, first_min: usize) -> Vec<(usize, usize)> {
    let step = max / 8 * 8;
    assert!(step > 0, "build_fragments: max_frag_payload must be >= 8 (got {max})");
    let mut size = step.max(first_min.div_ceil(8) * 8);
    let mut out = Vec::new();
    let mut start = 0;
    loop {
        let end = (start + size).min(total);
        out.push((start, end));
        if end == total {
            return out;
        }
        start = end;
        size = step;
    }
}

// ------------------------------------------------------------------------------------------
// Malformations (what etherparse refuses to write).
// ------------------------------------------------------------------------------------------

/// The first `len` bytes of `frame`.
pub fn truncated(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len.min(frame.len())].to_vec()
}

/// Where the IP and L4 headers of a well-formed frame start (etherparse finds them).
fn offsets(frame: &[u8]) -> (usize, Option<usize>) {
    let p = SlicedPacket::from_ethernet(frame).unwrap_or_else(|e| panic!("not a well-formed frame: {e}"));
    let at = |s: &[u8]| s.as_ptr() as usize - frame.as_ptr() as usize;
    let l3 = match &p.net {
        Some(NetSlice::Ipv4(v4)) => at(v4.header().slice()),
        Some(NetSlice::Ipv6(v6)) => at(v6.header().slice()),
        _ => panic!("not an IP frame"),
    };
    let l4 = match &p.transport {
        Some(TransportSlice::Udp(u)) => Some(at(u.slice())),
        Some(TransportSlice::Tcp(t)) => Some(at(t.slice())),
        _ => None,
    };
    (l3, l4)
}

/// A copy of an IPv4 frame with the version/IHL byte rewritten (IHL in 32-bit words).
pub fn with_ipv4_version_ihl(frame: &[u8], version: u8, ihl: u8) -> Vec<u8> {
    let (l3, _) = offsets(frame);
    let mut f = frame.to_vec();
    f[l3] = version << 4 | (ihl & 0x0f);
    f
}

/// A copy of a UDP frame with the UDP length field rewritten.
pub fn with_udp_length(frame: &[u8], len: u16) -> Vec<u8> {
    let (_, l4) = offsets(frame);
    let l4 = l4.expect("a UDP frame");
    let mut f = frame.to_vec();
    f[l4 + 4..l4 + 6].copy_from_slice(&len.to_be_bytes());
    f
}

/// A copy of a TCP frame with the data offset rewritten (in 32-bit words).
pub fn with_tcp_data_offset(frame: &[u8], words: u8) -> Vec<u8> {
    let (_, l4) = offsets(frame);
    let l4 = l4.expect("a TCP frame");
    let mut f = frame.to_vec();
    f[l4 + 12] = (words << 4) | (f[l4 + 12] & 0x0f);
    f
}

/// A copy of `frame` with the EtherType after the MAC addresses rewritten.
pub fn with_ethertype(frame: &[u8], ethertype: u16) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[12..14].copy_from_slice(&ethertype.to_be_bytes());
    f
}

// ------------------------------------------------------------------------------------------
// Decoding.
// ------------------------------------------------------------------------------------------

/// A frame read back with etherparse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decoded {
    /// VLAN tags, outermost first: (TPID, VID).
    pub vlans: Vec<(u16, u16)>,
    pub src: IpAddr,
    pub dst: IpAddr,
    /// IPv4: IHL in bytes; IPv6: 40.
    pub ip_header_len: usize,
    /// IPv6 extension headers in order: (next-header code, length in bytes).
    pub exts: Vec<(u8, usize)>,
    /// Protocol of the IP payload (after the extension headers).
    pub proto: u8,
    /// Fragment offset in bytes and more-fragments flag, if the packet is a fragment.
    pub fragment: Option<(usize, bool)>,
    /// UDP/TCP ports (of unfragmented packets).
    pub ports: Option<(u16, u16)>,
    /// Whether the UDP/TCP/ICMP checksum and the IPv4 header checksum are correct.
    pub checksums_ok: bool,
    /// The IP payload (L4 header and data).
    pub ip_payload: Vec<u8>,
    /// The L4 payload (after the UDP/TCP/ICMP header), if there is one.
    pub l4_payload: Vec<u8>,
}

/// Decode a well-formed Ethernet frame; `Err` names what etherparse rejected.
pub fn decode(frame: &[u8]) -> Result<Decoded, String> {
    let p = SlicedPacket::from_ethernet(frame).map_err(|e| e.to_string())?;
    let mut vlans = Vec::new();
    let mut tpid = match &p.link {
        Some(LinkSlice::Ethernet2(e)) => e.ether_type().0,
        _ => return Err("no Ethernet II header".into()),
    };
    for x in &p.link_exts {
        if let LinkExtSlice::Vlan(v) = x {
            vlans.push((tpid, v.vlan_identifier().value()));
            tpid = v.ether_type().0;
        }
    }
    enum IpHeader {
        V4(Ipv4Header),
        V6(Ipv6Header),
    }
    let (ip, src, dst, ip_header_len, exts, fragment, payload, mut checksums_ok) = match &p.net {
        Some(NetSlice::Ipv4(v4)) => {
            let h = v4.header().to_header();
            let frag = h.more_fragments || h.fragment_offset.value() != 0;
            let ok = h.header_checksum == h.calc_header_checksum();
            (
                IpHeader::V4(h.clone()),
                IpAddr::from(h.source),
                IpAddr::from(h.destination),
                h.header_len(),
                vec![],
                frag.then_some((usize::from(h.fragment_offset.byte_offset()), h.more_fragments)),
                v4.payload().clone(),
                ok,
            )
        }
        Some(NetSlice::Ipv6(v6)) => {
            let h = v6.header().to_header();
            let mut exts = Vec::new();
            let mut code = h.next_header.0;
            let mut fragment = None;
            for e in v6.extensions().clone() {
                let (len, next) = match &e {
                    etherparse::Ipv6ExtensionSlice::HopByHop(s)
                    | etherparse::Ipv6ExtensionSlice::Routing(s)
                    | etherparse::Ipv6ExtensionSlice::DestinationOptions(s) => (s.slice().len(), s.next_header().0),
                    etherparse::Ipv6ExtensionSlice::Fragment(s) => {
                        let f = s.to_header();
                        if f.is_fragmenting_payload() {
                            fragment = Some((usize::from(f.fragment_offset.byte_offset()), f.more_fragments));
                        }
                        (8, f.next_header.0)
                    }
                    etherparse::Ipv6ExtensionSlice::Authentication(s) => (s.slice().len(), s.next_header().0),
                };
                exts.push((code, len));
                code = next;
            }
            let (src, dst) = (IpAddr::from(h.source), IpAddr::from(h.destination));
            (IpHeader::V6(h), src, dst, 40, exts, fragment, v6.payload().clone(), true)
        }
        _ => return Err("not an IP frame".into()),
    };
    let ip_payload = payload.payload.to_vec();
    let (l4, l4_payload, ports) = match &p.transport {
        Some(TransportSlice::Udp(u)) => {
            (Some(TransportHeader::Udp(u.to_header())), u.payload(), Some((u.source_port(), u.destination_port())))
        }
        Some(TransportSlice::Tcp(t)) => {
            (Some(TransportHeader::Tcp(t.to_header())), t.payload(), Some((t.source_port(), t.destination_port())))
        }
        Some(TransportSlice::Icmpv4(i)) => (Some(TransportHeader::Icmpv4(i.header())), i.payload(), None),
        Some(TransportSlice::Icmpv6(i)) => (Some(TransportHeader::Icmpv6(i.header())), i.payload(), None),
        _ => (None, &[][..], None),
    };
    if let Some(have) = l4 {
        // etherparse recomputes the checksum over the same headers and payload.
        let mut want = have.clone();
        let computed = match &ip {
            IpHeader::V4(h) => want.update_checksum_ipv4(h, l4_payload).is_ok(),
            IpHeader::V6(h) => want.update_checksum_ipv6(h, l4_payload).is_ok(),
        };
        checksums_ok &= computed && want == have;
    }
    let l4_payload = l4_payload.to_vec();
    Ok(Decoded {
        vlans,
        src,
        dst,
        ip_header_len,
        exts,
        proto: payload.ip_number.0,
        fragment,
        ports,
        checksums_ok,
        ip_payload,
        l4_payload,
    })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use etherparse::defrag::IpDefragPool;
    use etherparse::IpAuthHeader;

    use super::*;

    fn s4() -> IpAddr {
        "192.0.2.1".parse().unwrap()
    }
    fn d4() -> IpAddr {
        "192.0.2.2".parse().unwrap()
    }
    fn s6() -> IpAddr {
        "2001:db8::1".parse().unwrap()
    }
    fn d6() -> IpAddr {
        "2001:db8::2".parse().unwrap()
    }

    fn ok(f: &[u8]) -> Decoded {
        let d = decode(f).unwrap_or_else(|e| panic!("etherparse rejects the frame: {e}"));
        assert!(d.checksums_ok, "checksums: {d:?}");
        d
    }

    #[test]
    fn ipv4_udp() {
        let f = PacketBuilder::udp(s4(), d4(), 5062, 5060).payload(b"hello").ttl(33).build();
        assert_eq!(&f[0..6], &DEFAULT_DST_MAC);
        assert_eq!(&f[6..12], &DEFAULT_SRC_MAC);
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        let d = ok(&f);
        assert_eq!((d.src, d.dst, d.proto, d.ports), (s4(), d4(), 17, Some((5062, 5060))));
        assert_eq!(d.l4_payload, b"hello");
        assert_eq!(f[14 + 8], 33, "TTL");
        assert_eq!(f[14 + 6] & 0x40, 0x40, "DF, as Linux sends");
    }

    #[test]
    fn odd_and_empty_payloads_have_valid_checksums() {
        for len in [0usize, 1, 2, 3, 255, 1000, 1471] {
            let p: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            for (s, d) in [(s4(), d4()), (s6(), d6())] {
                assert_eq!(ok(&PacketBuilder::udp(s, d, 1234, 5060).payload(&p).build()).l4_payload, p);
                assert_eq!(ok(&PacketBuilder::tcp(s, d, 1234, 5060).payload(&p).build()).l4_payload, p);
            }
        }
    }

    #[test]
    fn vlan_tags_and_macs() {
        let src = [0xaa, 1, 2, 3, 4, 5];
        let dst = [0xbb, 1, 2, 3, 4, 5];
        let f = PacketBuilder::udp(s4(), d4(), 1, 2).vlan(100).macs(src, dst).build();
        assert_eq!((&f[0..6], &f[6..12]), (&dst[..], &src[..]));
        assert_eq!(ok(&f).vlans, vec![(0x8100, 100)]);
        let b = PacketBuilder::udp(s6(), d6(), 1, 2).qinq(300, 4000);
        assert_eq!(b.l3_offset(), 22);
        assert_eq!(ok(&b.build()).vlans, vec![(0x88a8, 300), (0x8100, 4000)]);
    }

    #[test]
    fn ipv4_options_grow_the_ihl() {
        for words in [1u8, 3, 10] {
            let f = PacketBuilder::udp(s4(), d4(), 1000, 5060).payload(b"x").ipv4_options(words).build();
            let d = ok(&f);
            assert_eq!(d.ip_header_len, 20 + 4 * usize::from(words));
            assert_eq!(d.ports, Some((1000, 5060)));
        }
    }

    #[test]
    fn tcp_flags_and_options() {
        let l4 = L4::Tcp { sport: 40000, dport: 5061, flags: TCP_SYN, data_offset_words: 15 };
        let f = PacketBuilder::new(s6(), d6(), l4).payload(b"abc").build();
        let d = ok(&f);
        assert_eq!(d.ip_payload[12] >> 4, 15);
        assert_eq!(d.ip_payload[13], TCP_SYN);
        assert_eq!(d.l4_payload, b"abc");
        let f = PacketBuilder::tcp(s4(), d4(), 1, 2).build();
        assert_eq!(ok(&f).ip_payload[13], TCP_PSH | TCP_ACK);
    }

    #[test]
    fn icmp_echo() {
        let d = ok(&PacketBuilder::new(s4(), d4(), L4::Icmp).payload(b"ping").build());
        assert_eq!((d.proto, d.ip_payload[0]), (1, 8));
        let d = ok(&PacketBuilder::new(s6(), d6(), L4::Icmp).payload(b"ping").build());
        assert_eq!((d.proto, d.ip_payload[0]), (58, 128));
    }

    #[test]
    #[should_panic(expected = "same address family")]
    fn mixed_families_panic() {
        let _ = PacketBuilder::udp(s4(), d6(), 1, 2);
    }

    #[test]
    fn ipv6_extension_chain() {
        let b = PacketBuilder::udp(s6(), d6(), 5060, 5060)
            .ipv6_ext(HOP_BY_HOP, 0)
            .ipv6_ext(ROUTING, 1)
            .ipv6_ext(DEST_OPTS, 2)
            .payload(b"INVITE");
        let f = b.build();
        let d = ok(&f);
        assert_eq!(d.exts, vec![(0, 8), (43, 16), (60, 24)]);
        assert_eq!((d.proto, d.ports), (17, Some((5060, 5060))));
        assert_eq!(b.l4_offset(), 14 + 40 + 48);
        assert_eq!(&f[b.l4_offset() + 8..], b"INVITE");
    }

    #[test]
    fn authentication_header() {
        // AH with a 96-bit ICV: payload length 4, (4 + 2) * 4 = 24 bytes.
        let b = PacketBuilder::udp(s6(), d6(), 5070, 5060).ipv6_ah(4).payload(b"REGISTER sip:x SIP/2.0\r\n\r\n");
        let f = b.build();
        let l3 = b.l3_offset();
        assert_eq!(f[l3 + 6], AUTH, "the IPv6 header points at the AH");
        assert_eq!(f[l3 + 40], 17, "the AH points at UDP");
        assert_eq!(f[l3 + 41], 4, "AH payload length in 4-octet units minus 2");
        let d = ok(&f);
        assert_eq!(d.exts, vec![(AUTH, 24)]);
        assert_eq!((d.proto, d.ports), (17, Some((5070, 5060))));
        // etherparse reads back the fixed fields.
        let (ah, _) = IpAuthHeader::from_slice(&f[l3 + 40..]).unwrap();
        assert_eq!((ah.next_header, ah.spi, ah.sequence_number, ah.raw_icv().len()), (ip_number::UDP, 0x100, 1, 12));
        // Between other extension headers.
        let f =
            PacketBuilder::udp(s6(), d6(), 1, 5060).ipv6_ext(HOP_BY_HOP, 0).ipv6_ah(2).ipv6_ext(DEST_OPTS, 1).build();
        assert_eq!(ok(&f).exts, vec![(0, 8), (AUTH, 16), (60, 16)]);
    }

    #[test]
    fn padding_options_tile_large_headers() {
        let mut v = Vec::new();
        push_padding_options(&mut v, 2046);
        assert_eq!(v.len(), 2046);
        let mut i = 0;
        while i < v.len() {
            i += if v[i] == 0 { 1 } else { usize::from(v[i + 1]) + 2 };
        }
        assert_eq!(i, v.len());
    }

    /// Reassemble with etherparse's defragmenter; the result must be the unfragmented IP payload.
    fn reassemble(frags: &[Vec<u8>]) -> Vec<u8> {
        let mut pool = IpDefragPool::<(), ()>::new();
        let mut done = None;
        for f in frags {
            let p = SlicedPacket::from_ethernet(f).unwrap();
            if let Some(v) = pool.process_sliced_packet(&p, (), ()).unwrap() {
                done = Some(v.payload);
            }
        }
        done.expect("the fragments reassemble")
    }

    #[test]
    fn ipv4_fragments() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let b = PacketBuilder::udp(s4(), d4(), 5060, 5060).payload(&payload).vlan(42).ipv4_options(2);
        let frags = b.build_fragments(300, 0x1_abcd);
        // 1008 bytes in 296-byte pieces: 296 * 3 + 120.
        assert_eq!(frags.len(), 4);
        for (i, f) in frags.iter().enumerate() {
            let d = decode(f).unwrap();
            assert!(d.checksums_ok, "IPv4 header checksum of fragment {i}");
            assert_eq!(d.vlans, vec![(0x8100, 42)]);
            assert_eq!(d.ip_header_len, if i == 0 { 28 } else { 20 }, "options only in the first fragment");
            assert_eq!(d.fragment, Some((i * 296, i + 1 < frags.len())));
            assert_eq!(u16::from_be_bytes([f[18 + 4], f[18 + 5]]), 0xabcd, "identification");
        }
        let whole = reassemble(&frags);
        assert_eq!(whole, b.ip_payload());
        let udp = etherparse::UdpSlice::from_slice(&whole).unwrap();
        let sum = udp.to_header().calc_checksum_ipv4_raw([192, 0, 2, 1], [192, 0, 2, 2], udp.payload()).unwrap();
        assert_eq!(sum, udp.checksum());
        assert_eq!(udp.payload(), &payload[..]);

        let single = PacketBuilder::udp(s4(), d4(), 1, 2).payload(b"short").build_fragments(1400, 7);
        assert_eq!(single.len(), 1);
        assert_eq!(decode(&single[0]).unwrap().fragment, None, "offset 0 and no MF: not a fragment");
    }

    #[test]
    fn the_first_fragment_holds_the_l4_header() {
        let l4 = L4::Tcp { sport: 1, dport: 5060, flags: TCP_ACK, data_offset_words: 15 };
        let b = PacketBuilder::new(s4(), d4(), l4).payload(&[0x55; 100]);
        let frags = b.build_fragments(16, 9);
        assert_eq!(decode(&frags[0]).unwrap().ip_payload.len(), 64, "60-byte header rounded up to 64");
        assert_eq!(reassemble(&frags), b.ip_payload());
    }

    #[test]
    #[should_panic(expected = "must be >= 8")]
    fn fragments_too_small() {
        let _ = PacketBuilder::udp(s4(), d4(), 1, 2).build_fragments(7, 1);
    }

    #[test]
    fn ipv6_fragments() {
        let payload: Vec<u8> = (0..777u32).map(|i| (i * 13) as u8).collect();
        let b = PacketBuilder::udp(s6(), d6(), 5060, 5060)
            .payload(&payload)
            .qinq(5, 6)
            .ipv6_ext(HOP_BY_HOP, 0)
            .ipv6_ext(DEST_OPTS, 1);
        let frags = b.build_fragments(203, 0xdead_beef);
        assert_eq!(frags.len(), 4); // 785 bytes: 200 * 3 + 185
        for (i, f) in frags.iter().enumerate() {
            let d = decode(f).unwrap();
            assert_eq!(d.exts, vec![(0, 8), (60, 16), (FRAGMENT, 8)], "the Fragment header after the others");
            assert_eq!(d.proto, 17);
            assert_eq!(d.fragment, Some((i * 200, i + 1 < frags.len())));
        }
        let whole = reassemble(&frags);
        assert_eq!(whole, b.ip_payload());
        let udp = etherparse::UdpSlice::from_slice(&whole).unwrap();
        let (IpAddr::V6(s), IpAddr::V6(d)) = (s6(), d6()) else { unreachable!() };
        assert_eq!(
            udp.to_header().calc_checksum_ipv6_raw(s.octets(), d.octets(), udp.payload()).unwrap(),
            udp.checksum()
        );

        // No other extension headers: the IPv6 header points at the Fragment header.
        let frags = PacketBuilder::udp(s6(), d6(), 1, 2).payload(&[1; 64]).build_fragments(32, 3);
        assert_eq!(frags.len(), 3);
        assert_eq!(frags[0][14 + 6], FRAGMENT);
        assert_eq!(
            Ipv6Addr::from(<[u8; 16]>::try_from(&frags[2][14 + 8..14 + 24]).unwrap()),
            "2001:db8::1".parse::<Ipv6Addr>().unwrap()
        );
    }

    #[test]
    fn malformations() {
        let f = PacketBuilder::udp(s4(), d4(), 1, 2).build();
        assert_eq!(truncated(&f, 20), f[..20].to_vec());
        assert_eq!(truncated(&f, 10_000), f);
        let bad = with_ipv4_version_ihl(&f, 5, 5);
        assert_eq!(bad[14], 0x55);
        assert!(decode(&bad).is_err());
        assert_eq!(with_udp_length(&f, 4)[14 + 20 + 4..14 + 20 + 6], [0, 4]);
        let t = PacketBuilder::tcp(s6(), d6(), 1, 2).vlan(3).build();
        assert_eq!(with_tcp_data_offset(&t, 4)[18 + 40 + 12] >> 4, 4);
        assert_eq!(with_ethertype(&f, 0x0806)[12..14], [0x08, 0x06]);
    }
}
