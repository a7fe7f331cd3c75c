//! Per-packet cost: `BPF_PROG_TEST_RUN` with repeat, kernel-measured time per run.
use anyhow::{anyhow, Result};
use aya::programs::{TestRun, TestRunOptions, Xdp};

use super::helpers::{Prog, XdpHost};
use super::stats;

/// Average ns per run of `prog` on `frame` (kernel-measured), and the XDP action.
pub fn run_repeat(prog: &mut Xdp, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
    let mut out = vec![0u8; frame.len() + 256];
    let r = prog
        .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
        .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
    Ok((r.return_value, r.duration.as_nanos() as f64))
}

/// What [`cost_rounds`] measured of one case.
#[derive(Clone, Debug, Default)]
pub struct CaseCost {
    /// The XDP action of each frame (first round).
    pub actions: Vec<u32>,
    /// Mean ns per run over the case's frames, one value per round.
    pub rounds: Vec<f64>,
}

/// Per-packet cost of several cases measured round-robin, so a slow phase of a noisy VM hits
/// every case alike: each round runs every case (its program over its frames, each frame
/// `repeat` times).
pub fn cost_rounds(
    host: &mut impl XdpHost,
    cases: &[(Prog, &[Vec<u8>])],
    repeat: u32,
    rounds: usize,
) -> Result<Vec<CaseCost>> {
    let mut out: Vec<CaseCost> = cases.iter().map(|_| CaseCost::default()).collect();
    for round in 0..rounds {
        for (case, (prog, frames)) in out.iter_mut().zip(cases) {
            let sum = host.with_xdp(*prog, |p| {
                let mut sum = 0.0;
                for f in frames.iter() {
                    let (a, ns) = run_repeat(p, f, repeat)?;
                    if round == 0 {
                        case.actions.push(a);
                    }
                    sum += ns;
                }
                Ok(sum)
            })?;
            case.rounds.push(sum / frames.len() as f64);
        }
    }
    Ok(out)
}

/// Per-packet cost of `prog` over `frames`: each frame run `repeat` times, `rounds` times;
/// returns (actions of the frames, median over rounds of the mean over frames, ns).
pub fn cost(
    host: &mut impl XdpHost,
    prog: Prog,
    frames: &[Vec<u8>],
    repeat: u32,
    rounds: usize,
) -> Result<(Vec<u32>, f64)> {
    let c = cost_rounds(host, &[(prog, frames)], repeat, rounds)?.remove(0);
    Ok((c.actions, stats::median(&c.rounds)))
}
