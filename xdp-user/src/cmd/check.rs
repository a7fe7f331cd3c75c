//! `sipshield check --config FILE`: validate a config and every source it names, kernel untouched.
use std::path::Path;

use anyhow::{bail, Result};

pub fn run(config: &Path, json: bool) -> Result<()> {
    let r = sipshield::check::check(config);
    if json {
        println!("{}", serde_json::json!({"ok": r.ok(), "errors": r.errors, "summary": r.summary}));
    } else {
        for line in r.summary_lines() {
            println!("{line}");
        }
        for e in &r.errors {
            eprintln!("error: {e}");
        }
    }
    if !r.ok() {
        bail!("{}: {} error(s); nothing was changed", config.display(), r.errors.len());
    }
    if !json {
        println!("{}: OK", config.display());
    }
    Ok(())
}
