//! Captures written the way capture tools write them, for the replay tests: pcap (µs or ns),
//! pcapng with several interfaces (each its link type and timestamp resolution), and Ethernet
//! frames re-framed for the other link types (Linux cooked v1/v2, BSD loopback, raw IP).
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, TsResolution};

/// Link type numbers (tcpdump.org registry, and the DLT_RAW aliases).
pub const ETHERNET: u32 = 1;
pub const NULL: u32 = 0;
pub const DLT_RAW_12: u32 = 12;
pub const DLT_RAW_14: u32 = 14;
pub const RAW: u32 = 101;
pub const LOOP: u32 = 108;
pub const SLL: u32 = 113;
pub const IPV4: u32 = 228;
pub const IPV6: u32 = 229;
pub const SLL2: u32 = 276;

/// `frame` (Ethernet, untagged or tagged) as a capture of `linktype` carries it; `outgoing`
/// marks a cooked frame as sent by the capturing host.
pub fn relink(linktype: u32, frame: &[u8], outgoing: bool) -> Vec<u8> {
    let ethertype = [frame[12], frame[13]];
    let rest = &frame[14..];
    let src_mac = &frame[6..12];
    let pkt_type: u8 = if outgoing { 4 } else { 0 };
    let v6 = u16::from_be_bytes(ethertype) == 0x86dd;
    let mut out = vec![];
    match linktype {
        ETHERNET => return frame.to_vec(),
        SLL => {
            out.extend_from_slice(&[0, pkt_type, 0, 1, 0, 6]);
            out.extend_from_slice(src_mac);
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&ethertype);
        }
        SLL2 => {
            out.extend_from_slice(&ethertype);
            out.extend_from_slice(&[0, 0, 0, 0, 0, 7, 0, 1, pkt_type, 6]);
            out.extend_from_slice(src_mac);
            out.extend_from_slice(&[0, 0]);
        }
        // The family in the (little-endian) capturing host's order; macOS's AF_INET6.
        NULL => out.extend_from_slice(&(if v6 { 30u32 } else { 2 }).to_le_bytes()),
        LOOP => out.extend_from_slice(&(if v6 { 24u32 } else { 2 }).to_be_bytes()),
        RAW | DLT_RAW_12 | DLT_RAW_14 | IPV4 | IPV6 => {}
        n => panic!("relink: link type {n} is not one the tests write"),
    }
    out.extend_from_slice(rest);
    out
}

/// A classic pcap of `linktype` (frames already framed for it), timestamps in ns since the epoch.
pub fn write_pcap(path: &Path, linktype: u32, nanos: bool, frames: &[(u64, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader {
        datalink: DataLink::from(linktype),
        ts_resolution: if nanos { TsResolution::NanoSecond } else { TsResolution::MicroSecond },
        ..Default::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for (ts, f) in frames {
        let p = PcapPacket { timestamp: Duration::from_nanos(*ts), orig_len: f.len() as u32, data: Cow::Borrowed(f) };
        w.write_packet(&p).unwrap();
    }
}

/// One pcapng interface: link type and `if_tsresol` (power of ten, or `0x80 | n` for 2^-n).
#[derive(Clone, Copy, Debug)]
pub struct Iface {
    pub linktype: u32,
    pub tsresol: u8,
}

impl Iface {
    /// `ns` in this interface's timestamp units (what an EPB stores).
    pub fn units(&self, ns: u64) -> u64 {
        if self.tsresol & 0x80 != 0 {
            (((ns as u128) << (self.tsresol & 0x7f)) / 1_000_000_000) as u64
        } else {
            ns / 10u64.pow(9 - self.tsresol as u32)
        }
    }
}

/// A pcapng with `ifaces`; each packet is (interface, ns since the epoch, frame framed for it).
pub fn write_pcapng(path: &Path, ifaces: &[Iface], packets: &[(u32, u64, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapNgWriter::new(file).unwrap();
    for i in ifaces {
        let mut idb = InterfaceDescriptionBlock::new(DataLink::from(i.linktype), 0xffff);
        if i.tsresol != 6 {
            idb.options.push(InterfaceDescriptionOption::IfTsResol(i.tsresol));
        }
        w.write_pcapng_block(idb).unwrap();
    }
    for (iface, ns, f) in packets {
        let units = ifaces[*iface as usize].units(*ns);
        // pcap-file writes the timestamp field's nanoseconds as the raw unit count.
        let epb = EnhancedPacketBlock {
            interface_id: *iface,
            timestamp: Duration::from_nanos(units),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        };
        w.write_pcapng_block(epb).unwrap();
    }
}
