//! The controller-process harness: the `sipshield` binary run as a child inside a namespace.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

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

/// A `sipshield` child process with private state/pin dirs; killed on drop.
pub struct Controller {
    pub child: Child,
    pub state_dir: PathBuf,
    pub pin_dir: PathBuf,
    pub log: PathBuf,
}

impl Controller {
    pub fn env(cmd: &mut Command, state_dir: &Path, pin_dir: &Path) {
        cmd.env("SIPSHIELD_STATE_DIR", state_dir).env("SIPSHIELD_PIN_DIR", pin_dir);
    }

    /// Start `sipshield run --config cfg` inside `ns` and wait until it reports it is running.
    pub fn start(ns: &str, cfg: &Path, state_dir: &Path, pin_dir: &Path) -> Controller {
        std::fs::create_dir_all(state_dir).unwrap();
        let log = state_dir.join("controller.log");
        let logf = std::fs::File::create(&log).unwrap();
        let mut cmd = NetnsPair::command(ns, &sipshield_bin());
        cmd.args(["run", "--config"]).arg(cfg);
        Self::env(&mut cmd, state_dir, pin_dir);
        let child = cmd
            .stdout(logf.try_clone().unwrap())
            .stderr(logf)
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn sipshield run");
        let c = Controller { child, state_dir: state_dir.into(), pin_dir: pin_dir.into(), log };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(&c.log).unwrap_or_default();
            if text.contains("sipshield running") {
                break;
            }
            if text.contains("error") || std::time::Instant::now() > deadline {
                panic!("sipshield run did not start:\n{text}");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        c
    }

    /// Run a CLI verb against this controller's pins; returns stdout (panics on failure).
    pub fn cli(&self, args: &[&str]) -> String {
        let out = self.cli_output(args);
        assert!(out.status.success(), "sipshield {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn cli_output(&self, args: &[&str]) -> std::process::Output {
        let mut cmd = Command::new(sipshield_bin());
        cmd.args(args);
        Self::env(&mut cmd, &self.state_dir, &self.pin_dir);
        cmd.output().expect("run sipshield")
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.cli(&["stats", "--json"])).expect("stats --json is JSON")
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `reasons.<name>.packets` of a stats document.
pub fn packets(stats: &serde_json::Value, reason: &str) -> u64 {
    stats["reasons"][reason]["packets"].as_u64().unwrap_or_else(|| panic!("no reasons.{reason}.packets in {stats}"))
}
