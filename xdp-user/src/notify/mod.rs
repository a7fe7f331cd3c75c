//! Notifications: alerts (automatic bans, drop-rate spikes, list and GeoIP failures, a filter
//! found detached, dry-run left on) sent as **digests** by mail (SMTP) and webhooks.
//!
//! Each channel has a thread of its own and a bounded queue: producers (the event drain, the
//! worker) only `try_send`, so a slow or unreachable server never delays filtering; a full
//! queue drops the alert and counts it. A channel sends at most one message per `interval`:
//! the first alert of a quiet period goes out at once, later ones wait for the next digest,
//! which counts them by kind and names the top sources. A failed delivery is retried with
//! doubling back-off (`attempts`, `retry_backoff`), logged and counted; alerts arriving
//! meanwhile wait for the next digest.
pub mod config;
mod send;

use std::collections::BTreeMap;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

pub use config::NotifyCfg;
use serde::Serialize;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    AutoBan,
    DropRate,
    ListFailure,
    ListStale,
    GeoipFailure,
    Detached,
    DryRun,
}

impl Kind {
    pub fn title(self) -> &'static str {
        match self {
            Kind::AutoBan => "automatic bans",
            Kind::DropRate => "drop-rate alerts",
            Kind::ListFailure => "list refresh failures",
            Kind::ListStale => "stale lists",
            Kind::GeoipFailure => "GeoIP reload failures",
            Kind::Detached => "filter detached or replaced",
            Kind::DryRun => "dry-run left on",
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub kind: Kind,
    pub text: String,
    /// The source address, for bans (the digest's top sources).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    pub time: String,
}

impl Alert {
    pub fn new(kind: Kind, text: impl Into<String>) -> Alert {
        Alert {
            kind,
            text: text.into(),
            source: None,
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        }
    }

    /// A new automatic ban, from its drop event.
    pub fn ban(ev: &crate::events::EventLine) -> Alert {
        let mut a = Alert::new(
            Kind::AutoBan,
            format!(
                "{} banned for {:.0}s ({}{})",
                ev.src,
                ev.ban_secs.unwrap_or(0.0),
                ev.reason,
                ev.method.map(|m| format!(" {m}")).unwrap_or_default()
            ),
        );
        a.source = Some(ev.src.clone());
        a
    }
}

/// One message to send: a digest of alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub subject: String,
    pub text: String,
    pub alerts: Vec<Alert>,
}

/// Alerts shown one by one in a digest (the rest are counted).
const DIGEST_LINES: usize = 20;

impl Message {
    /// Summarise `alerts` (oldest first): counts per kind, top banned sources, the first lines.
    pub fn digest(host: &str, alerts: Vec<Alert>) -> Message {
        let mut counts: BTreeMap<Kind, usize> = BTreeMap::new();
        let mut sources: BTreeMap<&str, usize> = BTreeMap::new();
        for a in &alerts {
            *counts.entry(a.kind).or_default() += 1;
            if let Some(s) = &a.source {
                *sources.entry(s).or_default() += 1;
            }
        }
        let summary: Vec<String> = counts.iter().map(|(k, n)| format!("{n} {}", k.title())).collect();
        let subject = format!("[sipshield {host}] {}", summary.join(", "));
        let mut text = format!("sipshield on {host}: {}\n", summary.join(", "));
        if !sources.is_empty() {
            let mut top: Vec<(&str, usize)> = sources.into_iter().collect();
            top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let shown: Vec<String> = top.iter().take(10).map(|(s, n)| format!("{s} ({n})")).collect();
            text += &format!("top sources: {}\n", shown.join(", "));
        }
        for a in alerts.iter().take(DIGEST_LINES) {
            text += &format!("{} {}\n", a.time, a.text);
        }
        if alerts.len() > DIGEST_LINES {
            text += &format!("… and {} more\n", alerts.len() - DIGEST_LINES);
        }
        Message { subject, text, alerts }
    }
}

/// The digest rule of one channel, without threads or clocks of its own (unit-tested).
#[derive(Debug)]
pub struct Digest {
    interval: Duration,
    last_sent: Option<Instant>,
    pending: Vec<Alert>,
}

impl Digest {
    pub fn new(interval: Duration) -> Digest {
        Digest { interval, last_sent: None, pending: vec![] }
    }

    pub fn push(&mut self, a: Alert) {
        self.pending.push(a);
    }

    /// When the pending alerts may go out: at once after a quiet interval, else one interval
    /// after the last message.
    pub fn due(&self) -> Option<Instant> {
        if self.pending.is_empty() {
            return None;
        }
        Some(match self.last_sent {
            None => Instant::now(),
            Some(t) => t + self.interval,
        })
    }

    /// The pending alerts, if they are due at `now`.
    pub fn take(&mut self, now: Instant) -> Option<Vec<Alert>> {
        if self.pending.is_empty() || self.last_sent.is_some_and(|t| t + self.interval > now) {
            return None;
        }
        self.last_sent = Some(now);
        Some(std::mem::take(&mut self.pending))
    }
}

/// Delivery counters of one channel (exported as metrics).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChannelStats {
    pub sent: u64,
    /// Failed delivery attempts (each retry counts).
    pub failures: u64,
    /// Messages given up after every attempt failed.
    pub given_up: u64,
    /// Alerts dropped because the channel's queue was full.
    pub dropped: u64,
}

pub type StatsMap = Arc<Mutex<BTreeMap<String, ChannelStats>>>;

/// Where a message goes.
pub trait Channel: Send {
    /// For logs and metrics: never the URL or a password.
    fn name(&self) -> String;
    fn send(&mut self, m: &Message) -> anyhow::Result<()>;
}

/// The producers' handle: cheap to clone, never blocks.
#[derive(Clone, Default)]
pub struct Notifier {
    channels: Vec<(String, SyncSender<Alert>)>,
    stats: StatsMap,
    pub triggers: config::TriggersCfg,
}

impl Notifier {
    /// Start one thread per configured channel.
    pub fn start(cfg: &NotifyCfg) -> anyhow::Result<Notifier> {
        let host = cfg
            .host
            .clone()
            .unwrap_or_else(|| nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default());
        let mut channels: Vec<Box<dyn Channel>> = vec![];
        if let Some(s) = &cfg.smtp {
            channels.push(Box::new(send::Smtp::new(s)?));
        }
        for (i, w) in cfg.webhooks.iter().enumerate() {
            channels.push(Box::new(send::Webhook::new(w, i)));
        }
        Self::with_channels(cfg, &host, channels)
    }

    /// Start threads for the given channels (tests use their own).
    pub fn with_channels(cfg: &NotifyCfg, host: &str, channels: Vec<Box<dyn Channel>>) -> anyhow::Result<Notifier> {
        let stats = StatsMap::default();
        let mut out = Notifier { channels: vec![], stats: stats.clone(), triggers: cfg.triggers.clone() };
        for ch in channels {
            let name = ch.name();
            let (tx, rx) = mpsc::sync_channel(cfg.queue);
            stats.lock().unwrap_or_else(|p| p.into_inner()).insert(name.clone(), ChannelStats::default());
            let worker = ChannelWorker {
                ch,
                name: name.clone(),
                host: host.to_string(),
                digest: Digest::new(cfg.interval),
                attempts: cfg.attempts,
                backoff: cfg.retry_backoff,
                stats: stats.clone(),
            };
            std::thread::Builder::new().name(format!("notify-{}", out.channels.len())).spawn(move || {
                let _ = crate::daemon::block_signals();
                worker.run(rx)
            })?;
            out.channels.push((name, tx));
        }
        Ok(out)
    }

    pub fn is_enabled(&self) -> bool {
        !self.channels.is_empty()
    }

    /// Queue `a` on every channel; a full queue drops it (counted).
    pub fn alert(&self, a: Alert) {
        for (name, tx) in &self.channels {
            match tx.try_send(a.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
                    s.entry(name.clone()).or_default().dropped += 1;
                }
            }
        }
    }

    pub fn stats(&self) -> BTreeMap<String, ChannelStats> {
        self.stats.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// One channel's thread: digest, send, retry.
struct ChannelWorker {
    ch: Box<dyn Channel>,
    name: String,
    host: String,
    digest: Digest,
    attempts: u32,
    backoff: Duration,
    stats: StatsMap,
}

/// A message being delivered: how many attempts so far, when the next one is.
struct InFlight {
    msg: Message,
    tries: u32,
    next: Instant,
}

impl ChannelWorker {
    fn run(mut self, rx: mpsc::Receiver<Alert>) {
        let mut inflight: Option<InFlight> = None;
        loop {
            let now = Instant::now();
            let next = match &inflight {
                Some(f) => Some(f.next),
                None => self.digest.due(),
            };
            let wait = next.map(|t| t.saturating_duration_since(now)).unwrap_or(Duration::from_secs(3600));
            match rx.recv_timeout(wait) {
                // Falls through to the flush below: a steady stream of alerts never starves it.
                Ok(a) => self.digest.push(a),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    // The controller stops or reloaded [notify]: one last try for what is left.
                    let left = self.digest.take(Instant::now() + Duration::from_secs(86400 * 365));
                    if let Some(alerts) = left.filter(|a| !a.is_empty()) {
                        let m = Message::digest(&self.host, alerts);
                        let _ = self.deliver(&m, u32::MAX);
                    }
                    return;
                }
            }
            let now = Instant::now();
            if inflight.is_none() {
                if let Some(alerts) = self.digest.take(now) {
                    inflight = Some(InFlight { msg: Message::digest(&self.host, alerts), tries: 0, next: now });
                }
            }
            if let Some(mut f) = inflight.take() {
                if f.next > now {
                    inflight = Some(f);
                    continue;
                }
                f.tries += 1;
                if !self.deliver(&f.msg, f.tries) {
                    if f.tries >= self.attempts {
                        log::error!("notify {}: giving up after {} attempts", self.name, f.tries);
                        self.count(|s| s.given_up += 1);
                    } else {
                        f.next = now + self.backoff * 2u32.saturating_pow(f.tries - 1).min(64);
                        inflight = Some(f);
                    }
                }
            }
        }
    }

    /// One attempt. Returns whether it was delivered.
    fn deliver(&mut self, m: &Message, attempt: u32) -> bool {
        match self.ch.send(m) {
            Ok(()) => {
                log::info!("notify {}: sent {:?} ({} alerts)", self.name, m.subject, m.alerts.len());
                self.count(|s| s.sent += 1);
                true
            }
            Err(e) => {
                log::warn!("notify {}: delivery attempt {attempt} failed: {e:#}", self.name);
                self.count(|s| s.failures += 1);
                false
            }
        }
    }

    fn count(&self, f: impl FnOnce(&mut ChannelStats)) {
        let mut s = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        f(s.entry(self.name.clone()).or_default());
    }
}

/// Drop rates per (interface slot, reason) over a window, from successive counter readings.
#[derive(Debug, Default)]
pub struct DropRates {
    samples: std::collections::VecDeque<(Instant, Vec<Vec<u64>>)>,
    /// (slot, reason) pairs currently above their threshold (alerted once until they fall).
    above: std::collections::BTreeSet<(usize, usize)>,
}

impl DropRates {
    /// Add a reading (`packets[slot][reason]`) and return the (slot, reason, rate) newly above
    /// their threshold. The rate is measured over the samples of the last `window`.
    pub fn update(
        &mut self,
        now: Instant,
        packets: Vec<Vec<u64>>,
        window: Duration,
        thresholds: &BTreeMap<usize, f64>,
    ) -> Vec<(usize, usize, f64)> {
        self.samples.push_back((now, packets));
        while self.samples.len() > 2 && now.duration_since(self.samples[1].0) >= window {
            self.samples.pop_front();
        }
        let (Some((t0, first)), Some((t1, last))) = (self.samples.front(), self.samples.back()) else {
            return vec![];
        };
        let secs = t1.duration_since(*t0).as_secs_f64();
        if secs <= 0.0 {
            return vec![];
        }
        let mut out = vec![];
        for (slot, row) in last.iter().enumerate() {
            for (reason, &limit) in thresholds {
                let before = first.get(slot).and_then(|r| r.get(*reason)).copied().unwrap_or(0);
                let now_v = row.get(*reason).copied().unwrap_or(0);
                let rate = now_v.saturating_sub(before) as f64 / secs;
                if rate > limit {
                    if self.above.insert((slot, *reason)) {
                        out.push((slot, *reason, rate));
                    }
                } else {
                    self.above.remove(&(slot, *reason));
                }
            }
        }
        out
    }
}

/// An edge-triggered condition: alert once when it becomes true, again only after it cleared.
#[derive(Debug, Default)]
pub struct Edge(std::collections::BTreeSet<String>);

impl Edge {
    /// Whether `key` just became true.
    pub fn rise(&mut self, key: &str, now_true: bool) -> bool {
        if now_true {
            self.0.insert(key.to_string())
        } else {
            self.0.remove(key);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(src: &str) -> Alert {
        let mut a = Alert::new(Kind::AutoBan, format!("{src} banned"));
        a.source = Some(src.into());
        a
    }

    #[test]
    fn digest_sends_the_first_alert_at_once_then_one_per_interval() {
        let mut d = Digest::new(Duration::from_secs(60));
        let t0 = Instant::now();
        assert!(d.take(t0).is_none(), "nothing pending");
        d.push(alert("198.51.100.1"));
        assert_eq!(d.take(t0 + Duration::from_millis(1)).unwrap().len(), 1, "first alert of a quiet period");
        d.push(alert("198.51.100.2"));
        d.push(alert("198.51.100.2"));
        assert!(d.take(t0 + Duration::from_secs(59)).is_none(), "within the interval");
        assert_eq!(d.due(), Some(t0 + Duration::from_millis(1) + Duration::from_secs(60)));
        assert_eq!(d.take(t0 + Duration::from_secs(61)).unwrap().len(), 2);
    }

    #[test]
    fn digest_message_counts_and_ranks_sources() {
        let mut alerts = vec![alert("198.51.100.2"), alert("198.51.100.1"), alert("198.51.100.1")];
        alerts.push(Alert::new(Kind::ListFailure, "blacklist refresh failed"));
        let m = Message::digest("pbx1", alerts);
        assert_eq!(m.subject, "[sipshield pbx1] 3 automatic bans, 1 list refresh failures");
        assert!(m.text.contains("top sources: 198.51.100.1 (2), 198.51.100.2 (1)\n"), "{}", m.text);
        assert!(m.text.contains("blacklist refresh failed"), "{}", m.text);
        let many: Vec<Alert> = (0..25).map(|i| alert(&format!("203.0.113.{i}"))).collect();
        assert!(Message::digest("h", many).text.ends_with("… and 5 more\n"));
    }

    /// A channel that fails `fail` times, then records what it sends.
    struct Fake {
        fail: u32,
        sent: Arc<Mutex<Vec<Message>>>,
    }
    impl Channel for Fake {
        fn name(&self) -> String {
            "fake".into()
        }
        fn send(&mut self, m: &Message) -> anyhow::Result<()> {
            if self.fail > 0 {
                self.fail -= 1;
                anyhow::bail!("server down");
            }
            self.sent.lock().unwrap().push(m.clone());
            Ok(())
        }
    }

    fn wait_for(f: impl Fn() -> bool) {
        let t = Instant::now();
        while !f() && t.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(f(), "condition not reached in 10s");
    }

    #[test]
    fn failures_are_retried_with_backoff_and_counted() {
        let sent = Arc::new(Mutex::new(vec![]));
        let cfg = NotifyCfg {
            interval: Duration::from_secs(3600),
            retry_backoff: Duration::from_millis(50),
            ..Default::default()
        };
        let n = Notifier::with_channels(&cfg, "h", vec![Box::new(Fake { fail: 2, sent: sent.clone() })]).unwrap();
        n.alert(alert("198.51.100.1"));
        wait_for(|| !sent.lock().unwrap().is_empty());
        assert_eq!(n.stats()["fake"], ChannelStats { sent: 1, failures: 2, given_up: 0, dropped: 0 });
        // Within the interval: queued for the next digest, not sent.
        n.alert(alert("198.51.100.2"));
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(sent.lock().unwrap().len(), 1);
        // Giving up after every attempt.
        let sent2 = Arc::new(Mutex::new(vec![]));
        let cfg = NotifyCfg { attempts: 3, retry_backoff: Duration::from_millis(20), ..cfg };
        let n = Notifier::with_channels(&cfg, "h", vec![Box::new(Fake { fail: 100, sent: sent2 })]).unwrap();
        n.alert(alert("198.51.100.3"));
        wait_for(|| n.stats()["fake"].given_up == 1);
        assert_eq!(n.stats()["fake"].failures, 3);
    }

    #[test]
    fn drop_rates_alert_once_per_crossing() {
        let mut d = DropRates::default();
        let th: BTreeMap<usize, f64> = [(6usize, 100.0)].into();
        let t0 = Instant::now();
        let row = |n: u64| vec![vec![0, 0, 0, 0, 0, 0, n, 0]];
        let w = Duration::from_secs(60);
        assert!(d.update(t0, row(0), w, &th).is_empty());
        let up = d.update(t0 + Duration::from_secs(10), row(5000), w, &th);
        assert_eq!(up, vec![(0, 6, 500.0)]);
        assert!(d.update(t0 + Duration::from_secs(20), row(10000), w, &th).is_empty(), "still above: once");
        // Quiet for longer than the window: below again, re-armed.
        assert!(d.update(t0 + Duration::from_secs(200), row(10000), w, &th).is_empty());
        assert!(d.update(t0 + Duration::from_secs(300), row(10000), w, &th).is_empty());
        assert_eq!(d.update(t0 + Duration::from_secs(301), row(100_000), w, &th).len(), 1);
    }

    #[test]
    fn edges_rise_once() {
        let mut e = Edge::default();
        assert!(e.rise("x", true));
        assert!(!e.rise("x", true));
        assert!(!e.rise("x", false));
        assert!(e.rise("x", true));
    }
}
