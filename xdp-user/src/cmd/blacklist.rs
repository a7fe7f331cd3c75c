//! `sipshield blacklist reload|stats`.
use anyhow::Result;
use clap::Subcommand;
use serde_json::json;
use sipshield::addrlist::ListKind;
use sipshield::control::Request;
use sipshield::state::{self, DaemonState};
use xdp_common::REASON_BLACKLISTED;

#[derive(Subcommand)]
pub enum BlacklistCmd {
    /// Fetch the list files and URLs now (the running controller does it; waits for the result).
    Reload,
    /// Size, generation, last load and drops.
    Stats,
}

pub fn run(cmd: BlacklistCmd, json: bool) -> Result<()> {
    match cmd {
        BlacklistCmd::Reload => super::controller_only(Request::Refresh, json),
        BlacklistCmd::Stats => stats(json),
    }
}

fn stats(json_out: bool) -> Result<()> {
    let f = super::inspect::open()?;
    let bl = f.read_list(ListKind::Blacklist)?;
    let load = DaemonState::load().and_then(|d| d.lists.get("blacklist").cloned());
    let dropped = f.stats()?.reason_total(REASON_BLACKLISTED);
    let v = json!({
        "v4": bl.v4.len(), "v6": bl.v6.len(), "ranges_v4": bl.net4.len(), "ranges_v6": bl.net6.len(),
        "total": bl.len(),
        "generation": f.config()?.blacklist_gen,
        "last_load": load,
        "dropped": {"packets": dropped.packets, "bytes": dropped.bytes},
    });
    if json_out {
        println!("{v}");
        return Ok(());
    }
    println!(
        "blacklist: {} entries ({} IPv4, {} IPv6, {} IPv4 ranges, {} IPv6 ranges), generation {}",
        bl.len(),
        bl.v4.len(),
        bl.v6.len(),
        bl.net4.len(),
        bl.net6.len(),
        v["generation"]
    );
    if let Some(l) = load {
        println!(
            "last load {:.0}s ago in {:.3}s, {} failed refreshes",
            state::unix_now() - l.last_load_unix,
            l.load_secs,
            l.errors
        );
    }
    println!("dropped: {} packets", dropped.packets);
    Ok(())
}
