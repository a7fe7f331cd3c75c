//! Capture files for `replay`: pcap (µs or ns, either byte order) and pcapng (several sections
//! and interfaces, each with its own link type and timestamp resolution), read with pcap-file's
//! slice parsers over a growing buffer so the file is streamed and every error can name the
//! packet index and the byte offset of its record.
//!
//! XDP sees Ethernet frames: frames of the other supported link types (Linux cooked v1/v2, BSD
//! loopback, raw IP) get a synthesised Ethernet header carrying their EtherType. A VLAN-tagged
//! cooked frame (protocol 0x8100/0x88a8) keeps its tag, as the tag's remainder leads its payload.
use std::io::Read;
use std::path::Path;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::Block;
use pcap_file::pcapng::PcapNgParser;
use pcap_file::{DataLink, Endianness, PcapError, TsResolution};

/// A supported link type, as the numbers of the tcpdump.org registry (and their DLT aliases).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (`tcpdump -i any` before libpcap 1.10).
    Sll,
    /// Linux cooked capture v2.
    Sll2,
    /// BSD loopback, address family in the capturing host's byte order.
    Null,
    /// OpenBSD loopback, address family in network byte order.
    Loop,
    /// Raw IP, version from the first nibble (LINKTYPE_RAW 101, DLT_RAW 12 and 14).
    Raw,
    Ipv4,
    Ipv6,
}

/// What `replay` reads, for error messages.
pub const SUPPORTED: &str = "Ethernet (1), Linux cooked SLL (113) and SLL2 (276), BSD loopback NULL (0) and LOOP (108), raw IP RAW (101, 12, 14), IPV4 (228), IPV6 (229)";

impl Link {
    pub fn from_number(n: u32) -> Option<Link> {
        Some(match n {
            1 => Link::Ethernet,
            113 => Link::Sll,
            276 => Link::Sll2,
            0 => Link::Null,
            108 => Link::Loop,
            101 | 12 | 14 => Link::Raw,
            228 => Link::Ipv4,
            229 => Link::Ipv6,
            _ => return None,
        })
    }
}

/// The error for a link type `replay` cannot read: its number and its registry name.
pub fn unsupported(n: u32) -> String {
    let name = match DataLink::from(n) {
        DataLink::Unknown(_) => "unknown".to_string(),
        dl => format!("{dl:?}"),
    };
    format!("link type {n} ({name}) is not supported; replay reads {SUPPORTED}")
}

/// One captured packet.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Packet number in the capture, from 0 (Wireshark's frame number minus one).
    pub index: usize,
    /// Byte offset of its record (pcap packet header or pcapng block) in the file.
    pub offset: u64,
    /// Capture time, ns since the Unix epoch.
    pub ts_ns: u64,
    /// Link type number of its interface.
    pub linktype: u32,
    /// Length of the Ethernet frame on the wire: more than `eth` when the capture had a snap
    /// length (the synthesised header counted in for the other link types).
    pub wire_len: u32,
    /// Sent by the capturing host (cooked `PACKET_OUTGOING`, pcapng direction flag): it never
    /// crossed the filter's ingress hook.
    pub outgoing: bool,
    /// The frame as XDP sees it: Ethernet, synthesised for the other link types.
    pub eth: Bytes,
}

/// A capture that could not be read on: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: packet {index} at byte offset {offset}: {what}")]
pub struct CaptureError {
    pub path: String,
    /// Index the next packet would have had.
    pub index: usize,
    pub offset: u64,
    pub what: String,
}

/// One pcapng interface: link type and the nanoseconds per timestamp unit.
#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u32,
    /// `if_tsresol`: 10^-n s (high bit clear) or 2^-n s (high bit set); default 6 (µs).
    tsresol: u8,
    /// `if_tsoffset`, seconds.
    tsoffset: u64,
}

impl Iface {
    fn ns(&self, units: u64) -> u64 {
        let units = units as u128;
        let ns = if self.tsresol & 0x80 == 0 {
            let exp = (self.tsresol as u32).min(30);
            if exp <= 9 {
                units * 10u128.pow(9 - exp)
            } else {
                units / 10u128.pow(exp - 9)
            }
        } else {
            (units * 1_000_000_000) >> (self.tsresol & 0x7f).min(100)
        };
        (ns + self.tsoffset as u128 * 1_000_000_000).min(u64::MAX as u128) as u64
    }
}

enum Format {
    Pcap { parser: PcapParser, link: Link, linktype: u32 },
    PcapNg { parser: PcapNgParser, ifaces: Vec<Iface> },
}

/// Growing read buffer over the file: `consumed` is the file offset of `buf[0]`.
struct Input<R> {
    src: R,
    buf: BytesMut,
    consumed: u64,
    eof: bool,
}

const CHUNK: usize = 1 << 20;

impl<R: Read> Input<R> {
    /// Read more; false at the end of the file.
    fn fill(&mut self) -> std::io::Result<bool> {
        if self.eof {
            return Ok(false);
        }
        let mut chunk = vec![0u8; CHUNK];
        let n = loop {
            match self.src.read(&mut chunk) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.eof = n == 0;
        self.buf.put_slice(&chunk[..n]);
        Ok(n > 0)
    }

    fn advance(&mut self, n: usize) {
        self.buf.advance(n);
        self.consumed += n as u64;
    }
}

/// A capture being read, packet by packet (an iterator of frames; it stops after an error).
pub struct Capture<R> {
    path: String,
    input: Input<R>,
    format: Format,
    index: usize,
    done: bool,
}

impl Capture<std::fs::File> {
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let file =
            std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{}: cannot open capture: {e}", path.display()))?;
        Self::new(&path.display().to_string(), file)
    }
}

impl<R: Read> Capture<R> {
    /// Read the file header (pcap) or first section header (pcapng) of `src`, named `path` in errors.
    pub fn new(path: &str, src: R) -> anyhow::Result<Self> {
        let mut input = Input { src, buf: BytesMut::new(), consumed: 0, eof: false };
        let head_err = |e: std::io::Error| anyhow::anyhow!("{path}: cannot read capture: {e}");
        while input.buf.len() < 24 && input.fill().map_err(head_err)? {}
        let magic = input.buf.get(..4).map(|m| u32::from_be_bytes([m[0], m[1], m[2], m[3]]));
        let format = match magic {
            Some(0x0A0D_0D0A) => loop {
                let parsed = match PcapNgParser::new(&input.buf) {
                    Ok((rest, parser)) => Ok((input.buf.len() - rest.len(), parser)),
                    Err(e) => Err(e),
                };
                match parsed {
                    Ok((used, parser)) => {
                        input.advance(used);
                        break Format::PcapNg { parser, ifaces: vec![] };
                    }
                    Err(PcapError::IncompleteBuffer) if input.fill().map_err(head_err)? => {}
                    Err(PcapError::IncompleteBuffer) => anyhow::bail!("{path}: truncated pcapng section header"),
                    Err(e) => anyhow::bail!("{path}: corrupt pcapng section header: {e}"),
                }
            },
            Some(0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1) => {
                let (rest, parser) = PcapParser::new(&input.buf).map_err(|e| match e {
                    PcapError::IncompleteBuffer => anyhow::anyhow!("{path}: truncated pcap file header"),
                    e => anyhow::anyhow!("{path}: corrupt pcap file header: {e}"),
                })?;
                let used = input.buf.len() - rest.len();
                input.advance(used);
                let linktype = u32::from(parser.header().datalink);
                let link =
                    Link::from_number(linktype).ok_or_else(|| anyhow::anyhow!("{path}: {}", unsupported(linktype)))?;
                Format::Pcap { parser, link, linktype }
            }
            Some(m) => anyhow::bail!("{path}: not a pcap or pcapng capture (magic number {m:#010x})"),
            None => anyhow::bail!("{path}: not a pcap or pcapng capture (only {} bytes)", input.buf.len()),
        };
        Ok(Capture { path: path.to_string(), input, format, index: 0, done: false })
    }

    fn error(&self, what: impl Into<String>) -> CaptureError {
        CaptureError { path: self.path.clone(), index: self.index, offset: self.input.consumed, what: what.into() }
    }

    /// The next record, or None at the end; `Err` names the packet index and offset.
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        loop {
            if self.input.buf.is_empty() && !self.fill()? {
                return Ok(None);
            }
            let offset = self.input.consumed;
            let parsed = match &mut self.format {
                Format::Pcap { parser, link, linktype } => pcap_record(parser, *link, *linktype, &self.input.buf),
                Format::PcapNg { parser, ifaces } => pcapng_block(parser, ifaces, &self.input.buf),
            };
            match parsed {
                Ok((used, item)) => {
                    self.input.advance(used);
                    if let Some(mut p) = item {
                        p.index = self.index;
                        p.offset = offset;
                        self.index += 1;
                        return Ok(Some(p));
                    }
                }
                Err(Parse::Incomplete) => {
                    if !self.fill()? {
                        let left = self.input.buf.len();
                        return Err(self.error(format!("truncated: the capture ends {left} bytes into this record")));
                    }
                }
                Err(Parse::Bad(what)) => return Err(self.error(what)),
            }
        }
    }

    fn fill(&mut self) -> Result<bool, CaptureError> {
        self.input.fill().map_err(|e| self.error(format!("read error: {e}")))
    }
}

impl<R: Read> Iterator for Capture<R> {
    type Item = Result<Frame, CaptureError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let r = self.next_frame().transpose();
        self.done = !matches!(r, Some(Ok(_)));
        r
    }
}

enum Parse {
    /// More bytes are needed (or the file ends inside the record).
    Incomplete,
    Bad(String),
}

impl From<PcapError> for Parse {
    fn from(e: PcapError) -> Parse {
        match e {
            PcapError::IncompleteBuffer => Parse::Incomplete,
            e => Parse::Bad(format!("corrupt record: {e}")),
        }
    }
}

/// One pcap record: (bytes used, frame). Raw records, validated here: pcap-file's own check
/// refuses an original length above the snap length, which every snap-length capture has.
fn pcap_record(parser: &PcapParser, link: Link, linktype: u32, buf: &[u8]) -> Result<(usize, Option<Frame>), Parse> {
    let (rest, raw) = parser.next_raw_packet(buf)?;
    let frac_ns = match parser.header().ts_resolution {
        TsResolution::MicroSecond => raw.ts_frac as u64 * 1000,
        TsResolution::NanoSecond => raw.ts_frac as u64,
    };
    if frac_ns >= 1_000_000_000 {
        return Err(Parse::Bad(format!("corrupt record: timestamp fraction {} is a second or more", raw.ts_frac)));
    }
    let (eth, outgoing) = to_ethernet(link, &raw.data).map_err(Parse::Bad)?;
    let frame = Frame {
        index: 0,
        offset: 0,
        ts_ns: raw.ts_sec as u64 * 1_000_000_000 + frac_ns,
        linktype,
        wire_len: wire_len(raw.orig_len, raw.data.len(), eth.len()),
        outgoing,
        eth,
    };
    Ok((buf.len() - rest.len(), Some(frame)))
}

/// One pcapng block: (bytes used, frame if it is a packet). Interface descriptions are
/// recorded (and an unsupported link type refused when a packet uses it); a new section starts
/// a new interface list.
fn pcapng_block(
    parser: &mut PcapNgParser,
    ifaces: &mut Vec<Iface>,
    buf: &[u8],
) -> Result<(usize, Option<Frame>), Parse> {
    // The raw block first: complete or not is told apart from a corrupt body.
    let (rest, raw) = parser.next_raw_block(buf)?;
    let used = buf.len() - rest.len();
    let block = match parser.section().endianness {
        Endianness::Big => raw.try_into_block::<byteorder_slice::BigEndian>(),
        Endianness::Little => raw.try_into_block::<byteorder_slice::LittleEndian>(),
    }
    .map_err(|e| Parse::Bad(format!("corrupt block: {e}")))?;
    let (iface_id, units, orig_len, data, flags) = match block {
        Block::SectionHeader(_) => {
            ifaces.clear();
            return Ok((used, None));
        }
        Block::InterfaceDescription(idb) => {
            let mut i = Iface { linktype: u32::from(idb.linktype), tsresol: 6, tsoffset: 0 };
            for o in &idb.options {
                match o {
                    InterfaceDescriptionOption::IfTsResol(r) => i.tsresol = *r,
                    InterfaceDescriptionOption::IfTsOffset(s) => i.tsoffset = *s,
                    _ => {}
                }
            }
            ifaces.push(i);
            return Ok((used, None));
        }
        Block::EnhancedPacket(p) => {
            let flags = p.options.iter().find_map(|o| match o {
                pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption::Flags(f) => Some(*f),
                _ => None,
            });
            (p.interface_id, p.timestamp.as_nanos() as u64, p.original_len, p.data, flags.unwrap_or(0))
        }
        Block::Packet(p) => (p.interface_id as u32, p.timestamp, p.original_len, p.data, 0),
        // No timestamp: the program clock stays where the previous packet left it (0 = now).
        Block::SimplePacket(p) => (0, 0, p.original_len, p.data, 0),
        _ => return Ok((used, None)),
    };
    let iface = *ifaces
        .get(iface_id as usize)
        .ok_or_else(|| Parse::Bad(format!("interface {iface_id} has no interface description block")))?;
    let link = Link::from_number(iface.linktype)
        .ok_or_else(|| Parse::Bad(format!("interface {iface_id}: {}", unsupported(iface.linktype))))?;
    let (eth, cooked_out) = to_ethernet(link, &data).map_err(Parse::Bad)?;
    let frame = Frame {
        index: 0,
        offset: 0,
        ts_ns: if units == 0 { 0 } else { iface.ns(units) },
        linktype: iface.linktype,
        wire_len: wire_len(orig_len, data.len(), eth.len()),
        // epb_flags bits 0-1: 1 inbound, 2 outbound.
        outgoing: cooked_out || flags & 3 == 2,
        eth,
    };
    Ok((used, Some(frame)))
}

/// Synthetic addresses of a synthesised Ethernet header (locally administered).
const SYNTH_DST: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const SYNTH_SRC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// Linux `PACKET_OUTGOING`: a cooked frame the capturing host sent.
const PACKET_OUTGOING: u16 = 4;

/// The frame as XDP would see it, and whether the capturing host sent it.
pub fn to_ethernet(link: Link, data: &[u8]) -> Result<(Bytes, bool), String> {
    let be16 = |b: &[u8], at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
    match link {
        Link::Ethernet => Ok((Bytes::copy_from_slice(data), false)),
        Link::Sll => {
            // packet type, ARPHRD type, address length, 8 address bytes, protocol.
            if data.len() < 16 {
                return Err(format!("Linux cooked (SLL) header needs 16 bytes, the frame has {}", data.len()));
            }
            let src = (be16(data, 4) == 6).then(|| &data[6..12]);
            Ok((ethernet(src, be16(data, 14), &data[16..]), be16(data, 0) == PACKET_OUTGOING))
        }
        Link::Sll2 => {
            // protocol, reserved, ifindex, ARPHRD type, packet type, address length, 8 address bytes.
            if data.len() < 20 {
                return Err(format!("Linux cooked v2 (SLL2) header needs 20 bytes, the frame has {}", data.len()));
            }
            let src = (data[11] == 6).then(|| &data[12..18]);
            Ok((ethernet(src, be16(data, 0), &data[20..]), data[10] as u16 == PACKET_OUTGOING))
        }
        Link::Null | Link::Loop => {
            if data.len() < 4 {
                return Err(format!("loopback header needs 4 bytes, the frame has {}", data.len()));
            }
            let word = [data[0], data[1], data[2], data[3]];
            // NULL stores the family in the capturing host's byte order: a family is small, so
            // the order whose value fits in 16 bits is the right one.
            let family = match link {
                Link::Loop => u32::from_be_bytes(word),
                _ if u32::from_le_bytes(word) <= 0xffff => u32::from_le_bytes(word),
                _ => u32::from_be_bytes(word),
            };
            // AF_INET is 2 everywhere; AF_INET6 is 10 (Linux), 24 (NetBSD/OpenBSD), 28
            // (FreeBSD), 30 (macOS). Anything else is not IP: EtherType 0, which the program passes.
            let ethertype = match family {
                2 => 0x0800,
                10 | 24 | 28 | 30 => 0x86dd,
                _ => 0,
            };
            Ok((ethernet(None, ethertype, &data[4..]), false))
        }
        Link::Raw => Ok((ethernet(None, ip_ethertype(data), data), false)),
        Link::Ipv4 => Ok((ethernet(None, 0x0800, data), false)),
        Link::Ipv6 => Ok((ethernet(None, 0x86dd, data), false)),
    }
}

/// The wire length of the Ethernet frame made of a captured frame of `captured` bytes
/// (`orig` on the wire).
fn wire_len(orig: u32, captured: usize, eth: usize) -> u32 {
    (orig as u64).max(captured as u64).saturating_sub(captured as u64).saturating_add(eth as u64).min(u32::MAX as u64)
        as u32
}

/// EtherType of a raw IP packet from its version nibble (0 when it is neither).
fn ip_ethertype(data: &[u8]) -> u16 {
    match data.first().map(|b| b >> 4) {
        Some(4) => 0x0800,
        Some(6) => 0x86dd,
        _ => 0,
    }
}

fn ethernet(src: Option<&[u8]>, ethertype: u16, payload: &[u8]) -> Bytes {
    let mut f = BytesMut::with_capacity(14 + payload.len());
    f.put_slice(&SYNTH_DST);
    f.put_slice(src.unwrap_or(&SYNTH_SRC));
    f.put_u16(ethertype);
    f.put_slice(payload);
    f.freeze()
}
