//! Talking to the CrowdSec Local API: the HTTP client (ureq, blocking, on threads of their own),
//! the **puller** (decision stream → `Job::Crowdsec` for the worker) and the **reporter**
//! (sipshield's own bans → alerts, from a bounded queue the event drain fills without ever
//! waiting).
//!
//! An unreachable or failing LAPI changes nothing in the filter: the decisions held stay until
//! they expire; the puller retries with back-off and the state (last successful pull, last
//! error) is shown by `status` and `/metrics`.
use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{anyhow, Result};
use log::{info, warn};
use serde_json::json;

use super::config::{Credentials, Watcher};
use super::decisions::Pull;
use super::CrowdsecCfg;

const USER_AGENT: &str = concat!("sipshield/", env!("CARGO_PKG_VERSION"));
/// Largest decision stream accepted (a 100,000-decision startup stream is ~20 MB).
const STREAM_MAX_BYTES: u64 = 512 << 20;
/// Longest wait between two attempts while the LAPI fails.
const BACKOFF_MAX: Duration = Duration::from_secs(120);
/// Alerts per `POST /v1/alerts`.
const ALERT_BATCH: usize = 100;

/// The active `[crowdsec]` settings, with a generation bumped on every change.
#[derive(Debug, Clone)]
pub struct Active {
    pub cfg: CrowdsecCfg,
    pub creds: Credentials,
    pub generation: u64,
    /// `ban_after` of the rate rules by lowercase method (the count an alert reports).
    pub ban_after: BTreeMap<String, u32>,
}

/// What the puller and the reporter show (`status`, `/metrics`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PullState {
    pub last_pull_unix: Option<f64>,
    pub last_pull_secs: f64,
    pub pulls: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_error_unix: Option<f64>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PushState {
    pub sent: u64,
    pub dropped: u64,
    pub errors: u64,
    pub last_error: Option<String>,
    pub last_push_unix: Option<f64>,
}

/// One ban sipshield made itself, to be reported.
#[derive(Debug, Clone, PartialEq)]
pub struct BanReport {
    pub ip: IpAddr,
    pub reason: &'static str,
    pub method: Option<&'static str>,
    pub ban_secs: f64,
    pub dport: u16,
    pub at: SystemTime,
}

/// What the threads share with the worker, the event drain and `/metrics`.
#[derive(Debug, Default)]
pub struct Hub {
    active: RwLock<Option<Active>>,
    pull: Mutex<PullState>,
    push: Mutex<PushState>,
    queue: Mutex<VecDeque<BanReport>>,
    wake: Condvar,
    stop: AtomicBool,
    /// Decisions held (ip, range) and exempted by the allowlist, published by the worker.
    held: Mutex<(usize, usize, usize)>,
    generation: AtomicU64,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Hub {
    pub fn new() -> Arc<Hub> {
        Arc::new(Hub::default())
    }

    /// Install the settings of a (re)loaded config; `None` turns the connector off. Returns
    /// whether they changed (the puller then starts again with a full `startup` pull).
    pub fn configure(&self, cfg: Option<(CrowdsecCfg, Credentials)>, rules: &crate::config::RateLimitCfg) -> bool {
        let ban_after = rules.rules.iter().map(|(k, r)| (k.clone(), r.ban_after)).collect();
        let mut a = self.active.write().unwrap_or_else(|p| p.into_inner());
        let same = match (&*a, &cfg) {
            (Some(old), Some((c, cr))) => old.cfg == *c && old.creds == *cr,
            (None, None) => true,
            _ => false,
        };
        if same {
            if let Some(old) = a.as_mut() {
                old.ban_after = ban_after;
            }
            return false;
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        *a = cfg.map(|(cfg, creds)| Active { cfg, creds, generation, ban_after });
        if a.as_ref().is_none_or(|x| x.creds.watcher.is_none()) {
            self.queue.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        *self.pull.lock().unwrap_or_else(|p| p.into_inner()) = PullState::default();
        self.wake.notify_all();
        true
    }

    pub fn active(&self) -> Option<Active> {
        self.active.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        self.wake.notify_all();
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub fn set_held(&self, ips: usize, ranges: usize, exempted: usize) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = (ips, ranges, exempted);
    }

    pub fn held(&self) -> (usize, usize, usize) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn pull_state(&self) -> PullState {
        self.pull.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn push_state(&self) -> PushState {
        self.push.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn queued(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Queue a ban for reporting (called by the event drain: never waits on the network). When
    /// the queue is full the oldest report is dropped and counted.
    pub fn offer(&self, r: BanReport) {
        let cap = match &*self.active.read().unwrap_or_else(|p| p.into_inner()) {
            Some(a) if a.creds.watcher.is_some() => a.cfg.alert_queue,
            _ => return,
        };
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.push_back(r);
        self.trim(&mut q, cap);
        drop(q);
        self.wake.notify_all();
    }

    fn trim(&self, q: &mut VecDeque<BanReport>, cap: usize) {
        let mut dropped = 0;
        while q.len() > cap {
            q.pop_front();
            dropped += 1;
        }
        if dropped > 0 {
            self.push.lock().unwrap_or_else(|p| p.into_inner()).dropped += dropped;
        }
    }

    /// Sleep up to `d`, waking early when stopping or reconfigured.
    fn nap(&self, d: Duration, generation: u64) {
        let deadline = Instant::now() + d;
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        while !self.stopping() && self.generation() == generation {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            q = self.wake.wait_timeout(q, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// `status --json`'s `crowdsec` object (no secret in it).
    pub fn status_json(&self) -> serde_json::Value {
        let Some(a) = self.active() else { return json!({"enabled": false}) };
        let (ips, ranges, exempted) = self.held();
        let pull = self.pull_state();
        let push = self.push_state();
        json!({
            "enabled": true,
            "lapi_url": a.cfg.base_url(),
            "poll_secs": a.cfg.poll.as_secs_f64(),
            "last_pull_unix": pull.last_pull_unix,
            "last_pull_secs": pull.last_pull_secs,
            "pulls": pull.pulls,
            "pull_errors": pull.errors,
            "last_error": pull.last_error,
            "last_error_unix": pull.last_error_unix,
            "decisions": {"ip": ips, "range": ranges, "exempted_by_allowlist": exempted},
            "alerts": {
                "enabled": a.creds.watcher.is_some(),
                "machine_id": a.creds.watcher.as_ref().map(|w| w.machine_id.clone()),
                "sent": push.sent,
                "queued": self.queued(),
                "dropped": push.dropped,
                "errors": push.errors,
                "last_error": push.last_error,
                "last_push_unix": push.last_push_unix,
            },
        })
    }
}

/// A blocking LAPI client.
pub struct Client {
    agent: ureq::Agent,
    base: String,
    api_key: super::Secret,
    watcher: Option<Watcher>,
    token: Option<String>,
}

/// A readable error of a failed request: the status and the LAPI's message, or the transport
/// error. The URL is shown, never a header (the key) or a body we sent (the password).
fn http_err(what: &str, e: ureq::Error) -> anyhow::Error {
    match e {
        ureq::Error::Status(code, resp) => {
            let body = resp.into_string().unwrap_or_default();
            let msg = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["message"].as_str().map(str::to_string))
                .unwrap_or_else(|| body.chars().take(200).collect());
            anyhow!("{what}: HTTP {code}: {msg}")
        }
        // Its text starts with the URL already.
        ureq::Error::Transport(t) => anyhow!("{t}"),
    }
}

impl Client {
    pub fn new(a: &Active) -> Client {
        Client {
            agent: ureq::AgentBuilder::new().timeout(a.cfg.timeout).user_agent(USER_AGENT).build(),
            base: a.cfg.base_url().to_string(),
            api_key: a.creds.api_key.clone(),
            watcher: a.creds.watcher.clone(),
            token: None,
        }
    }

    /// `GET /v1/decisions/stream` (the full set with `startup`, else what changed since the
    /// last pull of this bouncer key). Filters go to the LAPI too, so it sends less.
    pub fn stream(&self, cfg: &CrowdsecCfg, startup: bool) -> Result<Vec<u8>> {
        let url = format!("{}/v1/decisions/stream", self.base);
        let mut req = self
            .agent
            .get(&url)
            .set("X-Api-Key", self.api_key.expose())
            .query("startup", if startup { "true" } else { "false" })
            .query("scopes", &cfg.scopes.iter().map(|s| s.to_ascii_lowercase()).collect::<Vec<_>>().join(","));
        if !cfg.origins.is_empty() {
            req = req.query("origins", &cfg.origins.join(","));
        }
        if !cfg.scenarios.is_empty() {
            req = req.query("scenarios_containing", &cfg.scenarios.join(","));
        }
        let resp = req.call().map_err(|e| http_err(&format!("GET {url}"), e))?;
        let mut body = Vec::new();
        std::io::Read::read_to_end(&mut std::io::Read::take(resp.into_reader(), STREAM_MAX_BYTES + 1), &mut body)
            .map_err(|e| anyhow!("GET {url}: reading the answer: {e}"))?;
        if body.len() as u64 > STREAM_MAX_BYTES {
            return Err(anyhow!("GET {url}: answer larger than {STREAM_MAX_BYTES} bytes"));
        }
        Ok(body)
    }

    /// `POST /v1/watchers/login`: a JWT for the alert pushes.
    fn login(&mut self) -> Result<String> {
        let w = self.watcher.as_ref().ok_or_else(|| anyhow!("no watcher account configured"))?;
        let url = format!("{}/v1/watchers/login", self.base);
        let body = json!({"machine_id": w.machine_id, "password": w.password.expose(), "scenarios": SCENARIOS});
        let resp = self
            .agent
            .post(&url)
            .set("Content-Type", "application/json")
            .send_string(&body.to_string())
            .map_err(|e| http_err(&format!("POST {url} (machine {})", w.machine_id), e))?;
        let v: serde_json::Value = serde_json::from_reader(resp.into_reader())
            .map_err(|e| anyhow!("POST {url}: the answer is not JSON: {e}"))?;
        let token = v["token"].as_str().ok_or_else(|| anyhow!("POST {url}: no token in the answer"))?.to_string();
        self.token = Some(token.clone());
        Ok(token)
    }

    /// `POST /v1/alerts`, logging in first (and again once, if the token was refused).
    pub fn push_alerts(&mut self, alerts: &serde_json::Value) -> Result<()> {
        let url = format!("{}/v1/alerts", self.base);
        for attempt in 0..2 {
            let token = match (&self.token, attempt) {
                (Some(t), 0) => t.clone(),
                _ => self.login()?,
            };
            let r = self
                .agent
                .post(&url)
                .set("Authorization", &format!("Bearer {token}"))
                .set("Content-Type", "application/json")
                .send_string(&alerts.to_string());
            match r {
                Ok(_) => return Ok(()),
                Err(ureq::Error::Status(401 | 403, _)) if attempt == 0 => self.token = None,
                Err(e) => return Err(http_err(&format!("POST {url}"), e)),
            }
        }
        Err(anyhow!("POST {url}: the token was refused twice"))
    }
}

/// The scenarios sipshield reports (announced at login).
pub const SCENARIOS: [&str; 2] = ["sipshield/sip-flood", "sipshield/sip-scanner"];

/// The scenario of a ban reason: a flood (rate limit) or a scanner; any other reason (e.g.
/// authentication failures, enumeration) as `sipshield/sip-<reason>`.
pub fn scenario_of(reason: &str) -> String {
    match reason {
        "ratelimit" => "sipshield/sip-flood".into(),
        "scanner" => "sipshield/sip-scanner".into(),
        other => format!("sipshield/sip-{}", other.replace('_', "-")),
    }
}

/// The alert of one ban, with every field the LAPI requires.
pub fn alert(r: &BanReport, ban_after: &BTreeMap<String, u32>) -> serde_json::Value {
    let scenario = scenario_of(r.reason);
    let at = humantime::format_rfc3339_seconds(r.at).to_string();
    let method = r.method.map(|m| m.to_ascii_lowercase());
    // The count that triggered the ban: the rule's `ban_after` (per method, else `any`).
    let count = method
        .as_deref()
        .and_then(|m| ban_after.get(m))
        .or_else(|| ban_after.get("any"))
        .copied()
        .filter(|n| *n > 0)
        .unwrap_or(1);
    let secs = r.ban_secs.round().max(1.0) as u64;
    let ip = r.ip.to_string();
    let mut meta = vec![json!({"key": "service", "value": "sip"}), json!({"key": "reason", "value": r.reason})];
    if let Some(m) = r.method {
        meta.push(json!({"key": "method", "value": m}));
    }
    meta.push(json!({"key": "target_port", "value": r.dport.to_string()}));
    json!({
        "scenario": scenario,
        "scenario_hash": "",
        "scenario_version": env!("CARGO_PKG_VERSION"),
        "message": format!(
            "sipshield banned {ip} for {secs}s ({}{}, {count} events)",
            r.reason,
            r.method.map(|m| format!(" {m}")).unwrap_or_default()
        ),
        "events_count": count,
        "start_at": at,
        "stop_at": at,
        "capacity": count,
        "leakspeed": "0s",
        "simulated": false,
        "events": [{"timestamp": at, "meta": meta}],
        "source": {"scope": "Ip", "value": ip, "ip": ip},
        "decisions": [{
            "duration": format!("{secs}s"),
            "type": "ban",
            "scope": "Ip",
            "value": ip,
            "origin": "sipshield",
            "scenario": scenario,
        }],
    })
}

/// Pull decisions until stopped; each pull goes to the worker through `send` (false when the
/// worker is gone). Failures keep what is held and retry with back-off.
pub fn spawn_puller(
    hub: Arc<Hub>,
    send: impl Fn(Pull) -> bool + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("crowdsec-pull".into()).spawn(move || {
        let _ = crate::daemon::block_signals();
        let mut startup = true;
        let mut seen = 0;
        let mut failures = 0u32;
        while !hub.stopping() {
            let generation = hub.generation();
            let Some(a) = hub.active() else {
                hub.nap(Duration::from_secs(3600), generation);
                continue;
            };
            if a.generation != seen {
                seen = a.generation;
                startup = true;
                failures = 0;
            }
            let t0 = Instant::now();
            let r = Client::new(&a).stream(&a.cfg, startup).and_then(|b| Pull::parse(&b, &a.cfg, startup, seen));
            let wait = match r {
                Ok(p) => {
                    if failures > 0 {
                        info!("crowdsec: the LAPI answers again ({})", a.cfg.base_url());
                    }
                    failures = 0;
                    startup = false;
                    if !send(p) {
                        return;
                    }
                    let mut s = hub.pull.lock().unwrap_or_else(|p| p.into_inner());
                    s.last_pull_unix = Some(unix_now());
                    s.last_pull_secs = t0.elapsed().as_secs_f64();
                    s.pulls += 1;
                    a.cfg.poll
                }
                Err(e) => {
                    failures += 1;
                    let wait = backoff(a.cfg.poll, failures);
                    if failures == 1 {
                        warn!(
                            "crowdsec: pull failed, the decisions held stay until they expire; retrying in {}: {e:#}",
                            humantime::format_duration(wait)
                        );
                    }
                    let mut s = hub.pull.lock().unwrap_or_else(|p| p.into_inner());
                    s.errors += 1;
                    s.last_error = Some(format!("{e:#}"));
                    s.last_error_unix = Some(unix_now());
                    wait
                }
            };
            hub.nap(wait, generation);
        }
    })
}

/// The wait after `failures` failed attempts in a row: the poll interval, doubled each time up
/// to 16 poll intervals and at most [`BACKOFF_MAX`] (never shorter than the poll interval), so
/// a LAPI back from an outage is pulled again within that bound.
pub fn backoff(poll: Duration, failures: u32) -> Duration {
    let d = poll.saturating_mul(1u32 << failures.saturating_sub(1).min(4));
    d.min(BACKOFF_MAX).max(poll)
}

/// Push queued ban reports as alerts until stopped: batches of up to [`ALERT_BATCH`]; a failed
/// push puts the batch back at the front (the bound still applies) and backs off.
pub fn spawn_reporter(hub: Arc<Hub>) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("crowdsec-push".into()).spawn(move || {
        let _ = crate::daemon::block_signals();
        let mut client: Option<(u64, Client)> = None;
        let mut failures = 0u32;
        while !hub.stopping() {
            let generation = hub.generation();
            let batch: Vec<BanReport> = {
                let mut q = hub.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.is_empty() {
                    drop(hub.wake.wait_timeout(q, Duration::from_secs(1)).unwrap_or_else(|p| p.into_inner()));
                    continue;
                }
                let n = q.len().min(ALERT_BATCH);
                q.drain(..n).collect()
            };
            let Some(a) = hub.active().filter(|a| a.creds.watcher.is_some()) else { continue };
            if client.as_ref().is_none_or(|(g, _)| *g != a.generation) {
                client = Some((a.generation, Client::new(&a)));
            }
            let alerts = serde_json::Value::Array(batch.iter().map(|r| alert(r, &a.ban_after)).collect());
            let c = &mut client.as_mut().expect("set above").1;
            match c.push_alerts(&alerts) {
                Ok(()) => {
                    failures = 0;
                    let mut s = hub.push.lock().unwrap_or_else(|p| p.into_inner());
                    s.sent += batch.len() as u64;
                    s.last_push_unix = Some(unix_now());
                }
                Err(e) => {
                    failures += 1;
                    if failures == 1 {
                        warn!("crowdsec: pushing {} alert(s) failed, they stay queued: {e:#}", batch.len());
                    }
                    {
                        let mut s = hub.push.lock().unwrap_or_else(|p| p.into_inner());
                        s.errors += 1;
                        s.last_error = Some(format!("{e:#}"));
                    }
                    let mut q = hub.queue.lock().unwrap_or_else(|p| p.into_inner());
                    for r in batch.into_iter().rev() {
                        q.push_front(r);
                    }
                    hub.trim(&mut q, a.cfg.alert_queue);
                    drop(q);
                    hub.nap(backoff(Duration::from_secs(1), failures), generation);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn active(queue: usize, watcher: bool) -> (CrowdsecCfg, Credentials) {
        let t = format!(
            "[crowdsec]\nlapi_url = \"http://127.0.0.1:1\"\nbouncer_api_key = \"k\"\nalert_queue = {queue}\n{}",
            if watcher { "machine_id = \"m\"\npassword = \"p\"\n" } else { "" }
        );
        let c = crate::config::Config::parse(&t, std::path::Path::new("t.toml")).unwrap().crowdsec.unwrap();
        let cr = c.credentials().unwrap();
        (c, cr)
    }

    fn report(last: u8) -> BanReport {
        BanReport {
            ip: IpAddr::from([198, 51, 100, last]),
            reason: "ratelimit",
            method: Some("REGISTER"),
            ban_secs: 900.0,
            dport: 5060,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
        }
    }

    #[test]
    fn the_queue_is_bounded_and_drops_the_oldest() {
        let hub = Hub::new();
        let rules = crate::config::RateLimitCfg::default();
        hub.offer(report(1));
        assert_eq!(hub.queued(), 0, "nothing is queued without a watcher account");
        assert!(hub.configure(Some(active(3, true)), &rules));
        assert!(!hub.configure(Some(active(3, true)), &rules), "the same settings are no change");
        for i in 1..=5 {
            hub.offer(report(i));
        }
        assert_eq!(hub.queued(), 3);
        assert_eq!(hub.push_state().dropped, 2);
        let q: Vec<u8> = hub
            .queue
            .lock()
            .unwrap()
            .iter()
            .map(|r| if let IpAddr::V4(a) = r.ip { a.octets()[3] } else { 0 })
            .collect();
        assert_eq!(q, vec![3, 4, 5], "the newest stay");
        assert!(hub.configure(Some(active(3, false)), &rules));
        assert_eq!(hub.queued(), 0, "no watcher any more: the queue is emptied");
        let st = hub.status_json();
        assert_eq!(st["alerts"]["enabled"], false);
        assert!(!st.to_string().contains("\"k\""), "{st}");
        assert!(hub.configure(None, &rules));
        assert_eq!(hub.status_json(), json!({"enabled": false}));
    }

    #[test]
    fn alerts_carry_every_required_field() {
        let mut ban_after = BTreeMap::new();
        ban_after.insert("register".to_string(), 20);
        let a = alert(&report(9), &ban_after);
        for k in [
            "scenario",
            "scenario_hash",
            "scenario_version",
            "message",
            "events_count",
            "start_at",
            "stop_at",
            "capacity",
            "leakspeed",
            "simulated",
            "events",
            "source",
            "decisions",
        ] {
            assert!(!a[k].is_null(), "{k} missing in {a}");
        }
        assert_eq!(a["scenario"], "sipshield/sip-flood");
        assert_eq!(a["events_count"], 20);
        assert_eq!(a["start_at"], "2027-01-15T08:00:00Z");
        assert_eq!(a["source"], json!({"scope": "Ip", "value": "198.51.100.9", "ip": "198.51.100.9"}));
        assert_eq!(a["decisions"][0]["duration"], "900s");
        assert_eq!(a["decisions"][0]["origin"], "sipshield");
        let a = alert(&BanReport { method: None, reason: "scanner", ..report(1) }, &BTreeMap::new());
        assert_eq!((a["scenario"].as_str(), a["events_count"].as_u64()), (Some("sipshield/sip-scanner"), Some(1)));
        assert_eq!(scenario_of("auth_failure"), "sipshield/sip-auth-failure");
    }

    #[test]
    fn backoff_doubles_up_to_the_bound() {
        let s = Duration::from_secs;
        assert_eq!(backoff(s(10), 1), s(10));
        assert_eq!(backoff(s(10), 2), s(20));
        assert_eq!(backoff(s(10), 3), s(40));
        assert_eq!(backoff(s(10), 5), s(120));
        assert_eq!(backoff(s(10), 10), BACKOFF_MAX);
        assert_eq!(backoff(s(1), 5), s(16));
        assert_eq!(backoff(s(1), 100), s(16), "at most 16 poll intervals");
        assert_eq!(backoff(s(3600), 1), s(3600), "never shorter than the poll interval");
    }
}
