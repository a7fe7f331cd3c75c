//! The loaded filter: the XDP program and its maps, either owned by this process (private load
//! for replay/tests, or a fresh `run`) or opened from the pins of a running filter
//! (`/sys/fs/bpf/sipshield`) so the CLI can inspect and edit it.
mod clock;
mod lock;
mod stats;

use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{Array, Map, MapData};
use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use xdp_common::*;

pub use lock::WriteLock;
pub use stats::Stats;

/// The XDP object, built by `build.rs` (aya-build) from `xdp-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipshield-xdp"));

/// XDP actions as returned by `test_run`.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Default pin directory of a running filter.
pub const PIN_DIR: &str = "/sys/fs/bpf/sipshield";
pub const PROGRAM_NAME: &str = "sipshield";
/// The egress (TC) program: failed authentications and enumeration from the server's answers.
pub const EGRESS_PROGRAM_NAME: &str = "sipshield_egress";
/// TC action of the egress program (it never drops).
pub const TC_ACT_OK: u32 = 0;

/// Unpin the retired maps an earlier version left, so their memory is freed once its program
/// is gone. Only names this version knows it replaced (a newer version's pins are never
/// touched); a failure is logged, not fatal.
fn remove_retired_pins(maps_dir: &Path) {
    for name in maps::RETIRED {
        let path = maps_dir.join(name);
        if !path.exists() {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => log::info!("unpinned {} (a map this version no longer uses)", path.display()),
            Err(e) => log::warn!("could not unpin the retired map {}: {e}", path.display()),
        }
    }
}

pub struct Filter {
    maps: BTreeMap<String, Map>,
    /// The loaded object (owns the program) when loaded by this process.
    ebpf: Option<Ebpf>,
    pin_dir: Option<PathBuf>,
    /// The kernel's rare diagnostics (aya-log; the clock probe), flushed to the `log` crate.
    logger: Option<aya_log::EbpfLogger<&'static dyn log::Log>>,
}

pub(crate) fn map_err(name: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("map {name}: {e}")
}

impl Filter {
    /// Load the program and fresh maps, private to this process (nothing pinned or attached).
    pub fn load_private() -> Result<Filter> {
        let ebpf = EbpfLoader::new().load(EBPF_OBJECT).context("loading the sipshield eBPF object")?;
        Self::from_ebpf(ebpf, None)
    }

    /// Load the program with its maps pinned under `pin_dir/maps`; maps already pinned there
    /// (by an earlier controller) are reused, so counters, bans and lists survive restarts.
    pub fn load_pinned(pin_dir: &Path) -> Result<Filter> {
        crate::sys::ensure_bpffs(pin_dir)?;
        let maps_dir = pin_dir.join("maps");
        std::fs::create_dir_all(&maps_dir).with_context(|| format!("creating {}", maps_dir.display()))?;
        let mut loader = EbpfLoader::new();
        for name in maps::ALL {
            loader.map_pin_path(name, maps_dir.join(name));
        }
        let ebpf = loader.load(EBPF_OBJECT).context("loading the sipshield eBPF object with pinned maps")?;
        let f = Self::from_ebpf(ebpf, Some(pin_dir.to_path_buf()))?;
        // Only once this version's program has loaded (a rejected program leaves the old pins).
        remove_retired_pins(&maps_dir);
        Ok(f)
    }

    fn from_ebpf(mut ebpf: Ebpf, pin_dir: Option<PathBuf>) -> Result<Filter> {
        let mut maps = BTreeMap::new();
        for name in maps::ALL {
            let m = ebpf.take_map(name).ok_or_else(|| anyhow!("the eBPF object has no map {name}"))?;
            maps.insert(name.to_string(), m);
        }
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the eBPF object has no program {PROGRAM_NAME}"))?
            .try_into()?;
        load_retrying(|| prog.load()).map_err(|e| anyhow!("the kernel rejected the XDP program: {e:#}"))?;
        let egress: &mut SchedClassifier = ebpf
            .program_mut(EGRESS_PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the eBPF object has no program {EGRESS_PROGRAM_NAME}"))?
            .try_into()?;
        load_retrying(|| egress.load()).map_err(|e| anyhow!("the kernel rejected the egress program: {e:#}"))?;
        let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                log::debug!("kernel diagnostics unavailable: {e}");
                None
            }
        };
        let mut f = Filter { maps, ebpf: Some(ebpf), pin_dir, logger };
        f.init_defaults()?;
        Ok(f)
    }

    /// Open the maps of a running filter from its pins.
    pub fn open_pinned(pin_dir: &Path) -> Result<Filter> {
        let maps_dir = pin_dir.join("maps");
        if !maps_dir.join(maps::CONFIG).exists() {
            bail!(
                "no sipshield filter is loaded (nothing pinned at {}); start one with `sipshield run`",
                maps_dir.display()
            );
        }
        let mut maps = BTreeMap::new();
        for name in maps::ALL {
            let path = maps_dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            maps.insert(name.to_string(), Map::from_map_data(data).map_err(|e| map_err(name, e))?);
        }
        Ok(Filter { maps, ebpf: None, pin_dir: Some(pin_dir.to_path_buf()), logger: None })
    }

    /// Pass the kernel's pending diagnostics to the `log` crate.
    pub fn flush_kernel_log(&mut self) {
        if let Some(l) = &mut self.logger {
            l.flush();
        }
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    pub fn program(&mut self) -> Result<&mut Xdp> {
        let ebpf = self.ebpf.as_mut().ok_or_else(|| anyhow!("the program is not loaded by this process"))?;
        Ok(ebpf.program_mut(PROGRAM_NAME).expect("checked at load").try_into()?)
    }

    /// The egress (TC) program.
    pub fn egress_program(&mut self) -> Result<&mut SchedClassifier> {
        let ebpf = self.ebpf.as_mut().ok_or_else(|| anyhow!("the program is not loaded by this process"))?;
        Ok(ebpf.program_mut(EGRESS_PROGRAM_NAME).expect("checked at load").try_into()?)
    }

    /// Another program of the object (`sipshield_gen`, `sipshield_pass`: benchmark helpers),
    /// loaded on first use.
    pub fn aux_program(&mut self, name: &str) -> Result<&mut Xdp> {
        let ebpf = self.ebpf.as_mut().ok_or_else(|| anyhow!("the program is not loaded by this process"))?;
        let prog: &mut Xdp = ebpf.program_mut(name).ok_or_else(|| anyhow!("no program {name}"))?.try_into()?;
        if prog.fd().is_err() {
            prog.load()?;
        }
        Ok(prog)
    }

    pub fn map(&self, name: &str) -> Result<&Map> {
        self.maps.get(name).ok_or_else(|| anyhow!("unknown map {name}"))
    }

    /// Move a map out (e.g. the event ring buffer, consumed by its own task).
    pub fn take_map(&mut self, name: &str) -> Result<Map> {
        self.maps.remove(name).ok_or_else(|| anyhow!("map {name} is not available"))
    }

    pub fn map_mut(&mut self, name: &str) -> Result<&mut Map> {
        self.maps.get_mut(name).ok_or_else(|| anyhow!("unknown map {name}"))
    }

    /// Fresh maps get an initial config (all generations 0) unless one exists already.
    fn init_defaults(&mut self) -> Result<()> {
        let cfg = self.config()?;
        if cfg.rl_v6_prefix == 0 {
            let mut c = cfg;
            c.rl_v6_prefix = 64;
            self.set_config(&c)?;
        }
        // Adopted ban maps (possibly pinned by an older version without the flags) are looked
        // up as soon as they hold anything.
        self.refresh_ban_present()?;
        self.calibrate_clock()?;
        self.seed_rate_table()?;
        Ok(())
    }

    /// Give the rate-limit table its random hash seed, once: an adopted (pinned) table keeps
    /// its seed, so its buckets stay where they are across restarts and upgrades.
    fn seed_rate_table(&mut self) -> Result<()> {
        if self.rate_seed()? != 0 {
            return Ok(());
        }
        let mut a: Array<_, u64> = Array::try_from(self.map_mut(maps::RL_SEED)?)?;
        let mut b = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?, &mut b)
            .context("reading /dev/urandom")?;
        let seed = u64::from_ne_bytes(b) | 1;
        a.set(0, seed, 0).map_err(|e| anyhow!("RL_SEED: {e}"))
    }

    /// The rate-limit table's hash seed (`xdp_common::rl_set`).
    pub fn rate_seed(&self) -> Result<u64> {
        let a: Array<_, u64> = Array::try_from(self.map(maps::RL_SEED)?)?;
        Ok(a.get(&0, 0)?)
    }

    /// Rate-limit buckets in use (of `RL_CAPACITY`).
    pub fn rate_buckets_in_use(&self) -> Result<usize> {
        let a: Array<_, RateSet> = Array::try_from(self.map(maps::RL_TABLE)?)?;
        let mut n = 0;
        for i in 0..RL_SETS {
            n += a.get(&i, 0)?.slots.iter().filter(|s| s.tag & RL_TAG_USED != 0).count();
        }
        Ok(n)
    }

    // ---------------------------------------------------------------- config

    pub fn config(&self) -> Result<Config> {
        let a: Array<_, Config> = Array::try_from(self.map(maps::CONFIG)?)?;
        a.get(&0, 0).map_err(|e| map_err(maps::CONFIG, e))
    }

    pub fn set_config(&mut self, c: &Config) -> Result<()> {
        let mut a: Array<_, Config> = Array::try_from(self.map_mut(maps::CONFIG)?)?;
        a.set(0, c, 0).map_err(|e| map_err(maps::CONFIG, e))
    }

    /// The `[authfail]` settings of the kernel (`AUTH_CFG`).
    pub fn auth_config(&self) -> Result<AuthConfig> {
        let a: Array<_, AuthConfig> = Array::try_from(self.map(maps::AUTH_CFG)?)?;
        a.get(&0, 0).map_err(|e| map_err(maps::AUTH_CFG, e))
    }

    pub fn set_auth_config(&mut self, c: &AuthConfig) -> Result<()> {
        let mut a: Array<_, AuthConfig> = Array::try_from(self.map_mut(maps::AUTH_CFG)?)?;
        a.set(0, c, 0).map_err(|e| map_err(maps::AUTH_CFG, e))
    }

    /// The `AUTHSTAT_*` counters, summed over the CPUs.
    pub fn auth_stats(&self) -> Result<Vec<u64>> {
        let a: aya::maps::PerCpuArray<_, u64> = aya::maps::PerCpuArray::try_from(self.map(maps::AUTH_STATS)?)?;
        (0..AUTHSTAT_NAMES.len() as u32)
            .map(|i| a.get(&i, 0).map(|v| v.iter().sum()).map_err(|e| map_err(maps::AUTH_STATS, e)))
            .collect()
    }

    /// Read-modify-write of the config under the writer lock, so a concurrent writer (the
    /// daemon flipping a generation, the CLI toggling dry-run) is never lost.
    pub fn update_config(&mut self, f: impl FnOnce(&mut Config)) -> Result<Config> {
        let _lock = self.write_lock()?;
        let mut c = self.config()?;
        f(&mut c);
        self.set_config(&c)?;
        Ok(c)
    }

    /// The first `n` values of the array map `name`.
    pub fn read_array<V: aya::Pod>(&self, name: &str, n: u32) -> Result<Vec<V>> {
        let a: Array<_, V> = Array::try_from(self.map(name)?)?;
        (0..n).map(|i| a.get(&i, 0).map_err(|e| map_err(name, e))).collect()
    }

    /// The live SIP ports.
    pub fn sip_ports(&self) -> Result<Vec<u16>> {
        let name = maps::SIP_PORTS_GEN[(self.config()?.policy_gen & 1) as usize];
        let mut out = vec![];
        for (i, w) in self.read_array::<u64>(name, SIP_PORT_WORDS)?.into_iter().enumerate() {
            let i = i as u32;
            for b in 0..64 {
                if w >> b & 1 == 1 {
                    out.push((i * 64 + b) as u16);
                }
            }
        }
        Ok(out)
    }

    /// Write `values` to slots `first..` of the array map `name`, in one batch.
    pub fn fill_array<V: aya::Pod>(&mut self, name: &str, first: u32, values: &[V]) -> Result<()> {
        let keys: Vec<u32> = (first..first + values.len() as u32).collect();
        crate::bpfsys::update_batch(map_data(self.map(name)?).fd().as_fd(), &keys, values).map_err(|e| map_err(name, e))
    }

    /// Give `ifindex` its own counter slot (1..MAX_IFACE_SLOTS); returns the slot.
    pub fn assign_iface_slot(&mut self, ifindex: u32) -> Result<u32> {
        if ifindex >= MAX_IFINDEX {
            return Ok(0);
        }
        let mut a: Array<_, u32> = Array::try_from(self.map_mut(maps::IFACE_SLOT)?)?;
        let cur = a.get(&ifindex, 0)?;
        if cur != 0 {
            return Ok(cur);
        }
        let mut used = std::collections::BTreeSet::new();
        for i in 0..MAX_IFINDEX {
            let s = a.get(&i, 0)?;
            if s != 0 {
                used.insert(s);
            }
        }
        let slot = (1..MAX_IFACE_SLOTS).find(|s| !used.contains(s)).unwrap_or(0);
        a.set(ifindex, slot, 0)?;
        Ok(slot)
    }

    /// ifindex → slot for every interface with a slot.
    pub fn iface_slots(&self) -> Result<Vec<(u32, u32)>> {
        let a: Array<_, u32> = Array::try_from(self.map(maps::IFACE_SLOT)?)?;
        let mut out = vec![];
        for i in 0..MAX_IFINDEX {
            let s = a.get(&i, 0)?;
            if s != 0 {
                out.push((i, s));
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- test run

    /// Run the program once on `frame` with `BPF_PROG_TEST_RUN`; returns the XDP action.
    pub fn test_run(&mut self, frame: &[u8]) -> Result<u32> {
        let prog = self.program()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..Default::default() })
            .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
        Ok(r.return_value)
    }

    /// Run the egress program once on `frame` (a packet the host sends); returns the TC action.
    pub fn test_run_egress(&mut self, frame: &[u8]) -> Result<u32> {
        Ok(self.test_run_egress_repeat(frame, 1)?.0)
    }

    /// Run the egress program `repeat` times on `frame`; returns (TC action, average ns per run).
    pub fn test_run_egress_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        let prog = self.egress_program()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
            .map_err(|e| anyhow!("BPF_PROG_TEST_RUN (egress): {e:#}"))?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    /// Run the program `repeat` times on `frame`; returns the average ns per run.
    pub fn test_run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        let prog = self.program()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
            .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }
}

/// Run a program's `load`, retrying a few times when the kernel interrupted its verification
/// for a signal (EAGAIN), as libbpf does. One loop for the XDP and the egress program.
fn load_retrying(
    mut load: impl FnMut() -> std::result::Result<(), aya::programs::ProgramError>,
) -> std::result::Result<(), aya::programs::ProgramError> {
    let mut attempt = 0;
    loop {
        match load() {
            Err(aya::programs::ProgramError::LoadError { io_error, .. })
                if io_error.raw_os_error() == Some(libc::EAGAIN) && attempt < 4 =>
            {
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// The `MapData` behind any map variant used here.
pub fn map_data(m: &Map) -> &MapData {
    match m {
        Map::Array(d)
        | Map::HashMap(d)
        | Map::LpmTrie(d)
        | Map::LruHashMap(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d)
        | Map::PerCpuHashMap(d) => d,
        other => panic!("unexpected map type {other:?}"),
    }
}

/// The program's clock in ns: CLOCK_MONOTONIC. The program derives it from jiffies (see
/// `ClockParams`; at most one scheduler tick behind this value) and compares ban deadlines,
/// rate-limit state and event times against it.
pub fn clock_ns() -> u64 {
    let ts =
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).expect("CLOCK_MONOTONIC is always available");
    ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
}

pub fn duration_ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}

pub use crate::addrlist::{build_table4, ListKind};

/// What a list swap did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LoadReport {
    pub v4: usize,
    pub v6: usize,
    pub net4: usize,
    pub net6: usize,
    /// Time from start until the new list was live (gen flipped).
    pub load_secs: f64,
    /// Time spent releasing the previous generation afterwards.
    pub cleanup_secs: f64,
    pub generation: u32,
}

impl Filter {
    /// Swap `list` in as the live `kind` (see [`crate::gen::swap`]): capacity is checked first,
    /// so an over-full list never touches the live generation.
    pub fn swap_list(&mut self, kind: ListKind, list: &crate::lists::IpList) -> Result<LoadReport> {
        let r = crate::policy::swap_list(self, kind, list)?;
        let c = self.config()?;
        Ok(LoadReport {
            v4: list.v4.len(),
            v6: list.v6.len(),
            net4: list.net4.len(),
            net6: list.net6.len(),
            load_secs: r.load_secs,
            cleanup_secs: r.cleanup_secs,
            generation: match kind {
                ListKind::Blacklist => c.blacklist_gen,
                ListKind::Allowlist => c.allowlist_gen,
            },
        })
    }

    /// The live list of `kind`, read back from the kernel.
    pub fn read_list(&self, kind: ListKind) -> Result<crate::lists::IpList> {
        crate::addrlist::read_live(self, kind)
    }

    /// Entries in the live generation of `kind` (reads the whole list back: not for hot paths).
    pub fn list_len(&self, kind: ListKind) -> Result<usize> {
        Ok(self.read_list(kind)?.len())
    }
}
