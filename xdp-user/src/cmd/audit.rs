//! `sipshield audit [--since DURATION] [--json | --csv]`: the audit trail.
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use sipshield::audit;

#[derive(clap::Args)]
pub struct AuditArgs {
    /// Only records newer than this, e.g. `2h`, `7days`.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// CSV with a header line (for spreadsheets).
    #[arg(long, conflicts_with = "json")]
    csv: bool,
    /// The audit log (default: `[audit] path` of the running controller's config, else
    /// /var/log/sipshield/audit.jsonl).
    #[arg(long)]
    file: Option<PathBuf>,
}

pub fn run(a: AuditArgs, json: bool) -> Result<()> {
    let path = a.file.unwrap_or_else(super::audit_cfg_path);
    let records = audit::read(&path, a.since.map(audit::since))?;
    if a.csv {
        print!("{}", audit::to_csv(&records));
    } else if json {
        for r in &records {
            println!("{}", serde_json::to_string(r)?);
        }
    } else {
        for r in &records {
            let who = match (&r.actor.user, &r.actor.sudo_user) {
                (Some(u), Some(s)) => format!("{u} (sudo by {s})"),
                (Some(u), None) => u.clone(),
                _ => r.actor.kind.clone(),
            };
            let args = if r.args.is_null() { String::new() } else { format!(" {}", r.args) };
            println!("{} {who}@{} {}{args}: {} {}", r.time, r.host, r.verb, r.result, r.message);
        }
    }
    Ok(())
}
