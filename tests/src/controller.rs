//! The controller-process harness: a `sipshield run` child inside a network namespace, with
//! private state and pin directories ([`Dirs`]), ready when `status --json` says so (not by
//! reading its log), killed on drop; the pins are detached and removed when the [`Dirs`] go.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::netns::NetnsPair;

/// Path of the `sipshield` binary built alongside the tests.
pub fn sipshield_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("sipshield");
    assert!(
        bin.exists(),
        "{} is missing: build it first (`cargo build -p xdp-user`, done by `cargo xtask test`)",
        bin.display()
    );
    bin
}

/// Private state/pin directories for one controller: the pins live under bpffs and are removed
/// (detaching whatever is still attached) on drop.
pub struct Dirs {
    pub state: PathBuf,
    pub pin: PathBuf,
}

impl Dirs {
    pub fn new(tag: &str, scratch: &Path) -> Dirs {
        let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&pin);
        Dirs { state: scratch.join("state"), pin }
    }

    /// Directories given by the test (the pins are still removed on drop).
    pub fn at(state: &Path, pin: &Path) -> Dirs {
        Dirs { state: state.to_path_buf(), pin: pin.to_path_buf() }
    }

    /// `sipshield ARGS` with these directories.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(sipshield_bin());
        c.args(args);
        Controller::env(&mut c, &self.state, &self.pin);
        c
    }

    pub fn cli(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().expect("run sipshield")
    }

    /// Run a verb that must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "sipshield {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run a verb that must fail; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            !out.status.success(),
            "sipshield {args:?} should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("sipshield {args:?} --json: {e}: {text}"))
    }

    pub fn status(&self) -> serde_json::Value {
        self.json(&["status"])
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        let _ = self.command(&["detach"]).output();
        let _ = std::fs::remove_dir_all(&self.pin);
    }
}

/// A running `sipshield run`.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    /// Start `sipshield run --config cfg` inside `ns` (nsenter keeps bpffs visible).
    pub fn spawn(ns: &str, cfg: &Path, dirs: &Dirs) -> Daemon {
        std::fs::create_dir_all(&dirs.state).unwrap();
        let log = dirs.state.with_extension("log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = NetnsPair::command(ns, &sipshield_bin());
        cmd.args(["run", "--config"]).arg(cfg);
        Controller::env(&mut cmd, &dirs.state, &dirs.pin);
        let child = cmd
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sipshield run");
        Daemon { child, log }
    }

    /// Spawn and wait until ready.
    pub fn start(ns: &str, cfg: &Path, dirs: &Dirs) -> Daemon {
        let mut d = Self::spawn(ns, cfg, dirs);
        d.wait_ready(dirs, Duration::from_secs(60));
        d
    }

    /// Wait until `status --json` reports a running controller (it answers on its control
    /// socket only once everything is loaded and attached).
    pub fn wait_ready(&mut self, dirs: &Dirs, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!("sipshield run exited ({st}) before it was ready:\n{}", self.log_text());
            }
            let out = dirs.cli(&["status", "--json"]);
            if out.status.success() {
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
                if v["controller"] == "running" {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "sipshield run not ready after {timeout:?}:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        // nsenter execs the controller: the child's pid is the controller's.
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    /// SIGTERM and wait (bounded).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        self.wait_exit(Duration::from_secs(20))
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `GET /metrics` from inside namespace `ns`; returns (status line, body, elapsed).
pub fn scrape(ns: &str, addr: &str) -> (String, String, Duration) {
    let addr = addr.to_string();
    NetnsPair::in_ns(ns, move || {
        use std::io::{Read, Write};
        let t0 = Instant::now();
        let mut s = std::net::TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(s, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        let elapsed = t0.elapsed();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        (head.lines().next().unwrap_or("").to_string(), body.to_string(), elapsed)
    })
}

/// A controller with its directories: `start` it, use the CLI against it; on drop the
/// controller is killed and its pins removed.
pub struct Controller {
    pub daemon: Daemon,
    pub dirs: Dirs,
}

impl Controller {
    /// Point `cmd` at private state and pin directories.
    pub fn env(cmd: &mut Command, state_dir: &Path, pin_dir: &Path) {
        cmd.env("SIPSHIELD_STATE_DIR", state_dir).env("SIPSHIELD_PIN_DIR", pin_dir);
    }

    /// Start `sipshield run --config cfg` inside `ns` and wait until it is ready.
    pub fn start(ns: &str, cfg: &Path, state_dir: &Path, pin_dir: &Path) -> Controller {
        let dirs = Dirs::at(state_dir, pin_dir);
        let daemon = Daemon::start(ns, cfg, &dirs);
        Controller { daemon, dirs }
    }

    /// Run a CLI verb against this controller; returns stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        self.dirs.ok(args)
    }

    pub fn cli_output(&self, args: &[&str]) -> Output {
        self.dirs.cli(args)
    }

    pub fn stats(&self) -> serde_json::Value {
        self.dirs.json(&["stats"])
    }

    /// Kill the controller (the filter stays attached and pinned).
    pub fn kill9(&mut self) {
        let _ = self.daemon.child.kill();
        let _ = self.daemon.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }
}

/// `reasons.<name>.packets` of a stats document.
pub fn packets(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["reasons"][reason]["packets"].as_u64().unwrap_or_else(|| panic!("no reasons.{reason}.packets in {stats}"))
}
