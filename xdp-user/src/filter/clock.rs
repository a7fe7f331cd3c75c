//! The program's clock: relate the kernel's jiffies to CLOCK_MONOTONIC once at load (a
//! one-shot calibration program run with `BPF_PROG_TEST_RUN`) and give the program the
//! parameters in the `CLOCK` map.
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use aya::maps::Array;
use aya::programs::{TestRun, TestRunOptions};
use xdp_common::{maps, ClockParams};

use super::{clock_ns, Filter};

/// The kernel's tick in ns, measured once per process.
static KERNEL_TICK_NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

impl Filter {
    /// Relate the kernel's jiffies to CLOCK_MONOTONIC and give the program its cheap clock
    /// (`ClockParams` in the `CLOCK` map). If the relation cannot be established or does
    /// not check out, the program keeps reading `bpf_ktime_get_coarse_ns` (same clock, one
    /// helper call more) and a warning says so.
    pub(super) fn calibrate_clock(&mut self) -> Result<()> {
        let params = match self.jiffy_clock() {
            Ok((jiffy_ns, base_ns)) => ClockParams { jiffy_ns, base_ns, probe: 0 },
            Err(e) => {
                log::warn!("kernel clock calibration failed ({e:#}); using bpf_ktime_get_coarse_ns");
                ClockParams::default()
            }
        };
        self.set_clock(params)
    }

    /// The program's clock parameters.
    pub fn clock_params(&self) -> Result<ClockParams> {
        let a: Array<_, ClockParams> = Array::try_from(self.map(maps::CLOCK)?)?;
        Ok(a.get(&0, 0)?)
    }

    fn set_clock(&mut self, p: ClockParams) -> Result<()> {
        let mut a: Array<_, ClockParams> = Array::try_from(self.map_mut(maps::CLOCK)?)?;
        a.set(0, p, 0).map_err(|e| anyhow!("CLOCK: {e}"))
    }

    /// (CLOCK_MONOTONIC before the probe, jiffies read by the probe).
    fn probe_jiffies(&mut self) -> Result<(u64, u64)> {
        let frame = [0u8; 64];
        let t0 = clock_ns();
        {
            let prog = self.aux_program("sipshield_clock")?;
            let mut out = [0u8; 128];
            prog.test_run(TestRunOptions { data_in: Some(&frame), data_out: Some(&mut out), ..Default::default() })
                .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
        }
        self.flush_kernel_log();
        Ok((t0, self.clock_params()?.probe))
    }

    /// (ns per jiffy, CLOCK_MONOTONIC ns at jiffy 0).
    fn jiffy_clock(&mut self) -> Result<(u64, u64)> {
        let tick = match KERNEL_TICK_NS.get() {
            Some(t) => *t,
            None => {
                let t = self.measure_tick()?;
                let _ = KERNEL_TICK_NS.set(t);
                t
            }
        };
        let (t0, j) = self.probe_jiffies()?;
        // jiffies count whole ticks: the clock lags CLOCK_MONOTONIC by less than one tick.
        let base = t0.wrapping_sub(j.wrapping_mul(tick));
        // Check: a second probe must agree within two ticks.
        let (t1, j1) = self.probe_jiffies()?;
        let predicted = j1.wrapping_mul(tick).wrapping_add(base);
        if predicted.abs_diff(t1) > 2 * tick {
            bail!("jiffies clock off by {} ns after calibration", predicted.abs_diff(t1));
        }
        Ok((tick, base))
    }

    /// The kernel tick (TICK_NSEC) from CONFIG_HZ when the kernel config is readable, otherwise
    /// measured: jiffies over ~120 ms, snapped to the HZ values Linux offers.
    fn measure_tick(&mut self) -> Result<u64> {
        let tick_of = |hz: u64| (1_000_000_000 + hz / 2) / hz;
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        if let Ok(cfg) = std::fs::read_to_string(format!("/boot/config-{}", release.trim())) {
            if let Some(hz) =
                cfg.lines().find_map(|l| l.strip_prefix("CONFIG_HZ=")).and_then(|v| v.trim().parse::<u64>().ok())
            {
                return Ok(tick_of(hz));
            }
        }
        let (t0, j0) = self.probe_jiffies()?;
        std::thread::sleep(Duration::from_millis(120));
        let (t1, j1) = self.probe_jiffies()?;
        let hz = (j1 - j0) as f64 * 1e9 / (t1 - t0) as f64;
        let best = [100u64, 250, 300, 1000]
            .into_iter()
            .min_by(|a, b| (*a as f64 - hz).abs().partial_cmp(&(*b as f64 - hz).abs()).unwrap())
            .expect("non-empty");
        if (best as f64 - hz).abs() > best as f64 * 0.1 {
            bail!("measured {hz:.1} jiffies per second, not a Linux HZ value");
        }
        Ok(tick_of(best))
    }
}
