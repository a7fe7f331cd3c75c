//! `sipshield replay`: run a capture through the real XDP program (BPF_PROG_TEST_RUN) with the
//! maps filled from a config exactly as `run` fills them, and report each packet's verdict.
//! The program's clock follows the capture's timestamps, so rate limits and ban expiry behave as
//! they would have on the wire.
use std::io::Write;
use std::net::IpAddr;
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use pcap_file::pcap::PcapReader;
use xdp_common::*;

use crate::config::Config;
use crate::filter::Filter;

/// Addresses and ports of a frame, parsed in userspace for display.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FrameInfo {
    pub src: Option<IpAddr>,
    pub dst: Option<IpAddr>,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
}

/// The endpoints of a frame for display, decoded with etherparse: Ethernet, up to three VLAN
/// tags, IPv4 or IPv6 with its extension headers (hop-by-hop, routing, destination options,
/// fragment, authentication). Lax: a truncated or malformed frame yields what could be read.
/// Ports are read from unfragmented packets and first fragments.
pub fn frame_info(f: &[u8]) -> FrameInfo {
    use etherparse::{
        Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket, TcpHeaderSlice, TransportSlice, UdpHeaderSlice,
    };

    let mut info = FrameInfo::default();
    let Ok(p) = LaxSlicedPacket::from_ethernet(f) else { return info };
    let (payload, first_fragment) = match &p.net {
        Some(LaxNetSlice::Ipv4(v4)) => {
            let h = v4.header();
            info.src = Some(h.source_addr().into());
            info.dst = Some(h.destination_addr().into());
            (v4.payload(), h.fragments_offset().value() == 0)
        }
        Some(LaxNetSlice::Ipv6(v6)) => {
            let h = v6.header();
            info.src = Some(h.source_addr().into());
            info.dst = Some(h.destination_addr().into());
            let later = v6.extensions().clone().into_iter().any(|e| match e {
                Ipv6ExtensionSlice::Fragment(fh) => fh.fragment_offset().value() != 0,
                _ => false,
            });
            (v6.payload(), !later)
        }
        _ => return info,
    };
    info.proto = payload.ip_number.0;
    let ports = match &p.transport {
        Some(TransportSlice::Udp(u)) => Some((u.source_port(), u.destination_port())),
        Some(TransportSlice::Tcp(t)) => Some((t.source_port(), t.destination_port())),
        // etherparse leaves the payload of a fragment undecoded: the first one starts with the
        // L4 header.
        _ if payload.fragmented && first_fragment => match info.proto {
            17 => UdpHeaderSlice::from_slice(payload.payload).ok().map(|u| (u.source_port(), u.destination_port())),
            6 => TcpHeaderSlice::from_slice(payload.payload).ok().map(|t| (t.source_port(), t.destination_port())),
            _ => None,
        },
        _ => None,
    };
    if let Some((s, d)) = ports {
        info.sport = s;
        info.dport = d;
    }
    info
}

/// One replayed packet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    pub index: usize,
    pub verdict: &'static str,
    pub reason: &'static str,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub len: usize,
}

/// Is `frame` sent by the protected host (its source is one of the `local` addresses)? Such
/// frames are the server's answers: they go through the egress program, as on the wire, so a
/// two-way capture replays failed authentications and the bans they cause, in order.
fn replay_egress(filter: &mut Filter, local: &[IpAddr], ts_ns: u64, frame: &[u8]) -> Result<bool> {
    if frame.len() < 14 || !frame_info(frame).src.is_some_and(|a| local.contains(&a)) {
        return Ok(false);
    }
    filter.update_config(|c| c.clock_ns = ts_ns.max(1))?;
    filter.test_run_egress(frame)?;
    Ok(true)
}

/// Replay every frame of `capture` through `filter` (frames from a `local` address through the
/// egress program, the others through the XDP program); calls `each` per packet.
pub fn replay_frames(
    filter: &mut Filter,
    frames: impl IntoIterator<Item = (u64, Vec<u8>)>,
    local: &[IpAddr],
    mut each: impl FnMut(Verdict) -> Result<()>,
) -> Result<[u64; NUM_REASONS as usize]> {
    let mut totals = [0u64; NUM_REASONS as usize];
    let mut before = filter.slot0_counts()?;
    for (index, (ts_ns, frame)) in frames.into_iter().enumerate() {
        if replay_egress(filter, local, ts_ns, &frame)? {
            let info = frame_info(&frame);
            each(Verdict {
                index,
                verdict: "egress",
                reason: "-",
                src: info.src.map(|a| a.to_string()),
                dst: info.dst.map(|a| a.to_string()),
                proto: info.proto,
                sport: info.sport,
                dport: info.dport,
                len: frame.len(),
            })?;
            continue;
        }
        let (action, reason) = if frame.len() < 14 {
            // Shorter than an Ethernet header: no NIC hands this to XDP (and test_run refuses
            // it); the kernel stack would discard it as malformed.
            (crate::filter::XDP_PASS, REASON_MALFORMED as usize)
        } else {
            // The program's "now" is the capture time (never 0, which means "real clock").
            filter.update_config(|c| c.clock_ns = ts_ns.max(1))?;
            let action = filter.test_run(&frame)?;
            let after = filter.slot0_counts()?;
            let reason = (0..NUM_REASONS as usize)
                .find(|r| after[*r] != before[*r])
                .ok_or_else(|| anyhow!("packet {index}: the program counted no reason"))?;
            before = after;
            (action, reason)
        };
        totals[reason] += 1;
        let info = frame_info(&frame);
        each(Verdict {
            index,
            verdict: if action == crate::filter::XDP_DROP { "drop" } else { "pass" },
            reason: REASON_NAMES[reason],
            src: info.src.map(|a| a.to_string()),
            dst: info.dst.map(|a| a.to_string()),
            proto: info.proto,
            sport: info.sport,
            dport: info.dport,
            len: frame.len(),
        })?;
    }
    filter.update_config(|c| c.clock_ns = 0)?;
    Ok(totals)
}

/// Read an Ethernet pcap into (timestamp ns, frame) pairs.
pub fn read_pcap(path: &Path) -> Result<Vec<(u64, Vec<u8>)>> {
    let file = std::fs::File::open(path).with_context(|| format!("{}: cannot open capture", path.display()))?;
    let mut reader = PcapReader::new(std::io::BufReader::new(file))
        .map_err(|e| anyhow!("{}: not a pcap file: {e}", path.display()))?;
    let dl = reader.header().datalink;
    if dl != pcap_file::DataLink::ETHERNET {
        return Err(anyhow!("{}: link type {dl:?} is not supported (Ethernet captures only)", path.display()));
    }
    let mut out = vec![];
    while let Some(p) = reader.next_packet() {
        let p = p.map_err(|e| anyhow!("{}: packet {}: {e}", path.display(), out.len()))?;
        out.push((p.timestamp.as_nanos() as u64, p.data.into_owned()));
    }
    Ok(out)
}

/// The `replay` command.
pub fn run(config: &Path, capture: &Path, local: &[IpAddr], json: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    let frames = read_pcap(capture)?;
    let mut filter = Filter::load_private()?;
    crate::policy::apply_config(&mut filter, &cfg)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let totals = replay_frames(&mut filter, frames, local, |v| {
        if json {
            writeln!(out, "{}", serde_json::to_string(&v)?)?;
        } else {
            writeln!(
                out,
                "{:>6} {:<4} {:<11} {} -> {} proto {} {}->{} len {}",
                v.index,
                v.verdict,
                v.reason,
                v.src.as_deref().unwrap_or("-"),
                v.dst.as_deref().unwrap_or("-"),
                v.proto,
                v.sport,
                v.dport,
                v.len
            )?;
        }
        Ok(())
    })?;
    if !json {
        let summary: Vec<String> = totals
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(r, n)| format!("{}={n}", REASON_NAMES[r]))
            .collect();
        writeln!(out, "total {} packets: {}", totals.iter().sum::<u64>(), summary.join(" "))?;
    }
    Ok(())
}
