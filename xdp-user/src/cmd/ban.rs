//! `sipshield ban add|del|list`.
use std::net::IpAddr;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use sipshield::control::Request;

#[derive(Subcommand)]
pub enum BanCmd {
    /// Ban IP for a while (1s to 10 years).
    Add {
        ip: IpAddr,
        #[arg(long, default_value = "15m", value_parser = parse_ttl)]
        ttl: Duration,
    },
    /// Lift the ban of IP (and of its rate-limit prefix for IPv6).
    Del { ip: IpAddr },
    /// Active bans.
    List,
}

/// A ban duration within what the kernel's deadlines hold.
fn parse_ttl(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|e| format!("{e}; use e.g. 30s, 15m, 6h, 7d"))?;
    sipshield::bans::check_ttl("--ttl", d).map_err(|e| e.to_string())?;
    Ok(d)
}

pub fn run(cmd: BanCmd, json: bool) -> Result<()> {
    match cmd {
        BanCmd::Add { ip, ttl } => super::edit(Request::BanAdd { ip, ttl_secs: ttl.as_secs() }, json),
        BanCmd::Del { ip } => super::edit(Request::BanDel { ip }, json),
        BanCmd::List => {
            let f = super::inspect::open()?;
            let bans = sipshield::bans::list(&f)?;
            if json {
                println!("{}", serde_json::to_string(&bans)?);
            } else if bans.is_empty() {
                println!("no active bans");
            } else {
                for b in bans {
                    println!("{}/{}  expires in {:.0}s", b.address, b.prefix, b.expires_in);
                }
            }
            Ok(())
        }
    }
}
