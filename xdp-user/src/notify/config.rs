//! `[notify]`: channels (SMTP, webhooks), digest interval, triggers. Secrets are kept in
//! [`Secret`], whose `Debug` never shows them.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// A value never printed (SMTP password, webhook URL with its token).
#[derive(Clone, Deserialize, PartialEq, Default)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"(secret)\"")
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyCfg {
    /// At most one message per channel per interval; the first alert of a quiet period goes
    /// out at once, the rest are summarised in the next digest.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    pub smtp: Option<SmtpCfg>,
    #[serde(rename = "webhook")]
    pub webhooks: Vec<WebhookCfg>,
    /// Alerts waiting per channel; beyond it they are dropped and counted.
    pub queue: usize,
    /// Delivery attempts of one message (first try included), with doubling back-off.
    pub attempts: u32,
    #[serde(with = "humantime_serde")]
    pub retry_backoff: Duration,
    /// Host name shown in messages (default: the machine's).
    pub host: Option<String>,
    pub triggers: TriggersCfg,
}

impl Default for NotifyCfg {
    fn default() -> Self {
        NotifyCfg {
            interval: Duration::from_secs(300),
            smtp: None,
            webhooks: vec![],
            queue: 1024,
            attempts: 5,
            retry_backoff: Duration::from_secs(10),
            host: None,
            triggers: TriggersCfg::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Tls {
    /// STARTTLS on a plain connection (port 587), required.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No encryption (a relay on localhost; tests).
    None,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SmtpCfg {
    pub server: String,
    /// Default: 587 (starttls), 465 (tls), 25 (none).
    pub port: Option<u16>,
    #[serde(default)]
    pub tls: Tls,
    pub username: Option<String>,
    pub password: Option<Secret>,
    /// Read the password from this file instead (first line), e.g. a systemd credential.
    pub password_file: Option<PathBuf>,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WebhookCfg {
    /// Receives a JSON POST `{"text": ..., "alerts": [...]}` (Slack, Mattermost, Teams-style).
    pub url: Secret,
    /// Shown in logs and metrics instead of the URL.
    pub name: Option<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TriggersCfg {
    /// New automatic bans (rate limiter).
    pub auto_bans: bool,
    /// Drop rate per reason above which an alert goes out, in packets per second, e.g.
    /// `{ ratelimit = 1000, scanner = 50 }`.
    pub drop_rate: BTreeMap<String, f64>,
    /// The window the drop rate is measured over.
    #[serde(with = "humantime_serde")]
    pub drop_window: Duration,
    /// List refresh failures and lists older than twice their refresh period.
    pub lists: bool,
    /// GeoIP database reload failures.
    pub geoip: bool,
    /// The filter found detached from an interface or replaced by another program.
    pub detached: bool,
    /// Dry-run (enforcement off) left on longer than this.
    #[serde(with = "humantime_serde::option")]
    pub dry_run_after: Option<Duration>,
}

impl Default for TriggersCfg {
    fn default() -> Self {
        TriggersCfg {
            auto_bans: true,
            drop_rate: BTreeMap::new(),
            drop_window: Duration::from_secs(60),
            lists: true,
            geoip: true,
            detached: true,
            dry_run_after: Some(Duration::from_secs(3600)),
        }
    }
}

impl SmtpCfg {
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            Tls::Starttls => 587,
            Tls::Tls => 465,
            Tls::None => 25,
        })
    }
}

impl NotifyCfg {
    /// Any channel configured?
    pub fn enabled(&self) -> bool {
        self.smtp.is_some() || !self.webhooks.is_empty()
    }

    /// Every problem, each naming its key.
    pub fn problems(&self) -> Vec<String> {
        let mut out = vec![];
        let fmt = |d: Duration| humantime::format_duration(d).to_string();
        if self.interval < Duration::from_secs(10) || self.interval > Duration::from_secs(86400) {
            out.push(format!("notify.interval: {} is out of range 10s..=1day", fmt(self.interval)));
        }
        if !(1..=100_000).contains(&self.queue) {
            out.push(format!("notify.queue: {} is out of range 1..=100000", self.queue));
        }
        if !(1..=100).contains(&self.attempts) {
            out.push(format!("notify.attempts: {} is out of range 1..=100", self.attempts));
        }
        if self.retry_backoff < Duration::from_millis(100) || self.retry_backoff > Duration::from_secs(3600) {
            out.push(format!("notify.retry_backoff: {} is out of range 100ms..=1h", fmt(self.retry_backoff)));
        }
        if let Some(s) = &self.smtp {
            out.extend(s.problems());
        }
        for (i, w) in self.webhooks.iter().enumerate() {
            if !(w.url.0.starts_with("http://") || w.url.0.starts_with("https://")) {
                // The URL itself is a secret: name the entry, not its value.
                out.push(format!("notify.webhook[{i}].url: not an http(s) URL"));
            }
            if w.timeout < Duration::from_secs(1) || w.timeout > Duration::from_secs(300) {
                out.push(format!("notify.webhook[{i}].timeout: {} is out of range 1s..=5m", fmt(w.timeout)));
            }
        }
        let t = &self.triggers;
        for (reason, rate) in &t.drop_rate {
            if !xdp_common::REASON_NAMES.contains(&reason.as_str()) || reason == "pass" || reason == "allowlisted" {
                out.push(format!("notify.triggers.drop_rate: unknown drop reason {reason:?}"));
            }
            if !(rate.is_finite() && *rate > 0.0) {
                out.push(format!("notify.triggers.drop_rate.{reason}: {rate} must be a positive rate (packets/s)"));
            }
        }
        if t.drop_window < Duration::from_secs(5) || t.drop_window > Duration::from_secs(3600) {
            out.push(format!("notify.triggers.drop_window: {} is out of range 5s..=1h", fmt(t.drop_window)));
        }
        if t.dry_run_after.is_some_and(|d| d < Duration::from_secs(10)) {
            out.push("notify.triggers.dry_run_after: at least 10s".to_string());
        }
        out
    }
}

impl SmtpCfg {
    fn problems(&self) -> Vec<String> {
        let mut out = vec![];
        if self.server.trim().is_empty() {
            out.push("notify.smtp.server: empty".to_string());
        }
        if self.port == Some(0) {
            out.push("notify.smtp.port: 0 is not valid".to_string());
        }
        if self.from.parse::<lettre::message::Mailbox>().is_err() {
            out.push(format!("notify.smtp.from: {:?} is not a mail address", self.from));
        }
        if self.to.is_empty() {
            out.push("notify.smtp.to: at least one recipient is required".to_string());
        }
        for (i, t) in self.to.iter().enumerate() {
            if t.parse::<lettre::message::Mailbox>().is_err() {
                out.push(format!("notify.smtp.to[{i}]: {t:?} is not a mail address"));
            }
        }
        if self.password.is_some() && self.password_file.is_some() {
            out.push("notify.smtp: set password or password_file, not both".to_string());
        }
        if (self.password.is_some() || self.password_file.is_some()) != self.username.is_some() {
            out.push("notify.smtp: username and a password (or password_file) go together".to_string());
        }
        if let Some(p) = &self.password_file {
            if let Err(e) = std::fs::metadata(p) {
                out.push(format!("notify.smtp.password_file: {}: {e}", p.display()));
            }
        }
        if self.timeout < Duration::from_secs(1) || self.timeout > Duration::from_secs(300) {
            out.push("notify.smtp.timeout: out of range 1s..=5m".to_string());
        }
        out
    }

    /// The password (from the config or its file).
    pub fn password(&self) -> anyhow::Result<Option<String>> {
        use anyhow::Context;
        if let Some(p) = &self.password {
            return Ok(Some(p.0.clone()));
        }
        match &self.password_file {
            Some(f) => {
                let t = std::fs::read_to_string(f)
                    .with_context(|| format!("notify.smtp.password_file: {}", f.display()))?;
                Ok(Some(t.lines().next().unwrap_or("").to_string()))
            }
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> NotifyCfg {
        #[derive(Deserialize)]
        struct W {
            notify: NotifyCfg,
        }
        toml::from_str::<W>(t).unwrap().notify
    }

    #[test]
    fn keys_defaults_and_problems() {
        let c = parse(
            "[notify]\ninterval = \"1m\"\n[notify.smtp]\nserver = \"127.0.0.1\"\ntls = \"none\"\nport = 2525\nfrom = \"sipshield@example.org\"\nto = [\"a@example.org\", \"b@example.org\"]\n[[notify.webhook]]\nurl = \"http://127.0.0.1:1/hook?token=abc\"\n[notify.triggers]\ndrop_rate = { ratelimit = 1000 }\n",
        );
        assert!(c.problems().is_empty(), "{:?}", c.problems());
        assert_eq!(c.smtp.as_ref().unwrap().port(), 2525);
        assert_eq!(c.triggers.dry_run_after, Some(Duration::from_secs(3600)));
        // Secrets never show in Debug output.
        let d = format!("{c:?}");
        assert!(!d.contains("token=abc") && d.contains("(secret)"), "{d}");
        let bad = parse(
            "[notify]\ninterval = \"1s\"\n[notify.smtp]\nserver = \"\"\nfrom = \"nobody\"\nto = []\npassword = \"pw\"\n[[notify.webhook]]\nurl = \"ftp://secret-token\"\n[notify.triggers]\ndrop_rate = { pass = 1, ratelimit = -1 }\n",
        );
        let p = bad.problems();
        for want in [
            "notify.interval",
            "notify.smtp.server",
            "notify.smtp.from",
            "notify.smtp.to",
            "username and a password",
            "notify.webhook[0].url",
            "drop_rate: unknown drop reason \"pass\"",
            "drop_rate.ratelimit",
        ] {
            assert!(p.iter().any(|e| e.contains(want)), "{want} not in {p:?}");
        }
        assert!(!p.iter().any(|e| e.contains("secret-token")), "a webhook URL is never printed: {p:?}");
    }
}
