//! The loaded filter: the XDP program and its maps, either owned by this process (private load
//! for replay/tests, or a fresh `run`) or opened from the pins of a running filter
//! (`/sys/fs/bpf/sipshield`) so the CLI can inspect and edit it.
use std::collections::BTreeMap;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{lpm_trie::Key, Array, HashMap, LpmTrie, Map, MapData, PerCpuArray};
use aya::programs::{TestRun, TestRunOptions, Xdp};
use aya::{Ebpf, EbpfLoader};
use xdp_common::*;

use crate::bpfsys;
use crate::lists::IpList;

/// The XDP object, built by `build.rs` (aya-build) from `xdp-ebpf`.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipshield-xdp"));

/// XDP actions as returned by `test_run`.
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

/// Default pin directory of a running filter.
pub const PIN_DIR: &str = "/sys/fs/bpf/sipshield";
pub const PROGRAM_NAME: &str = "sipshield";

/// Every map of the program (the contract with `xdp-ebpf/src/maps.rs`).
pub const MAP_NAMES: &[&str] = xdp_common::maps::ALL;

/// The kernel's tick in ns, measured once per process.
static KERNEL_TICK_NS: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Which address list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    Blacklist,
    Allowlist,
}

impl ListKind {
    pub fn name(self) -> &'static str {
        match self {
            ListKind::Blacklist => "blacklist",
            ListKind::Allowlist => "allowlist",
        }
    }
    fn prefix(self) -> &'static str {
        match self {
            ListKind::Blacklist => "BL",
            ListKind::Allowlist => "AL",
        }
    }
    /// Maps of generation `g`: (v4 exact, v6 exact, v4 ranges, v6 ranges).
    fn map_names(self, g: u32) -> [String; 4] {
        let p = self.prefix();
        [format!("{p}_V4_{g}"), format!("{p}_V6_{g}"), format!("{p}_NET4_{g}"), format!("{p}_NET6_{g}")]
    }

    /// (v4 exact, v6 exact, v4 ranges, v6 ranges) capacities.
    pub fn capacity(self) -> (u32, u32, u32, u32) {
        match self {
            ListKind::Blacklist => (BL4_TABLE_CAPACITY, BL_V6_CAPACITY, BL_NET_CAPACITY, BL_NET_CAPACITY),
            ListKind::Allowlist => (AL_CAPACITY, AL_CAPACITY, AL_NET_CAPACITY, AL_NET_CAPACITY),
        }
    }
}

/// What a list load did.
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

/// Per-reason counters, summed over CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// `[slot][reason]`.
    pub slots: Vec<[Counter; NUM_REASONS as usize]>,
    /// Drops per country index.
    pub countries: Vec<Counter>,
    pub events: [u64; EVSTAT_ENTRIES as usize],
}

impl Stats {
    pub fn reason_total(&self, reason: u32) -> Counter {
        let mut c = Counter::default();
        for s in &self.slots {
            c.packets += s[reason as usize].packets;
            c.bytes += s[reason as usize].bytes;
        }
        c
    }
    pub fn total_packets(&self) -> u64 {
        (0..NUM_REASONS).map(|r| self.reason_total(r).packets).sum()
    }
}

#[derive(Default)]
struct LockState {
    depth: u32,
    file: Option<std::fs::File>,
}

thread_local! {
    static WRITE_LOCK: std::cell::RefCell<LockState> = std::cell::RefCell::new(LockState::default());
}

/// Guard of `Filter::write_lock`.
pub struct WriteLock {
    held: bool,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if self.held {
            WRITE_LOCK.with(|l| {
                let mut l = l.borrow_mut();
                l.depth -= 1;
                if l.depth == 0 {
                    l.file = None; // closing the file releases the flock
                }
            });
        }
    }
}

/// Maps pinned by earlier versions that this one replaced (`RL_STATE`: the kernel LRU hash of
/// rate-limit buckets, now `RL_TABLE`; `GEN_IFINDEX`: a benchmark helper's map, now in the
/// benchmarks' own object).
const RETIRED_MAPS: &[&str] = &["RL_STATE", "GEN_IFINDEX"];

/// Unpin the retired maps an earlier version left, so their memory is freed once its program
/// is gone. Only names this version knows it replaced (a newer version's pins are never
/// touched); a failure is logged, not fatal.
fn remove_retired_pins(maps_dir: &Path) {
    for name in RETIRED_MAPS {
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
}

fn map_err(name: &str, e: impl std::fmt::Display) -> anyhow::Error {
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
        for name in MAP_NAMES {
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
        for name in MAP_NAMES {
            let m = ebpf.take_map(name).ok_or_else(|| anyhow!("the eBPF object has no map {name}"))?;
            maps.insert(name.to_string(), m);
        }
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM_NAME)
            .ok_or_else(|| anyhow!("the eBPF object has no program {PROGRAM_NAME}"))?
            .try_into()?;
        prog.load().map_err(|e| anyhow!("the kernel rejected the XDP program: {e:#}"))?;
        let mut f = Filter { maps, ebpf: Some(ebpf), pin_dir };
        f.init_defaults()?;
        Ok(f)
    }

    /// Open the maps of a running filter from its pins.
    pub fn open_pinned(pin_dir: &Path) -> Result<Filter> {
        let maps_dir = pin_dir.join("maps");
        if !maps_dir.join("CONFIG").exists() {
            bail!(
                "no sipshield filter is loaded (nothing pinned at {}); start one with `sipshield run`",
                maps_dir.display()
            );
        }
        let mut maps = BTreeMap::new();
        for name in MAP_NAMES {
            let path = maps_dir.join(name);
            let data = MapData::from_pin(&path).map_err(|e| anyhow!("{}: {e}", path.display()))?;
            maps.insert(name.to_string(), Map::from_map_data(data).map_err(|e| map_err(name, e))?);
        }
        Ok(Filter { maps, ebpf: None, pin_dir: Some(pin_dir.to_path_buf()) })
    }

    pub fn pin_dir(&self) -> Option<&Path> {
        self.pin_dir.as_deref()
    }

    pub fn program(&mut self) -> Result<&mut Xdp> {
        let ebpf = self.ebpf.as_mut().ok_or_else(|| anyhow!("the program is not loaded by this process"))?;
        Ok(ebpf.program_mut(PROGRAM_NAME).expect("checked at load").try_into()?)
    }

    /// Another program of the object (`sipshield_clock`, the clock calibration), loaded on
    /// first use.
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
        let mut a: Array<_, u64> = Array::try_from(self.map_mut("RL_SEED")?)?;
        let mut b = [0u8; 8];
        std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom").context("opening /dev/urandom")?, &mut b)
            .context("reading /dev/urandom")?;
        let seed = u64::from_ne_bytes(b) | 1;
        a.set(0, seed, 0).map_err(|e| anyhow!("RL_SEED: {e}"))
    }

    /// Relate the kernel's jiffies to CLOCK_MONOTONIC and give the program its cheap clock
    /// (`ClockParams` in the `CLOCK` map). If the relation cannot be established or does
    /// not check out, the program keeps reading `bpf_ktime_get_coarse_ns` (same clock, one
    /// helper call more) and a warning says so.
    fn calibrate_clock(&mut self) -> Result<()> {
        let params = match self.jiffy_clock() {
            Ok((jiffy_ns, base_ns)) => ClockParams { jiffy_ns, base_ns, probe: 0 },
            Err(e) => {
                log::warn!("kernel clock calibration failed ({e:#}); using bpf_ktime_get_coarse_ns");
                ClockParams::default()
            }
        };
        self.set_clock(params)
    }

    /// The rate-limit table's hash seed (`xdp_common::rl_set`).
    pub fn rate_seed(&self) -> Result<u64> {
        let a: Array<_, u64> = Array::try_from(self.map("RL_SEED")?)?;
        Ok(a.get(&0, 0)?)
    }

    /// Rate-limit buckets in use (of `RL_CAPACITY`).
    pub fn rate_buckets_in_use(&self) -> Result<usize> {
        let a: Array<_, RateSet> = Array::try_from(self.map("RL_TABLE")?)?;
        let mut n = 0;
        for i in 0..RL_SETS {
            n += a.get(&i, 0)?.slots.iter().filter(|s| s.tag & RL_TAG_USED != 0).count();
        }
        Ok(n)
    }

    /// The program's clock parameters.
    pub fn clock_params(&self) -> Result<ClockParams> {
        let a: Array<_, ClockParams> = Array::try_from(self.map("CLOCK")?)?;
        Ok(a.get(&0, 0)?)
    }

    fn set_clock(&mut self, p: ClockParams) -> Result<()> {
        let mut a: Array<_, ClockParams> = Array::try_from(self.map_mut("CLOCK")?)?;
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

    /// Set the `BAN_PRESENT` flag of a family (after inserting a ban from userspace).
    pub fn mark_bans_present(&mut self, idx: u32) -> Result<()> {
        self.set_ban_present(idx, 1)
    }

    fn set_ban_present(&mut self, idx: u32, value: u32) -> Result<()> {
        let mut a: Array<_, u32> = Array::try_from(self.map_mut("BAN_PRESENT")?)?;
        a.set(idx, value, 0).map_err(|e| anyhow!("BAN_PRESENT: {e}"))
    }

    /// Clear the `BAN_PRESENT` flag of each family whose ban map is empty. Clear first, then
    /// look again: a ban installed meanwhile (the program sets the flag after its insert) is
    /// either seen here and re-flagged, or sets the flag itself after this clear.
    pub fn refresh_ban_present(&mut self) -> Result<()> {
        for idx in [BAN_PRESENT_V4, BAN_PRESENT_V6] {
            if !self.ban_map_is_empty(idx)? {
                self.set_ban_present(idx, 1)?;
                continue;
            }
            self.set_ban_present(idx, 0)?;
            if !self.ban_map_is_empty(idx)? {
                self.set_ban_present(idx, 1)?;
            }
        }
        Ok(())
    }

    /// Is the ban map of family `idx` (`BAN_PRESENT_V4`/`_V6`) empty?
    fn ban_map_is_empty(&self, idx: u32) -> Result<bool> {
        fn empty<K: aya::Pod>(m: &Map, name: &str) -> Result<bool> {
            let h: HashMap<_, K, u64> = HashMap::try_from(m)?;
            match h.keys().next() {
                None => Ok(true),
                Some(Ok(_)) => Ok(false),
                Some(Err(e)) => Err(anyhow!("{name}: reading keys: {e}")),
            }
        }
        if idx == BAN_PRESENT_V4 {
            empty::<[u8; 4]>(self.map("BANS_V4")?, "BANS_V4")
        } else {
            empty::<BanKey6>(self.map("BANS_V6")?, "BANS_V6")
        }
    }

    /// Exclusive lock for writers of a pinned filter (daemon, CLI verbs), held across a whole
    /// generation swap. Re-entrant within a thread; a no-op for private filters.
    pub fn write_lock(&self) -> Result<WriteLock> {
        let Some(dir) = &self.pin_dir else { return Ok(WriteLock { held: false }) };
        WRITE_LOCK.with(|l| {
            let mut l = l.borrow_mut();
            if l.depth == 0 {
                // In the state directory (/run/sipshield), which the daemon (even with systemd's
                // PrivateTmp) and the CLI share.
                let _ = dir;
                let state = crate::state::state_dir();
                std::fs::create_dir_all(&state).with_context(|| format!("creating {}", state.display()))?;
                let path = state.join("writer.lock");
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&path)
                    .with_context(|| format!("{}: cannot open lock file", path.display()))?;
                use std::os::fd::AsRawFd;
                // SAFETY: valid fd; blocks until other writers finish.
                if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                    bail!("{}: flock: {}", path.display(), std::io::Error::last_os_error());
                }
                l.file = Some(file);
            }
            l.depth += 1;
            Ok(WriteLock { held: true })
        })
    }

    // ---------------------------------------------------------------- config

    pub fn config(&self) -> Result<Config> {
        let a: Array<_, Config> = Array::try_from(self.map("CONFIG")?)?;
        a.get(&0, 0).map_err(|e| map_err("CONFIG", e))
    }

    pub fn set_config(&mut self, c: &Config) -> Result<()> {
        let mut a: Array<_, Config> = Array::try_from(self.map_mut("CONFIG")?)?;
        a.set(0, c, 0).map_err(|e| map_err("CONFIG", e))
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

    pub fn set_sip_ports(&mut self, ports: &[u16]) -> Result<()> {
        let mut words = [0u64; 1024];
        for p in ports {
            words[(*p >> 6) as usize] |= 1u64 << (p & 63);
        }
        let mut a: Array<_, u64> = Array::try_from(self.map_mut("SIP_PORTS")?)?;
        for (i, w) in words.iter().enumerate() {
            if a.get(&(i as u32), 0).map_err(|e| map_err("SIP_PORTS", e))? != *w {
                a.set(i as u32, w, 0).map_err(|e| map_err("SIP_PORTS", e))?;
            }
        }
        Ok(())
    }

    pub fn sip_ports(&self) -> Result<Vec<u16>> {
        let a: Array<_, u64> = Array::try_from(self.map("SIP_PORTS")?)?;
        let mut out = vec![];
        for i in 0..1024u32 {
            let w = a.get(&i, 0).map_err(|e| map_err("SIP_PORTS", e))?;
            for b in 0..64 {
                if w >> b & 1 == 1 {
                    out.push((i * 64 + b) as u16);
                }
            }
        }
        Ok(out)
    }

    /// Give `ifindex` its own counter slot (1..MAX_IFACE_SLOTS); returns the slot.
    pub fn assign_iface_slot(&mut self, ifindex: u32) -> Result<u32> {
        if ifindex >= MAX_IFINDEX {
            return Ok(0);
        }
        let mut a: Array<_, u32> = Array::try_from(self.map_mut("IFACE_SLOT")?)?;
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
        let a: Array<_, u32> = Array::try_from(self.map("IFACE_SLOT")?)?;
        let mut out = vec![];
        for i in 0..MAX_IFINDEX {
            let s = a.get(&i, 0)?;
            if s != 0 {
                out.push((i, s));
            }
        }
        Ok(out)
    }

    // ---------------------------------------------------------------- stats

    pub fn stats(&self) -> Result<Stats> {
        let a: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map("STATS")?)?;
        let mut st = Stats::default();
        for slot in 0..MAX_IFACE_SLOTS {
            let mut row = [Counter::default(); NUM_REASONS as usize];
            for (r, c) in row.iter_mut().enumerate() {
                let vals = a.get(&(slot * REASON_SLOTS + r as u32), 0).map_err(|e| map_err("STATS", e))?;
                for v in vals.iter() {
                    c.packets += v.packets;
                    c.bytes += v.bytes;
                }
            }
            st.slots.push(row);
        }
        let g: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map("GEO_DROPS")?)?;
        for i in 0..GEO_COUNTRIES {
            let mut c = Counter::default();
            for v in g.get(&i, 0).map_err(|e| map_err("GEO_DROPS", e))?.iter() {
                c.packets += v.packets;
                c.bytes += v.bytes;
            }
            st.countries.push(c);
        }
        let e: PerCpuArray<_, u64> = PerCpuArray::try_from(self.map("EVENT_STATS")?)?;
        for i in 0..EVSTAT_ENTRIES {
            st.events[i as usize] = e.get(&i, 0).map_err(|e| map_err("EVENT_STATS", e))?.iter().sum();
        }
        Ok(st)
    }

    /// Counters of slot 0 for one reason (cheap, used by replay to find each packet's reason).
    pub fn slot0_counts(&self) -> Result<[u64; NUM_REASONS as usize]> {
        let a: PerCpuArray<_, Counter> = PerCpuArray::try_from(self.map("STATS")?)?;
        let mut out = [0u64; NUM_REASONS as usize];
        for (r, o) in out.iter_mut().enumerate() {
            *o = a.get(&(r as u32), 0)?.iter().map(|c| c.packets).sum();
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

    /// Run the program `repeat` times on `frame`; returns the average ns per run.
    pub fn test_run_repeat(&mut self, frame: &[u8], repeat: u32) -> Result<(u32, f64)> {
        let prog = self.program()?;
        let mut out = vec![0u8; frame.len() + 256];
        let r = prog
            .test_run(TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), repeat, ..Default::default() })
            .map_err(|e| anyhow!("BPF_PROG_TEST_RUN: {e:#}"))?;
        Ok((r.return_value, r.duration.as_nanos() as f64))
    }

    // ---------------------------------------------------------------- address lists

    /// Load `list` into the inactive generation of `kind`, switch the program to it with one
    /// config write, then release the previous generation. Capacity is checked first, so an
    /// over-full list never touches the live generation.
    pub fn swap_list(&mut self, kind: ListKind, list: &IpList) -> Result<LoadReport> {
        let _lock = self.write_lock()?;
        let t0 = Instant::now();
        let (c4, c6, cn4, cn6) = kind.capacity();
        let checks = [
            ("IPv4 addresses", list.v4.len(), c4),
            ("IPv6 addresses", list.v6.len(), c6),
            ("IPv4 ranges", list.net4.len(), cn4),
            ("IPv6 ranges", list.net6.len(), cn6),
        ];
        for (what, n, cap) in checks {
            if n > cap as usize {
                bail!(
                    "{}: {n} {what} exceed the capacity of {cap}; the filter keeps its previous {}",
                    kind.name(),
                    kind.name()
                );
            }
        }
        let cfg = self.config()?;
        let live = match kind {
            ListKind::Blacklist => cfg.blacklist_gen,
            ListKind::Allowlist => cfg.allowlist_gen,
        } & 1;
        let next = 1 - live;
        let [n4, n6, nn4, nn6] = kind.map_names(next);
        // Blacklist IPv4 addresses go to the bucket table, the rare ones whose two buckets are
        // full to the overflow hash; the allowlist uses the hash only.
        let (table, keys4) = match kind {
            ListKind::Blacklist => {
                let (t, overflow) = build_table4(list.v4.iter().copied());
                if overflow.len() > BL_V4_CAPACITY as usize {
                    bail!("blacklist: {} IPv4 addresses overflow the table (capacity {BL_V4_CAPACITY}); the filter keeps its previous blacklist", overflow.len());
                }
                (Some(t), overflow)
            }
            ListKind::Allowlist => (None, list.v4.iter().copied().collect::<Vec<[u8; 4]>>()),
        };
        // The inactive generation is normally empty; make sure.
        self.clear_list_gen(kind, next)?;
        let fill = (|| -> Result<()> {
            if let Some(t) = &table {
                let name = format!("BL_TAB4_{next}");
                let mut m = self.mmap_table4(&name)?;
                m.slice_mut::<Bucket4>()[..t.len()].copy_from_slice(t);
            }
            let ones4 = vec![1u32; keys4.len()];
            bpfsys::update_batch(self.map(&n4)?.fd_borrowed(), &keys4, &ones4).map_err(|e| map_err(&n4, e))?;
            let keys6: Vec<[u8; 16]> = list.v6.iter().copied().collect();
            let ones6 = vec![1u32; keys6.len()];
            bpfsys::update_batch(self.map(&n6)?.fd_borrowed(), &keys6, &ones6).map_err(|e| map_err(&n6, e))?;
            {
                let mut t: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(self.map_mut(&nn4)?)?;
                for (a, len) in &list.net4 {
                    t.insert(&Key::new(*len as u32, *a), 1, 0).map_err(|e| map_err(&nn4, e))?;
                }
            }
            let mut t: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(self.map_mut(&nn6)?)?;
            for (a, len) in &list.net6 {
                t.insert(&Key::new(*len as u32, *a), 1, 0).map_err(|e| map_err(&nn6, e))?;
            }
            Ok(())
        })();
        if let Err(e) = fill {
            // Leave the live generation alone and release what was written.
            let _ = self.clear_list_gen(kind, next);
            return Err(e.context(format!("loading the new {}; the filter keeps its previous one", kind.name())));
        }
        let overflow = (table.is_some() && !keys4.is_empty()) as u32;
        let in_table = (table.is_some() && list.v4.len() > keys4.len()) as u32;
        let bit = |b: u32, n: usize| if n > 0 { b } else { 0 };
        let (mask, present) = match kind {
            ListKind::Blacklist => (
                PRESENT_BL_ALL,
                bit(PRESENT_BL_V6, list.v6.len())
                    | bit(PRESENT_BL_NET4, list.net4.len())
                    | bit(PRESENT_BL_NET6, list.net6.len()),
            ),
            ListKind::Allowlist => (
                PRESENT_AL_ALL,
                bit(PRESENT_AL_V4, list.v4.len())
                    | bit(PRESENT_AL_NET4, list.net4.len())
                    | bit(PRESENT_AL_V6, list.v6.len())
                    | bit(PRESENT_AL_NET6, list.net6.len()),
            ),
        };
        // Enable the lookups the new generation needs before the switch, so no reader can see
        // it without them (looking into an old, empty structure is harmless); narrow after.
        self.update_config(|c| {
            c.present |= present;
            c.bl4_overflow |= overflow;
            c.bl4_table |= in_table;
        })?;
        self.update_config(|c| match kind {
            ListKind::Blacklist => c.blacklist_gen = next,
            ListKind::Allowlist => c.allowlist_gen = next,
        })?;
        self.update_config(|c| {
            c.present = (c.present & !mask) | present;
            if kind == ListKind::Blacklist {
                c.bl4_overflow = overflow;
                c.bl4_table = in_table;
            }
        })?;
        let load_secs = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        self.clear_list_gen(kind, live)?;
        Ok(LoadReport {
            v4: list.v4.len(),
            v6: list.v6.len(),
            net4: list.net4.len(),
            net6: list.net6.len(),
            load_secs,
            cleanup_secs: t1.elapsed().as_secs_f64(),
            generation: next,
        })
    }

    fn mmap_table4(&self, name: &str) -> Result<bpfsys::MmapRegion> {
        let len = BL4_BUCKETS as usize * std::mem::size_of::<Bucket4>();
        bpfsys::MmapRegion::map(self.map(name)?.fd_borrowed(), len, true)
            .map_err(|e| map_err(name, format!("mmap: {e}")))
    }

    fn clear_list_gen(&mut self, kind: ListKind, g: u32) -> Result<()> {
        let names = kind.map_names(g);
        if kind == ListKind::Blacklist {
            let mut m = self.mmap_table4(&format!("BL_TAB4_{g}"))?;
            m.slice_mut::<u64>().fill(0);
        }
        bpfsys::drain_hash(self.map(&names[0])?.fd_borrowed(), 4, 4).map_err(|e| map_err(&names[0], e))?;
        bpfsys::drain_hash(self.map(&names[1])?.fd_borrowed(), 16, 4).map_err(|e| map_err(&names[1], e))?;
        clear_lpm::<[u8; 4]>(self.map_mut(&names[2])?).map_err(|e| map_err(&names[2], e))?;
        clear_lpm::<[u8; 16]>(self.map_mut(&names[3])?).map_err(|e| map_err(&names[3], e))?;
        Ok(())
    }

    /// Active generation (0 or 1) of `kind`.
    fn live_gen(&self, kind: ListKind) -> Result<u32> {
        let cfg = self.config()?;
        Ok(match kind {
            ListKind::Blacklist => cfg.blacklist_gen,
            ListKind::Allowlist => cfg.allowlist_gen,
        } & 1)
    }

    /// The live list of `kind`, read back from the kernel.
    pub fn read_list(&self, kind: ListKind) -> Result<IpList> {
        let g = self.live_gen(kind)?;
        let [n4, n6, nn4, nn6] = kind.map_names(g);
        let mut out = IpList::default();
        if kind == ListKind::Blacklist {
            let m = self.mmap_table4(&format!("BL_TAB4_{g}"))?;
            let mut v: Vec<[u8; 4]> = m.slice::<u32>().iter().filter(|k| **k != 0).map(|k| k.to_ne_bytes()).collect();
            v.sort_unstable();
            out.v4 = v.into_iter().collect();
        }
        let h4: HashMap<_, [u8; 4], u32> = HashMap::try_from(self.map(&n4)?)?;
        for k in h4.keys() {
            out.v4.insert(k?);
        }
        let h6: HashMap<_, [u8; 16], u32> = HashMap::try_from(self.map(&n6)?)?;
        for k in h6.keys() {
            out.v6.insert(k?);
        }
        let t4: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(self.map(&nn4)?)?;
        for k in t4.keys() {
            let k = k?;
            out.net4.insert((k.data(), k.prefix_len() as u8));
        }
        let t6: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(self.map(&nn6)?)?;
        for k in t6.keys() {
            let k = k?;
            out.net6.insert((k.data(), k.prefix_len() as u8));
        }
        Ok(out)
    }

    /// Number of entries in the live generation of `kind` (counted, without building the list:
    /// cheap enough for every metrics scrape).
    pub fn list_len(&self, kind: ListKind) -> Result<usize> {
        let g = self.live_gen(kind)?;
        let [n4, n6, nn4, nn6] = kind.map_names(g);
        let mut n = 0;
        if kind == ListKind::Blacklist {
            let m = self.mmap_table4(&format!("BL_TAB4_{g}"))?;
            n += m.slice::<u32>().iter().filter(|k| **k != 0).count();
        }
        let h4: HashMap<_, [u8; 4], u32> = HashMap::try_from(self.map(&n4)?)?;
        n += h4.keys().count();
        let h6: HashMap<_, [u8; 16], u32> = HashMap::try_from(self.map(&n6)?)?;
        n += h6.keys().count();
        let t4: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(self.map(&nn4)?)?;
        n += t4.keys().count();
        let t6: LpmTrie<_, [u8; 16], u32> = LpmTrie::try_from(self.map(&nn6)?)?;
        n += t6.keys().count();
        Ok(n)
    }
}

/// Place IPv4 addresses in the bucket table: each goes to the less loaded of its two buckets
/// (at most half full, so both being full is rare); returns the table and the overflow.
/// 0.0.0.0 cannot be stored (0 marks an empty slot) and goes to the overflow hash.
pub fn build_table4(addrs: impl Iterator<Item = [u8; 4]>) -> (Vec<Bucket4>, Vec<[u8; 4]>) {
    let mut t = vec![Bucket4 { keys: [0; BL4_SLOTS] }; BL4_BUCKETS as usize];
    let mut fill = vec![0u8; BL4_BUCKETS as usize];
    let mut overflow = vec![];
    for a in addrs {
        let k = u32::from_ne_bytes(a);
        if k == 0 {
            overflow.push(a);
            continue;
        }
        let (b1, b2) = (bl4_hash1(k) as usize, bl4_hash2(k) as usize);
        let b = if fill[b2] < fill[b1] { b2 } else { b1 };
        if (fill[b] as usize) < BL4_SLOTS {
            t[b].keys[fill[b] as usize] = k;
            fill[b] += 1;
        } else {
            overflow.push(a);
        }
    }
    (t, overflow)
}

fn clear_lpm<K: aya::Pod>(m: &mut Map) -> Result<()> {
    let mut t: LpmTrie<_, K, u32> = LpmTrie::try_from(m)?;
    let keys: Vec<Key<K>> = t.keys().collect::<Result<_, _>>()?;
    for k in keys {
        t.remove(&k)?;
    }
    Ok(())
}

trait FdBorrowed {
    fn fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_>;
}

impl FdBorrowed for Map {
    fn fd_borrowed(&self) -> std::os::fd::BorrowedFd<'_> {
        map_data(self).fd().as_fd()
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
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub fn duration_ns(d: Duration) -> u64 {
    d.as_nanos().min(u64::MAX as u128) as u64
}
