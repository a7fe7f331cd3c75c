//! `crowdsec_bench`: how long a CrowdSec startup stream of 100,000 `ban` decisions takes to be
//! enforced — parsing the LAPI's JSON, updating the decisions held, writing the bans in bulk —
//! on a private filter (nothing attached). Target: under 2 s. A second pull of the same stream
//! (duplicates) and a delta deleting every decision are timed too.
//!
//! Run as root: `cargo run --release -p sipshield-bench --bin crowdsec_bench -- [--decisions N] [--json]`.
use std::net::Ipv4Addr;
use std::time::Instant;

use anyhow::{bail, Result};
use clap::Parser;
use serde_json::json;
use sipshield::config::Config;
use sipshield::crowdsec::decisions::{apply_bans, exempt, Held, Pull};
use sipshield::filter::{clock_ns, Filter};
use sipshield::lists::IpList;

const TARGET_SECS: f64 = 2.0;

#[derive(Parser)]
#[command(name = "crowdsec_bench", about = "time to enforce a CrowdSec startup stream (root)")]
struct Args {
    /// Decisions in the startup stream (distinct addresses of 198.18.0.0/15, never sent).
    #[arg(long, default_value_t = 100_000)]
    decisions: u32,
    #[arg(long)]
    json: bool,
}

/// A stream as the LAPI writes it (`deleted` or `new`).
fn stream(n: u32, deleted: bool) -> Vec<u8> {
    let items: Vec<serde_json::Value> = (0..n)
        .map(|i| {
            json!({"duration": if deleted { "-1.5s" } else { "3h59m58.776s" }, "id": i + 1, "origin": "crowdsec",
                   "scenario": "crowdsecurity/sip-bf", "scope": "Ip", "type": "ban",
                   "value": Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i).to_string()})
        })
        .collect();
    let v = if deleted { json!({"new": null, "deleted": items}) } else { json!({"new": items, "deleted": null}) };
    serde_json::to_vec(&v).expect("JSON")
}

/// Parse, hold and apply one answer; returns (parse, hold, kernel) seconds.
fn pull(f: &mut Filter, held: &mut Held, body: &[u8], startup: bool, allow: &IpList) -> Result<[f64; 3]> {
    let cfg = Config::parse(
        "[crowdsec]\nlapi_url = \"http://127.0.0.1:8080\"\nbouncer_api_key = \"x\"\n",
        std::path::Path::new("bench.toml"),
    )?
    .crowdsec
    .expect("[crowdsec]");
    let t0 = Instant::now();
    let p = Pull::parse(body, &cfg, startup, 0)?;
    let t1 = Instant::now();
    let ch = held.apply(&p, clock_ns(), |t| exempt(allow, t));
    let t2 = Instant::now();
    apply_bans(f, &ch)?;
    let t3 = Instant::now();
    Ok([(t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64(), (t3 - t2).as_secs_f64()])
}

fn main() -> Result<()> {
    let args = Args::parse();
    if !nix_is_root() {
        bail!("crowdsec_bench loads the XDP program: run it as root");
    }
    let mut f = Filter::load_private()?;
    let mut allow = IpList::default();
    allow.insert("192.0.2.0/24".parse()?);
    let n = args.decisions;
    let body = stream(n, false);
    let mut held = Held::default();
    let first = pull(&mut f, &mut held, &body, true, &allow)?;
    let banned = sipshield::bans::list(&f)?.len();
    if banned != n as usize || held.ips() != n as usize {
        bail!("{banned} bans in the kernel and {} held after {n} decisions", held.ips());
    }
    let again = pull(&mut f, &mut held, &body, true, &allow)?;
    let del = pull(&mut f, &mut held, &stream(n, true), false, &allow)?;
    let left = sipshield::bans::list(&f)?.len();
    if left != 0 {
        bail!("{left} bans left after deleting every decision");
    }
    let total = first.iter().sum::<f64>();
    let ok = total < TARGET_SECS;
    if args.json {
        println!(
            "{}",
            json!({"decisions": n, "stream_bytes": body.len(), "startup": {"parse_s": first[0], "hold_s": first[1], "kernel_s": first[2], "total_s": total},
                   "duplicate_pull_s": again.iter().sum::<f64>(), "delete_all_s": del.iter().sum::<f64>(),
                   "target_s": TARGET_SECS, "pass": ok})
        );
    } else {
        println!("CrowdSec startup stream: {n} ban decisions ({:.1} MB of JSON)", body.len() as f64 / 1e6);
        println!(
            "  enforced in {:.3} s (parse {:.3} s, decisions held {:.3} s, kernel bans {:.3} s)  target < {TARGET_SECS} s: {}",
            total,
            first[0],
            first[1],
            first[2],
            if ok { "PASS" } else { "FAIL" }
        );
        println!("  the same stream again (duplicates): {:.3} s", again.iter().sum::<f64>());
        println!("  a delta deleting all {n}: {:.3} s", del.iter().sum::<f64>());
    }
    if !ok {
        bail!("{total:.3} s is over the {TARGET_SECS} s target");
    }
    Ok(())
}

fn nix_is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
