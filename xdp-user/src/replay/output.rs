//! What `replay` prints: a line per packet (human or JSON) or, with `--summary`, the counts per
//! reason and country and the top sources and signatures; and, with `--write-dropped`, the
//! frames that were (or, under dry-run, would have been) dropped as an Ethernet pcap with
//! nanosecond timestamps.
use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::{DataLink, TsResolution};

use super::capture::Frame;
use super::{Options, Verdict};

/// How many sources and signatures the summary lists.
const TOP: usize = 10;

/// Snap length of the written pcap: the largest frame test_run takes is far below it.
const WRITE_SNAPLEN: u32 = 262_144;

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Summary {
    pub packets: u64,
    pub dropped: u64,
    /// Packets per reason (`pass` included; `outgoing` for skipped frames).
    pub reasons: BTreeMap<&'static str, u64>,
    /// Packets per source country (when the policy has GeoIP).
    pub countries: BTreeMap<&'static str, u64>,
    /// Sources with the most dropped packets: (address, dropped, packets).
    pub top_sources: Vec<TopSource>,
    /// Signatures with the most matches.
    pub top_signatures: Vec<(String, u64)>,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct TopSource {
    pub src: String,
    pub dropped: u64,
    pub packets: u64,
}

/// Accumulates the summary as packets come.
#[derive(Default)]
struct Tally {
    sum: Summary,
    sources: BTreeMap<String, (u64, u64)>,
    signatures: BTreeMap<String, u64>,
}

impl Tally {
    fn add(&mut self, v: &Verdict) {
        self.sum.packets += 1;
        self.sum.dropped += v.would_drop as u64;
        *self.sum.reasons.entry(v.reason).or_default() += 1;
        if let Some(c) = v.country {
            *self.sum.countries.entry(c).or_default() += 1;
        }
        if let Some(src) = &v.src {
            let e = self.sources.entry(src.clone()).or_default();
            e.0 += v.would_drop as u64;
            e.1 += 1;
        }
        if let Some(s) = &v.signature {
            *self.signatures.entry(s.clone()).or_default() += 1;
        }
    }

    fn finish(mut self) -> Summary {
        let mut src: Vec<TopSource> = self
            .sources
            .into_iter()
            .filter(|(_, (d, _))| *d > 0)
            .map(|(src, (dropped, packets))| TopSource { src, dropped, packets })
            .collect();
        src.sort_by(|a, b| b.dropped.cmp(&a.dropped).then(b.packets.cmp(&a.packets)));
        src.truncate(TOP);
        let mut sigs: Vec<(String, u64)> = self.signatures.into_iter().collect();
        sigs.sort_by_key(|s| std::cmp::Reverse(s.1));
        sigs.truncate(TOP);
        self.sum.top_sources = src;
        self.sum.top_signatures = sigs;
        self.sum
    }
}

pub struct Output {
    json: bool,
    summary: bool,
    tally: Tally,
    dropped: Option<(std::path::PathBuf, PcapWriter<std::io::BufWriter<std::fs::File>>)>,
    out: std::io::StdoutLock<'static>,
}

impl Output {
    pub fn new(opts: &Options) -> Result<Output> {
        let dropped = match &opts.write_dropped {
            Some(p) => {
                let f = std::fs::File::create(p).with_context(|| format!("{}: cannot create", p.display()))?;
                let header = PcapHeader {
                    datalink: DataLink::ETHERNET,
                    ts_resolution: TsResolution::NanoSecond,
                    snaplen: WRITE_SNAPLEN,
                    ..Default::default()
                };
                let w = PcapWriter::with_header(std::io::BufWriter::new(f), header)
                    .with_context(|| format!("{}: cannot write", p.display()))?;
                Some((p.clone(), w))
            }
            None => None,
        };
        Ok(Output {
            json: opts.json,
            summary: opts.summary,
            tally: Tally::default(),
            dropped,
            out: std::io::stdout().lock(),
        })
    }

    /// One packet's verdict.
    pub fn packet(&mut self, frame: &Frame, v: Verdict) -> Result<()> {
        if v.would_drop {
            if let Some((path, w)) = &mut self.dropped {
                let p = PcapPacket {
                    timestamp: Duration::from_nanos(frame.ts_ns),
                    orig_len: frame.wire_len.max(frame.eth.len() as u32),
                    data: std::borrow::Cow::Borrowed(&frame.eth),
                };
                w.write_packet(&p).with_context(|| format!("{}: cannot write", path.display()))?;
            }
        }
        if !self.summary {
            if self.json {
                writeln!(self.out, "{}", serde_json::to_string(&v)?)?;
            } else {
                writeln!(self.out, "{}", human(&v))?;
            }
        }
        self.tally.add(&v);
        Ok(())
    }

    /// The closing summary (also after a capture error: it covers the packets read).
    pub fn finish(mut self) -> Result<()> {
        if let Some((path, w)) = self.dropped.take() {
            w.into_writer().flush().with_context(|| format!("{}: cannot write", path.display()))?;
        }
        let sum = std::mem::take(&mut self.tally).finish();
        if self.summary {
            if self.json {
                writeln!(self.out, "{}", serde_json::to_string(&sum)?)?;
            } else {
                write!(self.out, "{}", table(&sum))?;
            }
        } else if !self.json {
            let counts: Vec<String> = sum.reasons.iter().map(|(r, n)| format!("{r}={n}")).collect();
            writeln!(self.out, "total {} packets: {}", sum.packets, counts.join(" "))?;
        }
        self.out.flush()?;
        Ok(())
    }
}

fn human(v: &Verdict) -> String {
    let mut s = format!(
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
    );
    if let Some(m) = v.method {
        s += &format!(" method={m}");
    }
    if let Some(c) = v.country {
        s += &format!(" country={c}");
    }
    if let Some(g) = &v.signature {
        s += &format!(" signature={g:?}");
    }
    s
}

/// The human summary table.
pub fn table(sum: &Summary) -> String {
    let mut s = format!("{} packets, {} dropped\n", sum.packets, sum.dropped);
    s += "\nreason        packets\n";
    for (r, n) in &sum.reasons {
        s += &format!("  {r:<11} {n:>8}\n");
    }
    if !sum.countries.is_empty() {
        s += "\ncountry       packets\n";
        for (c, n) in &sum.countries {
            s += &format!("  {c:<11} {n:>8}\n");
        }
    }
    if !sum.top_sources.is_empty() {
        s += "\ntop sources                              dropped  packets\n";
        for t in &sum.top_sources {
            s += &format!("  {:<39} {:>7} {:>8}\n", t.src, t.dropped, t.packets);
        }
    }
    if !sum.top_signatures.is_empty() {
        s += "\ntop signatures                           matches\n";
        for (g, n) in &sum.top_signatures {
            s += &format!("  {g:<39} {n:>7}\n");
        }
    }
    s
}
