//! Shared fixtures for sipshield's integration tests: privilege gate, a test_run harness that
//! checks verdict *and* the reason counter of each packet, and a network-namespace/veth fixture.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use sipshield::config::Config;
use sipshield::filter::{Filter, XDP_DROP, XDP_PASS};
use xdp_common::*;

pub mod ctl;

/// Privileged tests run when root. Outside CI a non-root run is skipped loudly; under CI=true
/// it fails, so CI can never silently skip them.
pub fn require_root(test: &str) -> bool {
    if sipshield::sys::is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (CAP_BPF, CAP_NET_ADMIN) and CI=true: privileged tests must run in CI");
    }
    eprintln!("\n!!!!! SKIPPED {test}: needs root (CAP_BPF, CAP_NET_ADMIN) !!!!!\n");
    false
}

/// A private filter (loaded, nothing attached) filled from a TOML config.
pub fn filter_with(toml: &str) -> Filter {
    let cfg = Config::parse(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("test config: {e:#}"));
    let mut f = Filter::load_private().unwrap_or_else(|e| panic!("load: {e:#}"));
    sipshield::policy::apply_config(&mut f, &cfg).unwrap_or_else(|e| panic!("apply: {e:#}"));
    f
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
}

/// Expected outcome of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Pass(u32),
    Drop(u32),
}

pub fn reason_name(r: u32) -> &'static str {
    REASON_NAMES.get(r as usize).copied().unwrap_or("?")
}

/// Run `frame` and check the action and that exactly the expected reason counter grew by one
/// packet and `frame.len()` bytes.
pub fn check(f: &mut Filter, name: &str, frame: &[u8], want: Want) {
    let before = f.stats().expect("stats");
    let action = f.test_run(frame).unwrap_or_else(|e| panic!("{name}: test_run: {e:#}"));
    let after = f.stats().expect("stats");
    let (want_action, want_reason) = match want {
        Want::Pass(r) => (XDP_PASS, r),
        Want::Drop(r) => (XDP_DROP, r),
    };
    let grown: Vec<u32> =
        (0..NUM_REASONS).filter(|r| after.reason_total(*r).packets != before.reason_total(*r).packets).collect();
    assert_eq!(
        grown,
        vec![want_reason],
        "{name}: expected the {} counter to grow, got {:?}",
        reason_name(want_reason),
        grown.iter().map(|r| reason_name(*r)).collect::<Vec<_>>()
    );
    let db = after.reason_total(want_reason).bytes - before.reason_total(want_reason).bytes;
    assert_eq!(db, frame.len() as u64, "{name}: byte counter");
    assert_eq!(
        action,
        want_action,
        "{name}: expected {} ({}) got action {action}",
        if want_action == XDP_DROP { "drop" } else { "pass" },
        reason_name(want_reason)
    );
}

/// Run a whole table.
pub fn check_table(f: &mut Filter, table: &[(&str, Vec<u8>, Want)]) {
    for (name, frame, want) in table {
        check(f, name, frame, *want);
    }
}

// ------------------------------------------------------------------------------------------
// Network namespaces.
// ------------------------------------------------------------------------------------------

fn sh(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// Two namespaces joined by a veth pair: `client` (198.51.100.1 + extra addresses, 2001:db8::1)
/// and `server` (198.51.100.2, 2001:db8::2). Removed on drop. Never touches the root namespace's
/// interfaces.
pub struct NetnsPair {
    pub client: String,
    pub server: String,
    pub client_if: String,
    pub server_if: String,
}

impl NetnsPair {
    pub fn new(tag: &str) -> NetnsPair {
        let id = format!("{}{}", tag, std::process::id() % 100000);
        let p = NetnsPair {
            client: format!("ssc-{id}"),
            server: format!("sss-{id}"),
            client_if: "vcli".into(),
            server_if: "vsrv".into(),
        };
        let _ = Command::new("ip").args(["netns", "del", &p.client]).output();
        let _ = Command::new("ip").args(["netns", "del", &p.server]).output();
        sh("ip", &["netns", "add", &p.client]);
        sh("ip", &["netns", "add", &p.server]);
        sh(
            "ip",
            &[
                "link",
                "add",
                &p.client_if,
                "netns",
                &p.client,
                "type",
                "veth",
                "peer",
                "name",
                &p.server_if,
                "netns",
                &p.server,
            ],
        );
        for (ns, ifn, a4, a6) in [
            (&p.client, &p.client_if, "198.51.100.1/24", "2001:db8::1/64"),
            (&p.server, &p.server_if, "198.51.100.2/24", "2001:db8::2/64"),
        ] {
            sh("ip", &["-n", ns, "addr", "add", a4, "dev", ifn]);
            sh("ip", &["-n", ns, "addr", "add", a6, "dev", ifn, "nodad"]);
            sh("ip", &["-n", ns, "link", "set", ifn, "up"]);
            sh("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        p
    }

    /// Add another source address to the client side.
    pub fn add_client_addr(&self, cidr: &str) {
        sh("ip", &["-n", &self.client, "addr", "add", cidr, "dev", &self.client_if, "nodad"]);
    }

    pub fn ns_path(ns: &str) -> String {
        format!("/run/netns/{ns}")
    }

    /// Run `f` in a thread that has entered namespace `ns`.
    pub fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = Self::ns_path(ns);
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
            use std::os::fd::AsRawFd;
            // SAFETY: valid namespace fd; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
            f()
        })
        .join()
        .expect("namespace thread panicked")
    }

    /// Send UDP datagrams from `src` (an address of the client namespace) to `dst:port`.
    pub fn send_udp(&self, src: IpAddr, dst: IpAddr, port: u16, payloads: Vec<Vec<u8>>) {
        Self::in_ns(&self.client, move || {
            let sock = std::net::UdpSocket::bind((src, 0)).unwrap_or_else(|e| panic!("bind {src}: {e}"));
            for p in payloads {
                sock.send_to(&p, (dst, port)).expect("send");
            }
        })
    }

    /// A command running inside namespace `ns` (nsenter keeps the host's bpffs visible).
    pub fn command(ns: &str, program: &Path) -> Command {
        let mut c = Command::new("nsenter");
        c.arg(format!("--net={}", Self::ns_path(ns))).arg(program);
        c
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.client]).output();
        let _ = Command::new("ip").args(["netns", "del", &self.server]).output();
    }
}

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
