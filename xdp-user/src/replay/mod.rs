//! `sipshield replay`: run a capture through the real XDP program (BPF_PROG_TEST_RUN) with the
//! maps filled from a config exactly as `run` fills them, and report each packet's verdict.
//! The program's clock follows the capture's timestamps, so rate limits and ban expiry behave as
//! they would have on the wire.
//!
//! - `capture`: the capture formats and link types, as the Ethernet frames XDP sees;
//! - `output`: per-packet lines (human or JSON), the summary, the dropped frames as pcap;
//! - here: the replay loop. The reason of a packet is the counter the program incremented; its
//!   SIP method, signature and country come from the program's own drop event (replay selects
//!   every reason and turns sampling off), the country of a passed packet from the program's
//!   GeoIP tables.
pub mod capture;
pub mod output;

use std::net::IpAddr;
use std::path::Path;

use anyhow::{anyhow, Result};
use aya::maps::{MapData, RingBuf};
use xdp_common::*;

use crate::config::Config;
use crate::filter::Filter;
use capture::{Capture, CaptureError, Frame};

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
    /// Capture time, RFC 3339 with nanoseconds.
    pub time: String,
    /// `pass`, `drop`, `skip` for a frame the capturing host sent (it never met the ingress
    /// hook), or `egress` for an answer of a `--local` address (run through the egress program).
    pub verdict: &'static str,
    pub reason: &'static str,
    pub src: Option<String>,
    pub dst: Option<String>,
    pub proto: u8,
    pub sport: u16,
    pub dport: u16,
    pub len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'static str>,
    /// Dropped, or would have been without dry-run (the program's event says so).
    #[serde(skip)]
    pub would_drop: bool,
}

/// The filter as replay drives it: the program, its event ring and the signatures (to name
/// them).
pub struct Replayer {
    filter: Filter,
    ring: RingBuf<MapData>,
    sigs: Vec<crate::sig::Signature>,
    geo: bool,
    before: [u64; NUM_REASONS as usize],
    /// The program clock of the last timestamped packet (pcapng simple packets have none).
    clock_ns: u64,
    /// Addresses of the protected host (`--local`): frames they sent are the server's answers
    /// and go through the egress program.
    local: Vec<IpAddr>,
}

impl Replayer {
    /// A private filter (nothing attached or pinned) with the maps filled from `cfg`.
    pub fn new(cfg: &Config) -> Result<Replayer> {
        let mut filter = Filter::load_private()?;
        crate::policy::apply_config(&mut filter, cfg)?;
        Self::from_filter(filter)
    }

    /// Take over a filter whose maps are filled: every drop gets an event (all reasons, no
    /// sampling), which is where the method, signature and country of a packet are read.
    pub fn from_filter(mut filter: Filter) -> Result<Replayer> {
        let c = filter.update_config(|c| {
            c.event_reasons = u32::MAX;
            c.event_interval_ns = 0;
        })?;
        let sigs = crate::sig::read(&filter)?;
        let ring = RingBuf::try_from(filter.take_map(maps::EVENTS)?)?;
        let before = filter.slot0_counts()?;
        Ok(Replayer { filter, ring, sigs, geo: c.flags & CFG_GEO_ENABLED != 0, before, clock_ns: 1, local: vec![] })
    }

    /// Frames from these addresses (the protected host's) go through the egress program, as
    /// on the wire, so a two-way capture replays failed authentications and their bans in order.
    pub fn with_local(mut self, local: &[IpAddr]) -> Replayer {
        self.local = local.to_vec();
        self
    }

    /// Set the program's "now" to the capture time (never 0, which means "real clock").
    fn set_clock(&mut self, ts_ns: u64) -> Result<u64> {
        if ts_ns != 0 {
            self.clock_ns = ts_ns;
        }
        let now = self.clock_ns;
        self.filter.update_config(|c| c.clock_ns = now)?;
        Ok(now)
    }

    /// A server answer through the egress program; its events (counted failures) are consumed.
    fn egress(&mut self, frame: &Frame, v: &mut Verdict) -> Result<()> {
        self.set_clock(frame.ts_ns)?;
        self.filter.test_run_egress(&frame.eth)?;
        while self.ring.next().is_some() {}
        (v.verdict, v.reason) = ("egress", "-");
        Ok(())
    }

    /// Run one frame through the program.
    pub fn judge(&mut self, frame: &Frame) -> Result<Verdict> {
        let info = frame_info(&frame.eth);
        let mut v = Verdict {
            index: frame.index,
            time: humantime::format_rfc3339_nanos(std::time::UNIX_EPOCH + std::time::Duration::from_nanos(frame.ts_ns))
                .to_string(),
            verdict: "pass",
            reason: REASON_NAMES[REASON_PASS as usize],
            src: info.src.map(|a| a.to_string()),
            dst: info.dst.map(|a| a.to_string()),
            proto: info.proto,
            sport: info.sport,
            dport: info.dport,
            len: frame.eth.len(),
            method: None,
            signature: None,
            country: None,
            would_drop: false,
        };
        if frame.eth.len() >= 14 && info.src.is_some_and(|a| self.local.contains(&a)) {
            self.egress(frame, &mut v)?;
            return Ok(v);
        }
        if frame.outgoing {
            (v.verdict, v.reason) = ("skip", "outgoing");
            return Ok(v);
        }
        if frame.eth.len() < 14 {
            // Shorter than an Ethernet header: no NIC hands this to XDP (and test_run refuses
            // it); the kernel stack would discard it as malformed.
            v.reason = REASON_NAMES[REASON_MALFORMED as usize];
            return Ok(v);
        }
        let now = self.set_clock(frame.ts_ns)?;
        let action = self.filter.test_run(&frame.eth)?;
        let after = self.filter.slot0_counts()?;
        let reason = (0..NUM_REASONS as usize)
            .find(|r| after[*r] != self.before[*r])
            .ok_or_else(|| anyhow!("packet {}: the program counted no reason", frame.index))?;
        self.before = after;
        v.reason = REASON_NAMES[reason];
        if action == crate::filter::XDP_DROP {
            v.verdict = "drop";
            v.would_drop = true;
        }
        // The drop's event (at most one per packet).
        while let Some(item) = self.ring.next() {
            if let Some(ev) = crate::events::decode(&item, &self.sigs, now, std::time::SystemTime::now()) {
                v.method = ev.method;
                v.signature = ev.signature;
                v.country = ev.country;
                v.would_drop |= ev.dry_run;
            }
        }
        if v.country.is_none() && self.geo {
            if let Some(ip) = info.src {
                let (c, _) = crate::geo::lookup_live(&self.filter, ip)?;
                v.country = (c != 0).then(|| crate::countries::code_of(c));
            }
        }
        Ok(v)
    }
}

impl Drop for Replayer {
    fn drop(&mut self) {
        let _ = self.filter.update_config(|c| c.clock_ns = 0);
    }
}

/// Replay `frames` (a capture being read) through `r`; `each` gets every verdict. A capture
/// error stops the replay after the verdicts so far and is returned as `Ok(Some(error))`.
pub fn replay_frames(
    r: &mut Replayer,
    frames: impl IntoIterator<Item = Result<Frame, CaptureError>>,
    mut each: impl FnMut(&Frame, Verdict) -> Result<()>,
) -> Result<Option<CaptureError>> {
    for f in frames {
        match f {
            Ok(frame) => {
                let v = r.judge(&frame)?;
                each(&frame, v)?;
            }
            Err(e) => return Ok(Some(e)),
        }
    }
    Ok(None)
}

/// What `replay` prints and writes.
#[derive(Debug, Default, Clone)]
pub struct Options {
    pub json: bool,
    pub summary: bool,
    pub write_dropped: Option<std::path::PathBuf>,
    /// Addresses of the protected host (`--local`).
    pub local: Vec<IpAddr>,
}

/// The `replay` command.
pub fn run(config: &Path, capture: &Path, opts: &Options) -> Result<()> {
    let cfg = Config::load(config)?;
    let frames = Capture::open(capture)?;
    let mut replayer = Replayer::new(&cfg)?.with_local(&opts.local);
    let mut out = output::Output::new(opts)?;
    let failed = replay_frames(&mut replayer, frames, |frame, v| out.packet(frame, v))?;
    out.finish()?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}
