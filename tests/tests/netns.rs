//! Live traffic across a veth pair between two network namespaces, with `sipshield run`
//! attached natively to the server side: packets really cross (or are really dropped) and the
//! pinned counters, bans and links outlive the controller process.
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use sipshield_tests::sip::SipMessage;
use sipshield_tests::tmp::{self, TempDir};
use sipshield_tests::*;

fn sip(ua: &str, i: usize) -> Vec<u8> {
    SipMessage::request("OPTIONS", "100", "198.51.100.2").via("198.51.100.1:5070").user_agent(ua).seq(i as u64).build()
}

/// Bind a UDP socket in the server namespace and count datagrams until `quiet` passes with
/// nothing arriving (bounded by `max`).
fn receiver(ns: &str, port: u16) -> std::thread::JoinHandle<Vec<IpAddr>> {
    let ns = ns.to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let h = std::thread::spawn(move || {
        NetnsPair::in_ns(&ns, move || {
            let s = UdpSocket::bind(("0.0.0.0", port)).expect("bind receiver");
            s.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
            tx.send(()).unwrap();
            let mut got = vec![];
            let mut buf = [0u8; 2048];
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while let Ok((_, from)) = s.recv_from(&mut buf) {
                got.push(from.ip());
                if std::time::Instant::now() > deadline {
                    break;
                }
            }
            got
        })
    });
    rx.recv_timeout(Duration::from_secs(5)).expect("receiver ready");
    h
}

struct Dirs {
    state: PathBuf,
    pin: PathBuf,
    cfg: PathBuf,
    /// Holds the scratch directory of `state` and `cfg` (removed on drop).
    _base: TempDir,
}

fn dirs(tag: &str, cfg: &str) -> Dirs {
    let base = tmp::dir(tag);
    let cfgp = base.join("sipshield.toml");
    std::fs::write(&cfgp, cfg).unwrap();
    Dirs {
        state: base.join("state"),
        pin: PathBuf::from(format!("/sys/fs/bpf/sipshield-test-{tag}-{}", std::process::id())),
        cfg: cfgp,
        _base: base,
    }
}

const CFG: &str = "interfaces = [\"vsrv\"]\nmode = \"native\"\n[blacklist]\nentries = [\"198.51.100.66\"]\n[metrics]\nenabled = false\n";

#[test]
fn packets_cross_the_veth_and_are_counted() {
    if !require_root("packets_cross_the_veth_and_are_counted") {
        return;
    }
    let net = NetnsPair::new("x");
    net.add_client_addr("198.51.100.66/24");
    let d = dirs("cross", CFG);
    let ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    let rx = receiver(&net.server, 5060);
    let server = ip("198.51.100.2");
    net.send_udp(ip("198.51.100.1"), server, 5060, (0..5).map(|i| sip("Linphone/5.2", i)).collect());
    net.send_udp(ip("198.51.100.66"), server, 5060, (0..7).map(|i| sip("Linphone/5.2", i)).collect());
    net.send_udp(ip("198.51.100.1"), server, 5060, (0..3).map(|i| sip("friendly-scanner", i)).collect());
    let got = rx.join().unwrap();
    assert_eq!(got.iter().filter(|a| **a == ip("198.51.100.1")).count(), 5, "legit datagrams must arrive: {got:?}");
    assert!(!got.contains(&ip("198.51.100.66")), "blacklisted source must not arrive: {got:?}");
    let st = ctl.stats();
    assert_eq!(packets(&st, "blacklisted"), 7, "{st}");
    assert_eq!(packets(&st, "scanner"), 3, "{st}");
    assert!(packets(&st, "pass") >= 5, "{st}");
    assert_eq!(st["interfaces"]["vsrv"]["blacklisted"]["packets"], 7, "per-interface counters: {st}");
    let status = ctl.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&status).unwrap();
    assert_eq!(status["attached"], serde_json::json!(["vsrv"]), "{status}");
    assert_eq!(status["controller"], "running");
    // stats --watch: one JSON document per period, with rates from the second one on.
    let mut cmd = std::process::Command::new(sipshield_bin());
    cmd.args(["stats", "--json", "--watch", "1"]).stdout(std::process::Stdio::piped());
    Controller::env(&mut cmd, &d.state, &d.pin);
    let mut watch = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(2500));
    let _ = watch.kill();
    let out = watch.wait_with_output().unwrap();
    let docs: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert!(docs.len() >= 2, "{docs:?}");
    assert!(docs[1]["rates_per_second"]["pass"].is_number(), "{}", docs[1]);
    ctl.cli(&["detach"]);
    assert!(!d.pin.exists(), "detach removes the pins");
}

#[test]
fn filter_survives_the_controller_and_detach_restores_traffic() {
    if !require_root("filter_survives_the_controller_and_detach_restores_traffic") {
        return;
    }
    let net = NetnsPair::new("y");
    net.add_client_addr("198.51.100.66/24");
    net.add_client_addr("198.51.100.77/24");
    let d = dirs("crash", CFG);
    let server = ip("198.51.100.2");
    let mut ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    net.send_udp(ip("198.51.100.66"), server, 5060, (0..4).map(|i| sip("x", i)).collect());
    ctl.cli(&["ban", "add", "198.51.100.77", "--ttl", "10m"]);

    // A second controller on the same host is refused.
    let second = NetnsPair::command(&net.server, &sipshield_bin())
        .args(["run", "--config"])
        .arg(&d.cfg)
        .env("SIPSHIELD_STATE_DIR", &d.state)
        .env("SIPSHIELD_PIN_DIR", &d.pin)
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );

    // SIGKILL the controller: the pinned link keeps the filter attached and enforcing.
    ctl.kill9();
    let rx = receiver(&net.server, 5060);
    net.send_udp(ip("198.51.100.66"), server, 5060, (0..3).map(|i| sip("x", i)).collect());
    net.send_udp(ip("198.51.100.77"), server, 5060, (0..2).map(|i| sip("x", i)).collect());
    net.send_udp(ip("198.51.100.1"), server, 5060, (0..2).map(|i| sip("x", i)).collect());
    let got = rx.join().unwrap();
    assert_eq!(got, vec![ip("198.51.100.1"); 2], "only the clean source passes while the controller is dead");
    let st = ctl.stats();
    assert_eq!(packets(&st, "blacklisted"), 7, "{st}");
    assert_eq!(packets(&st, "banned"), 2, "{st}");

    // Restart: the pinned state is adopted, counters and bans survive. (The first harness
    // removes the pins when it goes, at the end of the test.)
    let _first = ctl;
    let ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    let st = ctl.stats();
    assert_eq!(packets(&st, "blacklisted"), 7, "counters survive a restart: {st}");
    assert!(ctl.cli(&["ban", "list"]).contains("198.51.100.77"), "bans survive a restart");
    let log = ctl.log_text();
    assert!(log.contains("adopting the pinned filter state"), "{log}");

    // Detach: traffic passes again.
    ctl.cli(&["detach"]);
    let rx = receiver(&net.server, 5060);
    net.send_udp(ip("198.51.100.66"), server, 5060, (0..3).map(|i| sip("x", i)).collect());
    let got = rx.join().unwrap();
    assert_eq!(got.len(), 3, "after detach everything passes: {got:?}");
    assert!(!d.pin.exists());
}

#[test]
fn cli_without_a_filter_says_so() {
    let d = dirs("nofilter", CFG);
    for args in [&["stats", "--json"][..], &["status"], &["ban", "list"], &["scanners", "list"], &["dry-run", "on"]] {
        let out = std::process::Command::new(sipshield_bin())
            .args(args)
            .env("SIPSHIELD_STATE_DIR", &d.state)
            .env("SIPSHIELD_PIN_DIR", &d.pin)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} must fail without a filter");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no sipshield filter is loaded"), "{args:?}: {err}");
    }
}

/// Blacklist reloads while traffic flows: a source listed in both the old and the new list is
/// never let through, and an allowlisted source is never dropped.
#[test]
fn gap_free_swap_under_live_traffic() {
    if !require_root("gap_free_swap_under_live_traffic") {
        return;
    }
    let net = NetnsPair::new("g");
    net.add_client_addr("198.51.100.66/24");
    net.add_client_addr("203.0.113.10/24");
    let d = dirs("gap", "");
    // Two big lists that both contain .66 and differ in 200k other entries; the allowlisted
    // 203.0.113.10 sits inside a blacklisted range of both.
    let base = d.cfg.parent().unwrap().to_path_buf();
    let list = base.join("bl.txt");
    let write_list = |gen: u32| {
        let mut s = String::from("198.51.100.66\n203.0.113.0/24\n");
        for i in 0..200_000u32 {
            let a = 0x2000_0000u32 + gen * 0x0100_0000 + i;
            s += &format!("{}\n", std::net::Ipv4Addr::from(a));
        }
        std::fs::write(&list, s).unwrap();
    };
    write_list(0);
    std::fs::write(
        &d.cfg,
        format!("interfaces = [\"vsrv\"]\n[metrics]\nenabled = false\n[events]\nstdout = false\n[blacklist]\nfiles = [\"{}\"]\n[allowlist]\nentries = [\"203.0.113.10\"]\n", list.display()),
    )
    .unwrap();
    let ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    let rx = receiver(&net.server, 5060);
    // Traffic thread: both sources, interleaved, for the whole duration of the reloads.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let client = net.client.clone();
    let sender = std::thread::spawn(move || {
        NetnsPair::in_ns(&client, move || {
            let bad = UdpSocket::bind(("198.51.100.66", 0)).unwrap();
            let good = UdpSocket::bind(("203.0.113.10", 0)).unwrap();
            let mut sent = 0u64;
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) && std::time::Instant::now() < deadline {
                bad.send_to(&sip("x", 0), ("198.51.100.2", 5060)).unwrap();
                good.send_to(&sip("y", 0), ("198.51.100.2", 5060)).unwrap();
                sent += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            sent
        })
    });
    for gen in 1..=4 {
        write_list(gen % 2);
        let out = ctl.cli(&["blacklist", "reload"]);
        assert!(out.contains("blacklist refreshed: 200002 entries"), "{out}");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = sender.join().unwrap();
    let got = rx.join().unwrap();
    let good = got.iter().filter(|a| **a == ip("203.0.113.10")).count() as u64;
    let bad = got.iter().filter(|a| **a == ip("198.51.100.66")).count();
    eprintln!("gap test: {sent} pairs sent during 4 reloads; allowlisted received {good}, listed received {bad}");
    assert!(sent > 200, "too little traffic during the reloads ({sent})");
    assert_eq!(bad, 0, "a source listed in both lists got through during a reload");
    // The XDP verdicts: every allowlisted packet passed as allowlisted, every listed one was
    // dropped (the socket count above can only be lower if the receiver's buffer overflowed).
    let st = ctl.stats();
    assert_eq!(packets(&st, "allowlisted"), sent, "an allowlisted packet was dropped during a reload: {st}");
    assert_eq!(packets(&st, "blacklisted"), sent, "{st}");
    assert!(good * 100 >= sent * 99, "allowlisted datagrams lost on the way: {good} of {sent}");
    ctl.cli(&["detach"]);
}

/// A refresh that fails (source gone) keeps the last good list and is reported.
#[test]
fn failed_refresh_keeps_the_last_good_list() {
    if !require_root("failed_refresh_keeps_the_last_good_list") {
        return;
    }
    let net = NetnsPair::new("r");
    net.add_client_addr("198.51.100.66/24");
    let d = dirs("refresh", "");
    let base = d.cfg.parent().unwrap().to_path_buf();
    let list = base.join("bl.txt");
    std::fs::write(&list, "198.51.100.66\n").unwrap();
    std::fs::write(
        &d.cfg,
        format!("interfaces = [\"vsrv\"]\n[events]\nstdout = false\n[blacklist]\nfiles = [\"{}\"]\n", list.display()),
    )
    .unwrap();
    let ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    // Malformed new content: rejected, with file:line.
    std::fs::write(&list, "198.51.100.66\n198.51.100.999\n").unwrap();
    let out = ctl.cli_output(&["blacklist", "reload"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("bl.txt:2"), "{err}");
    // File deleted: rejected.
    std::fs::remove_file(&list).unwrap();
    let out = ctl.cli_output(&["blacklist", "reload"]);
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("bl.txt"));
    // Still enforcing the last good list.
    net.send_udp(ip("198.51.100.66"), ip("198.51.100.2"), 5060, (0..3).map(|i| sip("x", i)).collect());
    assert_eq!(packets(&ctl.stats(), "blacklisted"), 3);
    let status: serde_json::Value = serde_json::from_str(&ctl.cli(&["status", "--json"])).unwrap();
    assert_eq!(status["lists"]["loads"]["blacklist"]["errors"], 2, "{status}");
    assert_eq!(status["lists"]["blacklist"]["v4"], 1);
    // The metric says so too.
    let m = NetnsPair::in_ns(&net.server, || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect("127.0.0.1:9610").ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
    .expect("metrics");
    assert!(m.contains("sipshield_list_load_errors_total{list=\"blacklist\"} 2"), "{m}");
    ctl.cli(&["detach"]);
}

/// A flood of drops: the kernel samples events, so the event rate stays bounded, suppressed
/// events are counted, and the controller's CPU stays low.
#[test]
fn event_rate_is_bounded_under_flood() {
    if !require_root("event_rate_is_bounded_under_flood") {
        return;
    }
    let net = NetnsPair::new("e");
    net.add_client_addr("198.51.100.66/24");
    let d = dirs("events", "interfaces = [\"vsrv\"]\n[metrics]\nenabled = false\n[events]\nstdout = false\nrate = 50\nburst = 10\n[blacklist]\nentries = [\"198.51.100.66\"]\n");
    let ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    let cpu = |pid: u32| -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let ticks: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        ticks / 100.0
    };
    // nsenter execs sipshield in place, so the child pid is the controller.
    let pid = ctl.daemon.child.id();
    let cpu0 = cpu(pid);
    let t = std::time::Instant::now();
    let n = 50_000usize;
    net.send_udp(ip("198.51.100.66"), ip("198.51.100.2"), 5060, (0..n).map(|i| sip("x", i)).collect());
    let secs = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_millis(500));
    let st = ctl.stats();
    let blacklisted = packets(&st, "blacklisted");
    let emitted = st["events"]["emitted"].as_u64().unwrap();
    let suppressed = st["events"]["suppressed"].as_u64().unwrap();
    let used = cpu(pid) - cpu0;
    eprintln!("{blacklisted} drops in {secs:.2}s: {emitted} events emitted, {suppressed} suppressed; controller CPU {used:.2}s");
    assert_eq!(blacklisted, n as u64);
    assert_eq!(emitted + suppressed, n as u64, "every drop is either an event or counted as suppressed");
    // 50/s per CPU plus a burst of 10 per CPU, on 2 CPUs.
    let bound = ((secs + 1.0) * 50.0 * 2.0 + 20.0) as u64;
    assert!(emitted <= bound, "{emitted} events exceed the sampling bound {bound}");
    assert!(used < 0.5 * (secs + 0.5), "controller used {used:.2}s CPU for {secs:.2}s of flood");
    let log_lines = std::fs::read_to_string(d.state.join("events.jsonl")).unwrap().lines().count() as u64;
    assert_eq!(log_lines, emitted, "every emitted event reaches the event log");
    ctl.cli(&["detach"]);
}
