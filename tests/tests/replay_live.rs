//! Live traffic captured in the server namespace with tshark (pcapng) and `tcpdump -i any`
//! (Linux cooked v2 and v1) while `sipshield run` filters it, then replayed with the same
//! config: replay must give the verdicts the live filter gave. The filter runs in dry-run so
//! that the capture taps (after XDP) see the packets it would drop; the counters still count
//! each drop reason. `events --pcap` writes the snapshots of the live filter's events, read
//! back with tshark.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;

const CFG: &str = "interfaces = [\"vsrv\"]\nmode = \"native\"\ndry_run = true\n\
[blacklist]\nentries = [\"198.51.100.66\"]\n\
[ratelimit.register]\nrate = 2\nburst = 2\nban_after = 3\nban_ttl = \"1m\"\n\
[events]\nrate = 1000\nburst = 1000\n[metrics]\nenabled = false\n";

fn request(method: &str, ua: &str, i: u64) -> Vec<u8> {
    SipMessage::request(method, "100", "198.51.100.2").via("198.51.100.1:5070").user_agent(ua).seq(i).build()
}

/// A capture tool inside the server namespace, stopped (SIGINT, so it closes its file) on drop.
struct Capture(Child);

impl Capture {
    fn start(ns: &str, program: &str, args: &[&str]) -> Capture {
        let mut cmd = NetnsPair::command(ns, Path::new(program));
        cmd.args(args).stdout(Stdio::null()).stderr(Stdio::null());
        Capture(cmd.spawn().unwrap_or_else(|e| panic!("{program}: {e}")))
    }

    fn stop(mut self) {
        let pid = nix::unistd::Pid::from_raw(self.0.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT);
        for _ in 0..50 {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replay_counts(cfg: &Path, cap: &Path) -> serde_json::Value {
    let out = Command::new(sipshield_bin())
        .args(["replay", "--summary", "--json", "--config"])
        .arg(cfg)
        .arg(cap)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}: {}", cap.display(), String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn captures_of_live_traffic_replay_with_the_live_verdicts() {
    if !require_root("captures_of_live_traffic_replay_with_the_live_verdicts") {
        return;
    }
    let net = NetnsPair::new("rl");
    for a in ["198.51.100.66/24", "198.51.100.77/24", "198.51.100.88/24"] {
        net.add_client_addr(a);
    }
    let base = sipshield_tests::tmp::dir("replay-live");
    let cfg = base.join("sipshield.toml");
    std::fs::write(&cfg, CFG).unwrap();
    let state = base.join("state");
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-rl-{}", std::process::id()));
    let ctl = Controller::start(&net.server, &cfg, &state, &pin);

    let ng = base.join("tshark.pcapng");
    let sll2 = base.join("any-sll2.pcap");
    let sll = base.join("any-sll.pcap");
    let caps = [
        Capture::start(&net.server, "tshark", &["-q", "-i", "vsrv", "-f", "udp", "-w", ng.to_str().unwrap()]),
        Capture::start(&net.server, "tcpdump", &["-U", "-i", "any", "-w", sll2.to_str().unwrap(), "udp"]),
        Capture::start(
            &net.server,
            "tcpdump",
            &["-U", "-i", "any", "-y", "LINUX_SLL", "-w", sll.to_str().unwrap(), "udp"],
        ),
    ];
    // Each tool writes its file header once it captures (tshark takes seconds to start).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while [&ng, &sll2, &sll].iter().any(|p| std::fs::metadata(p).map(|m| m.len() == 0).unwrap_or(true)) {
        assert!(std::time::Instant::now() < deadline, "the capture tools did not start");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(1));

    let server: IpAddr = ip("198.51.100.2");
    let before = ctl.stats();
    // Legit, blacklisted, scanner, and a REGISTER flood (2 within the burst, the rest over).
    net.send_udp(ip("198.51.100.1"), server, 5060, (0..4).map(|i| request("OPTIONS", "Linphone/5.2", i)).collect());
    net.send_udp(ip("198.51.100.66"), server, 5060, (0..5).map(|i| request("OPTIONS", "Linphone/5.2", i)).collect());
    net.send_udp(
        ip("198.51.100.77"),
        server,
        5060,
        (0..3).map(|i| request("OPTIONS", "friendly-scanner", i)).collect(),
    );
    net.send_udp(ip("198.51.100.88"), server, 5060, (0..10).map(|i| request("REGISTER", "Linphone/5.2", i)).collect());
    std::thread::sleep(Duration::from_secs(2));
    for c in caps {
        c.stop();
    }
    let after = ctl.stats();
    let live = |r: &str| packets(&after, r) - packets(&before, r);
    let want = [("blacklisted", 5), ("scanner", 3), ("ratelimit", 8)];
    for (r, n) in want {
        assert_eq!(live(r), n, "live filter, {r}: {after}");
    }

    for cap in [&ng, &sll2, &sll] {
        let sum = replay_counts(&cfg, cap);
        for (r, n) in want {
            assert_eq!(sum["reasons"][r].as_u64(), Some(n), "{}: {r}: {sum}", cap.display());
        }
        // Legit datagrams pass; nothing else was sent to the server but UDP.
        assert!(sum["reasons"]["pass"].as_u64().unwrap_or(0) >= 4 + 2, "{}: {sum}", cap.display());
        assert_eq!(sum["top_sources"][0]["src"], "198.51.100.88", "{}: {sum}", cap.display());
    }

    // The live filter's events carry the dropped frames' first bytes: as a pcap, tshark reads
    // them with their sources and SIP methods.
    let ev = base.join("events.pcap");
    let out = ctl.cli_output(&["events", "--pcap", ev.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let ts = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&ev)
        .args(["-T", "fields", "-e", "ip.src", "-e", "sip.Method", "-e", "frame.len", "-e", "frame.cap_len"])
        .output()
        .expect("tshark");
    assert!(ts.status.success(), "{}", String::from_utf8_lossy(&ts.stderr));
    let rows: Vec<Vec<String>> =
        String::from_utf8_lossy(&ts.stdout).lines().map(|l| l.split('\t').map(String::from).collect()).collect();
    assert_eq!(rows.len(), 5 + 3 + 8, "{rows:?}");
    let count = |src: &str, method: &str| rows.iter().filter(|r| r[0] == src && r[1] == method).count();
    assert_eq!((count("198.51.100.66", "OPTIONS"), count("198.51.100.77", "OPTIONS")), (5, 3), "{rows:?}");
    assert_eq!(count("198.51.100.88", "REGISTER"), 8, "{rows:?}");
    for r in &rows {
        let (len, cap): (usize, usize) = (r[2].parse().unwrap(), r[3].parse().unwrap());
        assert_eq!(cap, len.min(xdp_common::EVENT_SNAP), "{r:?}");
    }
    ctl.cli(&["detach"]);
}
