//! `sipshield run`: the controller process.
//!
//! Threads, each with one job:
//! - the **main loop** (tokio, current thread) handles signals, timers, the control socket and
//!   `/metrics`; it never touches the filter's policy itself;
//! - the **worker** owns the filter and applies everything that changes it — reloads, list
//!   refreshes, GeoIP reloads, ban sweeps and CLI edits — one at a time, in order;
//! - **fetchers** read list files and URLs for refreshes, so a hanging feed delays nothing else;
//! - the **event drain** empties the kernel's ring buffer (and queues the filter's own bans
//!   for the CrowdSec reporter);
//! - with `[crowdsec]`, the **puller** pulls the LAPI's decisions (applied by the worker as
//!   `Job::Crowdsec`) and the **reporter** pushes the filter's own bans as alerts.
//!
//! Start and reload share one path: read and check everything (config, interfaces, lists,
//! GeoIP, event files, the metrics address, the control socket), then commit the whole policy
//! in one generation swap. A failed start leaves nothing pinned that was not there before.
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::RingBuf;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::XdpMode;
use log::{error, info, warn};
use serde_json::json;
use tokio::sync::oneshot;

use crate::addrlist::{ListCounts, ListKind};
use crate::config::{Config, Mode};
use crate::control::{Caller, Reply, Request};
use crate::crowdsec::decisions::{self as csd, Held, Pull};
use crate::crowdsec::lapi::Hub;
use crate::edits::{self, Base};
use crate::events::EventSink;
use crate::filter::Filter;
use crate::lists::IpList;
use crate::policy::{self, ApplyReport, Policy, Sources};
use crate::sig::Signature;
use crate::state::{self, DaemonState, IfaceState, ListState, Runtime};

/// How often the notification checks run (drop rates, stale lists, dry-run, attachment).
const WATCH_EVERY: Duration = Duration::from_secs(5);

pub struct RunOpts {
    pub config: PathBuf,
    pub ifaces: Vec<String>,
    pub mode: Option<Mode>,
}

fn link_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("links")
}

/// Pinned tcx links of the egress program, one per interface (a directory of its own: `links`
/// holds the XDP links, one per attached interface, and detach counts them).
fn egress_link_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join("egress-links")
}

/// Attach the egress program to `iface` as a tcx egress link pinned next to the XDP link, or
/// swap it into the link a previous controller pinned (no gap).
fn attach_egress(filter: &mut Filter, pin_dir: &Path, iface: &str) -> Result<()> {
    use aya::programs::tc::{SchedClassifierLink, TcAttachOptions, TcAttachType};
    let dir = egress_link_dir(pin_dir);
    std::fs::create_dir_all(&dir)?;
    let pin = dir.join(iface);
    let prog = filter.egress_program()?;
    let id = if pin.exists() {
        let pinned = PinnedLink::from_pin(&pin).map_err(|e| anyhow!("{}: {e}", pin.display()))?;
        let fd_link: FdLink = pinned.unpin().map_err(|e| anyhow!("{}: unpin: {e}", pin.display()))?;
        let link =
            SchedClassifierLink::try_from(fd_link).map_err(|e| anyhow!("{}: not a tcx link: {e}", pin.display()))?;
        prog.attach_to_link(link)
            .map_err(|e| anyhow!("{iface}: replacing the egress program in the pinned link: {e}"))?
    } else {
        prog.attach_with_options(
            iface,
            TcAttachType::Egress,
            TcAttachOptions::TcxOrder(aya::programs::LinkOrder::default()),
        )
        .map_err(|e| anyhow!("{iface}: attaching the egress (tcx) program failed: {e}"))?
    };
    let fd_link: FdLink = prog
        .take_link(id)?
        .try_into()
        .map_err(|_| anyhow!("{iface}: the egress program was attached through netlink, not a bpf link"))?;
    fd_link.pin(&pin).map_err(|e| anyhow!("{}: pinning the egress link: {e}", pin.display()))?;
    Ok(())
}

/// Detach the egress program from `iface` (nothing pinned: nothing to do).
fn detach_egress(pin_dir: &Path, iface: &str) -> Result<()> {
    let pin = egress_link_dir(pin_dir).join(iface);
    if !pin.exists() {
        return Ok(());
    }
    let pinned = PinnedLink::from_pin(&pin).map_err(|e| anyhow!("{}: {e}", pin.display()))?;
    let fd: FdLink = pinned.unpin().map_err(|e| anyhow!("{}: {e}", pin.display()))?;
    drop(fd); // the last reference: the egress program is detached
    Ok(())
}

/// Attach (or re-attach, replacing the program in an existing pinned link without a gap).
/// Returns the mode and whether a new link was created.
fn attach(filter: &mut Filter, pin_dir: &Path, iface: &str, mode: Mode) -> Result<(String, bool)> {
    let ifindex = crate::sys::ifindex(iface).ok_or_else(|| anyhow!("interface {iface:?} does not exist"))?;
    let links = link_dir(pin_dir);
    std::fs::create_dir_all(&links)?;
    let pin = links.join(iface);
    let prog = filter.program()?;
    let (mode_name, id, created) = if pin.exists() {
        // A previous controller left this link: swap the new program into it atomically.
        let pinned = PinnedLink::from_pin(&pin).map_err(|e| anyhow!("{}: {e}", pin.display()))?;
        let fd_link: FdLink = pinned.unpin().map_err(|e| anyhow!("{}: unpin: {e}", pin.display()))?;
        let xdp_link = XdpLink::try_from(fd_link).map_err(|e| anyhow!("{}: not an XDP link: {e}", pin.display()))?;
        let id = prog
            .attach_to_link(xdp_link)
            .map_err(|e| anyhow!("{iface}: replacing the program in the pinned link: {e}"))?;
        ("adopted", id, false)
    } else {
        let mut try_mode = |m: XdpMode| prog.attach_to_if_index(ifindex, m);
        let (name, id) = match mode {
            Mode::Native => {
                ("native", try_mode(XdpMode::Driver).map_err(|e| anyhow!("{iface}: native XDP attach failed: {e}"))?)
            }
            Mode::Skb => ("skb", try_mode(XdpMode::Skb).map_err(|e| anyhow!("{iface}: skb XDP attach failed: {e}"))?),
            Mode::Auto => match try_mode(XdpMode::Driver) {
                Ok(id) => ("native", id),
                Err(e) => {
                    warn!("{iface}: native XDP not available ({e}); falling back to skb (generic) mode");
                    ("skb", try_mode(XdpMode::Skb).map_err(|e| anyhow!("{iface}: skb XDP attach failed too: {e}"))?)
                }
            },
        };
        (name, id, true)
    };
    let link = prog.take_link(id)?;
    let fd_link: FdLink = link
        .try_into()
        .map_err(|_| anyhow!("{iface}: the kernel attached XDP through netlink, not a bpf link; cannot pin it"))?;
    fd_link.pin(&pin).map_err(|e| anyhow!("{}: pinning the link: {e}", pin.display()))?;
    if let Err(e) = attach_egress(filter, pin_dir, iface) {
        if created {
            // Half attached is not attached: the caller undoes only what it knows it made.
            let _ = detach(pin_dir, Some(iface));
        }
        return Err(e);
    }
    Ok((mode_name.to_string(), created))
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
        detach_egress(pin_dir, &name)?;
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
        unpin_all(pin_dir);
    }
    if let Some(mut st) = DaemonState::load() {
        st.interfaces.retain(|i| !removed.contains(&i.name));
        let _ = st.save();
    }
    Ok(removed)
}

/// Remove the pinned maps and the pin directories (the filter unloads once nothing uses it).
fn unpin_all(pin_dir: &Path) {
    let _ = std::fs::remove_dir_all(pin_dir.join("maps"));
    let _ = std::fs::remove_dir(link_dir(pin_dir));
    let _ = std::fs::remove_dir(egress_link_dir(pin_dir));
    let _ = std::fs::remove_dir(pin_dir);
}

/// What the main loop and the event drain share with the worker.
#[derive(Clone)]
pub struct Shared {
    /// The live signatures (event decoding names the matched one).
    pub sigs: Arc<RwLock<Vec<Signature>>>,
    /// What `/metrics` reports besides the kernel counters.
    pub snapshot: Arc<RwLock<crate::metrics::Snapshot>>,
    pub sink: Arc<Mutex<EventSink>>,
    /// Notification channels (replaced when a reload changes `[notify]`).
    pub notifier: Arc<RwLock<crate::notify::Notifier>>,
    /// Automatic bans since the last audit summary (filled by the event drain).
    pub bans: Arc<Mutex<crate::audit::BanTally>>,
}

impl Shared {
    fn alert(&self, a: crate::notify::Alert) {
        self.notifier.read().unwrap_or_else(|p| p.into_inner()).alert(a);
    }

    /// The event drain's hook: a new automatic ban is tallied for the audit summary and, when
    /// the trigger is on, notified.
    pub fn on_event(&self, ev: &crate::events::EventLine) {
        if ev.ban_secs.is_none() {
            return;
        }
        self.bans.lock().unwrap_or_else(|p| p.into_inner()).add(&ev.src, ev.reason);
        let n = self.notifier.read().unwrap_or_else(|p| p.into_inner());
        if n.triggers.auto_bans {
            n.alert(crate::notify::Alert::ban(ev));
        }
    }
}

/// Work for the worker, in arrival order.
pub enum Job {
    Control {
        req: Request,
        caller: Caller,
        reply: oneshot::Sender<Reply>,
    },
    Reload,
    Refresh,
    Fetched {
        epoch: u64,
        kind: ListKind,
        result: Result<IpList>,
        waiter: Option<oneshot::Sender<Reply>>,
    },
    GeoCheck,
    Gc,
    /// A pull of the CrowdSec decision stream.
    Crowdsec(Box<Pull>),
    /// Periodic checks that raise notifications (drop rates, stale lists, dry-run, detached).
    Watch,
    /// Write the audit summary of the automatic bans since the last one.
    AuditBans,
    Stop,
}

/// The filter's owner: applies every change, one at a time.
struct Worker {
    filter: Filter,
    cfg: Config,
    config_path: PathBuf,
    pin_dir: PathBuf,
    sources: Sources,
    runtime: Runtime,
    state: DaemonState,
    shared: Shared,
    geo_mtime: Option<SystemTime>,
    /// Bumped by every reload: refreshes fetched for an older config are discarded.
    epoch: u64,
    fetching: [bool; 2],
    jobs: mpsc::Sender<Job>,
    stop: tokio::sync::mpsc::UnboundedSender<()>,
    active_bans: usize,
    /// The CrowdSec connector's shared state, and the decisions it holds.
    crowdsec: Arc<Hub>,
    cs_held: Held,
    audit: crate::audit::Log,
    watch: Watch,
}

/// State of the periodic notification checks.
#[derive(Default)]
struct Watch {
    rates: crate::notify::DropRates,
    edges: crate::notify::Edge,
    dry_run_since: Option<Instant>,
}

fn kind_index(kind: ListKind) -> usize {
    match kind {
        ListKind::Blacklist => 0,
        ListKind::Allowlist => 1,
    }
}

fn mtime(p: &Path) -> Option<SystemTime> {
    std::fs::metadata(p).and_then(|m| m.modified()).ok()
}

impl Worker {
    fn run(mut self, jobs: mpsc::Receiver<Job>) {
        for job in jobs {
            match job {
                Job::Control { req, caller, reply } => {
                    if self.control(req, caller, reply) {
                        let _ = self.stop.send(());
                        return;
                    }
                }
                Job::Reload => {
                    let before = self.audit_state();
                    let r = self.reload().map(|r| format!("configuration reloaded: {}", summary(&r)));
                    if let Err(e) = &r {
                        error!("reload rejected, the running configuration stays: {e:#}");
                    }
                    let mut rec = crate::audit::Record::new(
                        crate::audit::Actor::controller(),
                        "reload",
                        json!({"trigger": "SIGHUP"}),
                    )
                    .outcome(&r);
                    rec.before = before;
                    rec.after = self.audit_state();
                    self.audit.auto(&rec);
                }
                Job::Refresh => self.start_refresh(None),
                Job::Fetched { epoch, kind, result, waiter } => self.fetched(epoch, kind, result, waiter),
                Job::GeoCheck => self.check_geo_file(),
                Job::Gc => self.gc(),
                Job::Crowdsec(pull) => self.crowdsec_pull(&pull),
                Job::Watch => self.watch(),
                Job::AuditBans => self.audit_bans(),
                Job::Stop => {
                    self.audit_bans();
                    return;
                }
            }
            self.publish();
        }
    }

    /// Apply one request from the control socket and answer it (a refresh answers once its
    /// fetch is committed). Returns true when the controller must stop (detached everywhere).
    fn control(&mut self, req: Request, caller: Caller, reply: oneshot::Sender<Reply>) -> bool {
        if req.is_edit() {
            info!(
                "control: {} from uid {} pid {}",
                serde_json::to_string(&req).unwrap_or_default(),
                caller.uid,
                caller.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into())
            );
        }
        let mut stop = false;
        let audited = req.clone();
        let before = if req.is_edit() { self.audit_state() } else { serde_json::Value::Null };
        let r = match req {
            Request::Status => {
                let r = self.status().map(|v| Reply { ok: true, message: String::new(), data: v });
                let _ = reply.send(r.unwrap_or_else(|e| Reply::err(&e)));
                return false;
            }
            Request::Refresh => {
                if self.list_sources().is_empty() {
                    Ok("no list has files or URLs to refresh".to_string())
                } else {
                    // The refresh's own record (list_refresh) follows when the fetch is committed.
                    let rec = crate::audit::Record::of_request(crate::audit::Actor::operator(&caller), &audited)
                        .outcome(&Ok("refresh started".into()));
                    // A refresh only fetches newer lists: it goes ahead even when this record
                    // cannot be written (logged and counted).
                    self.audit.auto(&rec);
                    self.start_refresh(Some(reply));
                    return false;
                }
            }
            Request::Reload => self.reload().map(|r| format!("configuration reloaded: {}", summary(&r))),
            Request::Detach { iface } => {
                let r = self.detach(iface.as_deref());
                stop = r.as_ref().map(|(_, left)| *left == 0).unwrap_or(false);
                r.map(|(m, _)| m)
            }
            other => self.edit(other),
        };
        if let Err(e) = &r {
            warn!("control request failed: {e:#}");
        }
        // The record is on disk before the caller hears of success; a failed write turns the
        // reply into an error that says the change is live (protection is never undone).
        let mut rec = crate::audit::Record::of_request(crate::audit::Actor::operator(&caller), &audited).outcome(&r);
        rec.before = before;
        rec.after = if stop { json!({"attached": []}) } else { self.audit_state() };
        let r = match (r, self.audit.write(&rec)) {
            (Ok(m), Err(e)) => Err(anyhow!("{m}; but the change could not be audited: {e:#}")),
            (r, _) => r,
        };
        let ok = r.is_ok() || stop;
        self.publish_sigs();
        let _ = reply.send(Reply::from_result(r));
        stop && ok
    }

    /// Bans and runtime edits.
    fn edit(&mut self, req: Request) -> Result<String> {
        let base = Base {
            cfg: &self.cfg,
            config_path: &self.config_path,
            allowlist: &self.sources.allowlist,
            signatures: &self.sources.signatures,
            groups: &self.sources.groups,
        };
        let f = &mut self.filter;
        let rt = &mut self.runtime;
        match req {
            Request::BanAdd { ip, ttl_secs } => {
                let ttl = Duration::from_secs(ttl_secs);
                crate::bans::add(f, ip, ttl)?;
                self.active_bans += 1;
                Ok(format!("banned {ip} for {}", humantime::format_duration(ttl)))
            }
            Request::BanDel { ip } => match crate::bans::del(f, ip)? {
                true => Ok(format!("unbanned {ip}")),
                false => Err(anyhow!("{ip} is not banned")),
            },
            Request::AllowAdd { entry } => edits::allow_add(f, rt, &base, &entry),
            Request::AllowDel { entry } => edits::allow_del(f, rt, &base, &entry),
            Request::ScannerAdd { header, text } => edits::scanner_add(f, rt, &base, &header, &text),
            Request::ScannerDel { header, text } => edits::scanner_del(f, rt, &base, &header, &text),
            Request::DryRun { mode } => edits::dry_run(f, rt, &base, mode),
            Request::GroupAdd { name, entry } => edits::group_add(f, rt, &base, &name, &entry),
            Request::GroupDel { name, entry } => edits::group_del(f, rt, &base, &name, &entry),
            Request::Status | Request::Reload | Request::Refresh | Request::Detach { .. } => {
                unreachable!("handled by control()")
            }
        }
    }

    /// Re-read the config and apply it as one change; on any error nothing changes.
    fn reload(&mut self) -> Result<ApplyReport> {
        let cfg = Config::load_for_daemon(&self.config_path)?;
        if cfg.interfaces != self.cfg.interfaces {
            bail!(
                "interfaces changed from {:?} to {:?}: restart the controller to change interfaces (nothing was changed)",
                self.cfg.interfaces,
                cfg.interfaces
            );
        }
        if cfg.metrics != self.cfg.metrics {
            bail!("[metrics] changed: restart the controller to change the metrics listener (nothing was changed)");
        }
        let crowdsec = crowdsec_settings(&cfg, &self.config_path)?;
        let sources = Sources::read(&cfg)?;
        // Decisions held from the LAPI stay enforced (unless [crowdsec] is gone: lifted below).
        let ranges = if crowdsec.is_some() { self.cs_held.range_list() } else { IpList::default() };
        let policy = Policy::new(&cfg, &with_ranges(&sources, ranges), &self.runtime)?;
        let sink = EventSink::open(&cfg)?;
        let notifier = match cfg.notify != self.cfg.notify {
            true => Some(crate::notify::Notifier::start(&cfg.notify)?),
            false => None,
        };
        let report = policy.commit(&mut self.filter)?;
        if crowdsec.is_none() && (self.cs_held.ips() + self.cs_held.ranges()) > 0 {
            let ch = self.cs_held.clear();
            if let Err(e) = csd::apply_bans(&mut self.filter, &ch) {
                warn!("crowdsec: lifting the decisions of the removed [crowdsec] section: {e:#}");
            }
            self.publish_held();
        }
        self.crowdsec.configure(crowdsec, &cfg.ratelimit);
        *self.shared.sink.lock().unwrap_or_else(|p| p.into_inner()) = sink;
        if let Some(n) = notifier {
            *self.shared.notifier.write().unwrap_or_else(|p| p.into_inner()) = n;
        }
        self.audit.cfg = cfg.audit.clone();
        self.geo_mtime = cfg.geoip.as_ref().and_then(|g| mtime(&g.database));
        self.cfg = cfg;
        self.sources = sources;
        self.epoch += 1;
        self.record(&report);
        self.publish_sigs();
        info!("configuration reloaded: {}", summary(&report));
        Ok(report)
    }

    fn record(&mut self, r: &ApplyReport) {
        self.state.lists.insert("blacklist".into(), ListState::loaded(r.blacklist.total(), r.load_secs));
        self.state.lists.insert("allowlist".into(), ListState::loaded(r.allowlist.total(), r.load_secs));
        self.state.lists.insert("scanners".into(), ListState::loaded(r.signatures, 0.0));
        if let Some(g) = &r.geo {
            self.state.lists.insert("geoip".into(), ListState::loaded(g.v4_networks + g.v6_networks, g.load_secs));
        }
        for s in &r.skipped_lines {
            warn!("skipped invalid list line {s}");
        }
        self.save_state();
    }

    fn save_state(&self) {
        if let Err(e) = self.state.save() {
            warn!("{e:#}");
        }
    }

    /// List kinds that have files or URLs.
    fn list_sources(&self) -> Vec<ListKind> {
        [ListKind::Allowlist, ListKind::Blacklist]
            .into_iter()
            .filter(|k| {
                let l = match k {
                    ListKind::Blacklist => &self.cfg.blacklist,
                    ListKind::Allowlist => &self.cfg.allowlist,
                };
                !(l.files.is_empty() && l.urls.is_empty())
            })
            .collect()
    }

    /// Fetch the lists on threads of their own; each result comes back as `Job::Fetched`.
    fn start_refresh(&mut self, mut waiter: Option<oneshot::Sender<Reply>>) {
        let kinds = self.list_sources();
        for (i, kind) in kinds.iter().enumerate() {
            // The waiter (a CLI `blacklist reload`) is answered by the last list's commit.
            let w = if i + 1 == kinds.len() { waiter.take() } else { None };
            if self.fetching[kind_index(*kind)] && w.is_none() {
                continue;
            }
            self.fetching[kind_index(*kind)] = true;
            let cfg = self.cfg.clone();
            let jobs = self.jobs.clone();
            let epoch = self.epoch;
            let kind = *kind;
            let spawned = std::thread::Builder::new().name(format!("fetch-{}", kind.name())).spawn(move || {
                let result = policy::read_list(&cfg, kind);
                let _ = jobs.send(Job::Fetched { epoch, kind, result, waiter: w });
            });
            if let Err(e) = spawned {
                error!("{}: cannot start the refresh: {e}", kind.name());
                self.fetching[kind_index(kind)] = false;
            }
        }
    }

    /// Commit a fetched list (unless the config changed meanwhile).
    fn fetched(&mut self, epoch: u64, kind: ListKind, result: Result<IpList>, waiter: Option<oneshot::Sender<Reply>>) {
        self.fetching[kind_index(kind)] = false;
        let r = if epoch != self.epoch {
            Err(anyhow!("the configuration was reloaded during the refresh; the reloaded lists stay"))
        } else {
            result.and_then(|list| self.commit_list(kind, list))
        };
        let before = self.state.lists.get(kind.name()).map(|l| l.entries);
        let entry = self.state.lists.entry(kind.name().into()).or_default();
        let mut rec = crate::audit::Record::new(
            crate::audit::Actor::controller(),
            "list_refresh",
            json!({"list": kind.name(), "requested": waiter.is_some()}),
        )
        .outcome(&r.as_ref().map(|(n, _)| format!("{n} entries")).map_err(|e| anyhow!("{e:#}")));
        rec.before = json!({"entries": before});
        rec.after = json!({"entries": r.as_ref().map(|(n, _)| *n).ok().or(before)});
        self.audit.auto(&rec);
        match &r {
            Ok((n, secs)) => {
                info!("{} refreshed: {n} entries in {secs:.3}s", kind.name());
                let errors = entry.errors;
                *entry = ListState::loaded(*n, *secs);
                entry.errors = errors;
            }
            Err(e) => {
                error!("{} refresh failed, keeping the last good list: {e:#}", kind.name());
                if self.shared.notifier.read().is_ok_and(|n| n.triggers.lists) {
                    self.shared.alert(crate::notify::Alert::new(
                        crate::notify::Kind::ListFailure,
                        format!("{} refresh failed, the last good list stays: {e:#}", kind.name()),
                    ));
                }
                entry.errors += 1;
                entry.last_error = Some(format!("{e:#}"));
            }
        }
        self.save_state();
        if let Some(w) = waiter {
            let _ = w.send(Reply::from_result(
                r.map(|(n, secs)| format!("{} refreshed: {n} entries in {secs:.3}s", kind.name())),
            ));
        }
    }

    fn commit_list(&mut self, kind: ListKind, list: IpList) -> Result<(usize, f64)> {
        for s in &list.skipped {
            warn!("skipped invalid list line {s}");
        }
        let merged = match kind {
            ListKind::Blacklist => {
                let mut l = list.clone();
                l.merge(self.cs_held.range_list());
                l
            }
            ListKind::Allowlist => policy::merged_allowlist(&list, &self.runtime),
        };
        let r = policy::swap_list(&mut self.filter, kind, &merged)?;
        match kind {
            ListKind::Blacklist => self.sources.blacklist = list,
            ListKind::Allowlist => self.sources.allowlist = list,
        }
        Ok((merged.len(), r.load_secs))
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
        let res = crate::geo::read_db(&g.database)
            .and_then(|db| crate::geo::load_geo(&mut self.filter, &db, &policy).map(|r| (db, r)));
        let entry = self.state.lists.entry("geoip".into()).or_default();
        let outcome = res.as_ref().map(|(_, r)| format!("{} networks", r.v4_networks + r.v6_networks));
        let rec = crate::audit::Record::new(
            crate::audit::Actor::controller(),
            "geoip_reload",
            json!({"database": g.database.display().to_string()}),
        )
        .outcome(&outcome.map_err(|e| anyhow!("{e:#}")));
        self.audit.auto(&rec);
        match res {
            Ok((db, r)) => {
                info!(
                    "GeoIP database {} changed: reloaded {} networks in {:.3}s",
                    g.database.display(),
                    r.v4_networks + r.v6_networks,
                    r.load_secs
                );
                let errors = entry.errors;
                *entry = ListState::loaded(r.v4_networks + r.v6_networks, r.load_secs);
                entry.errors = errors;
                self.sources.geo = Some(db);
            }
            Err(e) => {
                error!(
                    "GeoIP database {} changed but was rejected, keeping the previous one: {e:#}",
                    g.database.display()
                );
                if self.shared.notifier.read().is_ok_and(|n| n.triggers.geoip) {
                    self.shared.alert(crate::notify::Alert::new(
                        crate::notify::Kind::GeoipFailure,
                        format!("GeoIP database {} rejected, the previous one stays: {e:#}", g.database.display()),
                    ));
                }
                entry.errors += 1;
                entry.last_error = Some(format!("{e:#}"));
            }
        }
        self.save_state();
    }

    fn gc(&mut self) {
        match crate::bans::gc(&mut self.filter) {
            Ok((_, active)) => self.active_bans = active,
            Err(e) => warn!("ban expiry sweep failed: {e:#}"),
        }
        let ch = self.cs_held.expire(crate::filter::clock_ns());
        if ch.ranges_changed {
            self.swap_crowdsec_ranges();
        }
        self.publish_held();
    }

    /// Apply a pull of the CrowdSec decision stream: address bans in bulk, ranges by a swap of
    /// the blacklist. A pull made for settings replaced since is dropped.
    fn crowdsec_pull(&mut self, pull: &Pull) {
        if pull.generation != self.crowdsec.generation() {
            return;
        }
        let t0 = Instant::now();
        let allow = policy::never_banned(&self.cfg, &self.sources, &self.runtime);
        let ch = self.cs_held.apply(pull, crate::filter::clock_ns(), |t| csd::exempt(&allow, t));
        if let Err(e) = csd::apply_bans(&mut self.filter, &ch) {
            error!("crowdsec: applying {} ban(s) failed: {e:#}", ch.ban.len());
        }
        if ch.ranges_changed {
            self.swap_crowdsec_ranges();
        }
        if !ch.is_empty() {
            info!(
                "crowdsec: {}{} new/changed ban(s), {} lifted{}; holding {} address(es), {} range(s) ({:.3}s)",
                if pull.startup { "startup: " } else { "" },
                ch.ban.len(),
                ch.unban.len(),
                if ch.ranges_changed { ", ranges changed" } else { "" },
                self.cs_held.ips(),
                self.cs_held.ranges(),
                t0.elapsed().as_secs_f64()
            );
        }
        self.active_bans = self.active_bans.max(self.cs_held.ips());
        self.publish_held();
    }

    /// Swap the blacklist with the configured sources plus the ranges held from CrowdSec. A
    /// failure (capacity) keeps the previous blacklist and is logged.
    fn swap_crowdsec_ranges(&mut self) {
        let mut bl = self.sources.blacklist.clone();
        bl.merge(self.cs_held.range_list());
        if let Err(e) = policy::swap_list(&mut self.filter, ListKind::Blacklist, &bl) {
            error!("crowdsec: the blacklist with the decided ranges was rejected, the previous one stays: {e:#}");
        }
    }

    fn publish_held(&self) {
        self.crowdsec.set_held(self.cs_held.ips(), self.cs_held.ranges(), self.cs_held.exempted);
    }

    /// Detach from one interface (the controller keeps protecting the others) or from all (the
    /// controller stops). Returns the message and how many interfaces stay attached.
    fn detach(&mut self, iface: Option<&str>) -> Result<(String, usize)> {
        if let Some(i) = iface {
            if !self.state.interfaces.iter().any(|s| s.name == i) {
                bail!("the controller is not attached to {i}");
            }
        }
        let removed = detach(&self.pin_dir, iface)?;
        self.state.interfaces.retain(|i| !removed.contains(&i.name));
        self.save_state();
        let left = self.state.interfaces.len();
        let msg = if left == 0 {
            format!("detached from {}; the filter is unloaded and the controller stops", removed.join(", "))
        } else {
            format!("detached from {}; the controller keeps protecting the other interfaces", removed.join(", "))
        };
        info!("{msg}");
        Ok((msg, left))
    }

    fn publish_sigs(&self) {
        let sigs = policy::merged_signatures(&self.sources.signatures, &self.runtime).unwrap_or_default();
        if let Ok(mut s) = self.shared.sigs.write() {
            *s = sigs;
        }
    }

    /// Share what `/metrics` reports.
    fn publish(&self) {
        if let Ok(mut s) = self.shared.snapshot.write() {
            s.state = self.state.clone();
            s.active_bans = self.active_bans;
            s.signatures = self.shared.sigs.read().map(|v| v.len()).unwrap_or(0);
            s.events_write_errors = self.shared.sink.lock().map(|k| k.write_errors).unwrap_or(0);
            s.tollfraud_rules = crate::portpolicy::tollfraud_rule_names(&self.cfg);
            s.audit_write_errors = self.audit.write_errors;
            s.notify = self.shared.notifier.read().map(|n| n.stats()).unwrap_or_default();
        }
    }

    /// The before/after summary of an audit record: what an operator would compare.
    fn audit_state(&self) -> serde_json::Value {
        let dry_run = self.filter.config().map(|c| c.flags & xdp_common::CFG_DRY_RUN != 0).ok();
        let al = policy::merged_allowlist(&self.sources.allowlist, &self.runtime).len();
        json!({
            "dry_run": dry_run,
            "blacklist": self.sources.blacklist.len(),
            "allowlist": al,
            "signatures": self.shared.sigs.read().map(|v| v.len()).unwrap_or(0),
            "active_bans": self.active_bans,
            "attached": self.state.interfaces.iter().map(|i| i.name.clone()).collect::<Vec<_>>(),
        })
    }

    /// One audit record for the automatic bans since the last one (none when there were none).
    fn audit_bans(&mut self) {
        let tally = std::mem::take(&mut *self.shared.bans.lock().unwrap_or_else(|p| p.into_inner()));
        if tally.count > 0 {
            self.audit.auto(&tally.record());
        }
    }

    /// Periodic checks that raise notifications. Cheap: a counter read, a few stats.
    fn watch(&mut self) {
        let n = self.shared.notifier.read().map(|n| n.clone()).unwrap_or_default();
        if !n.is_enabled() {
            return;
        }
        let t = &n.triggers;
        let mut alerts = vec![];
        if !t.drop_rate.is_empty() {
            if let Ok(st) = self.filter.stats() {
                let packets: Vec<Vec<u64>> =
                    st.slots.iter().map(|row| row.iter().map(|c| c.packets).collect()).collect();
                let th = t
                    .drop_rate
                    .iter()
                    .filter_map(|(r, v)| xdp_common::REASON_NAMES.iter().position(|n| n == r).map(|i| (i, *v)))
                    .collect();
                for (slot, reason, rate) in self.watch.rates.update(Instant::now(), packets, t.drop_window, &th) {
                    let iface = self.state.iface_of_slot(slot as u32).map(|i| i.name.clone()).unwrap_or("other".into());
                    let name = xdp_common::REASON_NAMES[reason];
                    alerts.push(crate::notify::Alert::new(
                        crate::notify::Kind::DropRate,
                        format!(
                            "flood detected on {iface}: {rate:.0} pkt/s dropped as {name} (threshold {} pkt/s over {})",
                            t.drop_rate[name],
                            humantime::format_duration(t.drop_window)
                        ),
                    ));
                }
            }
        }
        if t.lists {
            let now = state::unix_now();
            for kind in self.list_sources() {
                let refresh = match kind {
                    ListKind::Blacklist => self.cfg.blacklist.refresh,
                    ListKind::Allowlist => self.cfg.allowlist.refresh,
                };
                let last = self.state.lists.get(kind.name()).map(|l| l.last_load_unix).unwrap_or(0.0);
                let stale = now - last > 2.0 * refresh.as_secs_f64();
                if self.watch.edges.rise(&format!("stale-{}", kind.name()), stale) {
                    alerts.push(crate::notify::Alert::new(
                        crate::notify::Kind::ListStale,
                        format!(
                            "{} is stale: last loaded {:.0}s ago, refresh every {}",
                            kind.name(),
                            now - last,
                            humantime::format_duration(refresh)
                        ),
                    ));
                }
            }
        }
        if let Some(after) = t.dry_run_after {
            let on = self.filter.config().map(|c| c.flags & xdp_common::CFG_DRY_RUN != 0).unwrap_or(false);
            let since = match on {
                true => *self.watch.dry_run_since.get_or_insert_with(Instant::now),
                false => {
                    self.watch.dry_run_since = None;
                    Instant::now()
                }
            };
            if self.watch.edges.rise("dry-run", on && since.elapsed() >= after) {
                alerts.push(crate::notify::Alert::new(
                    crate::notify::Kind::DryRun,
                    format!(
                        "dry-run has been on for more than {}: nothing is dropped",
                        humantime::format_duration(after)
                    ),
                ));
            }
        }
        if t.detached {
            for problem in self.attachment_problems() {
                if self.watch.edges.rise(&problem, true) {
                    alerts.push(crate::notify::Alert::new(crate::notify::Kind::Detached, problem));
                }
            }
        }
        for a in alerts {
            warn!("alert: {}", a.text);
            n.alert(a);
        }
    }

    /// Interfaces where the filter is no longer attached (its link pin gone, or no live link
    /// runs this program) — someone detached or replaced it behind the controller's back.
    fn attachment_problems(&self) -> Vec<String> {
        let mut out = vec![];
        let links = link_dir(&self.pin_dir);
        for i in &self.state.interfaces {
            if !links.join(&i.name).exists() {
                out.push(format!("the filter is no longer attached to {} (its link pin is gone)", i.name));
            }
        }
        if let Some(pid) = self.state.program_id {
            let ours = aya::programs::loaded_links().filter_map(|l| l.ok()).filter(|l| l.program_id() == pid).count();
            if ours < self.state.interfaces.len() {
                out.push(format!(
                    "only {ours} of {} attachments run the sipshield program (id {pid}): detached or replaced",
                    self.state.interfaces.len()
                ));
            }
        }
        out
    }

    /// `status --json`, from the controller's own knowledge.
    fn status(&mut self) -> Result<serde_json::Value> {
        let kcfg = self.filter.config()?;
        let links: Vec<String> = std::fs::read_dir(link_dir(&self.pin_dir))
            .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let bans = crate::bans::list(&self.filter)?.len();
        let al = policy::merged_allowlist(&self.sources.allowlist, &self.runtime);
        let bl = &self.sources.blacklist;
        let sigs = self.shared.sigs.read().map(|v| v.len()).unwrap_or(0);
        Ok(json!({
            "controller": "running",
            "pid": self.state.pid,
            "uptime_secs": state::unix_now() - self.state.started_unix,
            "config": self.config_path.display().to_string(),
            "program_id": self.state.program_id,
            "attached": links,
            "interfaces": self.state.interfaces,
            "dry_run": kcfg.flags & xdp_common::CFG_DRY_RUN != 0,
            "dry_run_source": edits::dry_run_source(&self.runtime),
            "sip_ports": self.filter.sip_ports()?,
            "lists": {
                "blacklist": ListCounts::of(bl).status_json(),
                "allowlist": ListCounts::of(&al).status_json(),
                "scanner_signatures": sigs,
                "active_bans": bans,
                "loads": self.state.lists,
            },
            "runtime": self.runtime,
            "geoip": kcfg.flags & xdp_common::CFG_GEO_ENABLED != 0,
            "crowdsec": self.crowdsec.status_json(),
        }))
    }
}

fn summary(r: &ApplyReport) -> String {
    format!(
        "blacklist {} entries, allowlist {} entries, {} signatures{}, live in {:.3}s",
        r.blacklist.total(),
        r.allowlist.total(),
        r.signatures,
        r.geo.as_ref().map(|g| format!(", GeoIP {} networks", g.v4_networks + g.v6_networks)).unwrap_or_default(),
        r.load_secs
    )
}

/// Everything `run` needs, checked and prepared before the kernel is touched.
struct Prepared {
    cfg: Config,
    ifaces: Vec<String>,
    mode: Mode,
    sources: Sources,
    runtime: Runtime,
    policy: Policy,
    sink: EventSink,
    metrics: Option<std::net::TcpListener>,
    control: std::os::unix::net::UnixListener,
    lock: state::Lock,
    /// Notification channels, started before the kernel is touched (a bad `[notify]` stops
    /// the start with nothing changed).
    notifier: crate::notify::Notifier,
    crowdsec: Option<(crate::crowdsec::CrowdsecCfg, crate::crowdsec::config::Credentials)>,
}

/// The `[crowdsec]` settings with their secrets read (a missing key file rejects the config),
/// warning about files that others can read.
fn crowdsec_settings(
    cfg: &Config,
    config_path: &Path,
) -> Result<Option<(crate::crowdsec::CrowdsecCfg, crate::crowdsec::config::Credentials)>> {
    let Some(c) = &cfg.crowdsec else { return Ok(None) };
    let creds = c.credentials().with_context(|| config_path.display().to_string())?;
    for p in crate::crowdsec::config::readable_by_others(config_path, c) {
        warn!("{}: holds a CrowdSec secret and is readable by other users: chmod o-r it", p.display());
    }
    Ok(Some((c.clone(), creds)))
}

/// The sources with the CrowdSec ranges merged into the blacklist (borrowed when there are none).
fn with_ranges(sources: &Sources, ranges: IpList) -> std::borrow::Cow<'_, Sources> {
    if ranges.is_empty() {
        return std::borrow::Cow::Borrowed(sources);
    }
    let mut s = sources.clone();
    s.blacklist.merge(ranges);
    std::borrow::Cow::Owned(s)
}

fn prepare(opts: &RunOpts) -> Result<Prepared> {
    let cfg = Config::load_for_daemon(&opts.config)?;
    let ifaces = if opts.ifaces.is_empty() { cfg.interfaces.clone() } else { opts.ifaces.clone() };
    crate::config::check_iface_names(&ifaces)?;
    let lock = state::lock()?;
    let runtime = Runtime::load()?;
    // Resources before the kernel: a metrics port that cannot be bound, an event file that
    // cannot be opened or a bad list stops the start with nothing changed.
    let metrics = match cfg.metrics.enabled {
        true => Some(
            std::net::TcpListener::bind(cfg.metrics.listen)
                .with_context(|| format!("metrics.listen: cannot listen on {}", cfg.metrics.listen))?,
        ),
        false => None,
    };
    let control = bind_control()?;
    let crowdsec = crowdsec_settings(&cfg, &opts.config)?;
    let sink = EventSink::open(&cfg)?;
    let sources = Sources::read(&cfg)?;
    let policy = Policy::new(&cfg, &sources, &runtime)?;
    let notifier = crate::notify::Notifier::start(&cfg.notify)?;
    Ok(Prepared {
        mode: opts.mode.unwrap_or(cfg.mode),
        cfg,
        ifaces,
        sources,
        runtime,
        policy,
        sink,
        metrics,
        control,
        lock,
        crowdsec,
        notifier,
    })
}

/// Bind the control socket (root only). A stale socket left by a dead controller is replaced:
/// we hold the controller lock, so nobody else is serving it.
fn bind_control() -> Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let path = state::control_socket();
    let _ = std::fs::remove_file(&path);
    let l =
        std::os::unix::net::UnixListener::bind(&path).with_context(|| format!("{}: cannot bind", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("{}: chmod", path.display()))?;
    Ok(l)
}

/// The kernel part of a start: load or adopt, commit, attach. On failure, undo what this start
/// created (pins of a fresh load, links it made).
fn start_filter(p: &Prepared, pin_dir: &Path) -> Result<(Filter, DaemonState, ApplyReport)> {
    let fresh = !pin_dir.join("maps").join(xdp_common::maps::CONFIG).exists();
    let mut created = vec![];
    let res = (|| -> Result<(Filter, DaemonState, ApplyReport)> {
        let mut filter = Filter::load_pinned(pin_dir)?;
        if !fresh {
            info!("adopting the pinned filter state in {} (counters and bans are kept)", pin_dir.display());
        }
        let report = p.policy.commit(&mut filter)?;
        let mut st = DaemonState { pid: std::process::id(), started_unix: state::unix_now(), ..Default::default() };
        for iface in &p.ifaces {
            let (m, new) = attach(&mut filter, pin_dir, iface, p.mode)?;
            if new {
                created.push(iface.clone());
            }
            let ifindex = crate::sys::ifindex(iface).unwrap_or(0);
            let slot = filter.assign_iface_slot(ifindex)?;
            info!("attached to {iface} (ifindex {ifindex}, {m} mode)");
            st.interfaces.push(IfaceState { name: iface.clone(), ifindex, mode: m, slot });
        }
        st.program_id = filter.program().ok().and_then(|p| p.info().ok()).map(|i| i.id());
        Ok((filter, st, report))
    })();
    if res.is_err() {
        for iface in &created {
            let _ = detach(pin_dir, Some(iface));
        }
        if fresh {
            unpin_all(pin_dir);
        }
    }
    res
}

pub fn run(opts: RunOpts) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(serve(opts))
}

/// The signals the controller handles.
fn controller_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut s = SigSet::empty();
    for sig in [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGTERM, Signal::SIGINT] {
        s.add(sig);
    }
    s
}

/// Block the controller's signals (first thing in `main`): they stay pending until
/// [`unblock_signals`], after the handlers are installed.
pub fn block_signals() -> nix::Result<()> {
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_BLOCK, Some(&controller_signals()), None)
}

pub fn unblock_signals() -> nix::Result<()> {
    nix::sys::signal::pthread_sigmask(nix::sys::signal::SigmaskHow::SIG_UNBLOCK, Some(&controller_signals()), None)
}

async fn serve(opts: RunOpts) -> Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    // Handlers first, then let the signals blocked since `main` in: a SIGHUP or SIGTERM during
    // the start is handled (after it), never fatal.
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    unblock_signals()?;
    let config_path = opts.config.canonicalize().unwrap_or(opts.config.clone());
    let pin_dir = state::pin_dir();
    let (p, filter, mut st, report) = {
        let pin_dir = pin_dir.clone();
        tokio::task::spawn_blocking(move || -> Result<_> {
            // Signals go to the main thread's handlers: a signal pending on this thread would
            // make the kernel abort the program's verification (EAGAIN).
            block_signals()?;
            let p = prepare(&opts)?;
            let (filter, st, report) = start_filter(&p, &pin_dir)?;
            Ok((p, filter, st, report))
        })
        .await
        .map_err(|e| anyhow!("start: {e}"))??
    };
    st.config = config_path.clone();
    let Prepared { cfg, sources, runtime, sink, metrics, control, lock: _lock, crowdsec, notifier, .. } = p;
    let hub = Hub::new();
    hub.configure(crowdsec, &cfg.ratelimit);
    let mut filter = filter;
    let events = filter.take_map(xdp_common::maps::EVENTS)?;
    let ring = RingBuf::try_from(events)?;
    let shared = Shared {
        sigs: Arc::new(RwLock::new(vec![])),
        snapshot: Arc::new(RwLock::new(crate::metrics::Snapshot::default())),
        sink: Arc::new(Mutex::new(sink)),
        notifier: Arc::new(RwLock::new(notifier)),
        bans: Arc::new(Mutex::new(crate::audit::BanTally::default())),
    };
    let stop_events = Arc::new(AtomicBool::new(false));
    let drain = {
        let hook = shared.clone();
        crate::events::spawn_drain(
            ring,
            shared.sigs.clone(),
            shared.sink.clone(),
            Box::new(move |ev| hook.on_event(ev)),
            stop_events.clone(),
            hub.clone(),
        )?
    };
    let ban_summary = cfg.audit.ban_summary;
    let audit = crate::audit::Log::new(&cfg.audit);
    let metrics_filter = Filter::open_pinned(&pin_dir)?;
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let (stop_tx, mut stop_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let refresh = cfg.blacklist.refresh.min(cfg.allowlist.refresh);
    let mut worker = Worker {
        filter,
        geo_mtime: cfg.geoip.as_ref().and_then(|g| mtime(&g.database)),
        cfg,
        config_path,
        pin_dir: pin_dir.clone(),
        sources,
        runtime,
        state: st,
        shared: shared.clone(),
        epoch: 0,
        fetching: [false; 2],
        jobs: job_tx.clone(),
        stop: stop_tx,
        active_bans: 0,
        crowdsec: hub.clone(),
        cs_held: Held::default(),
        audit,
        watch: Watch::default(),
    };
    worker.record(&report);
    worker.publish_sigs();
    worker.gc();
    worker.publish();
    let worker = std::thread::Builder::new().name("worker".into()).spawn(move || {
        let _ = block_signals();
        worker.run(job_rx)
    })?;
    // The CrowdSec threads idle while no [crowdsec] section is configured (a reload may add it).
    // They are not joined at exit: a request in flight may take up to `timeout`.
    let cs_jobs = job_tx.clone();
    crate::crowdsec::lapi::spawn_puller(hub.clone(), move |p| cs_jobs.send(Job::Crowdsec(Box::new(p))).is_ok())?;
    crate::crowdsec::lapi::spawn_reporter(hub.clone())?;
    shared.snapshot.write().unwrap_or_else(|p| p.into_inner()).crowdsec = Some(hub.clone());
    if let Some(l) = metrics {
        l.set_nonblocking(true)?;
        let l = tokio::net::TcpListener::from_std(l)?;
        tokio::spawn(crate::metrics::serve(l, Arc::new(Mutex::new(metrics_filter)), shared.snapshot.clone()));
    }
    control.set_nonblocking(true)?;
    let control = tokio::net::UnixListener::from_std(control)?;
    info!("sipshield running: {}", summary(&report));
    notify(&[sd_notify::NotifyState::Ready]);

    let mut refresh_tick = tokio::time::interval_at(tokio::time::Instant::now() + refresh, refresh);
    let mut gc_tick = tokio::time::interval(Duration::from_secs(10));
    let mut geo_tick = tokio::time::interval(Duration::from_secs(2));
    let mut watch_tick = tokio::time::interval(WATCH_EVERY);
    let mut ban_tick = tokio::time::interval_at(tokio::time::Instant::now() + ban_summary, ban_summary);
    let started = Instant::now();
    let mut control_tasks = tokio::task::JoinSet::new();
    let send = |j: Job| {
        if job_tx.send(j).is_err() {
            error!("the worker thread is gone");
        }
    };
    loop {
        tokio::select! {
            _ = hup.recv() => send(Job::Reload),
            _ = usr1.recv() => send(Job::Refresh),
            _ = refresh_tick.tick() => send(Job::Refresh),
            _ = geo_tick.tick() => send(Job::GeoCheck),
            _ = gc_tick.tick() => send(Job::Gc),
            _ = watch_tick.tick() => send(Job::Watch),
            _ = ban_tick.tick() => send(Job::AuditBans),
            conn = control.accept() => match conn {
                Ok((stream, _)) => { control_tasks.spawn(serve_control(stream, job_tx.clone())); }
                Err(e) => warn!("control socket: accept: {e}"),
            },
            Some(_) = control_tasks.join_next(), if !control_tasks.is_empty() => {}
            _ = stop_rx.recv() => break,
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    let _ = job_tx.send(Job::Stop);
    // Answer the requests in flight (the `detach` that stopped us among them).
    let _ = tokio::time::timeout(Duration::from_secs(5), async { while control_tasks.join_next().await.is_some() {} })
        .await;
    let _ = std::fs::remove_file(state::control_socket());
    hub.stop();
    stop_events.store(true, Ordering::Relaxed);
    let _ = drain.join();
    // The worker finishes the job at hand (a reload is never cut in half), then stops.
    let _ = tokio::task::spawn_blocking(move || worker.join()).await;
    info!(
        "controller stopping after {:.0}s; the filter stays attached (use `sipshield detach` to remove it)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// sd_notify to systemd (Type=notify), when started by it.
fn notify(state: &[sd_notify::NotifyState<'_>]) {
    let _ = sd_notify::notify(false, state);
}

/// One control connection: read the request, check the caller, queue it, write the answer.
async fn serve_control(stream: tokio::net::UnixStream, jobs: mpsc::Sender<Job>) {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let cred = stream.peer_cred().ok();
    let (rd, mut wr) = stream.into_split();
    let mut line = String::new();
    let mut rd = BufReader::new(rd).take(crate::control::MAX_REQUEST as u64);
    let read = tokio::time::timeout(Duration::from_secs(10), rd.read_line(&mut line)).await;
    let reply = match (read, cred) {
        (Ok(Ok(_)), Some(c)) if c.uid() == 0 || c.uid() == nix::unistd::geteuid().as_raw() => {
            match crate::control::parse_request(&line) {
                Ok((req, sudo_user)) => {
                    let (tx, rx) = oneshot::channel();
                    let caller = Caller { uid: c.uid(), pid: c.pid(), sudo_user };
                    if jobs.send(Job::Control { req, caller, reply: tx }).is_err() {
                        Reply::err(&anyhow!("the controller is stopping"))
                    } else {
                        rx.await.unwrap_or_else(|_| Reply::err(&anyhow!("the controller stopped before answering")))
                    }
                }
                Err(e) => Reply::err(&anyhow!("bad request: {e}")),
            }
        }
        (Ok(Ok(_)), Some(c)) => Reply::err(&anyhow!("permission denied: uid {} may not control sipshield", c.uid())),
        (Ok(Ok(_)), None) => Reply::err(&anyhow!("cannot identify the caller")),
        (Ok(Err(e)), _) => Reply::err(&anyhow!("reading the request: {e}")),
        (Err(_), _) => Reply::err(&anyhow!("no request within 10s")),
    };
    let mut out = serde_json::to_string(&reply).unwrap_or_default();
    out.push('\n');
    let _ = wr.write_all(out.as_bytes()).await;
}
