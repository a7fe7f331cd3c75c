//! `sipshield allow add|del|list`.
use std::net::IpAddr;

use anyhow::Result;
use clap::Subcommand;
use sipshield::addrlist::ListKind;
use sipshield::control::Request;

#[derive(Subcommand)]
pub enum AllowCmd {
    /// Allowlist an address or CIDR (kept across reloads and restarts).
    Add {
        #[arg(value_parser = parse_net)]
        entry: ipnet::IpNet,
    },
    /// Remove an entry added with `allow add` (entries of the configuration are removed there).
    Del {
        #[arg(value_parser = parse_net)]
        entry: ipnet::IpNet,
    },
    /// The live allowlist.
    List,
}

fn parse_net(s: &str) -> Result<ipnet::IpNet, String> {
    sipshield::lists::parse_entry(s.trim()).ok_or_else(|| format!("{s:?} is not an IPv4/IPv6 address or CIDR"))
}

pub fn run(cmd: AllowCmd, json: bool) -> Result<()> {
    match cmd {
        AllowCmd::Add { entry } => super::edit(Request::AllowAdd { entry: entry.to_string() }, json),
        AllowCmd::Del { entry } => super::edit(Request::AllowDel { entry: entry.to_string() }, json),
        AllowCmd::List => {
            let list = super::inspect::open()?.read_list(ListKind::Allowlist)?;
            let mut all: Vec<String> = list.v4.iter().map(|a| IpAddr::from(*a).to_string()).collect();
            all.extend(list.v6.iter().map(|a| IpAddr::from(*a).to_string()));
            all.extend(list.net4.iter().map(|(a, p)| format!("{}/{p}", IpAddr::from(*a))));
            all.extend(list.net6.iter().map(|(a, p)| format!("{}/{p}", IpAddr::from(*a))));
            if json {
                println!("{}", serde_json::to_string(&all)?);
            } else {
                for a in all {
                    println!("{a}");
                }
            }
            Ok(())
        }
    }
}
