//! The measurement harness of the three benchmarks.
//!
//! * [`testbed`]: two throwaway network namespaces joined by a veth pair (the test kit's
//!   [`Netns`](sipshield_tests::netns::Netns)), and commands run inside a namespace under a
//!   time limit;
//! * [`helpers`]: the benchmarks' own XDP programs (`sipshield_gen`, `sipshield_pass`,
//!   `sipshield_drop`, from `bench/ebpf`) and attaching a program to the receiving veth;
//! * [`live`]: the live-frames blast, the harness floor and the receiver-side figures, and a
//!   sipshield-vs-peer comparison;
//! * [`cost`]: per-packet cost with `BPF_PROG_TEST_RUN` and repeat;
//! * [`stats`]: median, min, max, mean, percentile;
//! * here: root check, interruption by SIGINT/SIGTERM, the deterministic generator [`Rng`].
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Result};

pub mod cost;
pub mod helpers;
pub mod live;
pub mod stats;
pub mod testbed;

pub fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("this benchmark needs root (BPF, network namespaces)");
    }
    Ok(())
}

/// The start of a live benchmark: root checked, SIGINT/SIGTERM handled; the start time.
pub fn start() -> Result<Instant> {
    require_root()?;
    install_signal_handlers();
    Ok(Instant::now())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// SIGINT/SIGTERM set a flag that [`live::blast`] checks between syscalls, so an interrupted
/// run unwinds through the `Drop` guards (namespaces, attachments) instead of leaving them
/// behind.
pub fn install_signal_handlers() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
}

pub fn interrupted() -> bool {
    STOP.load(Ordering::SeqCst)
}

/// Deterministic SplitMix64: tiny, fast, the same sequence for the same seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The high 32 bits of the next value.
    pub fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A value below `n` (below 1 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}
