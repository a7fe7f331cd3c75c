//! Live frames over the testbed's veth: [`blast`] pushes frames out of the generator's veth with
//! [`GEN`](super::helpers::GEN) and `BPF_PROG_TEST_RUN` live frames
//! (`BPF_F_TEST_XDP_LIVE_FRAMES`); [`counted_blast`] counts what the measured receiver dropped;
//! [`harness_floor`] is the generator and veth alone, and [`Floor`] the one receiver-side
//! computation (per-frame time minus the floor's); [`compare`] runs sipshield and a peer
//! alternately and keeps the median run of each.
use std::time::Instant;

use anyhow::{anyhow, bail, Result};
use aya::programs::{TestRun, TestRunAttrs, TestRunOptions};
use clap::Args;
use sipshield::filter::Filter;

use super::helpers::{set_gen_ifindex, with_attached, HelpersOnly, Prog, XdpHost, DROP, EMPTY, GEN};
use super::interrupted;
use super::stats;
use super::testbed::Testbed;

/// Hard ceiling of frames one [`blast`] may send, whatever the arguments say.
pub const MAX_FRAMES_PER_BLAST: u64 = 50_000_000;
/// Wall-clock ceiling of one [`blast`].
pub const MAX_BLAST_SECS: f64 = 60.0;

/// Frames of the warm-up blast before every counted run (faults pages in, fills the rate-limit
/// table, lets the peer's state settle): the first 4 frames, this many times each.
const WARMUP_PER_FRAME: u32 = 4000;

/// The options `sip_bench` and `geo_bench` share (flattened into their own).
#[derive(Args, Clone, Debug)]
pub struct LiveArgs {
    /// Print one JSON object on stdout (the table goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// BPF_PROG_TEST_RUN repeat count per frame for the per-packet cost.
    #[arg(long, default_value_t = 100_000)]
    pub repeat: u32,
    /// Live frames per throughput run.
    #[arg(long, default_value_t = 3_000_000)]
    pub frames: u64,
    /// Throughput runs per case and side, sipshield and the peer alternating (the median is
    /// reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Skip the live-traffic throughput part.
    #[arg(long)]
    pub skip_live: bool,
}

impl LiveArgs {
    /// Run `f` on a fresh [`Testbed`] `tag` (None with `--skip-live`). The testbed (both
    /// namespaces, with everything attached in them) is deleted before an error is returned.
    pub fn on_testbed<R>(&self, tag: &str, f: impl FnOnce(&Testbed) -> Result<R>) -> Result<Option<R>> {
        if self.skip_live {
            return Ok(None);
        }
        let tb = Testbed::create(tag)?;
        let r = f(&tb);
        drop(tb);
        r.map(Some)
    }
}

/// One throughput run: frames sent and dropped, kernel-measured loop time and wall time.
#[derive(Clone, Debug, Default)]
pub struct Run {
    /// Frames handed to the generator (each is redirected out of the generator's veth).
    pub sent: u64,
    /// Frames the measured receiver dropped (0 for an uncounted [`blast`]).
    pub dropped: u64,
    /// Sum of the wall-clock time of the test-run syscalls (includes the kernel's fixed per-call
    /// cost: installing the program as XDP dispatcher and two RCU grace periods).
    pub wall_secs: f64,
    /// Sum of the kernel-reported time of the frame loops (duration × repeat per call).
    pub kernel_secs: f64,
    pub calls: usize,
}

impl Run {
    /// Drops per second of frame-loop time (kernel-measured).
    pub fn pps(&self) -> f64 {
        self.dropped as f64 / self.kernel_secs
    }
    /// Drops per second of wall-clock syscall time (includes the fixed per-call cost).
    pub fn pps_wall(&self) -> f64 {
        self.dropped as f64 / self.wall_secs
    }
    /// ns per frame of the frame loop.
    pub fn ns_per_frame(&self) -> f64 {
        1e9 / self.pps()
    }
    pub fn dropped_fraction(&self) -> f64 {
        self.dropped as f64 / self.sent.max(1) as f64
    }
}

/// Send `frames` round-robin, `per_frame` times each, out of the generator's veth with
/// [`GEN`] in live-frames mode. Runs on a thread inside the generator namespace. Bounded by
/// [`MAX_FRAMES_PER_BLAST`] and [`MAX_BLAST_SECS`].
pub fn blast(tb: &Testbed, frames: &[Vec<u8>], per_frame: u32) -> Result<Run> {
    let total = frames.len() as u64 * per_frame as u64;
    if total > MAX_FRAMES_PER_BLAST {
        bail!("{total} frames exceed the per-run ceiling of {MAX_FRAMES_PER_BLAST}");
    }
    set_gen_ifindex(tb.gen_if.ifindex)?;
    tb.gen.enter(|| HelpersOnly.with_xdp(GEN, |gen| send(gen, frames, per_frame)))
}

fn send(gen: &mut aya::programs::Xdp, frames: &[Vec<u8>], per_frame: u32) -> Result<Run> {
    let mut b = Run::default();
    let t0 = Instant::now();
    for f in frames {
        if interrupted() {
            bail!("interrupted");
        }
        let t = Instant::now();
        let r = gen
            .test_run(TestRunOptions {
                data_in: Some(f),
                repeat: per_frame,
                attrs: TestRunAttrs::new().xdp_live_frames(64),
                ..Default::default()
            })
            .map_err(|e| anyhow!("live-frames BPF_PROG_TEST_RUN: {e:#}"))?;
        b.wall_secs += t.elapsed().as_secs_f64();
        b.kernel_secs += r.duration.as_nanos() as f64 * per_frame as f64 / 1e9;
        b.sent += per_frame as u64;
        b.calls += 1;
        if t0.elapsed().as_secs_f64() > MAX_BLAST_SECS {
            eprintln!("  (blast stopped at the {MAX_BLAST_SECS} s ceiling after {} frames)", b.sent);
            break;
        }
    }
    Ok(b)
}

/// Fixed wall-clock cost of one live-frames test run (program swap + RCU grace periods),
/// measured with runs of 2 frames each (median of `n`); those frames do go out of the veth.
pub fn call_overhead(tb: &Testbed, frame: &[u8], n: usize) -> Result<f64> {
    let mut v = vec![];
    for _ in 0..n {
        let b = blast(tb, &[frame.to_vec()], 2)?;
        v.push(b.wall_secs - b.kernel_secs);
    }
    Ok(stats::median(&v))
}

/// Warm up with the first few frames, blast `frames` (`per` repetitions each) and count as
/// dropped the growth of `drops` (the measured side's drop counter) across the blast.
pub fn counted_blast(
    tb: &Testbed,
    frames: &[Vec<u8>],
    per: u32,
    mut drops: impl FnMut() -> Result<u64>,
) -> Result<Run> {
    blast(tb, &frames[..frames.len().min(4)], WARMUP_PER_FRAME)?;
    let before = drops()?;
    let mut run = blast(tb, frames, per)?;
    run.dropped = drops()? - before;
    Ok(run)
}

/// One sipshield run: attached natively on the receiver, warm-up, blast, count the drops of
/// `reason` from its counters.
pub fn run_sipshield(tb: &Testbed, f: &mut Filter, frames: &[Vec<u8>], per: u32, reason: u32) -> Result<Run> {
    with_attached(tb, f, Prog::Sipshield, |f| {
        counted_blast(tb, frames, per, || Ok(f.stats()?.reason_total(reason).packets))
    })
}

/// One peer run: its rules are in place in the receiving namespace; [`EMPTY`] is attached on
/// the receiver veth (for NAPI); warm-up, blast, count the growth of the peer's own counter.
pub fn run_peer(tb: &Testbed, frames: &[Vec<u8>], per: u32, drops: impl FnMut() -> Result<u64>) -> Result<Run> {
    with_attached(tb, &mut HelpersOnly, EMPTY, |_| counted_blast(tb, frames, per, drops))
}

/// The harness alone: what the generator and the veth cost per frame, measured with the same
/// frames into [`DROP`] on the receiver (drops counted from the veth's packet counter).
pub struct Floor(pub Run);

impl Floor {
    /// ns per frame of the harness alone.
    pub fn ns(&self) -> f64 {
        self.0.ns_per_frame()
    }
    /// Receiver-side ns per frame of `r`: its per-frame time minus the floor's.
    pub fn receiver_ns(&self, r: &Run) -> f64 {
        r.ns_per_frame() - self.ns()
    }
}

/// Measure the [`Floor`] with `frames`, `per` repetitions each.
pub fn harness_floor(tb: &Testbed, frames: &[Vec<u8>], per: u32) -> Result<Floor> {
    with_attached(tb, &mut HelpersOnly, DROP, |_| counted_blast(tb, frames, per, || tb.rx_packets())).map(Floor)
}

/// Every run of one side and its median run (by pps).
#[derive(Clone, Debug)]
pub struct Side {
    pub median: Run,
    pub runs: Vec<Run>,
}

impl Side {
    pub fn new(runs: Vec<Run>) -> Result<Side> {
        let median = stats::median_by(&runs, Run::pps).ok_or_else(|| anyhow!("no throughput run"))?;
        Ok(Side { median, runs })
    }
}

/// sipshield and a peer on the same frames.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub sip: Side,
    pub peer: Side,
}

impl Comparison {
    /// sipshield pps / peer pps (median runs): the figure the targets are judged on.
    pub fn ratio(&self) -> f64 {
        self.sip.median.pps() / self.peer.median.pps()
    }
    /// The same with wall-clock pps (includes the fixed per-syscall cost; not a throughput).
    pub fn ratio_wall(&self) -> f64 {
        self.sip.median.pps_wall() / self.peer.median.pps_wall()
    }
    /// Peer receiver-side ns / sipshield receiver-side ns (informative).
    pub fn receiver_ratio(&self, floor: &Floor) -> f64 {
        floor.receiver_ns(&self.peer.median) / floor.receiver_ns(&self.sip.median)
    }
}

/// `runs` rounds of one sipshield run and one peer run, alternating.
pub fn compare(
    runs: usize,
    mut sip: impl FnMut() -> Result<Run>,
    mut peer: impl FnMut() -> Result<Run>,
) -> Result<Comparison> {
    let (mut s, mut p) = (vec![], vec![]);
    for _ in 0..runs {
        s.push(sip()?);
        p.push(peer()?);
    }
    Ok(Comparison { sip: Side::new(s)?, peer: Side::new(p)? })
}
