//! `sipshield`: XDP firewall for SIP servers — controller and CLI.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use sipshield::{cli, config::Mode, daemon, replay, state};

#[derive(Parser)]
#[command(
    name = "sipshield",
    version,
    about = "XDP firewall for SIP servers: blacklists, GeoIP, scanner signatures and REGISTER flood limits, enforced before the kernel stack"
)]
struct Args {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Load the filter, attach it to the configured interfaces and keep it fed (lists refresh,
    /// SIGHUP reload, events). The filter stays attached when this process stops.
    Run {
        #[arg(long, short)]
        config: PathBuf,
        /// Interface(s) to attach to, overriding `interfaces` in the config.
        #[arg(long = "iface", short)]
        ifaces: Vec<String>,
        /// native, skb or auto (native with fallback to skb).
        #[arg(long)]
        mode: Option<Mode>,
    },
    /// Detach from one interface (or all); with nothing left attached, unload the filter.
    Detach {
        #[arg(long)]
        iface: Option<String>,
    },
    /// Interfaces, mode, program, list sizes and load times, dry-run, uptime.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Packet and byte counters per reason, interface and country.
    Stats {
        #[arg(long)]
        json: bool,
        /// Print again every SECS seconds with rates.
        #[arg(long, value_name = "SECS")]
        watch: Option<u64>,
    },
    /// Run a pcap through the real XDP program with the maps filled from CONFIG.
    Replay {
        #[arg(long, short)]
        config: PathBuf,
        capture: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Timed bans: add IP [--ttl 15m], del IP, list.
    Ban {
        #[arg(value_parser = ["add", "del", "list"])]
        action: String,
        ip: Option<String>,
        #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
        ttl: Duration,
        #[arg(long)]
        json: bool,
    },
    /// Allowlist: add ADDR|CIDR, del ADDR|CIDR, list.
    Allow {
        #[arg(value_parser = ["add", "del", "list"])]
        action: String,
        entry: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Blacklist: reload (fetch files/URLs now), stats.
    Blacklist {
        #[arg(value_parser = ["reload", "stats"])]
        action: String,
        #[arg(long)]
        json: bool,
    },
    /// Scanner signatures: list, add [--header H] TEXT, del [--header H] TEXT.
    Scanners {
        #[arg(value_parser = ["list", "add", "del"])]
        action: String,
        text: Option<String>,
        #[arg(long, default_value = "user-agent")]
        header: String,
        #[arg(long)]
        json: bool,
    },
    /// GeoIP: lookup IP (country and verdict of the running filter).
    Geo {
        #[arg(value_parser = ["lookup"])]
        action: String,
        ip: String,
    },
    /// Count what would be dropped but pass everything (on), or enforce (off).
    DryRun {
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Re-read the running controller's config and apply it without a gap.
    Reload,
    /// Drop events of the running controller.
    Events {
        #[arg(long, short)]
        follow: bool,
        #[arg(long)]
        json: bool,
        /// How many past events to print first.
        #[arg(long, short = 'n', default_value = "20")]
        last: usize,
    },
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .format_timestamp_millis()
        .init();
    let args = Args::parse();
    if let Err(e) = dispatch(args.cmd) {
        eprintln!("sipshield: error: {e:#}");
        std::process::exit(1);
    }
}

fn dispatch(cmd: Cmd) -> Result<()> {
    let needs_root = !matches!(cmd, Cmd::Events { .. });
    if needs_root && !sipshield::sys::is_root() {
        log::warn!("not running as root: loading and editing the filter needs CAP_BPF and CAP_NET_ADMIN");
    }
    match cmd {
        Cmd::Run { config, ifaces, mode } => daemon::run(daemon::RunOpts { config, ifaces, mode }),
        Cmd::Detach { iface } => {
            let removed = daemon::detach(&state::pin_dir(), iface.as_deref())?;
            if removed.is_empty() {
                println!("no interface was attached; pinned state removed");
            } else {
                println!("detached from {}", removed.join(", "));
            }
            Ok(())
        }
        Cmd::Status { json } => cli::status(json),
        Cmd::Stats { json, watch } => cli::stats(json, watch),
        Cmd::Replay { config, capture, json } => replay::run(&config, &capture, json),
        Cmd::Ban { action, ip, ttl, json } => cli::ban(&action, ip.as_deref(), ttl, json),
        Cmd::Allow { action, entry, json } => cli::allow(&action, entry.as_deref(), json),
        Cmd::Blacklist { action, json } => cli::blacklist(&action, json),
        Cmd::Scanners { action, text, header, json } => cli::scanners(&action, Some(&header), text.as_deref(), json),
        Cmd::Geo { ip, .. } => cli::geo_lookup(&ip),
        Cmd::DryRun { state } => cli::dry_run(state == "on"),
        Cmd::Reload => cli::reload(),
        Cmd::Events { follow, json, last } => cli::events(follow, json, last),
    }
}
