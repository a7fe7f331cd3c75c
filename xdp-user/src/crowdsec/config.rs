//! `[crowdsec]`: where the Local API is, how sipshield authenticates (a bouncer API key to pull
//! decisions; optionally a watcher account to push alerts) and which decisions it takes.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;

/// A secret from the config (API key, password): its `Debug` never shows it, so neither a log
/// line nor an error that formats the config can leak it.
#[derive(Clone, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CrowdsecCfg {
    /// e.g. "http://127.0.0.1:8080".
    pub lapi_url: String,
    #[serde(default)]
    pub bouncer_api_key: Option<Secret>,
    /// A file holding the key (first line), e.g. mode 0600.
    #[serde(default)]
    pub bouncer_api_key_file: Option<PathBuf>,
    /// Time between two pulls of the decision stream.
    #[serde(default = "default_poll", with = "humantime_serde")]
    pub poll: Duration,
    /// HTTP timeout of every LAPI request.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Decision scopes taken: "ip" and/or "range".
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Only decisions of these origins (e.g. "crowdsec", "cscli", "CAPI", "lists"); empty: all.
    #[serde(default)]
    pub origins: Vec<String>,
    /// Only decisions whose scenario contains one of these strings; empty: all.
    #[serde(default)]
    pub scenarios: Vec<String>,
    /// Watcher account (pushing alerts): `machine_id` + `password`, or `credentials_file` (the
    /// YAML `cscli machines add NAME -f FILE` writes). Without one, nothing is pushed.
    #[serde(default)]
    pub machine_id: Option<String>,
    #[serde(default)]
    pub password: Option<Secret>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// Alerts kept while the LAPI cannot take them; beyond, the oldest are dropped (counted).
    #[serde(default = "default_alert_queue")]
    pub alert_queue: usize,
}

fn default_poll() -> Duration {
    Duration::from_secs(10)
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_scopes() -> Vec<String> {
    vec!["ip".into(), "range".into()]
}
fn default_alert_queue() -> usize {
    10_000
}

pub const POLL_MIN: Duration = Duration::from_secs(1);
pub const POLL_MAX: Duration = Duration::from_secs(3600);
pub const TIMEOUT_MAX: Duration = Duration::from_secs(120);
pub const ALERT_QUEUE_MAX: usize = 1_000_000;
/// Largest key or credentials file read.
const SECRET_FILE_MAX: u64 = 64 << 10;

/// What the controller authenticates with, read from the config and its files.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Credentials {
    pub api_key: Secret,
    pub watcher: Option<Watcher>,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Watcher {
    pub machine_id: String,
    pub password: Secret,
}

impl CrowdsecCfg {
    /// Bounds and combinations; errors name the key.
    pub fn check(&self) -> Result<()> {
        let url = self.lapi_url.trim_end_matches('/');
        if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() <= "https://".len() {
            bail!("crowdsec.lapi_url: {:?} is not an http(s) URL", self.lapi_url);
        }
        match (&self.bouncer_api_key, &self.bouncer_api_key_file) {
            (Some(_), Some(_)) => bail!("crowdsec: set bouncer_api_key or bouncer_api_key_file, not both"),
            (None, None) => bail!(
                "crowdsec.bouncer_api_key: required (or bouncer_api_key_file); create one with `cscli bouncers add sipshield`"
            ),
            (Some(k), None) if k.expose().trim().is_empty() => bail!("crowdsec.bouncer_api_key: empty"),
            _ => {}
        }
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        if self.poll < POLL_MIN || self.poll > POLL_MAX {
            bail!("crowdsec.poll: {} is out of range 1s..=1h", fmt(self.poll));
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > TIMEOUT_MAX {
            bail!("crowdsec.timeout: {} is out of range 1s..=2m", fmt(self.timeout));
        }
        if self.scopes.is_empty() {
            bail!("crowdsec.scopes: at least one of \"ip\", \"range\"");
        }
        for s in &self.scopes {
            if !matches!(s.to_ascii_lowercase().as_str(), "ip" | "range") {
                bail!("crowdsec.scopes: unknown scope {s:?} (\"ip\" or \"range\")");
            }
        }
        for (key, list) in [("origins", &self.origins), ("scenarios", &self.scenarios)] {
            if list.iter().any(|s| s.trim().is_empty() || s.contains(',')) {
                bail!("crowdsec.{key}: entries must be non-empty and without commas");
            }
        }
        match (&self.machine_id, &self.password, &self.credentials_file) {
            (Some(_), Some(_), None) | (None, None, _) => {}
            (Some(_), None, None) => bail!("crowdsec.password: required with crowdsec.machine_id"),
            (None, Some(_), None) => bail!("crowdsec.machine_id: required with crowdsec.password"),
            (_, _, Some(_)) => bail!("crowdsec.credentials_file: set it or machine_id/password, not both"),
        }
        if !(1..=ALERT_QUEUE_MAX).contains(&self.alert_queue) {
            bail!("crowdsec.alert_queue: {} is out of range 1..={ALERT_QUEUE_MAX}", self.alert_queue);
        }
        Ok(())
    }

    /// The URL without its trailing slash.
    pub fn base_url(&self) -> &str {
        self.lapi_url.trim_end_matches('/')
    }

    pub fn takes_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s.eq_ignore_ascii_case(scope))
    }

    /// Read the key and the watcher account (from the config or their files). Errors name the
    /// key and the file; the secrets themselves never appear in them.
    pub fn credentials(&self) -> Result<Credentials> {
        let api_key = match (&self.bouncer_api_key, &self.bouncer_api_key_file) {
            (Some(k), _) => k.clone(),
            (None, Some(p)) => {
                let text = read_secret_file(p).context("crowdsec.bouncer_api_key_file")?;
                let key = text.lines().next().unwrap_or("").trim().to_string();
                if key.is_empty() {
                    bail!("crowdsec.bouncer_api_key_file: {}: empty", p.display());
                }
                Secret(key)
            }
            (None, None) => bail!("crowdsec.bouncer_api_key: required"),
        };
        let watcher = match (&self.machine_id, &self.password, &self.credentials_file) {
            (Some(m), Some(p), _) => Some(Watcher { machine_id: m.clone(), password: p.clone() }),
            (_, _, Some(f)) => Some(parse_credentials(f)?),
            _ => None,
        };
        Ok(Credentials { api_key, watcher })
    }

    /// Files holding secrets (for the permission warning).
    pub fn secret_files(&self) -> Vec<&Path> {
        self.bouncer_api_key_file.iter().chain(&self.credentials_file).map(|p| p.as_path()).collect()
    }

    /// Secrets written in the config itself (the config file must then be private too).
    pub fn has_inline_secret(&self) -> bool {
        self.bouncer_api_key.is_some() || self.password.is_some()
    }
}

fn read_secret_file(p: &Path) -> Result<String> {
    crate::lists::read_regular_file(p, SECRET_FILE_MAX).map_err(|e| anyhow!("{}: {e}", p.display()))
}

/// `login:` and `password:` of a cscli credentials file (flat `key: value` YAML lines).
fn parse_credentials(p: &Path) -> Result<Watcher> {
    let text = read_secret_file(p).context("crowdsec.credentials_file")?;
    let (mut login, mut password) = (None, None);
    for line in text.lines() {
        if let Some((k, v)) = line.split_once(':') {
            let v = v.trim().trim_matches('"').trim_matches('\'').to_string();
            match k.trim() {
                "login" => login = Some(v),
                "password" => password = Some(Secret(v)),
                _ => {}
            }
        }
    }
    match (login, password) {
        (Some(l), Some(pw)) if !l.is_empty() && !pw.0.is_empty() => Ok(Watcher { machine_id: l, password: pw }),
        _ => bail!("crowdsec.credentials_file: {}: needs non-empty `login:` and `password:` lines", p.display()),
    }
}

/// Paths readable by users other than the owner: the config (when it holds a secret) and the
/// key and credentials files. The controller warns about each at start and reload.
pub fn readable_by_others(config: &Path, c: &CrowdsecCfg) -> Vec<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let mut paths: Vec<&Path> = c.secret_files();
    if c.has_inline_secret() {
        paths.push(config);
    }
    paths
        .into_iter()
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o004 != 0))
        .map(|p| p.to_path_buf())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(t: &str) -> Result<Config> {
        Config::parse(t, Path::new("test.toml"))
    }

    const BASE: &str = "[crowdsec]\nlapi_url = \"http://127.0.0.1:8080\"\nbouncer_api_key = \"k3y\"\n";

    #[test]
    fn defaults() {
        let c = parse(BASE).unwrap().crowdsec.unwrap();
        assert_eq!((c.poll, c.timeout, c.alert_queue), (Duration::from_secs(10), Duration::from_secs(10), 10_000));
        assert!(c.takes_scope("Ip") && c.takes_scope("Range"));
        assert!(c.origins.is_empty() && c.scenarios.is_empty());
        let cr = c.credentials().unwrap();
        assert_eq!(cr.api_key.expose(), "k3y");
        assert!(cr.watcher.is_none());
        assert!(parse("").unwrap().crowdsec.is_none());
    }

    #[test]
    fn secrets_never_show_in_debug() {
        let c = parse(&format!("{BASE}machine_id = \"m\"\npassword = \"hunter2-pw\"\n")).unwrap();
        let d = format!("{c:?} {:?}", c.crowdsec.as_ref().unwrap().credentials().unwrap());
        assert!(!d.contains("k3y") && !d.contains("hunter2-pw") && d.contains("<redacted>"), "{d}");
    }

    #[test]
    fn bounds_are_checked_at_both_ends() {
        let cases: Vec<(String, Option<&str>)> = vec![
            ("[crowdsec]\nlapi_url = \"http://x:1\"".into(), Some("crowdsec.bouncer_api_key: required")),
            ("[crowdsec]\nbouncer_api_key = \"k\"".into(), Some("lapi_url")),
            (BASE.replace("http://127.0.0.1:8080", "ftp://x"), Some("crowdsec.lapi_url: \"ftp://x\"")),
            (BASE.replace("k3y", " "), Some("crowdsec.bouncer_api_key: empty")),
            (format!("{BASE}bouncer_api_key_file = \"/k\""), Some("not both")),
            (format!("{BASE}poll = \"1s\""), None),
            (format!("{BASE}poll = \"999ms\""), Some("crowdsec.poll: 999ms")),
            (format!("{BASE}poll = \"1h\""), None),
            (format!("{BASE}poll = \"3601s\""), Some("crowdsec.poll")),
            (format!("{BASE}timeout = \"1s\""), None),
            (format!("{BASE}timeout = \"999ms\""), Some("crowdsec.timeout")),
            (format!("{BASE}timeout = \"2m\""), None),
            (format!("{BASE}timeout = \"121s\""), Some("crowdsec.timeout")),
            (format!("{BASE}scopes = []"), Some("crowdsec.scopes: at least one")),
            (format!("{BASE}scopes = [\"Ip\"]"), None),
            (format!("{BASE}scopes = [\"country\"]"), Some("crowdsec.scopes: unknown scope \"country\"")),
            (format!("{BASE}origins = [\"cscli\", \"crowdsec\"]"), None),
            (format!("{BASE}origins = [\"a,b\"]"), Some("crowdsec.origins")),
            (format!("{BASE}scenarios = [\"\"]"), Some("crowdsec.scenarios")),
            (format!("{BASE}machine_id = \"m\""), Some("crowdsec.password: required")),
            (format!("{BASE}password = \"p\""), Some("crowdsec.machine_id: required")),
            (format!("{BASE}machine_id = \"m\"\npassword = \"p\""), None),
            (format!("{BASE}credentials_file = \"/c\"\nmachine_id = \"m\""), Some("crowdsec.credentials_file")),
            (format!("{BASE}alert_queue = 0"), Some("crowdsec.alert_queue: 0")),
            (format!("{BASE}alert_queue = 1"), None),
            (format!("{BASE}alert_queue = 1000000"), None),
            (format!("{BASE}alert_queue = 1000001"), Some("crowdsec.alert_queue")),
            (format!("{BASE}bogus = 1"), Some("bogus")),
        ];
        for (text, want) in &cases {
            match (parse(text), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    let e = format!("{e:#}");
                    assert!(e.starts_with("test.toml: ") && e.contains(w), "{text:?}: {e:?} should contain {w:?}");
                    assert!(!e.contains("k3y"), "the key leaked into {e:?}");
                }
                (Ok(_), Some(w)) => panic!("{text:?} was accepted; expected an error containing {w:?}"),
                (Err(e), None) => panic!("{text:?} was refused: {e:#}"),
            }
        }
    }

    #[test]
    fn key_and_credentials_files() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sipshield-cs-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let key = dir.join("key");
        std::fs::write(&key, "abc123\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        let creds = dir.join("creds.yaml");
        std::fs::write(&creds, "url: http://127.0.0.1:8080\nlogin: sbc1\npassword: s3cret\n").unwrap();
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o644)).unwrap();
        let text = format!(
            "[crowdsec]\nlapi_url = \"http://127.0.0.1:8080/\"\nbouncer_api_key_file = \"{}\"\ncredentials_file = \"{}\"\n",
            key.display(),
            creds.display()
        );
        let c = parse(&text).unwrap().crowdsec.unwrap();
        assert_eq!(c.base_url(), "http://127.0.0.1:8080");
        let cr = c.credentials().unwrap();
        assert_eq!(cr.api_key.expose(), "abc123");
        let w = cr.watcher.unwrap();
        assert_eq!((w.machine_id.as_str(), w.password.expose()), ("sbc1", "s3cret"));
        assert_eq!(readable_by_others(Path::new("/nonexistent"), &c), vec![creds.clone()], "0644 is readable");

        std::fs::write(&creds, "login: sbc1\n").unwrap();
        let e = format!("{:#}", c.credentials().unwrap_err());
        assert!(e.contains("crowdsec.credentials_file") && e.contains("password"), "{e}");
        std::fs::write(&key, "\n").unwrap();
        let e = format!("{:#}", c.credentials().unwrap_err());
        assert!(e.contains("crowdsec.bouncer_api_key_file") && e.contains("empty"), "{e}");
        std::fs::remove_file(&key).unwrap();
        let e = format!("{:#}", c.credentials().unwrap_err());
        assert!(e.contains("crowdsec.bouncer_api_key_file") && e.contains(&key.display().to_string()), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
