//! The CLI verbs, one module each. Verbs that change state go to the running controller over
//! its control socket (one writer); without a controller they edit the pinned maps directly,
//! under the writer lock, with the same code.
mod allow;
mod assets;
mod audit;
mod ban;
mod blacklist;
mod check;
mod group;
mod inspect;
mod scanners;

use std::path::PathBuf;

use anyhow::{anyhow, bail, Context, Result};
use clap::Subcommand;
use sipshield::config::{Config, Mode};
use sipshield::control::{self, DryRun, Request};
use sipshield::edits::Base;
use sipshield::filter::Filter;
use sipshield::state::{self, DaemonState, Runtime};

#[derive(Subcommand)]
pub enum Cmd {
    /// Load the filter, attach it to the configured interfaces and keep it fed (lists refresh,
    /// SIGHUP reload, events). The filter stays attached when this process stops.
    Run(RunArgs),
    /// Detach from one interface (or all); with nothing left attached, unload the filter. A
    /// running controller does it (and stops when nothing is left).
    Detach {
        #[arg(long)]
        iface: Option<String>,
    },
    /// Controller, interfaces, mode, program, list sizes and load times, dry-run, uptime.
    Status,
    /// Packet and byte counters per reason, interface and country.
    Stats {
        /// Print again every SECS seconds with rates.
        #[arg(long, value_name = "SECS")]
        watch: Option<u64>,
    },
    /// Run a capture (pcap or pcapng: Ethernet, Linux cooked, BSD loopback or raw IP) through
    /// the real XDP program with the maps filled from CONFIG; the capture's timestamps drive the
    /// program clock.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        capture: PathBuf,
        /// Print only the summary: packets per reason and country, top sources and signatures.
        #[arg(long)]
        summary: bool,
        /// Write the frames that would be dropped to FILE (pcap, Ethernet, ns timestamps).
        #[arg(long, value_name = "FILE")]
        write_dropped: Option<PathBuf>,
        /// An address of the protected host (repeatable): frames from it are the server's
        /// answers and go through the egress program (failed authentications, enumeration).
        #[arg(long = "local", value_name = "ADDR")]
        local: Vec<std::net::IpAddr>,
    },
    /// Timed bans.
    #[command(subcommand)]
    Ban(ban::BanCmd),
    /// Allowlist edits (kept across reloads and restarts).
    #[command(subcommand)]
    Allow(allow::AllowCmd),
    /// Source groups of the `[[port]]` rules: add or remove members (kept across reloads and
    /// restarts), list them.
    #[command(subcommand)]
    Group(group::GroupCmd),
    /// Blacklist: fetch the files/URLs now, or show its size.
    #[command(subcommand)]
    Blacklist(blacklist::BlacklistCmd),
    /// Scanner signatures.
    #[command(subcommand)]
    Scanners(scanners::ScannersCmd),
    /// GeoIP.
    #[command(subcommand)]
    Geo(GeoCmd),
    /// Count what would be dropped but pass everything (on), enforce (off), or follow the
    /// config's `dry_run` (config). on/off override the config until `dry-run config`.
    DryRun {
        #[arg(value_enum)]
        mode: DryRun,
    },
    /// Re-read the running controller's config and apply it as one change (or not at all).
    Reload,
    /// Check a configuration and every source it names (lists, URLs, GeoIP, signatures)
    /// without touching the kernel; lists every error and exits non-zero if there is one.
    Check {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// The audit trail: every change made to the running filter, by whom.
    Audit(audit::AuditArgs),
    /// Write the man pages and shell completions into DIR (packaging).
    #[command(hide = true)]
    Assets { dir: PathBuf },
    /// Drop events of the running controller.
    Events {
        #[arg(long, short)]
        follow: bool,
        /// How many past events to print first (default 20; with --pcap, all of the log).
        #[arg(long, short = 'n')]
        last: Option<usize>,
        /// Also write the dropped frames' first bytes that the events carry to FILE, a pcap
        /// (Ethernet, snap length 256) for Wireshark; with --follow, as they come.
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
pub struct RunArgs {
    #[arg(long, short)]
    config: PathBuf,
    /// Interface(s) to attach to, overriding `interfaces` in the config.
    #[arg(long = "iface", short)]
    ifaces: Vec<String>,
    #[arg(long, value_enum)]
    mode: Option<Mode>,
}

#[derive(Subcommand)]
pub enum GeoCmd {
    /// Country of IP and the running filter's verdict for it.
    Lookup { ip: std::net::IpAddr },
}

pub fn dispatch(cmd: Cmd, json: bool) -> Result<()> {
    let unprivileged =
        matches!(cmd, Cmd::Events { .. } | Cmd::Replay { .. } | Cmd::Check { .. } | Cmd::Audit(_) | Cmd::Assets { .. });
    if !unprivileged && !sipshield::sys::is_root() {
        log::warn!("not running as root: loading and editing the filter needs CAP_BPF and CAP_NET_ADMIN");
    }
    match cmd {
        Cmd::Run(a) => {
            sipshield::daemon::run(sipshield::daemon::RunOpts { config: a.config, ifaces: a.ifaces, mode: a.mode })
        }
        Cmd::Detach { iface } => detach(iface),
        Cmd::Status => inspect::status(json),
        Cmd::Stats { watch } => inspect::stats(json, watch),
        Cmd::Replay { config, capture, summary, write_dropped, local } => sipshield::replay::run(
            &config,
            &capture,
            &sipshield::replay::Options { json, summary, write_dropped, local },
        ),
        Cmd::Ban(c) => ban::run(c, json),
        Cmd::Allow(c) => allow::run(c, json),
        Cmd::Group(c) => group::run(c, json),
        Cmd::Blacklist(c) => blacklist::run(c, json),
        Cmd::Scanners(c) => scanners::run(c, json),
        Cmd::Geo(GeoCmd::Lookup { ip }) => inspect::geo_lookup(ip),
        Cmd::DryRun { mode } => edit(Request::DryRun { mode }, json),
        Cmd::Reload => controller_only(Request::Reload, json),
        Cmd::Events { follow, last, pcap } => inspect::events(follow, json, last, pcap.as_deref()),
        Cmd::Check { config } => check::run(&config, json),
        Cmd::Audit(a) => audit::run(a, json),
        Cmd::Assets { dir } => assets::write(&dir),
    }
}

/// The audit log path of the last controller's config (the default when there is none).
pub fn audit_cfg_path() -> PathBuf {
    audit_cfg().path
}

fn audit_cfg() -> sipshield::audit::AuditCfg {
    DaemonState::load().and_then(|d| Config::load(&d.config).ok()).map(|c| c.audit).unwrap_or_default()
}

/// Print a controller's (or the direct edit's) result.
fn print_result(message: &str, data: &serde_json::Value, json: bool) {
    if json {
        println!("{}", serde_json::json!({"ok": true, "message": message, "data": data}));
    } else if !message.is_empty() {
        println!("{message}");
    }
}

/// A state change: through the controller when one runs, else directly on the pins.
pub fn edit(req: Request, json: bool) -> Result<()> {
    if let Some(reply) = control::call(&state::control_socket(), &req)? {
        let r = reply.into_result()?;
        print_result(&r.message, &r.data, json);
        return Ok(());
    }
    let result = direct(req.clone());
    // No controller: this process made the change, so it writes the audit record (after the
    // change: a failed write reports an error but never undoes protection).
    let rec = sipshield::audit::Record::of_request(sipshield::audit::Actor::this_process(), &req).outcome(&result);
    let audited = sipshield::audit::Log::new(&audit_cfg()).write(&rec);
    let message = result?;
    audited.map_err(|e| anyhow!("{message}; but the change could not be audited: {e:#}"))?;
    print_result(&message, &serde_json::Value::Null, json);
    Ok(())
}

/// A verb only a running controller can carry out (reload, refresh).
fn controller_only(req: Request, json: bool) -> Result<()> {
    match control::call(&state::control_socket(), &req)? {
        Some(reply) => {
            let r = reply.into_result()?;
            print_result(&r.message, &r.data, json);
            Ok(())
        }
        None => bail!("no sipshield controller is running; `sipshield run` loads and refreshes the configuration"),
    }
}

/// Apply an edit without a controller: on the pinned maps, under the writer lock, with the
/// configuration the last controller ran (its entries and signatures cannot be deleted here
/// either).
fn direct(req: Request) -> Result<String> {
    let mut f = Filter::open_pinned(&state::pin_dir())?;
    let _lock = f.write_lock()?;
    match req {
        Request::BanAdd { ip, ttl_secs } => {
            let ttl = std::time::Duration::from_secs(ttl_secs);
            sipshield::bans::add(&mut f, ip, ttl)?;
            return Ok(format!("banned {ip} for {}", humantime::format_duration(ttl)));
        }
        Request::BanDel { ip } => {
            return match sipshield::bans::del(&mut f, ip)? {
                true => Ok(format!("unbanned {ip}")),
                false => Err(anyhow!("{ip} is not banned")),
            };
        }
        _ => {}
    }
    let ds = DaemonState::load().ok_or_else(|| {
        anyhow!(
            "no controller is running and no record of its configuration ({}): start `sipshield run`",
            DaemonState::path().display()
        )
    })?;
    let cfg = Config::load(&ds.config).with_context(|| "the configuration of the last controller".to_string())?;
    let allowlist = sipshield::policy::read_list(&cfg, sipshield::addrlist::ListKind::Allowlist)?;
    let signatures = sipshield::sig::from_config(&cfg.scanners)?;
    let groups = sipshield::policy::read_groups(&cfg)?;
    let base =
        Base { cfg: &cfg, config_path: &ds.config, allowlist: &allowlist, signatures: &signatures, groups: &groups };
    let mut rt = Runtime::load()?;
    use sipshield::edits;
    match req {
        Request::AllowAdd { entry } => edits::allow_add(&mut f, &mut rt, &base, &entry),
        Request::AllowDel { entry } => edits::allow_del(&mut f, &mut rt, &base, &entry),
        Request::ScannerAdd { header, text } => edits::scanner_add(&mut f, &mut rt, &base, &header, &text),
        Request::ScannerDel { header, text } => edits::scanner_del(&mut f, &mut rt, &base, &header, &text),
        Request::DryRun { mode } => edits::dry_run(&mut f, &mut rt, &base, mode),
        Request::GroupAdd { name, entry } => edits::group_add(&mut f, &mut rt, &base, &name, &entry),
        Request::GroupDel { name, entry } => edits::group_del(&mut f, &mut rt, &base, &name, &entry),
        other => bail!("{other:?} needs a running controller"),
    }
}

fn detach(iface: Option<String>) -> Result<()> {
    if let Some(reply) = control::call(&state::control_socket(), &Request::Detach { iface: iface.clone() })? {
        println!("{}", reply.into_result()?.message);
        return Ok(());
    }
    let result = sipshield::daemon::detach(&state::pin_dir(), iface.as_deref());
    let req = Request::Detach { iface };
    let rec = sipshield::audit::Record::of_request(sipshield::audit::Actor::this_process(), &req)
        .outcome(&result.as_ref().map(|r| format!("detached from {}", r.join(", "))).map_err(|e| anyhow!("{e:#}")));
    let audited = sipshield::audit::Log::new(&audit_cfg()).write(&rec);
    let removed = result?;
    audited.map_err(|e| anyhow!("detached, but the change could not be audited: {e:#}"))?;
    if removed.is_empty() {
        println!("no interface was attached; pinned state removed");
    } else {
        println!("detached from {}", removed.join(", "));
    }
    Ok(())
}
