//! Operations: a real Prometheus scraping the controller's metrics, a real fail2ban banning
//! through sipshield, the Grafana dashboard's metrics, config errors, reload and events.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sipshield::filter::Filter;
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::tmp::{self, TempDir};
use sipshield_tests::*;

fn tmp(tag: &str) -> TempDir {
    tmp::dir(&format!("ops-{tag}"))
}

fn http_get(addr: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn sip(i: usize) -> Vec<u8> {
    SipMessage::request("OPTIONS", "100", "198.51.100.2").user_agent("Linphone").seq(i as u64).build()
}

#[test]
fn prometheus_scrapes_the_controller() {
    if !require_root("prometheus_scrapes_the_controller") {
        return;
    }
    let prom = which("prometheus");
    let net = NetnsPair::new("p");
    net.add_client_addr("198.51.100.66/24");
    let dir = tmp("prom");
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        "interfaces = [\"vsrv\"]\n[blacklist]\nentries = [\"198.51.100.66\"]\n[metrics]\nlisten = \"127.0.0.1:9610\"\n",
    )
    .unwrap();
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-prom-{}", std::process::id()));
    let ctl = Controller::start(&net.server, &cfg, &dir.join("state"), &pin);
    net.send_udp(ip("198.51.100.66"), ip("198.51.100.2"), 5060, (0..4).map(sip).collect());

    // Our endpoint directly (inside the server namespace, where it listens on loopback).
    let body =
        NetnsPair::in_ns(&net.server, || http_get("127.0.0.1:9610", "/metrics")).expect("metrics endpoint answers");
    assert!(body.contains("sipshield_packets_total{reason=\"blacklisted\",iface=\"vsrv\"} 4"), "{body}");

    // A real Prometheus in the same namespace scrapes it; query the counter back.
    let pcfg = dir.join("prometheus.yml");
    std::fs::write(&pcfg, "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sipshield\n    static_configs:\n      - targets: ['127.0.0.1:9610']\n").unwrap();
    let mut child = NetnsPair::command(&net.server, &prom)
        .arg(format!("--config.file={}", pcfg.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
        .arg("--web.listen-address=127.0.0.1:9090")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("start prometheus");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let found = loop {
        let q = NetnsPair::in_ns(&net.server, || {
            http_get("127.0.0.1:9090", "/api/v1/query?query=sipshield_packets_total%7Breason%3D%22blacklisted%22%7D")
        });
        if let Some(r) = q {
            if r.contains("\"value\"") {
                break Some(r);
            }
            last = r;
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let _ = child.kill();
    let _ = child.wait();
    let r = found.unwrap_or_else(|| panic!("Prometheus never returned the counter; last answer: {last}"));
    assert!(r.contains("\"iface\":\"vsrv\"") && r.contains(",\"4\"]"), "{r}");
    ctl.cli(&["detach"]);
}

fn which(name: &str) -> PathBuf {
    for d in ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/bin"] {
        let p = Path::new(d).join(name);
        if p.exists() {
            return p;
        }
    }
    panic!("{name} is not installed (cargo xtask setup installs it)");
}

#[test]
fn fail2ban_bans_through_sipshield() {
    if !require_root("fail2ban_bans_through_sipshield") {
        return;
    }
    let client = which("fail2ban-client");
    let dir = tmp("f2b");
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-f2b-{}", std::process::id()));
    // Unpinned also when an assertion fails (pinned maps would outlive the test process).
    struct Unpin(PathBuf);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _unpin = Unpin(pin.clone());
    let state = dir.join("state");
    // A pinned filter (not attached): fail2ban's action edits its ban map through the CLI.
    let mut filter = Filter::load_pinned(&pin).unwrap();
    let cfg = sipshield::config::Config::parse("[sip]\nports = [5060]\n", Path::new("t.toml")).unwrap();
    sipshield::policy::apply_config(&mut filter, &cfg).unwrap();

    let conf = dir.join("conf");
    std::fs::create_dir_all(conf.join("action.d")).unwrap();
    std::fs::create_dir_all(conf.join("filter.d")).unwrap();
    // The stock asterisk filter and common definitions from the Debian package.
    for f in ["filter.d/asterisk.conf", "filter.d/common.conf"] {
        std::fs::copy(Path::new("/etc/fail2ban").join(f), conf.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
    }
    // The shipped action, unchanged.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(repo.join("deploy/fail2ban/action.d/sipshield.conf"), conf.join("action.d/sipshield.conf")).unwrap();
    let run = dir.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        conf.join("fail2ban.conf"),
        format!(
            "[Definition]\nloglevel = INFO\nlogtarget = {}\nsocket = {}\npidfile = {}\ndbfile = :memory:\n",
            dir.join("fail2ban.log").display(),
            run.join("f2b.sock").display(),
            run.join("f2b.pid").display()
        ),
    )
    .unwrap();
    let log = dir.join("messages");
    std::fs::write(&log, "").unwrap();
    let bin = sipshield_bin();
    let cmd =
        format!("env SIPSHIELD_PIN_DIR={} SIPSHIELD_STATE_DIR={} {}", pin.display(), state.display(), bin.display());
    std::fs::write(
        conf.join("jail.conf"),
        format!(
            "[DEFAULT]\nbackend = polling\n\n[asterisk]\nenabled = true\nfilter = asterisk\nlogpath = {}\nmaxretry = 3\nfindtime = 600\nbantime = 600\naction = sipshield[sipshield=\"{cmd}\", bantime=600]\n",
            log.display()
        ),
    )
    .unwrap();
    let f2b = |args: &[&str]| Command::new(&client).arg("-c").arg(&conf).args(args).output().unwrap();
    let out = f2b(&["-x", "start"]);
    assert!(out.status.success(), "fail2ban start: {}", String::from_utf8_lossy(&out.stderr));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f2b(&["ping"]).status.success() {
        assert!(Instant::now() < deadline, "fail2ban did not come up");
        std::thread::sleep(Duration::from_millis(200));
    }
    let now = chrono_now();
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    for i in 0..3 {
        writeln!(f, "[{now}] NOTICE[1234{i}] chan_sip.c: Registration from '\"100\" <sip:100@198.51.100.2>' failed for '203.0.113.50:5060' - Wrong password").unwrap();
    }
    drop(f);
    let deadline = Instant::now() + Duration::from_secs(30);
    let banned = loop {
        let bans = sipshield::bans::list(&filter).unwrap();
        if let Some(b) = bans.into_iter().find(|b| b.address == "203.0.113.50") {
            break Some(b);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    let status = f2b(&["status", "asterisk"]);
    let b = banned.unwrap_or_else(|| {
        let _ = f2b(&["stop"]);
        panic!(
            "fail2ban never banned through sipshield:\n{}\n{}",
            String::from_utf8_lossy(&status.stdout),
            std::fs::read_to_string(dir.join("fail2ban.log")).unwrap_or_default()
        )
    });
    assert!(b.expires_in > 500.0 && b.expires_in <= 600.0, "ban ttl follows bantime: {b:?}");
    // The ban is enforced by the program.
    let frame = PacketBuilder::udp(ip("203.0.113.50"), ip("198.51.100.2"), 5060, 5060).payload(&sip(1)).build();
    check(&mut filter, "fail2ban ban enforced", &frame, Want::Drop(xdp_common::REASON_BANNED));
    // Stopping fail2ban unbans (actionunban → `sipshield ban del`).
    let _ = f2b(&["stop"]);
    let deadline = Instant::now() + Duration::from_secs(15);
    while sipshield::bans::list(&filter).unwrap().iter().any(|b| b.address == "203.0.113.50") {
        assert!(Instant::now() < deadline, "fail2ban's unban did not reach sipshield");
        std::thread::sleep(Duration::from_millis(200));
    }
    check(&mut filter, "unbanned by fail2ban", &frame, Want::Pass(xdp_common::REASON_PASS));
    drop(filter);
}

/// Local time as fail2ban's default date pattern expects it.
fn chrono_now() -> String {
    let out = Command::new("date").arg("+%Y-%m-%d %H:%M:%S").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn dashboard_uses_only_exported_metrics() {
    if !require_root("dashboard_uses_only_exported_metrics") {
        return;
    }
    let f = filter_with("");
    let mut ds = sipshield::state::DaemonState::default();
    ds.lists.insert(
        "blacklist".into(),
        sipshield::state::ListState { entries: 1, last_load_unix: 1.0, ..Default::default() },
    );
    let snap = sipshield::metrics::Snapshot { state: ds, ..Default::default() };
    let text = sipshield::metrics::render(&f, &snap).unwrap();
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../xdp-user/src/metrics.rs")).unwrap();
    let dash = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana-dashboard.json"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&dash).expect("dashboard is JSON");
    let mut names = std::collections::BTreeSet::new();
    for p in v["panels"].as_array().unwrap() {
        for t in p["targets"].as_array().unwrap() {
            let e = t["expr"].as_str().unwrap();
            for (i, _) in e.match_indices("sipshield_") {
                let n: String = e[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                names.insert(n);
            }
        }
    }
    assert!(names.len() >= 8, "{names:?}");
    for n in &names {
        // Families without samples (no geo drop yet) are omitted by the encoder: those must at
        // least be registered by the renderer under that name.
        let base = n.trim_end_matches("_total");
        let registered = source.contains(&format!("\"{base}\""));
        assert!(
            text.contains(&format!("\n{n}"))
                || (registered
                    && ["sipshield_geo_dropped_total", "sipshield_tollfraud_dropped_total"].contains(&n.as_str())),
            "dashboard metric {n} is not exported:\n{text}"
        );
    }
}

#[test]
fn config_errors_name_the_key_and_leave_the_filter_alone() {
    if !require_root("config_errors_name_the_key_and_leave_the_filter_alone") {
        return;
    }
    let net = NetnsPair::new("c");
    let dir = tmp("cfg");
    let good = dir.join("good.toml");
    std::fs::write(
        &good,
        "interfaces = [\"vsrv\"]\n[metrics]\nenabled = false\n[blacklist]\nentries = [\"198.51.100.66\"]\n",
    )
    .unwrap();
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-cfg-{}", std::process::id()));
    let state = dir.join("state");
    let ctl = Controller::start(&net.server, &good, &state, &pin);
    let cases = [
        ("unknown key", "interfaces = [\"vsrv\"]\nbogus_key = 1\n", "bogus_key"),
        ("bad CIDR", "interfaces = [\"vsrv\"]\n[blacklist]\nentries = [\"198.51.100.0/40\"]\n", "blacklist.entries[0]"),
        (
            "bad country",
            "interfaces = [\"vsrv\"]\n[geoip]\ndatabase = \"/dev/null\"\nallow_countries = [\"XX\"]\n",
            "geoip.allow_countries",
        ),
        (
            "missing file",
            "interfaces = [\"vsrv\"]\n[blacklist]\nfiles = [\"/nonexistent/list.txt\"]\n",
            "/nonexistent/list.txt",
        ),
        ("bad duration", "interfaces = [\"vsrv\"]\n[blacklist]\nrefresh = \"often\"\n", "often"),
    ];
    for (name, text, needle) in cases {
        let p = dir.join(format!("{}.toml", name.replace(' ', "_")));
        std::fs::write(&p, text).unwrap();
        let mut cmd = NetnsPair::command(&net.server, &sipshield_bin());
        cmd.args(["run", "--config"]).arg(&p);
        Controller::env(&mut cmd, &dir.join("other-state"), &pin);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{name}: must fail");
        assert!(
            err.contains(needle) && err.contains(p.file_name().unwrap().to_str().unwrap()),
            "{name}: error must name {needle:?} and the file: {err}"
        );
    }
    // The running filter still enforces its list.
    let st = ctl.stats();
    assert_eq!(st["reasons"]["blacklisted"]["packets"], 0);
    net.add_client_addr("198.51.100.66/24");
    net.send_udp(ip("198.51.100.66"), ip("198.51.100.2"), 5060, (0..2).map(sip).collect());
    assert_eq!(packets(&ctl.stats(), "blacklisted"), 2);

    // A bad config given to a running controller is rejected; the running one stays.
    std::fs::write(&good, "interfaces = [\"vsrv\"]\n[blacklist]\nentries = [\"not-an-ip\"]\n").unwrap();
    let out = ctl.cli_output(&["reload"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("blacklist.entries[0]"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    net.send_udp(ip("198.51.100.66"), ip("198.51.100.2"), 5060, (0..2).map(sip).collect());
    assert_eq!(packets(&ctl.stats(), "blacklisted"), 4);

    // A good new config is applied live (SIGHUP): the list changes without a restart.
    std::fs::write(
        &good,
        "interfaces = [\"vsrv\"]\n[metrics]\nenabled = false\n[blacklist]\nentries = [\"198.51.100.1\"]\n",
    )
    .unwrap();
    ctl.cli(&["reload"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ctl.cli(&["blacklist", "stats", "--json"]).contains("\"v4\":1")
        || ctl.log_text().matches("configuration reloaded").count() == 0
    {
        assert!(Instant::now() < deadline, "reload not applied: {}", ctl.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    net.send_udp(ip("198.51.100.66"), ip("198.51.100.2"), 5060, (0..2).map(sip).collect());
    net.send_udp(ip("198.51.100.1"), ip("198.51.100.2"), 5060, (0..3).map(sip).collect());
    assert_eq!(packets(&ctl.stats(), "blacklisted"), 7, "old entry gone, new one live");

    // Dry-run live, and the event stream.
    ctl.cli(&["dry-run", "on"]);
    net.send_udp(ip("198.51.100.1"), ip("198.51.100.2"), 5060, (0..2).map(sip).collect());
    assert_eq!(packets(&ctl.stats(), "blacklisted"), 9, "dry-run still counts");
    ctl.cli(&["dry-run", "off"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ev = ctl.cli(&["events", "--json", "-n", "100"]);
        let lines: Vec<serde_json::Value> = ev.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        if lines.iter().filter(|e| e["reason"] == "blacklisted").count() >= 9 {
            assert!(lines.iter().any(|e| e["dry_run"] == true && e["src"] == "198.51.100.1"), "{ev}");
            break;
        }
        assert!(Instant::now() < deadline, "events missing: {ev}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // The same events, one human-readable line each.
    let text = ctl.cli(&["events", "-n", "100"]);
    assert!(
        text.lines()
            .any(|l| l.contains(" blacklisted ") && l.contains("198.51.100.1 udp:") && l.ends_with("(dry-run)")),
        "human-readable events: {text}"
    );
    ctl.cli(&["detach"]);
}
