//! `sipshield run`: load (or adopt) the pinned filter, fill it from the config, attach it to the
//! interfaces with pinned links, then serve: list refreshes, SIGHUP reloads, ban expiry and the
//! drop-event stream. Stopping or killing the controller leaves the filter in place.
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::RingBuf;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::XdpMode;
use log::{error, info, warn};
use tokio::io::unix::AsyncFd;

use crate::apply::{self, Prepared};
use crate::config::{Config, Mode};
use crate::filter::{Filter, ListKind};
use crate::state::{self, DaemonState, IfaceState, ListState, Runtime};

pub struct RunOpts {
    pub config: PathBuf,
    pub ifaces: Vec<String>,
    pub mode: Option<Mode>,
}

/// Merge CLI runtime edits (allowlist additions, scanner edits) into a prepared config.
pub fn merge_runtime(p: &mut Prepared, rt: &Runtime) -> Result<()> {
    rt.add_allow(&mut p.allowlist);
    for (h, t) in &rt.scanners_del {
        if let Some(id) = crate::sig::header_id(h) {
            p.signatures.retain(|s| !(s.header == id && s.text == t.to_ascii_lowercase()));
        }
    }
    for (h, t) in &rt.scanners_add {
        let id = crate::sig::header_id(h).ok_or_else(|| anyhow!("runtime scanner header {h:?} unknown"))?;
        let s = crate::sig::Signature::new(id, t)?;
        if !p.signatures.contains(&s) {
            p.signatures.push(s);
        }
    }
    Ok(())
}

fn link_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

/// Attach (or re-attach, replacing the program in an existing pinned link without a gap).
fn attach(filter: &mut Filter, pin_dir: &Path, iface: &str, mode: Mode) -> Result<String> {
    let ifindex = crate::sys::ifindex(iface).ok_or_else(|| anyhow!("interface {iface:?} does not exist"))?;
    let links = link_dir(pin_dir);
    std::fs::create_dir_all(&links)?;
    let pin = links.join(iface);
    let prog = filter.program()?;
    let mode_name;
    let id = if pin.exists() {
        // A previous controller left this link: swap the new program into it atomically.
        let pinned = PinnedLink::from_pin(&pin).map_err(|e| anyhow!("{}: {e}", pin.display()))?;
        let fd_link: FdLink = pinned.unpin().map_err(|e| anyhow!("{}: unpin: {e}", pin.display()))?;
        let xdp_link = XdpLink::try_from(fd_link).map_err(|e| anyhow!("{}: not an XDP link: {e}", pin.display()))?;
        mode_name = "adopted";
        prog.attach_to_link(xdp_link).map_err(|e| anyhow!("{iface}: replacing the program in the pinned link: {e}"))?
    } else {
        let try_mode = |prog: &mut aya::programs::Xdp, m: XdpMode| prog.attach_to_if_index(ifindex, m);
        match mode {
            Mode::Native => {
                mode_name = "native";
                try_mode(prog, XdpMode::Driver).map_err(|e| anyhow!("{iface}: native XDP attach failed: {e}"))?
            }
            Mode::Skb => {
                mode_name = "skb";
                try_mode(prog, XdpMode::Skb).map_err(|e| anyhow!("{iface}: skb XDP attach failed: {e}"))?
            }
            Mode::Auto => match try_mode(prog, XdpMode::Driver) {
                Ok(id) => {
                    mode_name = "native";
                    id
                }
                Err(e) => {
                    warn!("{iface}: native XDP not available ({e}); falling back to skb (generic) mode");
                    mode_name = "skb";
                    try_mode(prog, XdpMode::Skb).map_err(|e| anyhow!("{iface}: skb XDP attach failed too: {e}"))?
                }
            },
        }
    };
    let link = prog.take_link(id)?;
    let fd_link: FdLink = link
        .try_into()
        .map_err(|_| anyhow!("{iface}: the kernel attached XDP through netlink, not a bpf link; cannot pin it"))?;
    fd_link.pin(&pin).map_err(|e| anyhow!("{}: pinning the link: {e}", pin.display()))?;
    Ok(mode_name.to_string())
}

/// Detach from `iface` (or all interfaces). When nothing stays attached, the pinned maps are
/// removed too, unloading the filter.
pub fn detach(pin_dir: &Path, iface: Option<&str>) -> Result<Vec<String>> {
    let links = link_dir(pin_dir);
    let mut removed = vec![];
    let entries: Vec<_> = match std::fs::read_dir(&links) {
        Ok(rd) => rd.filter_map(|e| e.ok()).collect(),
        Err(_) => vec![],
    };
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        if iface.is_some_and(|i| i != name) {
            continue;
        }
        let pinned = PinnedLink::from_pin(e.path()).map_err(|err| anyhow!("{}: {err}", e.path().display()))?;
        let fd: FdLink = pinned.unpin().map_err(|err| anyhow!("{}: {err}", e.path().display()))?;
        drop(fd); // closing the last reference detaches the program
        removed.push(name);
    }
    if let Some(i) = iface {
        if removed.is_empty() {
            bail!("sipshield is not attached to {i}");
        }
    } else if removed.is_empty() && !pin_dir.join("maps").exists() {
        bail!("no sipshield filter is loaded (nothing pinned at {})", pin_dir.display());
    }
    let left = std::fs::read_dir(&links).map(|rd| rd.count()).unwrap_or(0);
    if left == 0 {
        let _ = std::fs::remove_dir_all(pin_dir.join("maps"));
        let _ = std::fs::remove_dir(&links);
        let _ = std::fs::remove_dir(pin_dir);
    }
    if let Some(mut st) = DaemonState::load() {
        st.interfaces.retain(|i| !removed.contains(&i.name));
        let _ = st.save();
    }
    Ok(removed)
}

fn list_state(entries: usize, load_secs: f64) -> ListState {
    ListState { entries, last_load_unix: state::unix_now(), load_secs, errors: 0, last_error: None }
}

struct Daemon {
    filter: Filter,
    cfg: Config,
    config_path: PathBuf,
    state: DaemonState,
    sigs: Vec<crate::sig::Signature>,
    /// Modification time of the GeoIP database last loaded.
    geo_mtime: Option<std::time::SystemTime>,
}

fn mtime(p: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Daemon {
    /// Re-read the config and apply it; on any error the running filter is left as it was.
    fn reload(&mut self) -> Result<()> {
        let cfg = Config::load(&self.config_path)?;
        let mut prepared = apply::prepare(&cfg)?;
        merge_runtime(&mut prepared, &Runtime::load())?;
        let report = apply::apply(&mut self.filter, &cfg, &prepared)?;
        self.record(&report);
        self.sigs = prepared.signatures.clone();
        self.geo_mtime = cfg.geoip.as_ref().and_then(|g| mtime(&g.database));
        self.cfg = cfg;
        info!("configuration reloaded: {}", serde_json::to_string(&report)?);
        Ok(())
    }

    fn record(&mut self, r: &apply::ApplyReport) {
        let bl = &r.blacklist;
        let al = &r.allowlist;
        self.state.lists.insert("blacklist".into(), list_state(bl.v4 + bl.v6 + bl.net4 + bl.net6, bl.load_secs));
        self.state.lists.insert("allowlist".into(), list_state(al.v4 + al.v6 + al.net4 + al.net6, al.load_secs));
        self.state.lists.insert("scanners".into(), list_state(r.signatures, 0.0));
        if let Some(g) = &r.geo {
            self.state.lists.insert("geoip".into(), list_state(g.v4_networks + g.v6_networks, g.load_secs));
        }
        for s in &r.skipped_lines {
            warn!("skipped invalid list line {s}");
        }
        let _ = self.state.save();
    }

    /// `[geoip] reload = true`: reload the database when its file changes. A bad new file is
    /// rejected and the previous database stays.
    fn check_geo_file(&mut self) {
        let Some(g) = self.cfg.geoip.clone() else { return };
        if !g.reload {
            return;
        }
        let now = mtime(&g.database);
        if now.is_none() || now == self.geo_mtime {
            return;
        }
        self.geo_mtime = now;
        let policy = crate::geo::GeoPolicy::from(&g);
        let res = crate::geo::read_db(&g.database).and_then(|db| crate::geo::load_geo(&mut self.filter, &db, &policy));
        let entry = self.state.lists.entry("geoip".into()).or_default();
        match res {
            Ok(r) => {
                info!(
                    "GeoIP database {} changed: reloaded {} networks in {:.3}s",
                    g.database.display(),
                    r.v4_networks + r.v6_networks,
                    r.load_secs
                );
                let errors = entry.errors;
                *entry = list_state(r.v4_networks + r.v6_networks, r.load_secs);
                entry.errors = errors;
            }
            Err(e) => {
                error!(
                    "GeoIP database {} changed but was rejected, keeping the previous one: {e:#}",
                    g.database.display()
                );
                entry.errors += 1;
                entry.last_error = Some(format!("{e:#}"));
            }
        }
        let _ = self.state.save();
    }

    /// Periodic refresh of file/URL lists. A failure keeps the last good list and is reported.
    fn refresh_lists(&mut self) {
        for kind in [ListKind::Allowlist, ListKind::Blacklist] {
            let l = match kind {
                ListKind::Blacklist => &self.cfg.blacklist,
                ListKind::Allowlist => &self.cfg.allowlist,
            };
            if l.files.is_empty() && l.urls.is_empty() {
                continue;
            }
            let res = crate::lists::load_sources(&l.files, &l.urls, &l.entries, l.skip_invalid, l.timeout)
                .map_err(anyhow::Error::from)
                .and_then(|mut list| {
                    if kind == ListKind::Allowlist {
                        Runtime::load().add_allow(&mut list);
                    }
                    self.filter.swap_list(kind, &list)
                });
            let entry = self.state.lists.entry(kind.name().into()).or_default();
            match res {
                Ok(r) => {
                    info!(
                        "{} refreshed: {} entries in {:.3}s",
                        kind.name(),
                        r.v4 + r.v6 + r.net4 + r.net6,
                        r.load_secs
                    );
                    let errors = entry.errors;
                    *entry = list_state(r.v4 + r.v6 + r.net4 + r.net6, r.load_secs);
                    entry.errors = errors;
                }
                Err(e) => {
                    error!("{} refresh failed, keeping the last good list: {e:#}", kind.name());
                    entry.errors += 1;
                    entry.last_error = Some(format!("{e:#}"));
                }
            }
        }
        let _ = self.state.save();
    }
}

pub fn run(opts: RunOpts) -> Result<()> {
    let cfg = Config::load(&opts.config)?;
    let ifaces = if opts.ifaces.is_empty() { cfg.interfaces.clone() } else { opts.ifaces.clone() };
    if ifaces.is_empty() {
        bail!("no interface to protect: set interfaces = [\"eth1\"] in {} or pass --iface", opts.config.display());
    }
    for i in &ifaces {
        if crate::sys::ifindex(i).is_none() {
            bail!("interface {i:?} does not exist");
        }
    }
    let _lock = state::lock()?;
    // Read every list and database before touching the kernel.
    let mut prepared = apply::prepare(&cfg)?;
    merge_runtime(&mut prepared, &Runtime::load())?;
    let pin_dir = state::pin_dir();
    let adopted = pin_dir.join("maps").join("CONFIG").exists();
    let mut filter = Filter::load_pinned(&pin_dir)?;
    if adopted {
        info!("adopting the pinned filter state in {} (counters and bans are kept)", pin_dir.display());
    }
    let report = apply::apply(&mut filter, &cfg, &prepared)?;
    let mode = opts.mode.unwrap_or(cfg.mode);
    let mut st = DaemonState {
        pid: std::process::id(),
        config: opts.config.canonicalize().unwrap_or(opts.config.clone()),
        started_unix: state::unix_now(),
        ..Default::default()
    };
    for iface in &ifaces {
        let m = attach(&mut filter, &pin_dir, iface, mode)?;
        let ifindex = crate::sys::ifindex(iface).unwrap_or(0);
        let slot = filter.assign_iface_slot(ifindex)?;
        info!("attached to {iface} (ifindex {ifindex}, {m} mode)");
        st.interfaces.push(IfaceState { name: iface.clone(), ifindex, mode: m, slot });
    }
    st.program_id = filter.program().ok().and_then(|p| p.info().ok()).map(|i| i.id());
    let events = filter.take_map("EVENTS")?;
    let geo_mtime = cfg.geoip.as_ref().and_then(|g| mtime(&g.database));
    let mut d = Daemon {
        filter,
        cfg,
        config_path: opts.config.clone(),
        state: st,
        sigs: prepared.signatures.clone(),
        geo_mtime,
    };
    d.record(&report);
    info!("sipshield running: {}", serde_json::to_string(&report)?);
    notify_ready();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(serve(d, events))
}

/// sd_notify READY=1 when started by systemd with Type=notify.
fn notify_ready() {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        let path = path.to_string_lossy().into_owned();
        let sock = std::os::unix::net::UnixDatagram::unbound();
        if let Ok(s) = sock {
            let target = if let Some(abs) = path.strip_prefix('@') {
                use std::os::linux::net::SocketAddrExt;
                std::os::unix::net::SocketAddr::from_abstract_name(abs.as_bytes()).ok()
            } else {
                std::os::unix::net::SocketAddr::from_pathname(&path).ok()
            };
            if let Some(t) = target {
                let _ = s.send_to_addr(b"READY=1", &t);
            }
        }
    }
}

async fn serve(mut d: Daemon, events: aya::maps::Map) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let refresh = d.cfg.blacklist.refresh.min(d.cfg.allowlist.refresh);
    let mut refresh_tick = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    let mut gc_tick = tokio::time::interval(Duration::from_secs(30));
    let mut geo_tick = tokio::time::interval(Duration::from_secs(2));
    if d.cfg.metrics.enabled {
        let addr: std::net::SocketAddr = d.cfg.metrics.listen.parse().context("metrics.listen")?;
        let listener = crate::metrics::bind(addr).await?;
        tokio::spawn(crate::metrics::serve(listener, state::pin_dir()));
    }
    let ring = RingBuf::try_from(events)?;
    #[allow(deprecated)] // AsyncFd::register is unsafe; the ring buffer owns its fd for the task's lifetime
    let mut ring = AsyncFd::new(ring)?;
    let mut sink = EventSink::open(&d.cfg)?;
    let started = Instant::now();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                if let Err(e) = d.reload() {
                    error!("reload rejected, the running configuration stays: {e:#}");
                } else if let Ok(s) = EventSink::open(&d.cfg) {
                    sink = s;
                }
            }
            _ = usr1.recv() => d.refresh_lists(),
            _ = refresh_tick.tick() => d.refresh_lists(),
            _ = geo_tick.tick() => d.check_geo_file(),
            _ = gc_tick.tick() => {
                if let Err(e) = apply::ban_gc(&mut d.filter) { warn!("ban expiry sweep failed: {e:#}"); }
            }
            guard = ring.readable_mut() => {
                let mut guard = guard?;
                let rb = guard.get_inner_mut();
                let now = crate::filter::clock_ns();
                let wall = std::time::SystemTime::now();
                while let Some(item) = rb.next() {
                    if let Some(ev) = crate::events::decode(&item, &d.sigs, now, wall) {
                        sink.write(&ev);
                    }
                }
                guard.clear_ready();
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    info!(
        "controller stopping after {:.0}s; the filter stays attached (use `sipshield detach` to remove it)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Where decoded events go: stdout (journal), the optional configured file, and the state
/// directory's rolling log read by `sipshield events`.
struct EventSink {
    stdout: bool,
    files: Vec<std::fs::File>,
    log_path: PathBuf,
    log_bytes: u64,
}

const EVENT_LOG_MAX: u64 = 16 << 20;

impl EventSink {
    fn open(cfg: &Config) -> Result<EventSink> {
        let mut files = vec![];
        let log_path = state::events_log();
        let open = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("{}: cannot open event file", p.display()))
        };
        files.push(open(&log_path)?);
        if let Some(f) = &cfg.events.file {
            files.push(open(f)?);
        }
        let log_bytes = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        Ok(EventSink { stdout: cfg.events.stdout, files, log_path, log_bytes })
    }

    fn write(&mut self, ev: &crate::events::EventLine) {
        use std::io::Write;
        let line = match serde_json::to_string(ev) {
            Ok(l) => l + "\n",
            Err(_) => return,
        };
        if self.stdout {
            print!("{line}");
        }
        for f in &mut self.files {
            let _ = f.write_all(line.as_bytes());
        }
        self.log_bytes += line.len() as u64;
        if self.log_bytes > EVENT_LOG_MAX {
            // Keep one previous generation of the state-dir log.
            let _ = std::fs::rename(&self.log_path, self.log_path.with_extension("jsonl.1"));
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path) {
                self.files[0] = f;
            }
            self.log_bytes = 0;
        }
    }
}
