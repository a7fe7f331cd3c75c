//! Live traffic across a veth pair between two network namespaces, with `sipshield run`
//! attached natively to the server side: packets really cross (or are really dropped) and the
//! pinned counters, bans and links outlive the controller process.
use std::net::{IpAddr, UdpSocket};
use std::path::PathBuf;
use std::time::Duration;

use sipshield_tests::*;

fn sip(ua: &str, i: usize) -> Vec<u8> {
    format!("OPTIONS sip:100@198.51.100.2 SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bK-{i}\r\nFrom: <sip:a@x>;tag={i}\r\nTo: <sip:100@x>\r\nCall-ID: {i}@x\r\nCSeq: 1 OPTIONS\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n").into_bytes()
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
}

fn dirs(tag: &str, cfg: &str) -> Dirs {
    let base = std::env::temp_dir().join(format!("sipshield-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let cfgp = base.join("sipshield.toml");
    std::fs::write(&cfgp, cfg).unwrap();
    Dirs { state: base.join("state"), pin: PathBuf::from(format!("/sys/fs/bpf/sipshield-test-{tag}-{}", std::process::id())), cfg: cfgp }
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
    assert!(String::from_utf8_lossy(&second.stderr).contains("already running"), "{}", String::from_utf8_lossy(&second.stderr));

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

    // Restart: the pinned state is adopted, counters and bans survive.
    drop(ctl);
    let ctl = Controller::start(&net.server, &d.cfg, &d.state, &d.pin);
    let st = ctl.stats();
    assert_eq!(packets(&st, "blacklisted"), 7, "counters survive a restart: {st}");
    assert!(ctl.cli(&["ban", "list"]).contains("198.51.100.77"), "bans survive a restart");
    let log = std::fs::read_to_string(&ctl.log).unwrap();
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
