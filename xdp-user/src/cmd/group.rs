//! `sipshield group add|del|list NAME [ADDR|CIDR]`: members of the source groups that
//! `[[port]]` rules name.
use anyhow::{anyhow, Context, Result};
use clap::Subcommand;
use sipshield::config::Config;
use sipshield::control::Request;
use sipshield::state::{DaemonState, Runtime};

#[derive(Subcommand)]
pub enum GroupCmd {
    /// Add an address or CIDR to a group of the configuration (kept across reloads and restarts).
    Add {
        name: String,
        #[arg(value_parser = parse_net)]
        entry: ipnet::IpNet,
    },
    /// Remove a member added with `group add` (members of the configuration are removed there).
    Del {
        name: String,
        #[arg(value_parser = parse_net)]
        entry: ipnet::IpNet,
    },
    /// The members of a group (configuration and CLI), or every group's size.
    List { name: Option<String> },
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    sipshield::lists::parse_entry(s.trim()).ok_or_else(|| format!("{s:?} is not an IPv4/IPv6 address or CIDR"))
}

pub fn run(cmd: GroupCmd, json: bool) -> Result<()> {
    match cmd {
        GroupCmd::Add { name, entry } => super::edit(Request::GroupAdd { name, entry: entry.to_string() }, json),
        GroupCmd::Del { name, entry } => super::edit(Request::GroupDel { name, entry: entry.to_string() }, json),
        GroupCmd::List { name } => list(name.as_deref(), json),
    }
}

/// Members from the configuration of the running (or last) controller plus the CLI's.
fn list(name: Option<&str>, json: bool) -> Result<()> {
    let ds = DaemonState::load()
        .ok_or_else(|| anyhow!("no record of a controller's configuration ({})", DaemonState::path().display()))?;
    let cfg = Config::load(&ds.config).context("the configuration of the controller")?;
    let rt = Runtime::load()?;
    let groups = sipshield::policy::merged_groups(&sipshield::policy::read_groups(&cfg)?, &rt);
    let members = |l: &sipshield::lists::IpList| -> Vec<String> {
        let mut all: Vec<String> = l.v4.iter().map(|a| std::net::IpAddr::from(*a).to_string()).collect();
        all.extend(l.v6.iter().map(|a| std::net::IpAddr::from(*a).to_string()));
        all.extend(l.net4.iter().map(|(a, p)| format!("{}/{p}", std::net::IpAddr::from(*a))));
        all.extend(l.net6.iter().map(|(a, p)| format!("{}/{p}", std::net::IpAddr::from(*a))));
        all
    };
    match name {
        Some(n) => {
            let l = groups.get(n).ok_or_else(|| anyhow!("no group {n:?} in {}", ds.config.display()))?;
            let cli = rt.groups.get(n).cloned().unwrap_or_default();
            if json {
                println!("{}", serde_json::json!({"group": n, "members": members(l), "cli": cli}));
            } else {
                for m in members(l) {
                    let from = if cli.contains(&m) { "  (cli)" } else { "" };
                    println!("{m}{from}");
                }
            }
        }
        None => {
            let sizes: serde_json::Map<String, serde_json::Value> =
                groups.iter().map(|(n, l)| (n.clone(), serde_json::json!(l.len()))).collect();
            if json {
                println!("{}", serde_json::Value::Object(sizes));
            } else {
                for (n, l) in &groups {
                    println!("{n:<16} {} entries", l.len());
                }
            }
        }
    }
    Ok(())
}
