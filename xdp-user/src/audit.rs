//! The audit trail: every change to the running filter, one JSON line each, appended to
//! `[audit] path` (default `/var/log/sipshield/audit.jsonl`).
//!
//! A record says who (uid, user name, `SUDO_USER` as the CLI reported it, or `sipshield` for the
//! controller's own changes), where (host), what (the control request's `op` and its fields —
//! taken from [`Request`]'s JSON form, so a new request variant is audited without a change
//! here), the state before and after, and the result.
//!
//! **Durability and rotation.** The file is opened, appended and fsync'ed for every record, then
//! closed: logrotate can move it at any time (no `copytruncate`, no signal needed) and a record
//! is on disk before the command reports success.
//!
//! **A failed write never undoes protection.** The change is made first; if its record cannot
//! be written (full disk, bad permissions) the change stays live, the command fails with a
//! message saying so, and the failure is counted (`sipshield_audit_write_errors`). The
//! controller's automatic changes are never held back by the audit log.
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::control::{Caller, Request};

pub const DEFAULT_PATH: &str = "/var/log/sipshield/audit.jsonl";

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuditCfg {
    pub enabled: bool,
    pub path: PathBuf,
    /// Automatic bans are summarised in one record per period (never one per ban).
    #[serde(with = "humantime_serde")]
    pub ban_summary: Duration,
}

impl Default for AuditCfg {
    fn default() -> Self {
        AuditCfg { enabled: true, path: PathBuf::from(DEFAULT_PATH), ban_summary: Duration::from_secs(60) }
    }
}

impl AuditCfg {
    pub fn check(&self) -> Result<()> {
        if !self.path.is_absolute() {
            bail!("audit.path: {} must be an absolute path", self.path.display());
        }
        if self.ban_summary < Duration::from_secs(10) || self.ban_summary > Duration::from_secs(86400) {
            bail!("audit.ban_summary: {} is out of range 10s..=1day", humantime::format_duration(self.ban_summary));
        }
        Ok(())
    }
}

/// Who made a change.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Actor {
    /// `operator` (a CLI call) or `sipshield` (the controller on its own).
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The user who ran `sudo sipshield …`, as the CLI reported it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sudo_user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
}

impl Actor {
    /// The controller itself (refreshes, SIGHUP reloads, automatic bans).
    pub fn controller() -> Actor {
        Actor { kind: "sipshield".into(), ..Default::default() }
    }

    /// A CLI caller, from `SO_PEERCRED` and what it reported.
    pub fn operator(c: &Caller) -> Actor {
        Actor {
            kind: "operator".into(),
            uid: Some(c.uid),
            user: user_name(c.uid),
            sudo_user: c.sudo_user.clone(),
            pid: c.pid,
        }
    }

    /// This process (a CLI edit applied without a controller).
    pub fn this_process() -> Actor {
        let uid = nix::unistd::getuid().as_raw();
        Actor::operator(&Caller { uid, pid: Some(std::process::id() as i32), sudo_user: sudo_user() })
    }
}

/// `SUDO_USER` of this process's environment (the CLI sends it with its request).
pub fn sudo_user() -> Option<String> {
    std::env::var("SUDO_USER").ok().filter(|s| !s.is_empty())
}

fn user_name(uid: u32) -> Option<String> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid)).ok().flatten().map(|u| u.name)
}

fn host_name() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_default()
}

/// One line of the audit log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// RFC 3339, UTC.
    pub time: String,
    pub actor: Actor,
    pub host: String,
    pub verb: String,
    #[serde(default)]
    pub args: serde_json::Value,
    #[serde(default)]
    pub before: serde_json::Value,
    #[serde(default)]
    pub after: serde_json::Value,
    /// `ok` or `error`.
    pub result: String,
    #[serde(default)]
    pub message: String,
}

impl Record {
    pub fn new(actor: Actor, verb: &str, args: serde_json::Value) -> Record {
        Record {
            time: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            actor,
            host: host_name(),
            verb: verb.to_string(),
            args,
            before: serde_json::Value::Null,
            after: serde_json::Value::Null,
            result: "ok".into(),
            message: String::new(),
        }
    }

    /// The record of a control request: verb = its `op`, args = its other fields.
    pub fn of_request(actor: Actor, req: &Request) -> Record {
        let (verb, args) = verb_and_args(req);
        Record::new(actor, &verb, args)
    }

    pub fn outcome(mut self, r: &Result<String>) -> Record {
        match r {
            Ok(m) => {
                self.result = "ok".into();
                self.message = m.clone();
            }
            Err(e) => {
                self.result = "error".into();
                self.message = format!("{e:#}");
            }
        }
        self
    }

    pub fn time(&self) -> Option<SystemTime> {
        humantime::parse_rfc3339_weak(&self.time).ok()
    }
}

/// A request's `op` and the rest of its JSON object (generic over every variant).
pub fn verb_and_args(req: &Request) -> (String, serde_json::Value) {
    let mut v = serde_json::to_value(req).unwrap_or_default();
    let verb = v.get("op").and_then(|o| o.as_str()).unwrap_or("unknown").to_string();
    if let Some(o) = v.as_object_mut() {
        o.remove("op");
    }
    if v.as_object().is_some_and(|o| o.is_empty()) {
        v = serde_json::Value::Null;
    }
    (verb, v)
}

/// Append `rec` to `path` and fsync it. The file is opened for each record (logrotate-safe).
pub fn append(path: &Path, rec: &Record) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).with_context(|| format!("{}: creating the audit directory", d.display()))?;
    }
    let mut line = serde_json::to_string(rec)?;
    line.push('\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
        .with_context(|| format!("{}: cannot open the audit log", path.display()))?;
    // One write of the whole line: concurrent writers (controller, CLI) never interleave.
    f.write_all(line.as_bytes()).with_context(|| format!("{}: writing the audit log", path.display()))?;
    f.sync_data().with_context(|| format!("{}: fsync of the audit log", path.display()))
}

/// The audit log of a process: its path, on or off, and its failure count.
pub struct Log {
    pub cfg: AuditCfg,
    pub write_errors: u64,
}

impl Log {
    pub fn new(cfg: &AuditCfg) -> Log {
        Log { cfg: cfg.clone(), write_errors: 0 }
    }

    /// Append, counting and logging a failure. `Err` carries the reason for the caller.
    pub fn write(&mut self, rec: &Record) -> Result<()> {
        if !self.cfg.enabled {
            return Ok(());
        }
        append(&self.cfg.path, rec).inspect_err(|e| {
            self.write_errors += 1;
            log::error!("audit: {e:#} (record: {})", serde_json::to_string(rec).unwrap_or_default());
        })
    }

    /// Record an automatic change: a failure is logged and counted, nothing else.
    pub fn auto(&mut self, rec: &Record) {
        let _ = self.write(rec);
    }
}

/// Read the records of `path` (and of its rotated predecessor `path.1`, oldest first) newer
/// than `since`. A line that is not a record is an error naming the file and line.
pub fn read(path: &Path, since: Option<SystemTime>) -> Result<Vec<Record>> {
    let mut out = vec![];
    let rotated = PathBuf::from(format!("{}.1", path.display()));
    for p in [rotated.as_path(), path] {
        let text = match std::fs::read_to_string(p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e).with_context(|| format!("{}: cannot read the audit log", p.display())),
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let r: Record = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}: not an audit record", p.display(), i + 1))?;
            if since.is_none_or(|s| r.time().is_none_or(|t| t >= s)) {
                out.push(r);
            }
        }
    }
    Ok(out)
}

/// CSV of records: time, actor, uid, user, sudo_user, host, verb, args, before, after, result,
/// message (JSON values as compact JSON text, quoted).
pub fn to_csv(records: &[Record]) -> String {
    fn q(s: &str) -> String {
        if s.contains([',', '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
    fn j(v: &serde_json::Value) -> String {
        if v.is_null() {
            String::new()
        } else {
            v.to_string()
        }
    }
    let mut out = String::from("time,actor,uid,user,sudo_user,host,verb,args,before,after,result,message\n");
    for r in records {
        let a = &r.actor;
        let fields = [
            r.time.clone(),
            a.kind.clone(),
            a.uid.map(|u| u.to_string()).unwrap_or_default(),
            a.user.clone().unwrap_or_default(),
            a.sudo_user.clone().unwrap_or_default(),
            r.host.clone(),
            r.verb.clone(),
            j(&r.args),
            j(&r.before),
            j(&r.after),
            r.result.clone(),
            r.message.clone(),
        ];
        out += &fields.iter().map(|f| q(f)).collect::<Vec<_>>().join(",");
        out.push('\n');
    }
    out
}

/// Automatic bans seen by the event drain, summarised once per period.
#[derive(Debug, Default, Clone)]
pub struct BanTally {
    pub count: u64,
    /// Bans per source (bounded: the top of a flood is what matters).
    pub sources: std::collections::BTreeMap<String, u64>,
    pub reasons: std::collections::BTreeMap<String, u64>,
}

/// How many distinct sources a tally keeps.
const TALLY_SOURCES_MAX: usize = 4096;

impl BanTally {
    pub fn add(&mut self, src: &str, reason: &str) {
        self.count += 1;
        if self.sources.len() < TALLY_SOURCES_MAX || self.sources.contains_key(src) {
            *self.sources.entry(src.to_string()).or_default() += 1;
        }
        *self.reasons.entry(reason.to_string()).or_default() += 1;
    }

    /// The `n` sources with the most bans (ties by address).
    pub fn top(&self, n: usize) -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = self.sources.iter().map(|(k, c)| (k.clone(), *c)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    pub fn record(&self) -> Record {
        let top: Vec<serde_json::Value> =
            self.top(10).into_iter().map(|(s, c)| serde_json::json!({"src": s, "bans": c})).collect();
        let mut r = Record::new(
            Actor::controller(),
            "auto_bans",
            serde_json::json!({"count": self.count, "sources": self.sources.len(), "reasons": self.reasons, "top": top}),
        );
        r.message = format!("{} automatic bans of {} sources", self.count, self.sources.len());
        r
    }
}

/// `--since 2h` → the time that long ago.
pub fn since(d: Duration) -> SystemTime {
    SystemTime::now().checked_sub(d).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::DryRun;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("sipshield-audit-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d.join("sub").join("audit.jsonl")
    }

    #[test]
    fn verbs_and_args_come_from_the_request_json() {
        let ip = "198.51.100.7".parse().unwrap();
        assert_eq!(
            verb_and_args(&Request::BanAdd { ip, ttl_secs: 60 }),
            ("ban_add".into(), serde_json::json!({"ip": "198.51.100.7", "ttl_secs": 60}))
        );
        assert_eq!(verb_and_args(&Request::Reload), ("reload".into(), serde_json::Value::Null));
        assert_eq!(verb_and_args(&Request::DryRun { mode: DryRun::On }).0, "dry_run");
    }

    #[test]
    fn records_append_read_back_and_rotate() {
        let p = tmp("rw");
        let caller = Caller { uid: 0, pid: Some(42), sudo_user: Some("alice".into()) };
        let rec = Record::of_request(Actor::operator(&caller), &Request::AllowAdd { entry: "203.0.113.0/24".into() })
            .outcome(&Ok("added".into()));
        append(&p, &rec).unwrap();
        assert_eq!(read(&p, None).unwrap(), vec![rec.clone()]);
        assert_eq!(rec.actor.user.as_deref(), Some("root"));
        // logrotate moves the file away: the next record starts a new file, both are read.
        std::fs::rename(&p, format!("{}.1", p.display())).unwrap();
        let err = Record::new(Actor::controller(), "refresh", serde_json::Value::Null)
            .outcome(&Err(anyhow::anyhow!("feed down")));
        append(&p, &err).unwrap();
        let all = read(&p, None).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!((all[1].result.as_str(), all[1].message.as_str()), ("error", "feed down"));
        // --since: nothing is newer than a minute from now.
        assert!(read(&p, Some(SystemTime::now() + Duration::from_secs(60))).unwrap().is_empty());
        assert_eq!(read(&p, Some(since(Duration::from_secs(60)))).unwrap().len(), 2);
        // A damaged line is an error naming file and line.
        std::fs::write(&p, "{\"not\":1}\n").unwrap();
        let e = format!("{:#}", read(&p, None).unwrap_err());
        assert!(e.contains("audit.jsonl: line 1"), "{e}");
        std::fs::remove_dir_all(p.parent().unwrap().parent().unwrap()).unwrap();
    }

    #[test]
    fn a_failed_write_is_counted_and_reported() {
        let mut log = Log::new(&AuditCfg { path: PathBuf::from("/proc/sipshield-audit/x"), ..Default::default() });
        let rec = Record::new(Actor::controller(), "reload", serde_json::Value::Null);
        assert!(log.write(&rec).is_err());
        log.auto(&rec);
        assert_eq!(log.write_errors, 2);
        let mut off = Log::new(&AuditCfg { enabled: false, path: PathBuf::from("/proc/x"), ..Default::default() });
        off.write(&rec).unwrap();
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let mut r = Record::new(Actor::controller(), "ban_add", serde_json::json!({"ip": "198.51.100.7"}));
        r.time = "2026-01-01T00:00:00Z".into();
        r.host = "pbx".into();
        r.message = "said \"hi\", twice".into();
        let csv = to_csv(&[r]);
        assert_eq!(
            csv.lines().nth(1).unwrap(),
            r#"2026-01-01T00:00:00Z,sipshield,,,,pbx,ban_add,"{""ip"":""198.51.100.7""}",,,ok,"said ""hi"", twice""#
        );
    }

    #[test]
    fn ban_tally_keeps_the_top_sources() {
        let mut t = BanTally::default();
        for (s, n) in [("198.51.100.1", 3), ("198.51.100.2", 1), ("203.0.113.9", 5)] {
            for _ in 0..n {
                t.add(s, "ratelimit");
            }
        }
        assert_eq!(t.count, 9);
        assert_eq!(t.top(2), vec![("203.0.113.9".into(), 5), ("198.51.100.1".into(), 3)]);
        let r = t.record();
        assert_eq!(r.verb, "auto_bans");
        assert_eq!(r.args["reasons"]["ratelimit"], 9);
    }

    #[test]
    fn bounds() {
        assert!(AuditCfg::default().check().is_ok());
        let e = AuditCfg { path: "rel.jsonl".into(), ..Default::default() }.check().unwrap_err().to_string();
        assert!(e.starts_with("audit.path"), "{e}");
        let e = AuditCfg { ban_summary: Duration::from_secs(9), ..Default::default() }.check().unwrap_err();
        assert!(e.to_string().starts_with("audit.ban_summary"), "{e}");
    }
}
