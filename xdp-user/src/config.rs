//! The TOML configuration (`--config FILE`). Unknown keys are errors; every error names the
//! file and the key. See `sipshield.example.toml` for a commented example of every key.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use xdp_common::*;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Interfaces to attach to.
    #[serde(default)]
    pub interfaces: Vec<String>,
    /// "auto" (native, falling back to skb), "native" or "skb".
    #[serde(default)]
    pub mode: Mode,
    /// Count what would be dropped, pass everything.
    #[serde(default)]
    pub dry_run: bool,
    /// Drop packets with malformed/truncated headers (default: count and pass).
    #[serde(default)]
    pub drop_malformed: bool,
    #[serde(default)]
    pub sip: SipCfg,
    #[serde(default)]
    pub blacklist: ListCfg,
    #[serde(default)]
    pub allowlist: ListCfg,
    #[serde(default)]
    pub geoip: Option<GeoCfg>,
    #[serde(default)]
    pub scanners: ScannersCfg,
    /// `[ratelimit]`: `ipv6_prefix = 64` and one `[ratelimit.<method>]` table per method.
    #[serde(default)]
    pub ratelimit: RateLimitCfg,
    #[serde(default)]
    pub metrics: MetricsCfg,
    #[serde(default)]
    pub events: EventsCfg,
    #[serde(default)]
    pub crowdsec: Option<toml::Table>,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Auto,
    Native,
    Skb,
}

impl std::str::FromStr for Mode {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Mode::Auto),
            "native" => Ok(Mode::Native),
            "skb" => Ok(Mode::Skb),
            _ => bail!("mode must be auto, native or skb (got {s:?})"),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SipCfg {
    /// Protected SIP ports (UDP and TCP).
    #[serde(default = "default_ports")]
    pub ports: Vec<u16>,
    /// Inspect TCP segments on SIP ports too (best effort, per segment).
    #[serde(default = "yes")]
    pub tcp: bool,
}

impl Default for SipCfg {
    fn default() -> Self {
        SipCfg { ports: default_ports(), tcp: true }
    }
}

fn default_ports() -> Vec<u16> {
    vec![5060, 5061]
}
fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListCfg {
    #[serde(default)]
    pub files: Vec<PathBuf>,
    #[serde(default)]
    pub urls: Vec<String>,
    /// Inline addresses/ranges.
    #[serde(default)]
    pub entries: Vec<String>,
    /// Refresh period for files and URLs, e.g. "6h".
    #[serde(default = "default_refresh", with = "humantime_serde_compat")]
    pub refresh: Duration,
    /// Skip (and report) invalid lines instead of rejecting the list.
    #[serde(default)]
    pub skip_invalid: bool,
    /// HTTP timeout for URLs.
    #[serde(default = "default_timeout", with = "humantime_serde_compat")]
    pub timeout: Duration,
}

impl Default for ListCfg {
    fn default() -> Self {
        ListCfg {
            files: vec![],
            urls: vec![],
            entries: vec![],
            refresh: default_refresh(),
            skip_invalid: false,
            timeout: default_timeout(),
        }
    }
}

fn default_refresh() -> Duration {
    Duration::from_secs(6 * 3600)
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GeoCfg {
    pub database: PathBuf,
    #[serde(default)]
    pub allow_countries: Vec<String>,
    #[serde(default)]
    pub deny_countries: Vec<String>,
    /// "allow" or "drop" for addresses the database does not cover.
    #[serde(default)]
    pub unknown: Unknown,
    /// "sip" (only traffic to the SIP ports) or "all".
    #[serde(default)]
    pub scope: Scope,
    /// Reload when the database file changes.
    #[serde(default = "yes")]
    pub reload: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Unknown {
    #[default]
    Allow,
    Drop,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    #[default]
    Sip,
    All,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScannersCfg {
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Include the built-in signature list.
    #[serde(default = "yes")]
    pub defaults: bool,
    /// Extra signatures per header (prefix, case-insensitive).
    #[serde(default)]
    pub user_agent: Vec<String>,
    #[serde(default)]
    pub from: Vec<String>,
    #[serde(default)]
    pub to: Vec<String>,
    #[serde(default)]
    pub contact: Vec<String>,
    #[serde(default)]
    pub via: Vec<String>,
    #[serde(default)]
    pub call_id: Vec<String>,
    #[serde(default)]
    pub subject: Vec<String>,
    /// Built-in signatures to leave out.
    #[serde(default)]
    pub disable: Vec<String>,
}

impl Default for ScannersCfg {
    fn default() -> Self {
        ScannersCfg {
            enabled: true,
            defaults: true,
            user_agent: vec![],
            from: vec![],
            to: vec![],
            contact: vec![],
            via: vec![],
            call_id: vec![],
            subject: vec![],
            disable: vec![],
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateCfg {
    /// Requests per second (sustained).
    pub rate: f64,
    /// Bucket size (requests allowed at once).
    pub burst: u32,
    /// Excess packets within `window` that put the source in the timed-ban map (0 = never).
    #[serde(default)]
    pub ban_after: u32,
    #[serde(default = "default_ban_ttl", with = "humantime_serde_compat")]
    pub ban_ttl: Duration,
    #[serde(default = "default_window", with = "humantime_serde_compat")]
    pub window: Duration,
}

fn default_ban_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Default)]
pub struct RateLimitCfg {
    pub ipv6_prefix: u32,
    pub rules: BTreeMap<String, RateCfg>,
}

impl<'de> Deserialize<'de> for RateLimitCfg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let table = toml::Table::deserialize(d)?;
        let mut out = RateLimitCfg { ipv6_prefix: 64, rules: BTreeMap::new() };
        for (k, v) in table {
            if k == "ipv6_prefix" {
                let p = v.as_integer().ok_or_else(|| D::Error::custom("ratelimit.ipv6_prefix must be an integer"))?;
                if !(1..=128).contains(&p) {
                    return Err(D::Error::custom(format!("ratelimit.ipv6_prefix must be 1..=128 (got {p})")));
                }
                out.ipv6_prefix = p as u32;
                continue;
            }
            if method_slot(&k).is_none() {
                return Err(D::Error::custom(format!(
                    "unknown key ratelimit.{k}: expected ipv6_prefix or a method table (register, invite, options, subscribe, message, any, ...)"
                )));
            }
            let rule: RateCfg = v
                .try_into()
                .map_err(|e: toml::de::Error| D::Error::custom(format!("ratelimit.{k}: {}", e.message())))?;
            if !(rule.rate > 0.0 && rule.rate <= 1e9) {
                return Err(D::Error::custom(format!("ratelimit.{k}.rate must be > 0 (got {})", rule.rate)));
            }
            if rule.burst == 0 {
                return Err(D::Error::custom(format!("ratelimit.{k}.burst must be >= 1")));
            }
            out.rules.insert(k.to_ascii_lowercase(), rule);
        }
        Ok(out)
    }
}

/// Rate-limit slot of a method name as written in `[ratelimit.<method>]`.
pub fn method_slot(name: &str) -> Option<u8> {
    let up = name.to_ascii_uppercase();
    METHOD_NAMES.iter().position(|m| !m.is_empty() && *m == up && *m != "RESPONSE" && *m != "OTHER").map(|i| i as u8)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsCfg {
    #[serde(default = "default_metrics")]
    pub listen: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

impl Default for MetricsCfg {
    fn default() -> Self {
        MetricsCfg { listen: default_metrics(), enabled: true }
    }
}

fn default_metrics() -> String {
    "127.0.0.1:9610".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsCfg {
    /// Also append JSON lines to this file.
    #[serde(default)]
    pub file: Option<PathBuf>,
    /// Maximum events per second per CPU (kernel-side sampling).
    #[serde(default = "default_event_rate")]
    pub rate: u32,
    /// Burst of events allowed at once.
    #[serde(default = "default_event_burst")]
    pub burst: u32,
    /// Reasons that produce events (default: every drop reason).
    #[serde(default = "default_event_reasons")]
    pub reasons: Vec<String>,
    /// Print events to stdout (journal).
    #[serde(default = "yes")]
    pub stdout: bool,
}

impl Default for EventsCfg {
    fn default() -> Self {
        EventsCfg {
            file: None,
            rate: default_event_rate(),
            burst: default_event_burst(),
            reasons: default_event_reasons(),
            stdout: true,
        }
    }
}

fn default_event_rate() -> u32 {
    100
}
fn default_event_burst() -> u32 {
    50
}
fn default_event_reasons() -> Vec<String> {
    ["blacklisted", "banned", "geo", "scanner", "ratelimit"].iter().map(|s| s.to_string()).collect()
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?} ({e}); use e.g. \"30s\", \"15m\", \"6h\""))
        })
    }
}

impl Config {
    /// Read and validate a config file. Errors name the file and the key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| anyhow!("{}: {}", path.display(), describe_toml_error(&e, text)))?;
        cfg.validate().map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Checks that go beyond the schema: CIDRs, country codes, files that must exist.
    pub fn validate(&self) -> Result<()> {
        if self.sip.ports.is_empty() {
            bail!("sip.ports: at least one port is required");
        }
        if self.sip.ports.contains(&0) {
            bail!("sip.ports: port 0 is not valid");
        }
        for (section, l) in [("blacklist", &self.blacklist), ("allowlist", &self.allowlist)] {
            for (i, e) in l.entries.iter().enumerate() {
                if crate::lists::parse_entry(e.trim()).is_none() {
                    bail!("{section}.entries[{i}]: invalid address or CIDR {e:?}");
                }
            }
            for f in &l.files {
                if !f.exists() {
                    bail!("{section}.files: {}: no such file", f.display());
                }
            }
            for u in &l.urls {
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    bail!("{section}.urls: {u:?} is not an http(s) URL");
                }
            }
            if l.refresh < Duration::from_secs(10) {
                bail!("{section}.refresh: must be at least 10s");
            }
        }
        if let Some(g) = &self.geoip {
            if g.allow_countries.is_empty() == g.deny_countries.is_empty() {
                bail!("geoip: set exactly one of allow_countries or deny_countries");
            }
            for (key, list) in [("allow_countries", &g.allow_countries), ("deny_countries", &g.deny_countries)] {
                for c in list {
                    if crate::countries::index_of(c).is_none() {
                        bail!("geoip.{key}: {c:?} is not an ISO 3166-1 alpha-2 country code");
                    }
                }
            }
            if !g.database.exists() {
                bail!("geoip.database: {}: no such file", g.database.display());
            }
        }
        for (k, list) in self.scanners.header_lists() {
            for s in list {
                if s.is_empty() || s.len() > SIG_MAX_LEN {
                    bail!("scanners.{k}: signature {s:?} must be 1..={SIG_MAX_LEN} bytes");
                }
            }
        }
        for r in &self.events.reasons {
            if !REASON_NAMES.contains(&r.as_str()) {
                bail!("events.reasons: unknown reason {r:?} (one of {})", REASON_NAMES.join(", "));
            }
        }
        if self.metrics.enabled && self.metrics.listen.parse::<std::net::SocketAddr>().is_err() {
            bail!("metrics.listen: {:?} is not an address:port", self.metrics.listen);
        }
        Ok(())
    }

    /// Kernel config flags derived from this file.
    pub fn flags(&self) -> u32 {
        let mut f = 0;
        if self.dry_run {
            f |= CFG_DRY_RUN;
        }
        if self.drop_malformed {
            f |= CFG_DROP_MALFORMED;
        }
        if self.sip.tcp {
            f |= CFG_SIP_TCP;
        }
        if let Some(g) = &self.geoip {
            f |= CFG_GEO_ENABLED;
            if g.scope == Scope::All {
                f |= CFG_GEO_SCOPE_ALL;
            }
            if g.unknown == Unknown::Drop {
                f |= CFG_GEO_UNKNOWN_DROP;
            }
        }
        if self.scanners.enabled {
            f |= CFG_SCANNERS_ENABLED;
        }
        if !self.ratelimit.rules.is_empty() {
            f |= CFG_RATELIMIT_ENABLED;
        }
        f
    }
}

impl ScannersCfg {
    /// (config key, header id, signatures) for every header list.
    pub fn header_lists(&self) -> [(&'static str, &Vec<String>); 7] {
        [
            ("user_agent", &self.user_agent),
            ("from", &self.from),
            ("to", &self.to),
            ("contact", &self.contact),
            ("via", &self.via),
            ("call_id", &self.call_id),
            ("subject", &self.subject),
        ]
    }
}

/// TOML errors with the line and the key path where the parser knows them.
fn describe_toml_error(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.message())
        }
        None => e.message().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config> {
        Config::parse(t, Path::new("test.toml"))
    }

    #[test]
    fn defaults_and_example_keys() {
        let c = parse("interfaces = [\"veth0\"]\n[sip]\nports = [5060]\n[ratelimit]\nipv6_prefix = 56\n[ratelimit.register]\nrate = 5\nburst = 10\nban_after = 20\nban_ttl = \"15m\"\n").unwrap();
        assert_eq!(c.sip.ports, vec![5060]);
        assert_eq!(c.ratelimit.ipv6_prefix, 56);
        assert_eq!(c.ratelimit.rules["register"].ban_ttl, Duration::from_secs(900));
        assert_eq!(c.mode, Mode::Auto);
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sipshield.example.toml"));
        let c = Config::load(path).unwrap();
        assert_eq!(c.interfaces, vec!["eth1"]);
        assert_eq!(c.ratelimit.rules["register"].burst, 20);
        assert_eq!(c.metrics.listen, "127.0.0.1:9610");
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = parse("interfaces = []\nbogus = 1\n").unwrap_err().to_string();
        assert!(e.contains("test.toml") && e.contains("bogus"), "{e}");
        let e = parse("[sip]\nportz = [5060]\n").unwrap_err().to_string();
        assert!(e.contains("portz"), "{e}");
        let e = parse("[ratelimit.regster]\nrate = 1\nburst = 1\n").unwrap_err().to_string();
        assert!(e.contains("ratelimit.regster"), "{e}");
        let e = parse("[blacklist]\nentries = [\"198.51.100.0/33\"]\n").unwrap_err().to_string();
        assert!(e.contains("blacklist.entries[0]"), "{e}");
        let e = parse("[blacklist]\nrefresh = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("soon"), "{e}");
    }
}
