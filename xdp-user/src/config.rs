//! The TOML configuration (`--config FILE`). Unknown keys are errors; every error names the
//! file and the key. See `sipshield.example.toml` for a commented example of every key.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::Deserialize;
use xdp_common::*;

#[derive(Debug, Clone, Deserialize, Default, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Interfaces to attach to.
    pub interfaces: Vec<String>,
    /// "auto" (native, falling back to skb), "native" or "skb".
    pub mode: Mode,
    /// Count what would be dropped, pass everything.
    pub dry_run: bool,
    /// Drop packets with malformed/truncated headers (default: count and pass).
    pub drop_malformed: bool,
    pub sip: SipCfg,
    pub blacklist: ListCfg,
    pub allowlist: ListCfg,
    pub geoip: Option<GeoCfg>,
    pub scanners: ScannersCfg,
    /// `[ratelimit]`: `ipv6_prefix = 64` and one `[ratelimit.<method>]` table per method.
    pub ratelimit: RateLimitCfg,
    pub metrics: MetricsCfg,
    pub events: EventsCfg,
    /// `[groups.NAME]`: source groups for `[[port]]` rules (the list format of `[blacklist]`).
    pub groups: BTreeMap<String, ListCfg>,
    /// `[[port]]`: per-port policy (see `crate::portpolicy`).
    #[serde(rename = "port")]
    pub ports: Vec<crate::portpolicy::PortCfg>,
    /// `[tollfraud]`: dialled-prefix policy for INVITE and MESSAGE.
    pub tollfraud: Option<crate::portpolicy::TollFraudCfg>,
    /// `[crowdsec]`: pull decisions from a CrowdSec Local API, push our own bans as alerts.
    pub crowdsec: Option<crate::crowdsec::CrowdsecCfg>,
    /// `[authfail]`: bans from the SIP server's own answers (failed authentications,
    /// enumeration), seen by the egress program.
    pub authfail: AuthFailCfg,
    /// `[audit]`: where every change to the running filter is recorded.
    pub audit: crate::audit::AuditCfg,
    /// `[notify]`: mail and webhook digests.
    pub notify: crate::notify::NotifyCfg,
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Auto,
    Native,
    Skb,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SipCfg {
    /// Protected SIP ports (UDP and TCP).
    pub ports: Vec<u16>,
    /// Inspect TCP segments on SIP ports too (best effort, per segment).
    pub tcp: bool,
}

impl Default for SipCfg {
    fn default() -> Self {
        SipCfg { ports: vec![5060, 5061], tcp: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ListCfg {
    pub files: Vec<PathBuf>,
    pub urls: Vec<String>,
    /// Inline addresses/ranges.
    pub entries: Vec<String>,
    /// Refresh period for files and URLs, e.g. "6h".
    #[serde(with = "humantime_serde")]
    pub refresh: Duration,
    /// Skip (and report) invalid lines instead of rejecting the list.
    pub skip_invalid: bool,
    /// HTTP timeout for URLs.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// A file or URL that yields no entry is a failed load (the last good list stays) unless
    /// this is set.
    pub allow_empty: bool,
    /// Largest list file or HTTP body accepted, in bytes.
    pub max_bytes: u64,
    /// Accept `0.0.0.0/0` and `::/0` (every address) in this list.
    pub allow_match_all: bool,
}

impl Default for ListCfg {
    fn default() -> Self {
        ListCfg {
            files: vec![],
            urls: vec![],
            entries: vec![],
            refresh: Duration::from_secs(6 * 3600),
            skip_invalid: false,
            timeout: Duration::from_secs(30),
            allow_empty: false,
            max_bytes: 256 << 20,
            allow_match_all: false,
        }
    }
}

/// Bounds of list settings.
pub const LIST_REFRESH_MIN: Duration = Duration::from_secs(10);
pub const LIST_REFRESH_MAX: Duration = Duration::from_secs(30 * 86400);
pub const LIST_TIMEOUT_MAX: Duration = Duration::from_secs(600);
pub const LIST_MAX_BYTES_MAX: u64 = 4 << 30;

impl ListCfg {
    pub(crate) fn check(&self, section: &str) -> Result<()> {
        for (i, e) in self.entries.iter().enumerate() {
            let n = crate::lists::parse_entry(e.trim())
                .ok_or_else(|| anyhow!("{section}.entries[{i}]: invalid address or CIDR {e:?}"))?;
            if n.prefix_len() == 0 && !self.allow_match_all {
                bail!(
                    "{section}.entries[{i}]: {e:?} matches every address; set {section}.allow_match_all = true if you mean it"
                );
            }
        }
        for f in &self.files {
            crate::lists::check_list_file(f, self.max_bytes).map_err(|e| anyhow!("{section}.files: {e}"))?;
        }
        for u in &self.urls {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                bail!("{section}.urls: {u:?} is not an http(s) URL");
            }
        }
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        if self.refresh < LIST_REFRESH_MIN || self.refresh > LIST_REFRESH_MAX {
            bail!("{section}.refresh: {} is out of range 10s..=30days", fmt(self.refresh));
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > LIST_TIMEOUT_MAX {
            bail!("{section}.timeout: {} is out of range 1s..=10m", fmt(self.timeout));
        }
        if !(1024..=LIST_MAX_BYTES_MAX).contains(&self.max_bytes) {
            bail!("{section}.max_bytes: {} is out of range 1024..={LIST_MAX_BYTES_MAX}", self.max_bytes);
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
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

fn yes() -> bool {
    true
}

impl GeoCfg {
    fn check(&self) -> Result<()> {
        if self.allow_countries.is_empty() == self.deny_countries.is_empty() {
            bail!("geoip: set exactly one of allow_countries or deny_countries");
        }
        for (key, list) in [("allow_countries", &self.allow_countries), ("deny_countries", &self.deny_countries)] {
            for c in list {
                if crate::countries::index_of(c).is_none() {
                    bail!("geoip.{key}: {c:?} is not an ISO 3166-1 alpha-2 country code");
                }
            }
        }
        if !self.database.is_file() {
            bail!("geoip.database: {}: no such file", self.database.display());
        }
        Ok(())
    }
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ScannersCfg {
    pub enabled: bool,
    /// Include the built-in signature list.
    pub defaults: bool,
    /// Extra signatures per header (prefix, case-insensitive).
    pub user_agent: Vec<String>,
    pub from: Vec<String>,
    pub to: Vec<String>,
    pub contact: Vec<String>,
    pub via: Vec<String>,
    pub call_id: Vec<String>,
    pub subject: Vec<String>,
    /// Built-in signatures to leave out.
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

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateCfg {
    /// Requests per second (sustained).
    pub rate: f64,
    /// Bucket size (requests allowed at once).
    pub burst: u32,
    /// Excess packets within `window` that put the source in the timed-ban map (0 = never).
    #[serde(default)]
    pub ban_after: u32,
    #[serde(default = "default_ban_ttl", with = "humantime_serde")]
    pub ban_ttl: Duration,
    #[serde(default = "default_window", with = "humantime_serde")]
    pub window: Duration,
}

fn default_ban_ttl() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_window() -> Duration {
    Duration::from_secs(10)
}

/// Bounds of a rate rule: what the kernel's GCRA arithmetic (u64 ns) holds without overflow.
pub const RATE_MIN: f64 = 0.001;
pub const RATE_MAX: f64 = 1e6;
pub const BURST_MAX: u32 = 1_000_000;
pub const WINDOW_MAX: Duration = Duration::from_secs(86400);

impl RateCfg {
    /// Check every value against what the kernel representation can hold.
    fn check(&self, key: &str) -> Result<()> {
        if !(self.rate.is_finite() && (RATE_MIN..=RATE_MAX).contains(&self.rate)) {
            bail!("ratelimit.{key}.rate: {} is out of range {RATE_MIN}..={RATE_MAX} requests per second", self.rate);
        }
        if !(1..=BURST_MAX).contains(&self.burst) {
            bail!("ratelimit.{key}.burst: {} is out of range 1..={BURST_MAX}", self.burst);
        }
        if self.window < Duration::from_secs(1) || self.window > WINDOW_MAX {
            bail!("ratelimit.{key}.window: {} is out of range 1s..=1day", humantime::format_duration(self.window));
        }
        crate::bans::check_ttl(&format!("ratelimit.{key}.ban_ttl"), self.ban_ttl)
    }

    /// The kernel's rule.
    pub fn kernel_rule(&self) -> RateRule {
        let interval = (1e9 / self.rate).round().max(1.0) as u64;
        RateRule {
            interval_ns: interval,
            tolerance_ns: interval * (self.burst as u64 - 1),
            ban_ttl_ns: self.ban_ttl.as_nanos() as u64,
            window_ns: self.window.as_nanos() as u64,
            ban_after: self.ban_after,
            _pad: 0,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RateLimitCfg {
    pub ipv6_prefix: u32,
    /// Rules by lowercase method name.
    pub rules: BTreeMap<String, RateCfg>,
}

impl Default for RateLimitCfg {
    fn default() -> Self {
        RateLimitCfg { ipv6_prefix: 64, rules: BTreeMap::new() }
    }
}

impl<'de> Deserialize<'de> for RateLimitCfg {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error;
        let table = toml::Table::deserialize(d)?;
        let mut out = RateLimitCfg::default();
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
            rule.check(&k).map_err(|e| D::Error::custom(format!("{e:#}")))?;
            let name = k.to_ascii_lowercase();
            if out.rules.contains_key(&name) {
                return Err(D::Error::custom(format!(
                    "ratelimit.{k}: a second table for the method {name} (method names are case-insensitive)"
                )));
            }
            out.rules.insert(name, rule);
        }
        Ok(out)
    }
}

/// Rate-limit slot of a method name as written in `[ratelimit.<method>]`.
pub fn method_slot(name: &str) -> Option<u8> {
    let up = name.to_ascii_uppercase();
    METHOD_NAMES.iter().position(|m| !m.is_empty() && *m == up && *m != "RESPONSE" && *m != "OTHER").map(|i| i as u8)
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsCfg {
    #[serde(deserialize_with = "socket_addr")]
    pub listen: std::net::SocketAddr,
    pub enabled: bool,
}

fn socket_addr<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<std::net::SocketAddr, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map_err(|_| {
        serde::de::Error::custom(format!("metrics.listen: {s:?} is not an address:port (e.g. \"127.0.0.1:9610\")"))
    })
}

impl Default for MetricsCfg {
    fn default() -> Self {
        MetricsCfg { listen: std::net::SocketAddr::from(([127, 0, 0, 1], 9610)), enabled: true }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EventsCfg {
    /// Also append JSON lines to this file.
    pub file: Option<PathBuf>,
    /// Maximum events per second per CPU (kernel-side sampling).
    pub rate: u32,
    /// Burst of events allowed at once.
    pub burst: u32,
    /// Reasons that produce events (default: every drop reason).
    pub reasons: Vec<String>,
    /// Print events to stdout (journal).
    pub stdout: bool,
}

impl Default for EventsCfg {
    fn default() -> Self {
        EventsCfg {
            file: None,
            rate: 100,
            burst: 50,
            reasons: [
                "blacklisted",
                "banned",
                "geo",
                "scanner",
                "ratelimit",
                "port",
                "method",
                "tollfraud",
                "authfail",
                "enumeration",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect(),
            stdout: true,
        }
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthFailCfg {
    /// Count failed authentications and enumeration, ban at the thresholds.
    pub enabled: bool,
    /// Failed authentications of one source (IPv6: per `ratelimit.ipv6_prefix`) within
    /// `window` that ban it.
    pub ban_after: u32,
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// How long an `authfail` or `enumeration` ban lasts.
    #[serde(with = "humantime_serde")]
    pub ban_ttl: Duration,
    /// Statuses that refuse a request carrying credentials.
    pub statuses: Vec<u16>,
    /// Ban sources that get 404/484 for this many distinct users within `enum_window`
    /// (0 = enumeration is not checked).
    pub enum_distinct: u32,
    #[serde(with = "humantime_serde")]
    pub enum_window: Duration,
    /// Count a 403 to a request without credentials as an enumeration miss too (PBXs that
    /// answer 403 for unknown users, e.g. Asterisk chan_sip with `alwaysauthreject = no`).
    pub enum_403: bool,
}

impl Default for AuthFailCfg {
    fn default() -> Self {
        AuthFailCfg {
            enabled: false,
            ban_after: 10,
            window: Duration::from_secs(600),
            ban_ttl: Duration::from_secs(3600),
            statuses: vec![401, 403, 407],
            enum_distinct: 20,
            enum_window: Duration::from_secs(60),
            enum_403: false,
        }
    }
}

/// Bounds of `[authfail]`.
pub const AUTHFAIL_BAN_AFTER_MAX: u32 = 10_000;

impl AuthFailCfg {
    fn check(&self) -> Result<()> {
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        if !(1..=AUTHFAIL_BAN_AFTER_MAX).contains(&self.ban_after) {
            bail!("authfail.ban_after: {} is out of range 1..={AUTHFAIL_BAN_AFTER_MAX}", self.ban_after);
        }
        if self.window < Duration::from_secs(1) || self.window > WINDOW_MAX {
            bail!("authfail.window: {} is out of range 1s..=1day", fmt(self.window));
        }
        crate::bans::check_ttl("authfail.ban_ttl", self.ban_ttl)?;
        if self.statuses.is_empty() || self.statuses.len() > AUTH_MAX_STATUSES {
            bail!("authfail.statuses: give 1..={AUTH_MAX_STATUSES} status codes (got {})", self.statuses.len());
        }
        for (i, s) in self.statuses.iter().enumerate() {
            if !(400..=699).contains(s) {
                bail!("authfail.statuses[{i}]: {s} is not a failure status (400..=699)");
            }
            if self.statuses[..i].contains(s) {
                bail!("authfail.statuses[{i}]: {s} is listed twice");
            }
        }
        if self.enum_distinct != 0 && !(2..=ENUM_DISTINCT_MAX).contains(&self.enum_distinct) {
            bail!("authfail.enum_distinct: {} is out of range 2..={ENUM_DISTINCT_MAX} (0 = off)", self.enum_distinct);
        }
        if self.enum_window < Duration::from_secs(1) || self.enum_window > WINDOW_MAX {
            bail!("authfail.enum_window: {} is out of range 1s..=1day", fmt(self.enum_window));
        }
        Ok(())
    }

    /// The kernel's settings (`AUTH_CFG`); all zero when disabled.
    pub fn kernel(&self) -> AuthConfig {
        if !self.enabled {
            return AuthConfig::default();
        }
        let mut flags = AUTH_ENABLED;
        if self.enum_distinct != 0 {
            flags |= AUTH_ENUM_ENABLED;
        }
        if self.enum_403 {
            flags |= AUTH_ENUM_403;
        }
        let mut statuses = [0u16; AUTH_MAX_STATUSES];
        statuses[..self.statuses.len()].copy_from_slice(&self.statuses);
        AuthConfig {
            flags,
            ban_after: self.ban_after,
            window_ns: self.window.as_nanos() as u64,
            ban_ttl_ns: self.ban_ttl.as_nanos() as u64,
            enum_distinct: self.enum_distinct,
            n_statuses: self.statuses.len() as u32,
            enum_window_ns: self.enum_window.as_nanos() as u64,
            statuses,
        }
    }
}

/// Largest config file accepted.
const CONFIG_MAX_BYTES: u64 = 16 << 20;

impl Config {
    /// Read and validate a config file. Errors name the file and the key.
    pub fn load(path: &Path) -> Result<Config> {
        let text = crate::lists::read_regular_file(path, CONFIG_MAX_BYTES)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let cfg = Self::parse_schema(text, path)?;
        let problems = cfg.problems();
        if !problems.is_empty() {
            let p = path.display();
            bail!("{}", problems.iter().map(|e| format!("{p}: {e}")).collect::<Vec<_>>().join("\n"));
        }
        Ok(cfg)
    }

    /// Read a config file against the schema only (TOML syntax, keys, types): the semantic
    /// checks are [`Config::problems`]. `sipshield check` uses both to list every problem.
    pub fn load_schema(path: &Path) -> Result<Config> {
        let text = crate::lists::read_regular_file(path, CONFIG_MAX_BYTES)
            .with_context(|| format!("{}: cannot read config", path.display()))?;
        Self::parse_schema(&text, path)
    }

    fn parse_schema(text: &str, path: &Path) -> Result<Config> {
        toml::from_str(text).map_err(|e| anyhow!("{}: {}", path.display(), describe_toml_error(&e, text)))
    }

    /// Read and validate the config of a controller (`run` and `reload` alike): everything
    /// [`Config::load`] checks, plus the interfaces.
    pub fn load_for_daemon(path: &Path) -> Result<Config> {
        let cfg = Self::load(path)?;
        cfg.check_interfaces().map_err(|e| anyhow!("{}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// A controller's config names its interfaces, each once, each existing.
    pub fn check_interfaces(&self) -> Result<()> {
        if self.interfaces.is_empty() {
            bail!("interfaces: at least one interface is required (e.g. interfaces = [\"eth1\"])");
        }
        check_iface_names(&self.interfaces)
    }

    /// Checks that go beyond the schema: bounds, CIDRs, country codes, files that must exist.
    /// Every problem is reported (one per line), not only the first.
    pub fn validate(&self) -> Result<()> {
        let problems = self.problems();
        if problems.is_empty() {
            return Ok(());
        }
        bail!("{}", problems.join("\n"))
    }

    /// Every problem [`Config::validate`] finds, each naming its key (`sipshield check` lists
    /// them all).
    pub fn problems(&self) -> Vec<String> {
        let mut out = vec![];
        let mut add = |r: Result<()>| {
            if let Err(e) = r {
                out.push(format!("{e:#}"));
            }
        };
        add(self.check_sip());
        add(self.blacklist.check("blacklist"));
        add(self.allowlist.check("allowlist"));
        if let Some(g) = &self.geoip {
            add(g.check());
        }
        add(self.check_scanners_and_events());
        if let Some(c) = &self.crowdsec {
            add(c.check());
        }
        add(self.authfail.check());
        add(crate::portpolicy::validate(self));
        add(self.audit.check());
        out.extend(self.notify.problems());
        out
    }

    fn check_sip(&self) -> Result<()> {
        if self.sip.ports.is_empty() {
            bail!("sip.ports: at least one port is required");
        }
        if self.sip.ports.contains(&0) {
            bail!("sip.ports: port 0 is not valid");
        }
        let mut seen = std::collections::BTreeSet::new();
        for i in &self.interfaces {
            if !seen.insert(i) {
                bail!("interfaces: {i:?} is listed twice");
            }
        }
        Ok(())
    }

    fn check_scanners_and_events(&self) -> Result<()> {
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
        if !(1..=1_000_000).contains(&self.events.rate) {
            bail!("events.rate: {} is out of range 1..=1000000", self.events.rate);
        }
        if !(1..=1_000_000).contains(&self.events.burst) {
            bail!("events.burst: {} is out of range 1..=1000000", self.events.burst);
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
        if !self.ports.is_empty() {
            f |= CFG_PORT_RULES;
        }
        if self.tollfraud.is_some() {
            f |= CFG_TOLLFRAUD;
        }
        if self.authfail.enabled {
            f |= CFG_AUTH_RECORD;
        }
        f
    }
}

/// Interface names given to a controller: unique and existing.
pub fn check_iface_names(names: &[String]) -> Result<()> {
    let mut seen = std::collections::BTreeSet::new();
    for i in names {
        if !seen.insert(i) {
            bail!("interface {i:?} is given twice");
        }
        if crate::sys::ifindex(i).is_none() {
            bail!("interface {i:?} does not exist");
        }
    }
    Ok(())
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
        // Defaults of the optional keys (sipshield.example.toml documents them).
        let c = parse("[ratelimit.invite]\nrate = 1\nburst = 1\n").unwrap();
        let r = &c.ratelimit.rules["invite"];
        assert_eq!((r.ban_after, r.ban_ttl, r.window), (0, Duration::from_secs(15 * 60), Duration::from_secs(10)));
        let db = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let c = parse(&format!("[geoip]\ndatabase = \"{db}\"\nallow_countries = [\"FR\"]\n")).unwrap();
        let g = c.geoip.unwrap();
        assert!(g.reload && g.unknown == Unknown::Allow && g.scope == Scope::Sip);
    }

    #[test]
    fn example_config_is_valid() {
        let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../sipshield.example.toml"));
        let c = Config::load(path).unwrap();
        assert_eq!(c.interfaces, vec!["eth1"]);
        assert_eq!(c.ratelimit.rules["register"].burst, 20);
        assert_eq!(c.metrics.listen.to_string(), "127.0.0.1:9610");
        assert_eq!(
            (c.audit, c.notify.clone()),
            (crate::audit::AuditCfg::default(), crate::notify::NotifyCfg::default())
        );
        assert!(!c.notify.enabled());
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

    /// Every bound at both ends: `None` = valid, `Some(text)` = an error containing `text`.
    #[test]
    fn bounds_are_checked_at_both_ends() {
        let db = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let rule = |extra: &str| format!("[ratelimit.register]\nrate = 1\nburst = 1\n{extra}");
        let long = "x".repeat(SIG_MAX_LEN);
        let cases: Vec<(String, Option<&str>)> = vec![
            ("[sip]\nports = []".into(), Some("sip.ports: at least one port")),
            ("[sip]\nports = [0, 5060]".into(), Some("sip.ports: port 0")),
            ("[sip]\nports = [1, 65535]".into(), None),
            ("interfaces = [\"a\", \"b\", \"a\"]".into(), Some("interfaces: \"a\" is listed twice")),
            ("[blacklist]\nrefresh = \"10s\"".into(), None),
            ("[blacklist]\nrefresh = \"9s\"".into(), Some("blacklist.refresh: 9s is out of range")),
            ("[allowlist]\nrefresh = \"30days\"".into(), None),
            ("[allowlist]\nrefresh = \"30days 1s\"".into(), Some("allowlist.refresh")),
            ("[blacklist]\ntimeout = \"1s\"".into(), None),
            ("[blacklist]\ntimeout = \"999ms\"".into(), Some("blacklist.timeout")),
            ("[blacklist]\ntimeout = \"10m\"".into(), None),
            ("[blacklist]\ntimeout = \"601s\"".into(), Some("blacklist.timeout")),
            ("[blacklist]\nmax_bytes = 1024".into(), None),
            ("[blacklist]\nmax_bytes = 1023".into(), Some("blacklist.max_bytes: 1023")),
            ("[blacklist]\nmax_bytes = 4294967296".into(), None),
            ("[blacklist]\nmax_bytes = 4294967297".into(), Some("blacklist.max_bytes")),
            ("[blacklist]\nurls = [\"ftp://x\"]".into(), Some("blacklist.urls: \"ftp://x\" is not an http(s) URL")),
            ("[blacklist]\nurls = [\"http://x\", \"https://y\"]".into(), None),
            ("[allowlist]\nentries = [\"198.51.100.1\", \"::/0\"]".into(), Some("allowlist.entries[1]")),
            ("[allowlist]\nentries = [\"::/0\"]\nallow_match_all = true".into(), None),
            (" [blacklist]\nentries = [\" 198.51.100.0/24 \"]".into(), None),
            (format!("[blacklist]\nfiles = [\"{db}\"]"), None),
            ("[blacklist]\nfiles = [\"/nonexistent/bl.txt\"]".into(), Some("blacklist.files: /nonexistent/bl.txt")),
            (format!("[blacklist]\nfiles = [\"{db}\"]\nmax_bytes = 1024"), Some("larger than the limit")),
            (rule(""), None),
            ("[ratelimit.register]\nrate = 0.001\nburst = 1".into(), None),
            ("[ratelimit.register]\nrate = 0.0009\nburst = 1".into(), Some("ratelimit.register.rate")),
            ("[ratelimit.register]\nrate = 1000000\nburst = 1000000".into(), None),
            ("[ratelimit.register]\nrate = 1000001\nburst = 1".into(), Some("ratelimit.register.rate")),
            ("[ratelimit.register]\nrate = nan\nburst = 1".into(), Some("ratelimit.register.rate")),
            ("[ratelimit.register]\nrate = inf\nburst = 1".into(), Some("ratelimit.register.rate")),
            ("[ratelimit.register]\nrate = 1\nburst = 0".into(), Some("ratelimit.register.burst")),
            ("[ratelimit.register]\nrate = 1\nburst = 1000001".into(), Some("ratelimit.register.burst")),
            (rule("window = \"1s\""), None),
            (rule("window = \"999ms\""), Some("ratelimit.register.window")),
            (rule("window = \"1day\""), None),
            (rule("window = \"86401s\""), Some("ratelimit.register.window")),
            (rule("ban_ttl = \"0s\""), Some("ratelimit.register.ban_ttl")),
            (rule("ban_ttl = \"3650days\""), None),
            (rule("ban_ttl = \"3651days\""), Some("ratelimit.register.ban_ttl")),
            (rule("bogus = 1"), Some("bogus")),
            ("[ratelimit]\nipv6_prefix = 0".into(), Some("ratelimit.ipv6_prefix must be 1..=128 (got 0)")),
            ("[ratelimit]\nipv6_prefix = 1".into(), None),
            ("[ratelimit]\nipv6_prefix = 128".into(), None),
            ("[ratelimit]\nipv6_prefix = 129".into(), Some("ratelimit.ipv6_prefix")),
            ("[ratelimit]\nipv6_prefix = \"64\"".into(), Some("must be an integer")),
            (
                format!("{}[ratelimit.REGISTER]\nrate = 2\nburst = 2", rule("")),
                Some("a second table for the method register"),
            ),
            ("[ratelimit.response]\nrate = 1\nburst = 1".into(), Some("unknown key ratelimit.response")),
            ("[ratelimit.other]\nrate = 1\nburst = 1".into(), Some("unknown key ratelimit.other")),
            ("[ratelimit.any]\nrate = 1\nburst = 1".into(), None),
            ("[scanners]\nuser_agent = [\"\"]".into(), Some("scanners.user_agent: signature \"\"")),
            (format!("[scanners]\nsubject = [\"{long}\"]"), None),
            (format!("[scanners]\nsubject = [\"{long}x\"]"), Some("scanners.subject")),
            ("[events]\nreasons = [\"pass\", \"malformed\"]".into(), None),
            ("[authfail]\nban_after = 1".into(), None),
            ("[authfail]\nban_after = 0".into(), Some("authfail.ban_after: 0 is out of range")),
            ("[authfail]\nban_after = 10000".into(), None),
            ("[authfail]\nban_after = 10001".into(), Some("authfail.ban_after: 10001")),
            ("[authfail]\nwindow = \"1s\"".into(), None),
            ("[authfail]\nwindow = \"999ms\"".into(), Some("authfail.window")),
            ("[authfail]\nwindow = \"1day\"".into(), None),
            ("[authfail]\nwindow = \"86401s\"".into(), Some("authfail.window")),
            ("[authfail]\nban_ttl = \"1s\"".into(), None),
            ("[authfail]\nban_ttl = \"0s\"".into(), Some("authfail.ban_ttl")),
            ("[authfail]\nban_ttl = \"3651days\"".into(), Some("authfail.ban_ttl")),
            ("[authfail]\nstatuses = []".into(), Some("authfail.statuses: give 1..=8")),
            ("[authfail]\nstatuses = [400, 699]".into(), None),
            ("[authfail]\nstatuses = [399]".into(), Some("authfail.statuses[0]: 399")),
            ("[authfail]\nstatuses = [401, 700]".into(), Some("authfail.statuses[1]: 700")),
            ("[authfail]\nstatuses = [401, 401]".into(), Some("authfail.statuses[1]: 401 is listed twice")),
            ("[authfail]\nstatuses = [401, 402, 403, 404, 405, 406, 407, 408]".into(), None),
            ("[authfail]\nstatuses = [401, 402, 403, 404, 405, 406, 407, 408, 409]".into(), Some("authfail.statuses")),
            ("[authfail]\nenum_distinct = 0".into(), None),
            ("[authfail]\nenum_distinct = 1".into(), Some("authfail.enum_distinct: 1")),
            ("[authfail]\nenum_distinct = 2".into(), None),
            ("[authfail]\nenum_distinct = 64".into(), None),
            ("[authfail]\nenum_distinct = 65".into(), Some("authfail.enum_distinct: 65")),
            ("[authfail]\nenum_window = \"1s\"".into(), None),
            ("[authfail]\nenum_window = \"999ms\"".into(), Some("authfail.enum_window")),
            ("[authfail]\nenum_window = \"86401s\"".into(), Some("authfail.enum_window")),
            ("[authfail]\nbogus = 1".into(), Some("bogus")),
            ("[events]\nreasons = [\"banned\", \"bogus\"]".into(), Some("events.reasons: unknown reason \"bogus\"")),
            ("[events]\nrate = 0".into(), Some("events.rate: 0")),
            ("[events]\nrate = 1000000\nburst = 1000000".into(), None),
            ("[events]\nrate = 1000001".into(), Some("events.rate")),
            ("[events]\nburst = 0".into(), Some("events.burst: 0")),
            ("[events]\nburst = 1000001".into(), Some("events.burst")),
            ("[metrics]\nlisten = \"localhost\"".into(), Some("metrics.listen: \"localhost\" is not an address:port")),
            ("[metrics]\nlisten = \"[::1]:9610\"".into(), None),
            (format!("[geoip]\ndatabase = \"{db}\"\nallow_countries = [\"FR\"]"), None),
            (format!("[geoip]\ndatabase = \"{db}\"\ndeny_countries = [\"fr\", \"BE\"]"), None),
            (format!("[geoip]\ndatabase = \"{db}\""), Some("geoip: set exactly one")),
            (
                format!("[geoip]\ndatabase = \"{db}\"\nallow_countries = [\"FR\"]\ndeny_countries = [\"BE\"]"),
                Some("geoip: set exactly one"),
            ),
            (
                format!("[geoip]\ndatabase = \"{db}\"\ndeny_countries = [\"FR\", \"XY\"]"),
                Some("geoip.deny_countries: \"XY\""),
            ),
            (format!("[geoip]\ndatabase = \"{db}\"\nallow_countries = [\"France\"]"), Some("geoip.allow_countries")),
            (
                "[geoip]\ndatabase = \"/nonexistent.mmdb\"\nallow_countries = [\"FR\"]".into(),
                Some("geoip.database: /nonexistent.mmdb: no such file"),
            ),
        ];
        for (text, want) in &cases {
            match (parse(text), want) {
                (Ok(_), None) => {}
                (Err(e), Some(w)) => {
                    let e = format!("{e:#}");
                    assert!(e.starts_with("test.toml: ") && e.contains(w), "{text:?}: {e:?} should contain {w:?}");
                }
                (Ok(_), Some(w)) => panic!("{text:?} was accepted; expected an error containing {w:?}"),
                (Err(e), None) => panic!("{text:?} was refused: {e:#}"),
            }
        }
    }

    #[test]
    fn toml_errors_name_the_line() {
        let e = parse("interfaces = [\"a\"]\n\n[sip]\nports = \"5060\"\n").unwrap_err().to_string();
        assert!(e.starts_with("test.toml: line 4: "), "{e}");
    }

    #[test]
    fn kernel_flags_follow_the_keys() {
        let db = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let none = parse("[sip]\ntcp = false\n[scanners]\nenabled = false\n").unwrap();
        assert_eq!(none.flags(), 0);
        assert_eq!(Config::default().flags(), CFG_SIP_TCP | CFG_SCANNERS_ENABLED, "the defaults");
        let text = |top: &str, tcp: bool, scanners: bool, extra: &str| {
            format!("{top}[sip]\ntcp = {tcp}\n[scanners]\nenabled = {scanners}\n{extra}")
        };
        let geo = |extra: &str| format!("[geoip]\ndatabase = \"{db}\"\nallow_countries = [\"FR\"]\n{extra}");
        for (text, flag) in [
            (text("dry_run = true\n", false, false, ""), CFG_DRY_RUN),
            (text("drop_malformed = true\n", false, false, ""), CFG_DROP_MALFORMED),
            (text("", true, false, ""), CFG_SIP_TCP),
            (text("", false, true, ""), CFG_SCANNERS_ENABLED),
            (text("", false, false, "[ratelimit.options]\nrate = 1\nburst = 1\n"), CFG_RATELIMIT_ENABLED),
            (text("", false, false, &geo("")), CFG_GEO_ENABLED),
            (text("", false, false, &geo("scope = \"all\"\n")), CFG_GEO_ENABLED | CFG_GEO_SCOPE_ALL),
            (text("", false, false, &geo("unknown = \"drop\"\n")), CFG_GEO_ENABLED | CFG_GEO_UNKNOWN_DROP),
        ] {
            assert_eq!(parse(&text).unwrap().flags(), flag, "{text}");
        }
    }

    #[test]
    fn rate_rules_in_kernel_units() {
        let r = RateCfg {
            rate: 5.0,
            burst: 10,
            ban_after: 20,
            ban_ttl: Duration::from_secs(900),
            window: Duration::from_secs(10),
        };
        let k = r.kernel_rule();
        assert_eq!((k.interval_ns, k.tolerance_ns), (200_000_000, 9 * 200_000_000));
        assert_eq!((k.ban_ttl_ns, k.window_ns, k.ban_after), (900_000_000_000, 10_000_000_000, 20));
        let k = RateCfg { rate: 3.0, burst: 1, ..r.clone() }.kernel_rule();
        assert_eq!((k.interval_ns, k.tolerance_ns), (333_333_333, 0), "rounded; a burst of 1 has no tolerance");
        assert_eq!(RateCfg { rate: RATE_MAX, ..r.clone() }.kernel_rule().interval_ns, 1000);
        assert_eq!(RateCfg { rate: RATE_MIN, ..r }.kernel_rule().interval_ns, 1_000_000_000_000);
    }

    #[test]
    fn method_slots() {
        assert_eq!(method_slot("register"), Some(METHOD_REGISTER));
        assert_eq!(method_slot("Invite"), Some(METHOD_INVITE));
        assert_eq!(method_slot("ANY"), Some(METHOD_ANY));
        for no in ["", "response", "other", "regist", "registerx"] {
            assert_eq!(method_slot(no), None, "{no:?}");
        }
    }

    #[test]
    fn interfaces_of_a_controller() {
        let e = Config::default().check_interfaces().unwrap_err().to_string();
        assert!(e.contains("at least one interface"), "{e}");
        Config { interfaces: vec!["lo".into()], ..Default::default() }.check_interfaces().unwrap();
        let e = check_iface_names(&["lo".into(), "lo".into()]).unwrap_err().to_string();
        assert!(e.contains("\"lo\" is given twice"), "{e}");
        let e = check_iface_names(&["lo".into(), "sipshield-none0".into()]).unwrap_err().to_string();
        assert!(e.contains("\"sipshield-none0\" does not exist"), "{e}");
        let keys: Vec<&str> = ScannersCfg::default().header_lists().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["user_agent", "from", "to", "contact", "via", "call_id", "subject"]);
    }
}
