//! CrowdSec, both ways, against a real Local API (Debian's `crowdsec`, started by the test in a
//! namespace of its own, `hub`, joined to each controller's server namespace by a veth): its
//! decisions become drops in a running sipshield within one poll interval and are lifted when
//! deleted; a flood against one instance becomes an alert, then a decision another instance
//! enforces; a 30 s LAPI outage changes nothing enforced and both instances recover.
use std::net::{IpAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use sipshield_tests::crowdsec::Lapi;
use sipshield_tests::netns::{self, Netns};
use sipshield_tests::sip::SipMessage;
use sipshield_tests::tmp::{self, TempDir};
use sipshield_tests::*;

fn register(i: usize) -> Vec<u8> {
    SipMessage::request("REGISTER", "100", "198.51.100.2")
        .via("198.51.100.1:5070")
        .user_agent("Linphone/5.2")
        .seq(i as u64)
        .build()
}

/// Poll `f` every 200 ms until it gives a value (panics with `what` after `timeout`).
fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The hub namespace (`sst-<pid>-<tag>-hub`) with the LAPI in it.
struct Hub {
    ns: Netns,
    lapi: Lapi,
    links: u8,
    _dir: TempDir,
}

impl Hub {
    fn new(tag: &str) -> Hub {
        netns::remove_leftovers("sst-");
        let ns = Netns::create(&format!("sst-{}-{tag}-hub", std::process::id())).unwrap();
        ns.run("ip", &["link", "set", "lo", "up"]).unwrap();
        let dir = tmp::dir(&format!("{tag}-lapi"));
        let lapi = Lapi::start(&ns, &dir).unwrap_or_else(|e| panic!("{e:#}"));
        Hub { ns, lapi, links: 0, _dir: dir }
    }

    /// Join the server namespace `srv` to the hub (203.0.113.4n+1/30 on the hub, +2 on the
    /// server; not an interface sipshield is attached to); returns the LAPI's URL from there.
    fn link(&mut self, srv: &Netns) -> String {
        let n = self.links;
        self.links += 1;
        let hub_if = format!("hub{n}");
        netns::veth(&self.ns, &hub_if, srv, "lapi0").unwrap();
        let base = 4 * n;
        self.ns.add_addr(&hub_if, &format!("203.0.113.{}/30", base + 1)).unwrap();
        srv.add_addr("lapi0", &format!("203.0.113.{}/30", base + 2)).unwrap();
        format!("http://203.0.113.{}:{}", base + 1, self.lapi.port)
    }
}

struct Instance {
    ctl: Controller,
    net: NetnsPair,
    _dir: TempDir,
}

impl Instance {
    fn start(tag: &str, net: NetnsPair, cfg: &str, cfg_mode: u32) -> Instance {
        use std::os::unix::fs::PermissionsExt;
        let dir = tmp::dir(tag);
        let cfgp = dir.join("sipshield.toml");
        std::fs::write(&cfgp, cfg).unwrap();
        std::fs::set_permissions(&cfgp, std::fs::Permissions::from_mode(cfg_mode)).unwrap();
        let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-{tag}-{}", std::process::id()));
        let ctl = Controller::start(&net.server, &cfgp, &dir.join("state"), &pin);
        Instance { ctl, net, _dir: dir }
    }

    fn crowdsec(&self) -> Value {
        self.ctl.dirs.status()["crowdsec"].clone()
    }

    fn count(&self, reason: &str) -> u64 {
        packets(&self.ctl.stats(), reason)
    }

    /// Send `n` REGISTERs from `src`; how many the filter counted under `reason`.
    fn dropped_as(&self, src: &str, reason: &str, n: usize) -> u64 {
        let before = self.count(reason);
        let dst = if src.contains(':') { ip("2001:db8::2") } else { ip("198.51.100.2") };
        self.net.send_udp(ip(src), dst, 5060, (0..n).map(register).collect());
        std::thread::sleep(Duration::from_millis(300));
        self.count(reason) - before
    }

    /// Send `n` REGISTERs from `src` to a receiver in the server namespace; how many arrived.
    fn arrive(&self, src: &str, n: usize) -> usize {
        let src_ip: IpAddr = ip(src);
        let dst = if src.contains(':') { "[2001:db8::2]:5060" } else { "198.51.100.2:5060" };
        let rx = self.net.server_ns().spawn(move || UdpSocket::bind(dst).expect("bind receiver"));
        let sock = rx.join().unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(700))).unwrap();
        self.net.send_udp(src_ip, sock.local_addr().unwrap().ip(), 5060, (0..n).map(register).collect());
        let mut got = 0;
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = sock.recv_from(&mut buf) {
            got += (from.ip() == src_ip) as usize;
        }
        got
    }

    /// Wait until the instance holds `ips` address and `ranges` range decisions.
    fn wait_held(&self, ips: u64, ranges: u64, timeout: Duration) -> Value {
        wait_for(&format!("{ips} address and {ranges} range decisions held"), timeout, || {
            let c = self.crowdsec();
            (c["decisions"]["ip"] == ips && c["decisions"]["range"] == ranges).then_some(c)
        })
    }
}

fn cfg(url: &str, auth: &str, extra: &str) -> String {
    format!(
        "interfaces = [\"vsrv\"]\nmode = \"native\"\n[allowlist]\nentries = [\"198.51.100.5\"]\n{extra}\n[crowdsec]\nlapi_url = \"{url}\"\npoll = \"1s\"\n{auth}\n"
    )
}

fn key_file(dir: &Path, name: &str, key: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("{key}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// Does the LAPI hold a flood alert of A's about `src`?
fn lapi_has(lapi: &Lapi, src: &str) -> bool {
    let alerts = lapi.cscli_json(&["alerts", "list", "-a"]).unwrap();
    alerts.as_array().is_some_and(|l| {
        l.iter().any(|x| {
            x["scenario"] == "sipshield/sip-flood" && x["source"]["value"] == src && x["machine_id"] == "sbc-a"
        })
    })
}

#[test]
fn lapi_decisions_become_drops_and_deletions_lift_them() {
    if !require_root("lapi_decisions_become_drops_and_deletions_lift_them") {
        return;
    }
    let mut hub = Hub::new("csd");
    let net = NetnsPair::new("csd");
    for a in ["198.51.100.7/24", "198.51.100.70/24", "198.51.100.5/24", "2001:db8::7/64"] {
        net.add_client_addr(a);
    }
    let url = hub.link(net.server_ns());
    let key = hub.lapi.bouncer_key.clone();
    // The key inline, in a config others can read: the controller warns.
    let text = cfg(&url, &format!("bouncer_api_key = \"{key}\""), "[metrics]\nlisten = \"127.0.0.1:9610\"");
    let sbc = Instance::start("csd", net, &text, 0o644);
    wait_for("a first pull", Duration::from_secs(10), || (sbc.crowdsec()["pulls"].as_u64() >= Some(1)).then_some(()));
    assert!(sbc.ctl.log_text().contains("readable by other users"), "{}", sbc.ctl.log_text());
    // Before any decision; this also resolves the IPv6 neighbour (a banned source's neighbour
    // solicitations are dropped too).
    for src in ["198.51.100.7", "2001:db8::7", "198.51.100.70"] {
        assert_eq!(sbc.arrive(src, 3), 3, "{src}: no decision yet");
    }

    let lapi = &hub.lapi;
    let t0 = Instant::now();
    lapi.cscli(&["decisions", "add", "--ip", "198.51.100.7", "--duration", "1h"]).unwrap();
    lapi.cscli(&["decisions", "add", "--ip", "2001:db8::7", "--duration", "1h"]).unwrap();
    lapi.cscli(&["decisions", "add", "--ip", "198.51.100.5", "--duration", "1h"]).unwrap();
    lapi.cscli(&["decisions", "add", "--range", "198.51.100.64/26", "--duration", "1h"]).unwrap();
    let c = sbc.wait_held(2, 1, Duration::from_secs(10));
    // Within one poll interval (1 s) of the last `cscli` call, plus the pull itself.
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "decisions took {took:?} to be enforced (cscli calls included)");
    assert_eq!(c["decisions"]["exempted_by_allowlist"], 1, "the allowlisted address is not taken: {c}");
    assert_eq!(sbc.dropped_as("198.51.100.7", "banned", 4), 4);
    // IPv6: the banned source's neighbour probes are dropped (and counted) too.
    assert!(sbc.dropped_as("2001:db8::7", "banned", 4) >= 4);
    assert_eq!(sbc.dropped_as("198.51.100.70", "blacklisted", 4), 4, "the range is blacklisted");
    assert_eq!(sbc.arrive("198.51.100.5", 3), 3, "the allowlist wins over a decision");
    assert_eq!(sbc.arrive("198.51.100.1", 3), 3, "an address outside every decision passes");

    // Status and metrics show the state, never the key.
    let status = sbc.ctl.cli(&["status", "--json"]);
    assert!(!status.contains(&key), "the key leaked into status");
    assert!(!sbc.ctl.log_text().contains(&key), "the key leaked into the log");
    let st: Value = serde_json::from_str(&status).unwrap();
    assert_eq!(st["crowdsec"]["lapi_url"], url.as_str());
    assert!(st["crowdsec"]["last_pull_unix"].as_f64().unwrap() > 0.0, "{st}");
    assert!(st["crowdsec"]["last_error"].is_null(), "{st}");
    let human = sbc.ctl.cli(&["status"]);
    assert!(!human.contains(&key), "{human}");
    let (_, body, _) = scrape(&sbc.net.server, "127.0.0.1:9610");
    for line in ["sipshield_crowdsec_decisions{scope=\"ip\"} 2", "sipshield_crowdsec_decisions{scope=\"range\"} 1"] {
        assert!(body.contains(line), "{line} missing in:\n{body}");
    }
    assert!(body.contains("sipshield_crowdsec_pull_errors_total 0"), "{body}");

    // Deletions lift, within a poll interval.
    lapi.cscli(&["decisions", "delete", "--ip", "198.51.100.7"]).unwrap();
    sbc.wait_held(1, 1, Duration::from_secs(5));
    assert_eq!(sbc.arrive("198.51.100.7", 3), 3, "the deleted decision is lifted");
    assert_eq!(sbc.arrive("2001:db8::7", 2), 0, "the other stays");
    lapi.cscli(&["decisions", "delete", "--range", "198.51.100.64/26"]).unwrap();
    sbc.wait_held(1, 0, Duration::from_secs(5));
    assert_eq!(sbc.arrive("198.51.100.70", 3), 3, "the deleted range is lifted");
}

#[test]
fn a_flood_on_one_sbc_is_enforced_by_another_and_a_lapi_outage_changes_nothing() {
    if !require_root("a_flood_on_one_sbc_is_enforced_by_another_and_a_lapi_outage_changes_nothing") {
        return;
    }
    let mut hub = Hub::new("csf");
    let scratch = tmp::dir("csf-keys");
    let flood_rule = "[ratelimit.register]\nrate = 1\nburst = 2\nban_after = 3\nban_ttl = \"10m\"";
    let mut sbcs = vec![];
    for name in ["a", "b"] {
        let net = NetnsPair::new(&format!("csf{name}"));
        for a in ["198.51.100.9/24", "198.51.100.10/24", "198.51.100.12/24"] {
            net.add_client_addr(a);
        }
        let url = hub.link(net.server_ns());
        let key = hub.lapi.add_bouncer(&format!("sbc-{name}")).unwrap();
        let keyf = key_file(&scratch, &format!("{name}.key"), &key);
        let creds = hub.lapi.add_machine(&format!("sbc-{name}"), &format!("pw-{name}-0123456789")).unwrap();
        let auth = format!("bouncer_api_key_file = \"{}\"\ncredentials_file = \"{}\"", keyf.display(), creds.display());
        let sbc = Instance::start(&format!("csf{name}"), net, &cfg(&url, &auth, flood_rule), 0o600);
        assert!(!sbc.ctl.log_text().contains("readable by other users"), "{}", sbc.ctl.log_text());
        sbcs.push(sbc);
    }
    let (a, b) = (&sbcs[0], &sbcs[1]);
    for s in [a, b] {
        wait_for("a first pull", Duration::from_secs(10), || (s.crowdsec()["pulls"].as_u64() >= Some(1)).then_some(()));
    }

    // A REGISTER flood against A: A bans the source, reports it, the LAPI decides, B enforces.
    assert!(a.dropped_as("198.51.100.9", "ratelimit", 20) > 0);
    assert_eq!(a.dropped_as("198.51.100.9", "banned", 2), 2, "A banned the flooder itself");
    let deadline = Instant::now() + Duration::from_secs(15);
    while !lapi_has(&hub.lapi, "198.51.100.9") {
        assert!(
            Instant::now() < deadline,
            "A's alert never reached the LAPI: {}\n{}\nLAPI alerts: {:?}",
            a.crowdsec(),
            a.ctl.log_text(),
            hub.lapi.cscli(&["alerts", "list"])
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let decisions = hub.lapi.cscli_json(&["decisions", "list", "-a"]).unwrap();
    assert!(decisions.to_string().contains("198.51.100.9"), "{decisions}");
    b.wait_held(1, 0, Duration::from_secs(10));
    assert_eq!(b.dropped_as("198.51.100.9", "banned", 5), 5, "B enforces A's ban");
    assert_eq!(b.arrive("198.51.100.10", 2), 2);
    assert!(a.crowdsec()["alerts"]["sent"].as_u64() >= Some(1), "{}", a.crowdsec());

    // The LAPI goes away for 30 s: nothing enforced changes, A queues its new ban.
    hub.lapi.stop();
    let down = Instant::now();
    assert!(a.dropped_as("198.51.100.10", "ratelimit", 20) > 0, "a flood during the outage");
    while down.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_secs(2));
    }
    for s in [a, b] {
        let c = s.crowdsec();
        assert!(c["pull_errors"].as_u64() >= Some(1) && c["last_error"].is_string(), "{c}");
        assert_eq!(c["decisions"]["ip"], 1, "decisions are kept: {c}");
    }
    assert_eq!(b.dropped_as("198.51.100.9", "banned", 3), 3, "B still enforces during the outage");
    let ca = a.crowdsec();
    assert!(ca["alerts"]["queued"].as_u64() >= Some(1) && ca["alerts"]["errors"].as_u64() >= Some(1), "{ca}");

    // Back: the queued alert is pushed, B learns the ban, new decisions reach both.
    hub.lapi.resume().unwrap();
    let back = Instant::now();
    wait_for("A's queued alert in the LAPI", Duration::from_secs(30), || {
        lapi_has(&hub.lapi, "198.51.100.10").then_some(())
    });
    hub.lapi.cscli(&["decisions", "add", "--ip", "198.51.100.12", "--duration", "1h"]).unwrap();
    b.wait_held(3, 0, Duration::from_secs(30));
    a.wait_held(3, 0, Duration::from_secs(30));
    eprintln!("recovered {:.1}s after the LAPI came back", back.elapsed().as_secs_f64());
    assert_eq!(b.dropped_as("198.51.100.10", "banned", 3), 3, "B enforces the ban A made during the outage");
    assert_eq!(b.dropped_as("198.51.100.12", "banned", 3), 3);
    assert_eq!(a.dropped_as("198.51.100.12", "banned", 3), 3);
    let ca = a.crowdsec();
    assert_eq!(ca["alerts"]["queued"], 0, "{ca}");
    assert_eq!(ca["alerts"]["dropped"], 0, "{ca}");
}
