//! Raw Ethernet frame and SIP message builders.
//!
//! Used by tests, benchmarks, the demo and pcap generation. Every frame is
//! valid on the wire: IPv4 header checksums and UDP/TCP/ICMP checksums
//! (including the v4/v6 pseudo-headers) are computed for real, because some
//! frames are injected through veth pairs and the kernel drops bad ones.
//!
//! Everything is deterministic (no randomness) so tests are reproducible.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// EtherType of IPv4.
pub const ETHERTYPE_IPV4: u16 = 0x0800;
/// EtherType of IPv6.
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
/// TPID of an 802.1Q VLAN tag.
pub const ETHERTYPE_VLAN: u16 = 0x8100;
/// TPID of an 802.1ad (QinQ service) tag.
pub const ETHERTYPE_QINQ: u16 = 0x88a8;

/// IPv6 Hop-by-Hop Options header.
pub const IPPROTO_HOPOPTS: u8 = 0;
/// ICMP (IPv4).
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// IPv6 Routing header.
pub const IPPROTO_ROUTING: u8 = 43;
/// IPv6 Fragment header.
pub const IPPROTO_FRAGMENT: u8 = 44;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;
/// IPv6 Destination Options header.
pub const IPPROTO_DSTOPTS: u8 = 60;

/// TCP FIN flag (byte 13 of the TCP header).
pub const TCP_FIN: u8 = 0x01;
/// TCP SYN flag.
pub const TCP_SYN: u8 = 0x02;
/// TCP RST flag.
pub const TCP_RST: u8 = 0x04;
/// TCP PSH flag.
pub const TCP_PSH: u8 = 0x08;
/// TCP ACK flag.
pub const TCP_ACK: u8 = 0x10;
/// TCP URG flag.
pub const TCP_URG: u8 = 0x20;

/// IPv4 "don't fragment" and "more fragments" bits of the flags/offset word.
const IPV4_DF: u16 = 0x4000;
const IPV4_MF: u16 = 0x2000;

/// Default source MAC (locally administered).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC (locally administered).
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Minimum Ethernet frame length without FCS.
pub const ETH_MIN_FRAME: usize = 60;

/// Layer-4 content of a packet.
#[derive(Clone, Debug)]
pub enum L4 {
    /// UDP datagram.
    Udp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
    },
    /// TCP segment (seq 1, ack 1 if ACK is set, window 64240).
    Tcp {
        /// Source port.
        sport: u16,
        /// Destination port.
        dport: u16,
        /// Flag byte, see `TCP_*`.
        flags: u8,
        /// Header length in 32-bit words, 5..=15; option space is NOP (1) filled.
        data_offset_words: u8,
    },
    /// ICMP echo request (v4: type 8) or ICMPv6 echo request (type 128).
    Icmp,
    /// Raw protocol number; the payload is the whole IP payload.
    Other(u8),
}

impl L4 {
    /// IP protocol number for the given address family.
    fn proto(&self, v6: bool) -> u8 {
        match self {
            L4::Udp { .. } => IPPROTO_UDP,
            L4::Tcp { .. } => IPPROTO_TCP,
            L4::Icmp if v6 => IPPROTO_ICMPV6,
            L4::Icmp => IPPROTO_ICMP,
            L4::Other(p) => *p,
        }
    }

    /// Length of the L4 header (0 for `Other`).
    fn header_len(&self) -> usize {
        match self {
            L4::Udp { .. } | L4::Icmp => 8,
            L4::Tcp { data_offset_words, .. } => usize::from(*data_offset_words) * 4,
            L4::Other(_) => 0,
        }
    }
}

/// Builder for a complete Ethernet frame (optionally VLAN tagged) carrying
/// IPv4 or IPv6 and a UDP/TCP/ICMP/raw payload.
#[derive(Clone, Debug)]
pub struct PacketBuilder {
    src: IpAddr,
    dst: IpAddr,
    l4: L4,
    payload: Vec<u8>,
    /// (TPID, TCI) pairs, outermost first.
    tags: Vec<(u16, u16)>,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ttl: u8,
    ipv4_opt_words: u8,
    /// (next-header code, length in 8-octet units not counting the first 8).
    ipv6_ext: Vec<(u8, u8)>,
    ip_id: u16,
    dont_fragment: bool,
    pad_min: bool,
}

impl PacketBuilder {
    /// New builder. Panics if `src` and `dst` are of different families or
    /// if a TCP data offset is outside 5..=15.
    pub fn new(src: IpAddr, dst: IpAddr, l4: L4) -> Self {
        assert!(
            src.is_ipv4() == dst.is_ipv4(),
            "PacketBuilder: src ({src}) and dst ({dst}) must be the same address family"
        );
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
            tags: Vec::new(),
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            ttl: 64,
            ipv4_opt_words: 0,
            ipv6_ext: Vec::new(),
            ip_id: 1,
            dont_fragment: true,
            pad_min: false,
        }
    }

    /// UDP packet.
    pub fn udp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Udp { sport, dport })
    }

    /// TCP segment with PSH|ACK and no options.
    pub fn tcp(src: IpAddr, dst: IpAddr, sport: u16, dport: u16) -> Self {
        Self::new(src, dst, L4::Tcp { sport, dport, flags: TCP_PSH | TCP_ACK, data_offset_words: 5 })
    }

    /// Set the L4 payload (replaces any previous one).
    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    /// Push an 802.1Q tag (VID masked to 12 bits). The first pushed tag is outermost.
    pub fn vlan(self, vid: u16) -> Self {
        self.vlan_raw(ETHERTYPE_VLAN, vid & 0x0fff)
    }

    /// Outer 802.1ad tag followed by an inner 802.1Q tag.
    pub fn qinq(self, outer_vid: u16, inner_vid: u16) -> Self {
        self.vlan_raw(ETHERTYPE_QINQ, outer_vid & 0x0fff).vlan(inner_vid)
    }

    /// Push an arbitrary tag: `tpid` followed by the raw 16-bit TCI (PCP/DEI/VID).
    pub fn vlan_raw(mut self, tpid: u16, tci: u16) -> Self {
        self.tags.push((tpid, tci));
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

    /// Add `words` 32-bit words of IPv4 options (NOPs ending with EOL).
    /// Ignored for IPv6. Panics if the IHL would exceed 15.
    pub fn ipv4_options(mut self, words: u8) -> Self {
        assert!(words <= 10, "PacketBuilder: at most 10 words of IPv4 options");
        self.ipv4_opt_words = words;
        self
    }

    /// Append an IPv6 extension header `(len + 1) * 8` bytes long. Codes 0
    /// (hop-by-hop) and 60 (destination options) are filled with Pad1/PadN
    /// options; any other code (e.g. 43 routing) gets zeroed type-specific
    /// data (routing type 0, segments left 0, which receivers skip). Ignored
    /// for IPv4.
    pub fn ipv6_ext(mut self, next_header_code: u8, len_8octets_units: u8) -> Self {
        self.ipv6_ext.push((next_header_code, len_8octets_units));
        self
    }

    /// IPv4 identification of the unfragmented packet (default 1).
    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip_id = id;
        self
    }

    /// IPv4 DF bit of the unfragmented packet (default set, as Linux does).
    pub fn dont_fragment(mut self, df: bool) -> Self {
        self.dont_fragment = df;
        self
    }

    /// Zero-pad frames to the 60-byte Ethernet minimum (off by default).
    pub fn pad_to_min_frame(mut self) -> Self {
        self.pad_min = true;
        self
    }

    fn is_v6(&self) -> bool {
        self.src.is_ipv6()
    }

    /// IP protocol number of the L4 content.
    pub fn l4_proto(&self) -> u8 {
        self.l4.proto(self.is_v6())
    }

    /// Offset of the IP header inside the built frame.
    pub fn l3_offset(&self) -> usize {
        14 + 4 * self.tags.len()
    }

    /// The IP payload of the unfragmented packet: L4 header (with valid
    /// checksum) followed by the data.
    pub fn ip_payload(&self) -> Vec<u8> {
        let v6 = self.is_v6();
        let proto = self.l4_proto();
        let mut seg = match &self.l4 {
            L4::Udp { sport, dport } => {
                let len = 8 + self.payload.len();
                assert!(len <= 0xffff, "PacketBuilder: UDP datagram too long ({len})");
                let mut h = Vec::with_capacity(len);
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&(len as u16).to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h
            }
            L4::Tcp { sport, dport, flags, data_offset_words } => {
                let hl = usize::from(*data_offset_words) * 4;
                let mut h = Vec::with_capacity(hl + self.payload.len());
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&1u32.to_be_bytes()); // seq
                let ack: u32 = if flags & TCP_ACK != 0 { 1 } else { 0 };
                h.extend_from_slice(&ack.to_be_bytes());
                h.push(data_offset_words << 4);
                h.push(*flags);
                h.extend_from_slice(&64240u16.to_be_bytes()); // window
                h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
                h.resize(hl, 1); // NOP options
                h
            }
            L4::Icmp => {
                // Echo request, identifier 1, sequence 1.
                vec![if v6 { 128 } else { 8 }, 0, 0, 0, 0, 1, 0, 1]
            }
            L4::Other(_) => Vec::new(),
        };
        seg.extend_from_slice(&self.payload);

        let csum_at = match self.l4 {
            L4::Udp { .. } => Some(6),
            L4::Tcp { .. } => Some(16),
            L4::Icmp => Some(2),
            L4::Other(_) => None,
        };
        if let Some(at) = csum_at {
            // ICMPv4 has no pseudo-header; everything else here does.
            let mut data = if matches!(self.l4, L4::Icmp) && !v6 {
                Vec::new()
            } else {
                pseudo_header(self.src, self.dst, proto, seg.len())
            };
            data.extend_from_slice(&seg);
            let mut c = checksum(&data);
            if c == 0 && matches!(self.l4, L4::Udp { .. }) {
                c = 0xffff; // 0 means "no checksum" for UDP
            }
            seg[at..at + 2].copy_from_slice(&c.to_be_bytes());
        }
        seg
    }

    /// Ethernet header including VLAN tags, ending with `ethertype`.
    fn eth_header(&self, ethertype: u16) -> Vec<u8> {
        let mut f = Vec::with_capacity(128);
        f.extend_from_slice(&self.dst_mac);
        f.extend_from_slice(&self.src_mac);
        for (tpid, tci) in &self.tags {
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&tci.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    /// IPv4 header with checksum. `frag` is the flags/fragment-offset word.
    fn ipv4_header(&self, payload_len: usize, id: u16, frag: u16, opt_words: u8) -> Vec<u8> {
        let (IpAddr::V4(src), IpAddr::V4(dst)) = (self.src, self.dst) else {
            unreachable!("ipv4_header on IPv6 builder")
        };
        let hl = 20 + usize::from(opt_words) * 4;
        let total = hl + payload_len;
        assert!(total <= 0xffff, "PacketBuilder: IPv4 packet too long ({total})");
        let mut h = Vec::with_capacity(hl);
        h.push(0x40 | (hl / 4) as u8);
        h.push(0); // DSCP/ECN
        h.extend_from_slice(&(total as u16).to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.push(self.ttl);
        h.push(self.l4_proto());
        h.extend_from_slice(&[0, 0]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        if opt_words > 0 {
            h.resize(hl - 1, 1); // NOP
            h.push(0); // EOL
        }
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    /// Fixed IPv6 header.
    fn ipv6_header(&self, payload_len: usize, next_header: u8) -> Vec<u8> {
        let (IpAddr::V6(src), IpAddr::V6(dst)) = (self.src, self.dst) else {
            unreachable!("ipv6_header on IPv4 builder")
        };
        assert!(payload_len <= 0xffff, "PacketBuilder: IPv6 payload too long ({payload_len})");
        let mut h = Vec::with_capacity(40);
        h.extend_from_slice(&[0x60, 0, 0, 0]); // version 6, TC 0, flow 0
        h.extend_from_slice(&(payload_len as u16).to_be_bytes());
        h.push(next_header);
        h.push(self.ttl);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        h
    }

    /// The extension-header chain whose last header points at `last_next`.
    /// Returns (value for the IPv6 header's next-header field, bytes).
    fn ipv6_ext_chain(&self, last_next: u8) -> (u8, Vec<u8>) {
        let mut out = Vec::new();
        for (i, &(code, len)) in self.ipv6_ext.iter().enumerate() {
            let next = self.ipv6_ext.get(i + 1).map_or(last_next, |e| e.0);
            let size = (usize::from(len) + 1) * 8;
            out.push(next);
            out.push(len);
            if code == IPPROTO_HOPOPTS || code == IPPROTO_DSTOPTS {
                push_padding_options(&mut out, size - 2);
            } else {
                out.resize(out.len() + size - 2, 0);
            }
        }
        let first = self.ipv6_ext.first().map_or(last_next, |e| e.0);
        (first, out)
    }

    /// Pad to the Ethernet minimum if requested.
    fn finish(&self, mut f: Vec<u8>) -> Vec<u8> {
        if self.pad_min && f.len() < ETH_MIN_FRAME {
            f.resize(ETH_MIN_FRAME, 0);
        }
        f
    }

    /// Complete Ethernet frame with valid checksums.
    pub fn build(&self) -> Vec<u8> {
        let seg = self.ip_payload();
        let f = if self.is_v6() {
            let (first, ext) = self.ipv6_ext_chain(self.l4_proto());
            let mut f = self.eth_header(ETHERTYPE_IPV6);
            f.extend_from_slice(&self.ipv6_header(ext.len() + seg.len(), first));
            f.extend_from_slice(&ext);
            f.extend_from_slice(&seg);
            f
        } else {
            let frag = if self.dont_fragment { IPV4_DF } else { 0 };
            let mut f = self.eth_header(ETHERTYPE_IPV4);
            f.extend_from_slice(&self.ipv4_header(seg.len(), self.ip_id, frag, self.ipv4_opt_words));
            f.extend_from_slice(&seg);
            f
        };
        self.finish(f)
    }

    /// Split the IP payload (L4 header + data) into IP fragments each carrying
    /// at most `max_frag_payload` bytes of IP payload (rounded down to a
    /// multiple of 8 except for the last). IPv4: MF flag and fragment offset,
    /// same id (low 16 bits of `id`); IPv4 options (NOP/EOL, not "copied")
    /// only appear in the first fragment. IPv6: a Fragment header (44) is
    /// inserted after any other extension headers. Returns full Ethernet
    /// frames (VLAN tags kept) in order. The first fragment always contains
    /// the whole L4 header: if it is larger than `max_frag_payload`, the
    /// first fragment grows to the header length rounded up to 8 (see
    /// [`Self::build_fragments_exact`] to split the header too). A payload
    /// that fits in one fragment yields a single frame with offset 0 and
    /// MF clear (an "atomic" fragment for IPv6). Panics if
    /// `max_frag_payload < 8`.
    pub fn build_fragments(&self, max_frag_payload: usize, id: u32) -> Vec<Vec<u8>> {
        self.fragments(max_frag_payload, id, self.l4.header_len())
    }

    /// Like [`Self::build_fragments`] but strictly honours `max_frag_payload`,
    /// even if that splits the L4 header across fragments (tiny-fragment tests).
    pub fn build_fragments_exact(&self, max_frag_payload: usize, id: u32) -> Vec<Vec<u8>> {
        self.fragments(max_frag_payload, id, 0)
    }

    fn fragments(&self, max_frag_payload: usize, id: u32, first_min: usize) -> Vec<Vec<u8>> {
        let seg = self.ip_payload();
        let ranges = fragment_ranges(seg.len(), max_frag_payload, first_min);
        let n = ranges.len();
        ranges
            .into_iter()
            .enumerate()
            .map(|(i, (start, end))| {
                let more = i + 1 < n;
                let chunk = &seg[start..end];
                let f = if self.is_v6() {
                    let (first, ext) = self.ipv6_ext_chain(IPPROTO_FRAGMENT);
                    let mut fh = vec![self.l4_proto(), 0];
                    let off = ((start / 8) as u16) << 3 | u16::from(more);
                    fh.extend_from_slice(&off.to_be_bytes());
                    fh.extend_from_slice(&id.to_be_bytes());
                    let mut f = self.eth_header(ETHERTYPE_IPV6);
                    f.extend_from_slice(&self.ipv6_header(ext.len() + 8 + chunk.len(), first));
                    f.extend_from_slice(&ext);
                    f.extend_from_slice(&fh);
                    f.extend_from_slice(chunk);
                    f
                } else {
                    let frag = (start / 8) as u16 | if more { IPV4_MF } else { 0 };
                    let opts = if i == 0 { self.ipv4_opt_words } else { 0 };
                    let mut f = self.eth_header(ETHERTYPE_IPV4);
                    f.extend_from_slice(&self.ipv4_header(chunk.len(), id as u16, frag, opts));
                    f.extend_from_slice(chunk);
                    f
                };
                self.finish(f)
            })
            .collect()
    }
}

/// Byte ranges of each fragment. Non-last fragments are multiples of 8;
/// the first one is at least `first_min` (rounded up to 8).
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

/// TCP/UDP/ICMPv6 pseudo-header for `len` bytes of upper-layer data.
fn pseudo_header(src: IpAddr, dst: IpAddr, proto: u8, len: usize) -> Vec<u8> {
    let mut p = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.push(0);
            p.push(proto);
            p.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
            p.extend_from_slice(&(len as u32).to_be_bytes());
            p.extend_from_slice(&[0, 0, 0, proto]);
        }
        _ => unreachable!("mixed address families"),
    }
    p
}

/// RFC 1071 Internet checksum of `data` (odd length padded with a zero byte).
/// Verifying: the checksum over data that includes a correct checksum is 0.
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum: u64 = data.chunks(2).map(|c| u64::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]))).sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Truncate a frame to `len` bytes (helper for malformed-packet tests).
pub fn truncated(frame: &[u8], len: usize) -> Vec<u8> {
    frame[..len.min(frame.len())].to_vec()
}

/// Convenience: an IPv4 address as `IpAddr`.
pub fn v4(a: u8, b: u8, c: u8, d: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(a, b, c, d))
}

/// Convenience: parse an IPv6 literal as `IpAddr` (panics on bad input).
pub fn v6(s: &str) -> IpAddr {
    IpAddr::V6(s.parse::<Ipv6Addr>().expect("valid IPv6 literal"))
}

// ---------------------------------------------------------------------------
// SIP messages
// ---------------------------------------------------------------------------

/// Address of the simulated SIP client used in Via/Contact.
const SIP_CLIENT: &str = "198.51.100.10";
/// Default User-Agent of requests.
pub const DEFAULT_USER_AGENT: &str = "Linphone/5.2.0 (belle-sip/5.2.0)";
/// Filler header line lengths (incl. CRLF) used by `user_agent_at`.
const FILL_MIN: usize = 32;
const FILL_MAX: usize = 128;

#[derive(Clone, Debug)]
enum SipKind {
    Request { method: String, user: String, domain: String },
    Response { code: u16, reason: String, cseq_method: String },
}

#[derive(Clone, Debug)]
enum UaSetting {
    /// Requests: [`DEFAULT_USER_AGENT`]; responses: no header.
    Default,
    Custom(String),
    Off,
}

/// SIP request/response generator (CRLF line endings, correct Content-Length).
#[derive(Clone, Debug)]
pub struct SipMessage {
    kind: SipKind,
    ua: UaSetting,
    extra: Vec<(String, String)>,
    compact: bool,
    from_display: Option<String>,
    ua_offset: Option<usize>,
    body: String,
}

impl SipMessage {
    fn with_kind(kind: SipKind) -> Self {
        Self {
            kind,
            ua: UaSetting::Default,
            extra: Vec::new(),
            compact: false,
            from_display: None,
            ua_offset: None,
            body: String::new(),
        }
    }

    /// A request; the URI is `sip:{domain}` for REGISTER, `sip:{user}@{domain}` otherwise.
    pub fn request(method: &str, user: &str, domain: &str) -> Self {
        Self::with_kind(SipKind::Request {
            method: method.to_string(),
            user: user.to_string(),
            domain: domain.to_string(),
        })
    }

    /// A response like "SIP/2.0 200 OK" for a given CSeq method. Responses
    /// carry no User-Agent unless [`Self::user_agent`] is called.
    pub fn response(code: u16, reason: &str, cseq_method: &str) -> Self {
        Self::with_kind(SipKind::Response { code, reason: reason.to_string(), cseq_method: cseq_method.to_string() })
    }

    /// Set the User-Agent header value.
    pub fn user_agent(mut self, ua: &str) -> Self {
        self.ua = UaSetting::Custom(ua.to_string());
        self
    }

    /// Omit the User-Agent header.
    pub fn no_user_agent(mut self) -> Self {
        self.ua = UaSetting::Off;
        self
    }

    /// Extra header written verbatim as `{name}: {value}`, in call order,
    /// after User-Agent and before Content-Type/Content-Length.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.extra.push((name.to_string(), value.to_string()));
        self
    }

    /// Use compact header names (v, f, t, i, m, l, and c for Content-Type).
    pub fn compact(mut self) -> Self {
        self.compact = true;
        self
    }

    /// Display name in From: `"display" <sip:user@domain>;tag=...`.
    pub fn from_display(mut self, display: &str) -> Self {
        self.from_display = Some(display.to_string());
        self
    }

    /// Place the User-Agent line so it starts at `offset` bytes into the
    /// message, by inserting `X-Padding-N: aaa...` filler headers before it
    /// (and, for small offsets, moving it earlier among the standard
    /// headers). Exact whenever possible, otherwise within 32 bytes; never
    /// before the end of the start line.
    pub fn user_agent_at(mut self, offset: usize) -> Self {
        self.ua_offset = Some(offset);
        self
    }

    /// Message body (e.g. SDP); a non-empty body adds Content-Type application/sdp.
    pub fn body(mut self, body: &str) -> Self {
        self.body = body.to_string();
        self
    }

    fn name(&self, full: &'static str, short: &'static str) -> &'static str {
        if self.compact {
            short
        } else {
            full
        }
    }

    /// The serialized message.
    pub fn build(&self) -> Vec<u8> {
        // Deterministic tokens derived from the identifying inputs.
        let seed = match &self.kind {
            SipKind::Request { method, user, domain } => format!("{method}|{user}|{domain}"),
            SipKind::Response { code, reason, cseq_method } => format!("{code}|{reason}|{cseq_method}"),
        };
        let h = fnv1a(seed.as_bytes());
        let branch = format!("z9hG4bK-{}", h % 1_000_000_000);
        let tag = format!("{:08x}", (h >> 32) as u32);
        let call_id = format!("{:016x}@{SIP_CLIENT}", h);
        let display = self.from_display.as_ref().map(|d| format!("\"{d}\" ")).unwrap_or_default();

        let (via, from, to, cid) =
            (self.name("Via", "v"), self.name("From", "f"), self.name("To", "t"), self.name("Call-ID", "i"));
        let mut lines: Vec<String> = Vec::new();
        let ua = match (&self.ua, &self.kind) {
            (UaSetting::Custom(s), _) => Some(s.clone()),
            (UaSetting::Default, SipKind::Request { .. }) => Some(DEFAULT_USER_AGENT.to_string()),
            _ => None,
        };
        match &self.kind {
            SipKind::Request { method, user, domain } => {
                let aor = format!("sip:{user}@{domain}");
                let uri = if method.eq_ignore_ascii_case("REGISTER") { format!("sip:{domain}") } else { aor.clone() };
                lines.push(format!("{method} {uri} SIP/2.0"));
                lines.push(format!("{via}: SIP/2.0/UDP {SIP_CLIENT}:5060;branch={branch};rport"));
                lines.push("Max-Forwards: 70".to_string());
                lines.push(format!("{from}: {display}<{aor}>;tag={tag}"));
                lines.push(format!("{to}: <{aor}>"));
                lines.push(format!("{cid}: {call_id}"));
                lines.push(format!("CSeq: 1 {method}"));
                lines.push(format!("{}: <sip:{user}@{SIP_CLIENT}:5060>", self.name("Contact", "m")));
                if method.eq_ignore_ascii_case("REGISTER") {
                    lines.push("Expires: 3600".to_string());
                }
            }
            SipKind::Response { code, reason, cseq_method } => {
                let aor = "sip:alice@example.com";
                lines.push(format!("SIP/2.0 {code} {reason}"));
                lines.push(format!(
                    "{via}: SIP/2.0/UDP {SIP_CLIENT}:5060;branch={branch};rport=5060;received={SIP_CLIENT}"
                ));
                lines.push(format!("{from}: {display}<{aor}>;tag={tag}"));
                lines.push(format!("{to}: <{aor}>;tag={:08x}", h as u32));
                lines.push(format!("{cid}: {call_id}"));
                lines.push(format!("CSeq: 1 {cseq_method}"));
            }
        }

        if let Some(ua) = ua {
            let ua_line = format!("User-Agent: {ua}");
            match self.ua_offset {
                None => lines.push(ua_line),
                Some(offset) => {
                    let (idx, fill) = ua_placement(&lines, offset);
                    let mut insert = filler_headers(fill);
                    insert.push(ua_line);
                    lines.splice(idx..idx, insert);
                }
            }
        }
        for (n, v) in &self.extra {
            lines.push(format!("{n}: {v}"));
        }
        if !self.body.is_empty() {
            lines.push(format!("{}: application/sdp", self.name("Content-Type", "c")));
        }
        lines.push(format!("{}: {}", self.name("Content-Length", "l"), self.body.len()));

        let mut out = String::new();
        for l in &lines {
            out.push_str(l);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.push_str(&self.body);
        out.into_bytes()
    }
}

/// Choose where to insert the User-Agent (index into `lines`) and how many
/// filler bytes to put before it so that it starts at `offset`.
fn ua_placement(lines: &[String], offset: usize) -> (usize, usize) {
    let prefix = |i: usize| lines[..i].iter().map(|l| l.len() + 2).sum::<usize>();
    let mut idx = lines.len();
    while idx > 1 && prefix(idx) > offset {
        idx -= 1;
    }
    // A gap too small for a filler line: move one header earlier to widen it.
    while idx > 1 && offset > prefix(idx) && offset - prefix(idx) < FILL_MIN {
        idx -= 1;
    }
    let gap = offset.saturating_sub(prefix(idx));
    (idx, if gap >= FILL_MIN { gap } else { 0 })
}

/// Filler header lines whose total length including CRLFs is exactly `total`
/// (0 or >= FILL_MIN).
fn filler_headers(total: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rem = total;
    let mut n = 1;
    while rem > 0 {
        let mut take = rem.min(FILL_MAX);
        if rem > take && rem - take < FILL_MIN {
            take = rem - FILL_MIN;
        }
        let name = format!("X-Padding-{n}: ");
        out.push(format!("{name}{}", "a".repeat(take - name.len() - 2)));
        rem -= take;
        n += 1;
    }
    out
}

/// 64-bit FNV-1a hash, used for deterministic tags/branches/Call-IDs.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: [u8; 4] = [192, 0, 2, 1];
    const DST4: [u8; 4] = [192, 0, 2, 2];

    fn s4() -> IpAddr {
        IpAddr::from(SRC4)
    }
    fn d4() -> IpAddr {
        IpAddr::from(DST4)
    }
    fn s6() -> IpAddr {
        v6("2001:db8::1")
    }
    fn d6() -> IpAddr {
        v6("2001:db8::2")
    }

    fn be16(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }

    /// Walk VLAN tags: returns (tags as (tpid, tci), final ethertype, L3 offset).
    fn parse_eth(f: &[u8]) -> (Vec<(u16, u16)>, u16, usize) {
        let mut off = 12;
        let mut tags = Vec::new();
        loop {
            let et = be16(f, off);
            if et == ETHERTYPE_VLAN || et == ETHERTYPE_QINQ {
                tags.push((et, be16(f, off + 2)));
                off += 4;
            } else {
                return (tags, et, off + 2);
            }
        }
    }

    /// Parsed IPv4 packet: (header bytes, payload bytes).
    fn ipv4(f: &[u8]) -> (&[u8], &[u8]) {
        let (_, et, l3) = parse_eth(f);
        assert_eq!(et, ETHERTYPE_IPV4);
        let ihl = usize::from(f[l3] & 0x0f) * 4;
        let total = usize::from(be16(f, l3 + 2));
        (&f[l3..l3 + ihl], &f[l3 + ihl..l3 + total])
    }

    /// Parsed IPv6 packet: (chain of (header code, header bytes), final
    /// next header, upper-layer bytes). Stops at a Fragment header's payload.
    type ExtChain = Vec<(u8, Vec<u8>)>;

    fn ipv6(f: &[u8]) -> (ExtChain, u8, &[u8]) {
        let (_, et, l3) = parse_eth(f);
        assert_eq!(et, ETHERTYPE_IPV6);
        assert_eq!(f[l3] >> 4, 6);
        let plen = usize::from(be16(f, l3 + 4));
        let end = l3 + 40 + plen;
        assert!(end <= f.len());
        let mut nh = f[l3 + 6];
        let mut off = l3 + 40;
        let mut chain = Vec::new();
        while matches!(nh, 0 | 43 | 60 | 44) {
            let len = if nh == 44 { 8 } else { (usize::from(f[off + 1]) + 1) * 8 };
            chain.push((nh, f[off..off + len].to_vec()));
            nh = f[off];
            off += len;
            if chain.last().unwrap().0 == 44 {
                break;
            }
        }
        (chain, nh, &f[off..end])
    }

    fn verify_l4_v4(hdr: &[u8], seg: &[u8]) {
        let src = IpAddr::from([hdr[12], hdr[13], hdr[14], hdr[15]]);
        let dst = IpAddr::from([hdr[16], hdr[17], hdr[18], hdr[19]]);
        let mut d = pseudo_header(src, dst, hdr[9], seg.len());
        d.extend_from_slice(seg);
        assert_eq!(checksum(&d), 0, "L4 checksum (v4) must verify");
    }

    fn verify_l4_v6(src: IpAddr, dst: IpAddr, proto: u8, seg: &[u8]) {
        let mut d = pseudo_header(src, dst, proto, seg.len());
        d.extend_from_slice(seg);
        assert_eq!(checksum(&d), 0, "L4 checksum (v6) must verify");
    }

    #[test]
    fn checksum_rfc1071_example() {
        // RFC 1071 §3 example words sum to 0xddf2 -> checksum 0x220d.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(&data), !0xddf2);
        assert_eq!(checksum(&[0xab]), !0xab00);
    }

    #[test]
    fn ipv4_udp_frame() {
        let f = PacketBuilder::udp(s4(), d4(), 5060, 5060).payload(b"hello").ttl(33).build();
        assert_eq!(&f[0..6], &DEFAULT_DST_MAC);
        assert_eq!(&f[6..12], &DEFAULT_SRC_MAC);
        assert_eq!(f.len(), 14 + 20 + 8 + 5);
        let (h, seg) = ipv4(&f);
        assert_eq!(h[0], 0x45);
        assert_eq!(be16(h, 2), 33);
        assert_eq!(be16(h, 6), IPV4_DF);
        assert_eq!(h[8], 33);
        assert_eq!(h[9], IPPROTO_UDP);
        assert_eq!(checksum(h), 0, "IPv4 header checksum must fold to 0");
        assert_eq!(be16(seg, 0), 5060);
        assert_eq!(be16(seg, 4), 13);
        assert_ne!(be16(seg, 6), 0);
        assert_eq!(&seg[8..], b"hello");
        verify_l4_v4(h, seg);
    }

    #[test]
    fn ipv4_udp_odd_and_empty_payloads_verify() {
        for len in [0usize, 1, 2, 3, 255, 1000, 1471] {
            let p: Vec<u8> = (0..len).map(|i| (i * 7 + 3) as u8).collect();
            let f = PacketBuilder::udp(s4(), d4(), 1234, 5060).payload(&p).build();
            let (h, seg) = ipv4(&f);
            assert_eq!(checksum(h), 0);
            verify_l4_v4(h, seg);
        }
    }

    #[test]
    fn macs_and_padding() {
        let src = [0xaa, 1, 2, 3, 4, 5];
        let dst = [0xbb, 1, 2, 3, 4, 5];
        let f = PacketBuilder::udp(s4(), d4(), 1, 2).macs(src, dst).build();
        assert_eq!(&f[0..6], &dst);
        assert_eq!(&f[6..12], &src);
        assert_eq!(f.len(), 42);
        let p = PacketBuilder::udp(s4(), d4(), 1, 2).pad_to_min_frame().build();
        assert_eq!(p.len(), ETH_MIN_FRAME);
        assert_eq!(&p[..42], &PacketBuilder::udp(s4(), d4(), 1, 2).build()[..]);
        assert!(p[42..].iter().all(|&b| b == 0));
        let (h, seg) = ipv4(&p); // IP total length still excludes padding
        assert_eq!(seg.len(), 8);
        verify_l4_v4(h, seg);
    }

    #[test]
    fn ipv4_options_grow_ihl() {
        for words in [1u8, 3, 10] {
            let f = PacketBuilder::udp(s4(), d4(), 1000, 5060).payload(b"x").ipv4_options(words).build();
            let (h, seg) = ipv4(&f);
            assert_eq!(usize::from(h[0] & 0x0f), 5 + usize::from(words));
            assert_eq!(h.len(), 20 + 4 * usize::from(words));
            let opts = &h[20..];
            assert!(opts[..opts.len() - 1].iter().all(|&b| b == 1));
            assert_eq!(*opts.last().unwrap(), 0);
            assert_eq!(checksum(h), 0);
            assert_eq!(be16(seg, 2), 5060);
            verify_l4_v4(h, seg);
        }
    }

    #[test]
    #[should_panic(expected = "at most 10 words")]
    fn ipv4_options_too_many() {
        let _ = PacketBuilder::udp(s4(), d4(), 1, 2).ipv4_options(11);
    }

    #[test]
    fn ipv6_udp_frame() {
        let f = PacketBuilder::udp(s6(), d6(), 5062, 5060).payload(b"OPTIONS").ttl(7).build();
        let (_, et, l3) = parse_eth(&f);
        assert_eq!(et, ETHERTYPE_IPV6);
        assert_eq!(f[l3 + 7], 7);
        assert_eq!(f.len(), 14 + 40 + 8 + 7);
        let (chain, nh, seg) = ipv6(&f);
        assert!(chain.is_empty());
        assert_eq!(nh, IPPROTO_UDP);
        assert_eq!(be16(seg, 4), 15);
        verify_l4_v6(s6(), d6(), nh, seg);
    }

    #[test]
    fn tcp_v4_and_v6() {
        let f = PacketBuilder::tcp(s4(), d4(), 40000, 5060).payload(b"REGISTER").build();
        let (h, seg) = ipv4(&f);
        assert_eq!(h[9], IPPROTO_TCP);
        assert_eq!(seg[12] >> 4, 5);
        assert_eq!(seg[13], TCP_PSH | TCP_ACK);
        assert_eq!(&seg[20..], b"REGISTER");
        verify_l4_v4(h, seg);

        let l4 = L4::Tcp { sport: 40000, dport: 5061, flags: TCP_SYN, data_offset_words: 15 };
        let f = PacketBuilder::new(s6(), d6(), l4).payload(b"abc").build();
        let (_, nh, seg) = ipv6(&f);
        assert_eq!(nh, IPPROTO_TCP);
        assert_eq!(seg[12] >> 4, 15);
        assert_eq!(seg[13], TCP_SYN);
        assert!(seg[20..60].iter().all(|&b| b == 1), "NOP options");
        assert_eq!(&seg[60..], b"abc");
        verify_l4_v6(s6(), d6(), nh, seg);
    }

    #[test]
    #[should_panic(expected = "not in 5..=15")]
    fn tcp_bad_data_offset() {
        let l4 = L4::Tcp { sport: 1, dport: 2, flags: 0, data_offset_words: 4 };
        let _ = PacketBuilder::new(s4(), d4(), l4);
    }

    #[test]
    fn icmp_and_other() {
        let f = PacketBuilder::new(s4(), d4(), L4::Icmp).payload(b"ping").build();
        let (h, seg) = ipv4(&f);
        assert_eq!(h[9], IPPROTO_ICMP);
        assert_eq!(seg[0], 8);
        assert_eq!(checksum(seg), 0, "ICMPv4 checksum has no pseudo-header");

        let f = PacketBuilder::new(s6(), d6(), L4::Icmp).payload(b"ping").build();
        let (_, nh, seg) = ipv6(&f);
        assert_eq!(nh, IPPROTO_ICMPV6);
        assert_eq!(seg[0], 128);
        verify_l4_v6(s6(), d6(), nh, seg);

        let f = PacketBuilder::new(s4(), d4(), L4::Other(47)).payload(b"gre!").build();
        let (h, seg) = ipv4(&f);
        assert_eq!(h[9], 47);
        assert_eq!(seg, b"gre!");
        assert_eq!(checksum(h), 0);
    }

    #[test]
    #[should_panic(expected = "same address family")]
    fn mixed_families_panic() {
        let _ = PacketBuilder::udp(s4(), d6(), 1, 2);
    }

    #[test]
    fn vlan_tags() {
        let f = PacketBuilder::udp(s4(), d4(), 1, 2).vlan(100).build();
        let (tags, et, l3) = parse_eth(&f);
        assert_eq!(tags, vec![(ETHERTYPE_VLAN, 100)]);
        assert_eq!((et, l3), (ETHERTYPE_IPV4, 18));

        let b = PacketBuilder::udp(s6(), d6(), 1, 2).vlan(10).vlan(20);
        assert_eq!(b.l3_offset(), 22);
        let (tags, et, l3) = parse_eth(&b.build());
        assert_eq!(tags, vec![(ETHERTYPE_VLAN, 10), (ETHERTYPE_VLAN, 20)]);
        assert_eq!((et, l3), (ETHERTYPE_IPV6, 22));

        let f = PacketBuilder::udp(s4(), d4(), 1, 2).qinq(300, 4000).build();
        let (tags, et, _) = parse_eth(&f);
        assert_eq!(tags, vec![(ETHERTYPE_QINQ, 300), (ETHERTYPE_VLAN, 4000)]);
        assert_eq!(et, ETHERTYPE_IPV4);
        let (h, seg) = ipv4(&f);
        assert_eq!(checksum(h), 0);
        verify_l4_v4(h, seg);
    }

    #[test]
    fn ipv6_extension_chain() {
        let f = PacketBuilder::udp(s6(), d6(), 5060, 5060)
            .ipv6_ext(IPPROTO_HOPOPTS, 0)
            .ipv6_ext(IPPROTO_ROUTING, 1)
            .ipv6_ext(IPPROTO_DSTOPTS, 2)
            .payload(b"INVITE")
            .build();
        let (_, _, l3) = parse_eth(&f);
        assert_eq!(f[l3 + 6], IPPROTO_HOPOPTS);
        let (chain, nh, seg) = ipv6(&f);
        let codes: Vec<u8> = chain.iter().map(|c| c.0).collect();
        assert_eq!(codes, vec![0, 43, 60]);
        // Each header's next-header byte points at the following one.
        let nexts: Vec<u8> = chain.iter().map(|c| c.1[0]).collect();
        assert_eq!(nexts, vec![43, 60, IPPROTO_UDP]);
        let lens: Vec<usize> = chain.iter().map(|c| c.1.len()).collect();
        assert_eq!(lens, vec![8, 16, 24]);
        // PadN filling the option area of hop-by-hop (6 bytes) and dstopts (22 bytes).
        assert_eq!(&chain[0].1[2..], &[1, 4, 0, 0, 0, 0]);
        assert_eq!(&chain[2].1[2..4], &[1, 20]);
        // Routing header: type 0, segments left 0.
        assert_eq!(&chain[1].1[2..4], &[0, 0]);
        assert_eq!(nh, IPPROTO_UDP);
        assert_eq!(&seg[8..], b"INVITE");
        assert_eq!(usize::from(be16(&f, l3 + 4)), 8 + 16 + 24 + 8 + 6);
        verify_l4_v6(s6(), d6(), nh, seg);
    }

    #[test]
    fn padding_options_cover_large_headers() {
        let mut v = Vec::new();
        push_padding_options(&mut v, 2046);
        assert_eq!(v.len(), 2046);
        // Walk the TLVs: they must exactly tile the area.
        let mut i = 0;
        while i < v.len() {
            i += if v[i] == 0 { 1 } else { usize::from(v[i + 1]) + 2 };
        }
        assert_eq!(i, v.len());
    }

    /// Reassemble IPv4 fragments, checking offsets/flags/ids along the way.
    fn reassemble_v4(frags: &[Vec<u8>], id: u16, max: usize) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let (h, data) = ipv4(f);
            assert_eq!(checksum(h), 0);
            assert_eq!(be16(h, 4), id);
            let word = be16(h, 6);
            let last = i + 1 == frags.len();
            assert_eq!(word & IPV4_MF != 0, !last, "MF flag");
            assert_eq!(word & IPV4_DF, 0);
            assert_eq!(usize::from(word & 0x1fff) * 8, out.len(), "offset");
            if !last {
                assert_eq!(data.len() % 8, 0);
                if i > 0 {
                    assert!(data.len() <= max);
                }
            }
            out.extend_from_slice(data);
        }
        out
    }

    #[test]
    fn ipv4_fragments_reassemble() {
        let payload: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
        let b = PacketBuilder::udp(s4(), d4(), 5060, 5060).payload(&payload).vlan(42).ipv4_options(2);
        let whole = b.ip_payload();
        let frags = b.build_fragments(300, 0x1_abcd);
        // 1008 bytes in 296-byte pieces: 296*3 + 120.
        assert_eq!(frags.len(), 4);
        for f in &frags {
            assert_eq!(parse_eth(f).0, vec![(ETHERTYPE_VLAN, 42)]);
            assert!(ipv4(f).1.len() <= 300);
        }
        // Options only in the first fragment.
        assert_eq!(ipv4(&frags[0]).0.len(), 28);
        assert_eq!(ipv4(&frags[1]).0.len(), 20);
        assert_eq!(reassemble_v4(&frags, 0xabcd, 300), whole);
        // The first fragment holds the UDP header.
        let (h, first) = ipv4(&frags[0]);
        assert_eq!(be16(first, 4) as usize, whole.len());
        assert_eq!(h[9], IPPROTO_UDP);
        // The reassembled datagram verifies against the unfragmented header.
        let unfrag = b.build();
        let (uh, useg) = ipv4(&unfrag);
        assert_eq!(useg, &whole[..]);
        verify_l4_v4(uh, &whole);
    }

    #[test]
    fn fragments_single_and_header_guarantee() {
        let b = PacketBuilder::udp(s4(), d4(), 1, 2).payload(b"short");
        let frags = b.build_fragments(1400, 7);
        assert_eq!(frags.len(), 1);
        assert_eq!(be16(ipv4(&frags[0]).0, 6), 0);

        let l4 = L4::Tcp { sport: 1, dport: 5060, flags: TCP_ACK, data_offset_words: 15 };
        let b = PacketBuilder::new(s4(), d4(), l4).payload(&[0x55; 100]);
        let frags = b.build_fragments(16, 9);
        assert_eq!(ipv4(&frags[0]).1.len(), 64, "60-byte header rounded up to 64");
        assert_eq!(reassemble_v4(&frags, 9, 16), b.ip_payload());
        let exact = b.build_fragments_exact(16, 9);
        assert_eq!(ipv4(&exact[0]).1.len(), 16, "tiny first fragment splits the header");
        assert_eq!(reassemble_v4(&exact, 9, 16), b.ip_payload());
    }

    #[test]
    #[should_panic(expected = "must be >= 8")]
    fn fragments_too_small() {
        let _ = PacketBuilder::udp(s4(), d4(), 1, 2).build_fragments(7, 1);
    }

    #[test]
    fn ipv6_fragments_reassemble() {
        let payload: Vec<u8> = (0..777u32).map(|i| (i * 13) as u8).collect();
        let b = PacketBuilder::udp(s6(), d6(), 5060, 5060)
            .payload(&payload)
            .qinq(5, 6)
            .ipv6_ext(IPPROTO_HOPOPTS, 0)
            .ipv6_ext(IPPROTO_DSTOPTS, 1);
        let whole = b.ip_payload();
        let frags = b.build_fragments(203, 0xdead_beef);
        assert_eq!(frags.len(), 4); // 785 bytes: 200*3 + 185
        let mut out = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            assert_eq!(parse_eth(f).0.len(), 2);
            let (chain, nh, data) = ipv6(f);
            let codes: Vec<u8> = chain.iter().map(|c| c.0).collect();
            assert_eq!(codes, vec![0, 60, 44], "fragment header after other ext headers");
            assert_eq!(chain[0].1[0], 60);
            assert_eq!(chain[1].1[0], 44);
            let fh = &chain[2].1;
            assert_eq!(nh, IPPROTO_UDP);
            let word = be16(fh, 2);
            assert_eq!(usize::from(word >> 3) * 8, out.len());
            assert_eq!(word & 1 == 1, i + 1 < frags.len(), "M flag");
            assert_eq!(&fh[4..8], &0xdead_beefu32.to_be_bytes());
            assert!(data.len() <= 203);
            out.extend_from_slice(data);
        }
        assert_eq!(out, whole);
        verify_l4_v6(s6(), d6(), IPPROTO_UDP, &out);

        // No other extension headers: IPv6 next header is 44 directly.
        let frags = PacketBuilder::udp(s6(), d6(), 1, 2).payload(&[1; 64]).build_fragments(32, 3);
        let (_, _, l3) = parse_eth(&frags[0]);
        assert_eq!(frags[0][l3 + 6], IPPROTO_FRAGMENT);
        assert_eq!(frags.len(), 3);
    }

    #[test]
    fn truncation() {
        let f = PacketBuilder::udp(s4(), d4(), 1, 2).build();
        assert_eq!(truncated(&f, 20), f[..20].to_vec());
        assert_eq!(truncated(&f, 10_000), f);
        assert!(truncated(&f, 0).is_empty());
    }

    // ---- SIP ----

    fn text(m: &SipMessage) -> String {
        String::from_utf8(m.build()).unwrap()
    }

    /// Headers (as lines) and body; checks CRLF discipline.
    fn split(msg: &str) -> (Vec<&str>, &str) {
        let end = msg.find("\r\n\r\n").expect("header terminator");
        let head = &msg[..end];
        assert!(!head.replace("\r\n", "").contains('\n'), "bare LF");
        assert!(!head.replace("\r\n", "").contains('\r'), "bare CR");
        (head.split("\r\n").collect(), &msg[end + 4..])
    }

    fn header_value<'a>(lines: &[&'a str], names: &[&str]) -> Option<&'a str> {
        lines.iter().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            names.iter().any(|x| n.trim().eq_ignore_ascii_case(x)).then(|| v.trim())
        })
    }

    fn content_length_ok(msg: &str) {
        let (lines, body) = split(msg);
        let cl: usize = header_value(&lines, &["Content-Length", "l"]).expect("Content-Length").parse().unwrap();
        assert_eq!(cl, body.len());
    }

    #[test]
    fn sip_register_layout() {
        let m = text(&SipMessage::request("REGISTER", "1001", "pbx.example.com"));
        let (lines, body) = split(&m);
        assert_eq!(lines[0], "REGISTER sip:pbx.example.com SIP/2.0");
        assert!(lines[1].starts_with("Via: SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK-"));
        assert!(lines[1].ends_with(";rport"));
        assert_eq!(lines[2], "Max-Forwards: 70");
        assert!(lines[3].starts_with("From: <sip:1001@pbx.example.com>;tag="));
        assert_eq!(lines[4], "To: <sip:1001@pbx.example.com>");
        assert!(lines[5].starts_with("Call-ID: "));
        assert_eq!(lines[6], "CSeq: 1 REGISTER");
        assert!(lines[7].starts_with("Contact: <sip:1001@"));
        assert_eq!(lines[8], "Expires: 3600");
        assert_eq!(lines[9], format!("User-Agent: {DEFAULT_USER_AGENT}"));
        assert_eq!(lines[10], "Content-Length: 0");
        assert!(body.is_empty());
        assert_eq!(m, text(&SipMessage::request("REGISTER", "1001", "pbx.example.com")));
    }

    #[test]
    fn sip_invite_with_body_and_extras() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 198.51.100.10\r\ns=-\r\nc=IN IP4 198.51.100.10\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n";
        let m = text(
            &SipMessage::request("INVITE", "bob", "example.com")
                .user_agent("friendly-scanner")
                .from_display("Alice Ü")
                .header("X-Test", "1")
                .header("User-Agent  ", "second")
                .body(sdp),
        );
        let (lines, body) = split(&m);
        assert_eq!(lines[0], "INVITE sip:bob@example.com SIP/2.0");
        assert!(lines.iter().all(|l| !l.starts_with("Expires")));
        assert!(lines.iter().any(|l| l.starts_with("From: \"Alice Ü\" <sip:bob@example.com>;tag=")));
        let ua = lines.iter().position(|l| *l == "User-Agent: friendly-scanner").unwrap();
        assert!(lines[ua - 1].starts_with("Contact:"));
        assert_eq!(lines[ua + 1], "X-Test: 1");
        assert_eq!(lines[ua + 2], "User-Agent  : second");
        assert_eq!(header_value(&lines, &["Content-Type"]), Some("application/sdp"));
        assert_eq!(body, sdp);
        content_length_ok(&m);
        // Content-Length counts bytes, not chars.
        let m = text(&SipMessage::request("MESSAGE", "a", "b").body("héllo"));
        content_length_ok(&m);
        assert!(m.contains("Content-Length: 6\r\n"));
    }

    #[test]
    fn sip_no_user_agent() {
        let m = text(&SipMessage::request("OPTIONS", "u", "d").no_user_agent());
        assert!(!m.contains("User-Agent"));
        content_length_ok(&m);
        let m = text(&SipMessage::request("OPTIONS", "u", "d").no_user_agent().user_agent_at(500));
        assert!(!m.contains("User-Agent") && !m.contains("X-Padding"));
    }

    #[test]
    fn sip_compact_names() {
        let m = text(&SipMessage::request("INVITE", "u", "example.org").compact().body("v=0\r\n"));
        let (lines, _) = split(&m);
        for short in ["v: ", "f: ", "t: ", "i: ", "m: ", "l: ", "c: "] {
            assert!(lines.iter().any(|l| l.starts_with(short)), "missing {short}");
        }
        for long in ["Via:", "From:", "To:", "Call-ID:", "Contact:", "Content-Length:", "Content-Type:"] {
            assert!(!lines.iter().any(|l| l.starts_with(long)), "unexpected {long}");
        }
        assert!(lines.iter().any(|l| l.starts_with("CSeq: 1 INVITE")));
        assert!(lines.iter().any(|l| l.starts_with("User-Agent: ")));
        content_length_ok(&m);
    }

    #[test]
    fn sip_response() {
        let m = text(&SipMessage::response(200, "OK", "REGISTER"));
        let (lines, body) = split(&m);
        assert_eq!(lines[0], "SIP/2.0 200 OK");
        assert!(lines[1].starts_with("Via: SIP/2.0/UDP "));
        assert!(lines[2].starts_with("From: "));
        assert!(lines[3].starts_with("To: ") && lines[3].contains(";tag="));
        assert!(lines[4].starts_with("Call-ID: "));
        assert_eq!(lines[5], "CSeq: 1 REGISTER");
        assert_eq!(lines[6], "Content-Length: 0");
        assert_eq!(lines.len(), 7);
        assert!(body.is_empty());
        let m = text(&SipMessage::response(486, "Busy Here", "INVITE").user_agent("Asterisk PBX"));
        assert!(m.contains("\r\nUser-Agent: Asterisk PBX\r\n"));
        content_length_ok(&m);
    }

    #[test]
    fn sip_user_agent_at_offsets() {
        let base = || SipMessage::request("REGISTER", "1001", "sip.example.net").user_agent("sipvicious");
        let natural = text(&base()).find("User-Agent:").unwrap();
        for offset in [0usize, 10, 40, 60, 100, 150, natural, natural + 1, natural + 20, 300, 512, 700, 1400, 4000] {
            for compact in [false, true] {
                let mut m = base().user_agent_at(offset);
                if compact {
                    m = m.compact();
                }
                let s = text(&m);
                let at = s.find("User-Agent: sipvicious").unwrap();
                assert!(s[..at].ends_with("\r\n"), "UA starts a line");
                let first_line_end = s.find("\r\n").unwrap() + 2;
                let want = offset.max(first_line_end);
                assert!(at.abs_diff(want) <= FILL_MIN, "offset {offset}: UA at {at} (compact={compact})");
                if offset >= 100 {
                    assert_eq!(at, offset, "exact placement");
                }
                // The message stays well formed with all standard headers.
                content_length_ok(&s);
                let (lines, _) = split(&s);
                assert!(lines[0].starts_with("REGISTER "));
                assert!(header_value(&lines, &["Via", "v"]).is_some());
                assert!(header_value(&lines, &["Call-ID", "i"]).is_some());
                assert!(header_value(&lines, &["CSeq"]).is_some());
                assert!(lines.iter().all(|l| l.len() <= FILL_MAX.max(200)));
            }
        }
    }

    #[test]
    fn sip_in_packet() {
        let msg = SipMessage::request("OPTIONS", "100", "example.com").build();
        let f = PacketBuilder::udp(s6(), d6(), 5060, 5060).payload(&msg).build();
        let (_, nh, seg) = ipv6(&f);
        assert_eq!(&seg[8..], &msg[..]);
        verify_l4_v6(s6(), d6(), nh, seg);
    }

    #[test]
    fn helpers() {
        assert_eq!(v4(10, 0, 0, 1), IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)));
        assert!(v6("::1").is_ipv6());
        assert_eq!(PacketBuilder::udp(s4(), d4(), 1, 2).l4_proto(), IPPROTO_UDP);
    }
}
