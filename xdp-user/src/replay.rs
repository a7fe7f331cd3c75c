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

/// Parse enough of an Ethernet frame to name its endpoints (mirrors the kernel parser's
/// VLAN/IPv6-extension handling, without validation).
pub fn frame_info(f: &[u8]) -> FrameInfo {
    let mut info = FrameInfo::default();
    let be16 = |o: usize| f.get(o..o + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
    let Some(mut et) = be16(12) else { return info };
    let mut off = 14;
    for _ in 0..2 {
        if et == 0x8100 || et == 0x88a8 {
            let Some(e) = be16(off + 2) else { return info };
            et = e;
            off += 4;
        }
    }
    let l4;
    match et {
        0x0800 => {
            let Some(h) = f.get(off..off + 20) else { return info };
            info.src = Some(IpAddr::from([h[12], h[13], h[14], h[15]]));
            info.dst = Some(IpAddr::from([h[16], h[17], h[18], h[19]]));
            info.proto = h[9];
            if u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0 {
                return info;
            }
            l4 = off + (h[0] as usize & 15) * 4;
        }
        0x86dd => {
            let Some(h) = f.get(off..off + 40) else { return info };
            let mut s = [0u8; 16];
            s.copy_from_slice(&h[8..24]);
            info.src = Some(IpAddr::from(s));
            s.copy_from_slice(&h[24..40]);
            info.dst = Some(IpAddr::from(s));
            let mut next = h[6];
            let mut cur = off + 40;
            for _ in 0..8 {
                match next {
                    0 | 43 | 60 | 51 => {
                        let (Some(nh), Some(len)) = (f.get(cur), f.get(cur + 1)) else { return info };
                        let size = if next == 51 { (*len as usize + 2) * 4 } else { (*len as usize + 1) * 8 };
                        next = *nh;
                        cur += size;
                    }
                    44 => {
                        let Some(fh) = f.get(cur..cur + 8) else { return info };
                        next = fh[0];
                        cur += 8;
                        if u16::from_be_bytes([fh[2], fh[3]]) & 0xfff8 != 0 {
                            info.proto = next;
                            return info;
                        }
                    }
                    _ => break,
                }
            }
            info.proto = next;
            l4 = cur;
        }
        _ => return info,
    }
    if info.proto == 6 || info.proto == 17 {
        if let (Some(s), Some(d)) = (be16(l4), be16(l4 + 2)) {
            info.sport = s;
            info.dport = d;
        }
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

/// Replay every frame of `capture` through `filter`; calls `each` per packet.
pub fn replay_frames(
    filter: &mut Filter,
    frames: impl IntoIterator<Item = (u64, Vec<u8>)>,
    mut each: impl FnMut(Verdict) -> Result<()>,
) -> Result<[u64; NUM_REASONS as usize]> {
    let mut totals = [0u64; NUM_REASONS as usize];
    let mut before = filter.slot0_counts()?;
    for (index, (ts_ns, frame)) in frames.into_iter().enumerate() {
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
pub fn run(config: &Path, capture: &Path, json: bool) -> Result<()> {
    let cfg = Config::load(config)?;
    let frames = read_pcap(capture)?;
    let mut filter = Filter::load_private()?;
    crate::policy::apply_config(&mut filter, &cfg)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let totals = replay_frames(&mut filter, frames, |v| {
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
