//! The control socket: while a controller runs, every CLI verb that changes state is a
//! [`Request`] sent over `control.sock` in the state directory (mode 0600, root only), and the
//! controller applies it in order with its own reloads and refreshes — one writer. The reply
//! carries the controller's real result, so the CLI exits non-zero with the daemon's error.
//!
//! Protocol: one JSON line each way per connection.
use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// How long the CLI waits for the controller's answer (a reload of large lists takes seconds).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(300);
/// Largest request line the controller reads.
pub const MAX_REQUEST: usize = 64 * 1024;

/// `dry-run on|off|config`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum DryRun {
    /// Count what would be dropped, pass everything (overrides the config).
    On,
    /// Enforce (overrides the config).
    Off,
    /// Drop the override: follow the config's `dry_run`.
    Config,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    Status,
    Reload,
    Refresh,
    BanAdd { ip: IpAddr, ttl_secs: u64 },
    BanDel { ip: IpAddr },
    AllowAdd { entry: String },
    AllowDel { entry: String },
    ScannerAdd { header: String, text: String },
    ScannerDel { header: String, text: String },
    DryRun { mode: DryRun },
    GroupAdd { name: String, entry: String },
    GroupDel { name: String, entry: String },
    Detach { iface: Option<String> },
}

impl Request {
    /// Does this request change state (and so belong in the audit log)?
    pub fn is_edit(&self) -> bool {
        !matches!(self, Request::Status)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Reply {
    pub ok: bool,
    /// Human-readable result or error.
    pub message: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

impl Reply {
    pub fn ok(message: impl Into<String>) -> Reply {
        Reply { ok: true, message: message.into(), data: serde_json::Value::Null }
    }
    pub fn err(e: &anyhow::Error) -> Reply {
        Reply { ok: false, message: format!("{e:#}"), data: serde_json::Value::Null }
    }
    pub fn from_result(r: Result<String>) -> Reply {
        match r {
            Ok(m) => Reply::ok(m),
            Err(e) => Reply::err(&e),
        }
    }
    /// The reply as a result: the message on success, an error otherwise.
    pub fn into_result(self) -> Result<Reply> {
        if self.ok {
            Ok(self)
        } else {
            Err(anyhow!("{}", self.message))
        }
    }
}

/// Who sent a request (uid and pid from `SO_PEERCRED`; `sudo_user` as the CLI reported it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Caller {
    pub uid: u32,
    pub pid: Option<i32>,
    #[serde(default)]
    pub sudo_user: Option<String>,
}

/// The key next to `op` that carries the caller's `SUDO_USER` (for the audit trail).
const SUDO_USER_KEY: &str = "sudo_user";

/// A request line as sent: the request's JSON with the caller's `SUDO_USER` added.
pub fn request_line(req: &Request, sudo_user: Option<&str>) -> Result<String> {
    let mut v = serde_json::to_value(req)?;
    if let (Some(o), Some(u)) = (v.as_object_mut(), sudo_user) {
        o.insert(SUDO_USER_KEY.into(), u.into());
    }
    Ok(v.to_string() + "\n")
}

/// Parse a request line: the request and the `SUDO_USER` it reports.
pub fn parse_request(line: &str) -> Result<(Request, Option<String>)> {
    let mut v: serde_json::Value = serde_json::from_str(line)?;
    let sudo = v
        .as_object_mut()
        .and_then(|o| o.remove(SUDO_USER_KEY))
        .and_then(|u| u.as_str().map(str::to_string))
        .filter(|u| !u.is_empty());
    Ok((serde_json::from_value(v)?, sudo))
}

/// Send `req` to the running controller. `Ok(None)` when no controller listens (no socket, or
/// a stale one nobody accepts on and no controller holds the lock).
pub fn call(socket: &Path, req: &Request) -> Result<Option<Reply>> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(s) => s,
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused) => {
            if crate::state::controller_lock_held() {
                bail!(
                    "a sipshield controller holds the lock but does not answer on {} ({e}); is it still starting?",
                    socket.display()
                );
            }
            return Ok(None);
        }
        Err(e) => return Err(anyhow!("{}: {e}", socket.display())),
    };
    stream.set_read_timeout(Some(REPLY_TIMEOUT))?;
    let line = request_line(req, crate::audit::sudo_user().as_deref())?;
    stream.write_all(line.as_bytes()).with_context(|| format!("{}: sending the request", socket.display()))?;
    let mut answer = String::new();
    BufReader::new(&stream)
        .read_line(&mut answer)
        .with_context(|| format!("{}: waiting for the controller's answer", socket.display()))?;
    if answer.is_empty() {
        bail!("the controller closed {} without answering (did it stop?)", socket.display());
    }
    Ok(Some(serde_json::from_str(&answer).context("the controller's answer is not valid JSON")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_as_json() {
        let reqs = [
            Request::Status,
            Request::BanAdd { ip: "198.51.100.7".parse().unwrap(), ttl_secs: 60 },
            Request::AllowDel { entry: "203.0.113.0/24".into() },
            Request::DryRun { mode: DryRun::Config },
            Request::Detach { iface: None },
        ];
        for r in reqs {
            let s = serde_json::to_string(&r).unwrap();
            assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r, "{s}");
        }
        assert!(!Request::Status.is_edit() && Request::Reload.is_edit());
    }

    #[test]
    fn every_request_but_status_is_an_edit() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let edits = [
            Request::Reload,
            Request::Refresh,
            Request::BanAdd { ip, ttl_secs: 1 },
            Request::BanDel { ip },
            Request::AllowAdd { entry: "x".into() },
            Request::AllowDel { entry: "x".into() },
            Request::ScannerAdd { header: "from".into(), text: "x".into() },
            Request::ScannerDel { header: "from".into(), text: "x".into() },
            Request::DryRun { mode: DryRun::On },
            Request::GroupAdd { name: "trunks".into(), entry: "x".into() },
            Request::GroupDel { name: "trunks".into(), entry: "x".into() },
            Request::Detach { iface: Some("eth1".into()) },
        ];
        assert!(edits.iter().all(Request::is_edit));
        // The wire format of a request (scripts and older CLIs speak it).
        assert_eq!(
            serde_json::to_string(&Request::BanAdd { ip, ttl_secs: 60 }).unwrap(),
            r#"{"op":"ban_add","ip":"198.51.100.7","ttl_secs":60}"#
        );
        assert_eq!(
            serde_json::to_string(&Request::DryRun { mode: DryRun::Off }).unwrap(),
            r#"{"op":"dry_run","mode":"off"}"#
        );
    }

    #[test]
    fn requests_carry_the_sudo_user() {
        let req = Request::BanDel { ip: "198.51.100.7".parse().unwrap() };
        let line = request_line(&req, Some("alice")).unwrap();
        assert_eq!(line, "{\"ip\":\"198.51.100.7\",\"op\":\"ban_del\",\"sudo_user\":\"alice\"}\n");
        assert_eq!(parse_request(&line).unwrap(), (req.clone(), Some("alice".into())));
        let plain = request_line(&req, None).unwrap();
        assert_eq!(parse_request(&plain).unwrap(), (req, None));
        assert_eq!(parse_request("{\"op\":\"reload\",\"sudo_user\":\"bob\"}").unwrap().1.as_deref(), Some("bob"));
        assert!(parse_request("{\"op\":\"bogus\"}").is_err());
    }

    #[test]
    fn replies_carry_the_result() {
        let ok = Reply::from_result(Ok("done".into()));
        assert_eq!(ok, Reply { ok: true, message: "done".into(), data: serde_json::Value::Null });
        assert_eq!(ok.clone().into_result().unwrap(), ok);
        let err = Reply::from_result(Err(anyhow!("inner").context("outer")));
        assert_eq!((err.ok, err.message.as_str()), (false, "outer: inner"));
        assert_eq!(err.into_result().unwrap_err().to_string(), "outer: inner");
        let r: Reply = serde_json::from_str(r#"{"ok":true,"message":"m"}"#).unwrap();
        assert_eq!(r.data, serde_json::Value::Null, "data is optional");
    }

    /// A controller stand-in on a socket: reads one request line, answers `answer`.
    fn serve_once(answer: &'static str) -> (std::path::PathBuf, std::thread::JoinHandle<String>) {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "sipshield-control-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let _ = std::fs::remove_file(&path); // left by an earlier run with the same pid
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut line = String::new();
            BufReader::new(&stream).read_line(&mut line).unwrap();
            (&stream).write_all(answer.as_bytes()).unwrap();
            line
        });
        (path, t)
    }

    #[test]
    fn call_sends_one_line_and_reads_one_line() {
        let (path, t) = serve_once("{\"ok\":false,\"message\":\"198.51.100.7 is not banned\",\"data\":null}\n");
        let req = Request::BanDel { ip: "198.51.100.7".parse().unwrap() };
        let reply = call(&path, &req).unwrap().expect("a controller answered");
        assert_eq!((reply.ok, reply.message.as_str()), (false, "198.51.100.7 is not banned"));
        assert_eq!(t.join().unwrap(), request_line(&req, crate::audit::sudo_user().as_deref()).unwrap());
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

        let (path, t) = serve_once("");
        let e = call(&path, &Request::Status).unwrap_err().to_string();
        assert!(e.contains("closed") && e.contains("without answering"), "{e}");
        t.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

        let (path, t) = serve_once("<html>\n");
        let e = call(&path, &Request::Status).unwrap_err().to_string();
        assert!(e.contains("not valid JSON"), "{e}");
        t.join().unwrap();
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();

        // A socket path that cannot be used: an error naming it, not "no controller".
        let long = "/tmp/".to_string() + &"x".repeat(200);
        let e = call(Path::new(&long), &Request::Status).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{long}: ")), "{e}");
    }
}
