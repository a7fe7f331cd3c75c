//! The operators' kit (issue 16) with real components: `sipshield check` on good and bad
//! configs, the audit trail of a live controller, digest notifications received by a real SMTP
//! server (aiosmtpd) and an HTTP webhook receiver during a flood in network namespaces, an
//! unreachable SMTP server retried and counted while the filter keeps working, the Prometheus
//! rules under promtool, and the Debian package installed and removed.
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use sipshield_tests::controller::{scrape, sipshield_bin, Daemon, Dirs};
use sipshield_tests::tmp::TempDir;
use sipshield_tests::{ip, packets, require_root, NetnsPair};

const SERVER: &str = "198.51.100.2";
/// The venv `cargo xtask setup` creates for the PyPI test tools (xtask/src/setup.rs TEST_VENV).
const TEST_VENV: &str = "/opt/sipshield-test-venv";

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

fn register(n: usize) -> Vec<u8> {
    format!(
        "REGISTER sip:{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bK{n}\r\n\
         From: <sip:100@{SERVER}>;tag={n}\r\nTo: <sip:100@{SERVER}>\r\nCall-ID: {n}@kit\r\n\
         CSeq: {n} REGISTER\r\nUser-Agent: Yealink SIP-T46S\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "{what}: not reached within {timeout:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

// ---------------------------------------------------------------------------------------------
// sipshield check

fn check(cfg: &Path, json: bool) -> (bool, String, String) {
    let mut c = Command::new(sipshield_bin());
    c.args(["check", "--config"]).arg(cfg);
    if json {
        c.arg("--json");
    }
    let out = c.stdin(Stdio::null()).output().expect("run sipshield check");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_summarises_a_good_config_and_lists_every_error_of_a_bad_one() {
    let tmp = TempDir::new("kit-check").unwrap();
    let bl = tmp.join("bl.txt");
    write(&bl, "# feed\n198.51.100.7\n203.0.113.0/24\n2001:db8::9\n");
    let good = tmp.join("good.toml");
    write(
        &good,
        &format!(
            "interfaces = [\"lo\"]\n[sip]\nports = [5060, 5080]\n[blacklist]\nfiles = [{bl:?}]\nentries = [\"198.51.100.8\"]\n\
             [allowlist]\nentries = [\"198.51.100.50\"]\n[ratelimit.register]\nrate = 5\nburst = 10\nban_after = 20\n\
             [audit]\npath = \"/var/log/sipshield/audit.jsonl\"\n\
             [notify.smtp]\nserver = \"127.0.0.1\"\ntls = \"none\"\nport = 2525\nfrom = \"sipshield@example.org\"\nto = [\"noc@example.org\"]\n"
        ),
    );
    let (ok, out, err) = check(&good, false);
    assert!(ok, "a good config must pass: {out}{err}");
    for want in [
        "blacklist: 4 entries (2 IPv4, 1 IPv6, 1 IPv4 ranges, 0 IPv6 ranges)",
        "allowlist: 1 entries",
        "rate rules: register 5.0/s burst 10 ban_after 20",
        "SIP ports: [5060,5080]",
        "notifications: smtp 127.0.0.1:2525 to 1 recipients",
        "audit log: /var/log/sipshield/audit.jsonl",
        "good.toml: OK",
    ] {
        assert!(out.contains(want), "{want:?} missing from:\n{out}");
    }
    assert!(out.contains("scanner signatures: "), "{out}");
    let (ok, out, _) = check(&good, true);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(ok && v["ok"] == true && v["summary"]["blacklist"]["total"] == 4, "{v}");

    // Every error of a bad config, each naming the file and the key (or the list file's line).
    let al = tmp.join("al.txt");
    write(&al, "198.51.100.60\n# fine so far\nnot-an-address\n");
    let bad = tmp.join("bad.toml");
    write(
        &bad,
        &format!(
            "interfaces = [\"sipshield-none0\"]\n[sip]\nports = [0]\n[blacklist]\nfiles = [\"/nonexistent/bl.txt\"]\n\
             [allowlist]\nfiles = [{al:?}]\n\
             [geoip]\ndatabase = \"/nonexistent/country.mmdb\"\nallow_countries = [\"XX\"]\n\
             [events]\nreasons = [\"bogus\"]\n[audit]\npath = \"relative.jsonl\"\n\
             [notify.smtp]\nserver = \"127.0.0.1\"\nfrom = \"nobody\"\nto = []\n[[notify.webhook]]\nurl = \"ftp://hook-secret-token\"\n"
        ),
    );
    let (ok, out, err) = check(&bad, false);
    assert!(!ok, "a bad config must fail: {out}");
    for want in [
        "bad.toml: sip.ports: port 0 is not valid",
        "bad.toml: blacklist.files: /nonexistent/bl.txt",
        "al.txt:3",
        "bad.toml: geoip.allow_countries: \"XX\"",
        "bad.toml: events.reasons: unknown reason \"bogus\"",
        "bad.toml: audit.path: relative.jsonl must be an absolute path",
        "bad.toml: notify.smtp.from",
        "bad.toml: notify.smtp.to: at least one recipient",
        "bad.toml: notify.webhook[0].url: not an http(s) URL",
        "bad.toml: interface \"sipshield-none0\" does not exist",
        "bad.toml: 10 error(s); nothing was changed",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    assert!(!err.contains("hook-secret-token") && !out.contains("hook-secret-token"), "a webhook URL was printed");
    let (_, out, _) = check(&bad, true);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["errors"].as_array().unwrap().len(), 10, "{v}");

    // A schema error stops at its line.
    let broken = tmp.join("broken.toml");
    write(&broken, "interfaces = [\"lo\"]\n\n[sip]\nports = \"5060\"\n[blacklist]\n");
    let (ok, _, err) = check(&broken, false);
    assert!(!ok && err.contains("broken.toml: line 4"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// Prometheus rules

#[test]
fn alert_rules_pass_promtool_check_and_unit_tests() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/prometheus");
    let promtool = |args: &[&str]| match Command::new("promtool").args(args).current_dir(&dir).output() {
        Ok(o) => {
            (o.status.success(), String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr))
        }
        Err(e) => panic!("promtool (Debian package prometheus, installed by `cargo xtask setup`): {e}"),
    };
    let (ok, out) = promtool(&["check", "rules", "sipshield.rules.yml"]);
    assert!(ok && out.contains("SUCCESS: 8 rules found"), "{out}");
    let (ok, out) = promtool(&["test", "rules", "sipshield.rules.test.yml"]);
    assert!(ok && out.contains("SUCCESS"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// A controller in the server namespace

struct Setup {
    pair: NetnsPair,
    tmp: TempDir,
    dirs: Dirs,
    cfg: PathBuf,
    audit: PathBuf,
}

fn setup(tag: &str) -> Setup {
    let pair = NetnsPair::new(tag);
    let tmp = TempDir::new(&format!("kit-{tag}")).unwrap();
    let dirs = Dirs::new(tag, &tmp);
    let cfg = tmp.join("sipshield.toml");
    let audit = tmp.join("log").join("audit.jsonl");
    Setup { pair, tmp, dirs, cfg, audit }
}

/// REGISTER limited to 1/s with a burst of 2, banned after 3 excess requests.
fn config(s: &Setup, extra: &str) -> String {
    format!(
        "interfaces = [\"vsrv\"]\nmode = \"native\"\n[sip]\nports = [5060]\n[blacklist]\nentries = [\"203.0.113.9\"]\n\
         [ratelimit.register]\nrate = 1.0\nburst = 2\nban_after = 3\nban_ttl = \"10m\"\n\
         [metrics]\nlisten = \"127.0.0.1:9610\"\n[events]\nstdout = false\n[audit]\npath = {:?}\n{extra}",
        s.audit
    )
}

fn audit_records(s: &Setup) -> Vec<Value> {
    std::fs::read_to_string(&s.audit)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l}: {e}")))
        .collect()
}

/// Flood REGISTERs from `src` (an address of the client namespace) until it is banned.
fn flood(s: &Setup, src: &str) {
    s.pair.send_udp(ip(src), ip(SERVER), 5060, (0..12).map(register).collect());
}

// ---------------------------------------------------------------------------------------------
// Audit trail

#[test]
fn audit_trail_records_every_change_with_actor_and_before_after() {
    if !require_root("audit_trail_records_every_change_with_actor_and_before_after") {
        return;
    }
    let s = setup("au");
    write(&s.cfg, &config(&s, "").replace("[audit]\npath", "[audit]\nban_summary = \"10s\"\npath"));
    let d = Daemon::start(&s.pair.server, &s.cfg, &s.dirs);
    s.dirs.ok(&["ban", "add", "198.51.100.77", "--ttl", "1h"]);
    s.dirs.ok(&["allow", "add", "198.51.100.60"]);
    let out = s.dirs.command(&["dry-run", "on"]).env("SUDO_USER", "alice").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    s.dirs.ok(&["dry-run", "off"]);
    s.dirs.ok(&["reload"]);
    s.dirs.fails(&["ban", "del", "198.51.100.78"]);
    d.signal(nix::sys::signal::Signal::SIGHUP);
    wait_until("the SIGHUP reload is audited", Duration::from_secs(10), || audit_records(&s).len() >= 7);
    // An automatic ban, summarised once per ban_summary period.
    s.pair.add_client_addr("198.51.100.20/24");
    flood(&s, "198.51.100.20");
    wait_until("the automatic ban summary", Duration::from_secs(25), || {
        audit_records(&s).iter().any(|r| r["verb"] == "auto_bans")
    });

    let recs = audit_records(&s);
    let verbs: Vec<&str> = recs.iter().map(|r| r["verb"].as_str().unwrap()).collect();
    assert_eq!(
        verbs,
        ["ban_add", "allow_add", "dry_run", "dry_run", "reload", "ban_del", "reload", "auto_bans"],
        "{recs:#?}"
    );
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap().trim().to_string();
    for r in &recs {
        assert_eq!(r["host"], host.as_str());
        let t = r["time"].as_str().unwrap();
        assert!(t.len() == 20 && t.ends_with('Z') && t.starts_with("20"), "{r}");
    }
    assert_eq!(recs[0]["args"], serde_json::json!({"ip": "198.51.100.77", "ttl_secs": 3600}));
    assert_eq!((recs[0]["actor"]["kind"].as_str(), recs[0]["actor"]["uid"].as_u64()), (Some("operator"), Some(0)));
    assert_eq!(recs[0]["actor"]["user"], "root");
    assert_eq!(
        (recs[0]["before"]["active_bans"].as_u64(), recs[0]["after"]["active_bans"].as_u64()),
        (Some(0), Some(1))
    );
    assert_eq!((recs[1]["before"]["allowlist"].as_u64(), recs[1]["after"]["allowlist"].as_u64()), (Some(0), Some(1)));
    assert_eq!(recs[2]["actor"]["sudo_user"], "alice");
    assert_eq!(recs[2]["args"]["mode"], "on");
    assert_eq!(
        (recs[2]["before"]["dry_run"].as_bool(), recs[2]["after"]["dry_run"].as_bool()),
        (Some(false), Some(true))
    );
    assert!(recs[3]["actor"].get("sudo_user").is_none(), "{}", recs[3]);
    assert_eq!(
        (recs[5]["result"].as_str(), recs[5]["message"].as_str()),
        (Some("error"), Some("198.51.100.78 is not banned"))
    );
    assert_eq!(
        (recs[6]["actor"]["kind"].as_str(), recs[6]["args"]["trigger"].as_str()),
        (Some("sipshield"), Some("SIGHUP"))
    );
    assert_eq!(
        (recs[7]["args"]["count"].as_u64(), recs[7]["args"]["top"][0]["src"].as_str()),
        (Some(1), Some("198.51.100.20"))
    );

    // The CLI reads it back: --json, --csv, --since.
    let file = s.audit.display().to_string();
    let json = s.dirs.ok(&["audit", "--file", &file, "--json", "--since", "1h"]);
    assert_eq!(json.lines().count(), 8, "{json}");
    let csv = s.dirs.ok(&["audit", "--file", &file, "--csv"]);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("time,actor,uid,user,sudo_user,host,verb,args,before,after,result,message"));
    let third = lines.nth(2).unwrap();
    assert!(third.contains(",operator,0,root,alice,") && third.contains(",dry_run,"), "{third}");
    let human = s.dirs.ok(&["audit", "--file", &file]);
    assert!(human.contains("root (sudo by alice)@"), "{human}");

    // An audit log that cannot be written: the change stays live (protection first) and the
    // command says it was not audited; the failure is counted.
    std::fs::remove_file(&s.audit).unwrap();
    std::fs::create_dir(&s.audit).unwrap();
    let err = s.dirs.fails(&["ban", "add", "198.51.100.79"]);
    assert!(err.contains("banned 198.51.100.79") && err.contains("could not be audited"), "{err}");
    assert!(s.dirs.ok(&["ban", "list"]).contains("198.51.100.79"), "the ban must stay live");
    let (_, body, _) = scrape(&s.pair.server, "127.0.0.1:9610");
    assert!(body.contains("sipshield_audit_write_errors_total 1"), "{body}");
}

// ---------------------------------------------------------------------------------------------
// Notifications

/// aiosmtpd on 127.0.0.1 inside `ns`, on a port picked there at runtime; prints every message.
struct Smtpd {
    child: Child,
    out: PathBuf,
    port: u16,
}

impl Smtpd {
    fn start(ns: &str, dir: &Path) -> Smtpd {
        let python = PathBuf::from(TEST_VENV).join("bin/python");
        assert!(python.exists(), "{} is missing: run `cargo xtask setup`", python.display());
        let port = free_port(ns);
        let out = dir.join("smtpd.out");
        let f = std::fs::File::create(&out).unwrap();
        let child = NetnsPair::command(ns, &python)
            .args(["-u", "-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .stdin(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        // Ready when it accepts a connection.
        wait_until("aiosmtpd listening", Duration::from_secs(20), || {
            NetnsPair::in_ns(ns, || std::net::TcpStream::connect(("127.0.0.1", port)).is_ok())
        });
        Smtpd { child, out, port }
    }

    /// The messages received so far: (subject, body).
    fn messages(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.split("---------- MESSAGE FOLLOWS ----------")
            .skip(1)
            .map(|m| {
                let m = m.split("------------ END MESSAGE ------------").next().unwrap_or("");
                let subject = m.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap_or("").to_string();
                // quoted-printable soft line breaks (the body is plain ASCII otherwise).
                (subject, m.replace("=\r\n", "").replace("=\n", ""))
            })
            .collect()
    }
}

impl Drop for Smtpd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on in `ns` (bound once, then released).
fn free_port(ns: &str) -> u16 {
    NetnsPair::in_ns(ns, || TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
}

/// A webhook receiver inside `ns`: records every POST body, answers 200.
struct Hook {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn hook(ns: &str) -> Hook {
    let listener = NetnsPair::in_ns(ns, || TcpListener::bind("127.0.0.1:0").unwrap());
    let port = listener.local_addr().unwrap().port();
    let bodies = Arc::new(Mutex::new(vec![]));
    let b = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let mut r = BufReader::new(stream.try_clone().unwrap());
            let mut len = 0usize;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; len];
            if r.read_exact(&mut body).is_ok() {
                if let Ok(v) = serde_json::from_slice(&body) {
                    b.lock().unwrap().push(v);
                }
            }
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    Hook { port, bodies }
}

#[test]
fn a_flood_gives_one_digest_per_interval_by_mail_and_webhook() {
    if !require_root("a_flood_gives_one_digest_per_interval_by_mail_and_webhook") {
        return;
    }
    let s = setup("nt");
    let smtpd = Smtpd::start(&s.pair.server, s.tmp.path());
    let hook = hook(&s.pair.server);
    let notify = format!(
        "[notify]\ninterval = \"10s\"\nhost = \"pbx-test\"\n\
         [notify.smtp]\nserver = \"127.0.0.1\"\nport = {}\ntls = \"none\"\nfrom = \"sipshield@example.org\"\n\
         to = [\"noc@example.org\", \"oncall@example.org\"]\n\
         [[notify.webhook]]\nurl = \"http://127.0.0.1:{}/hooks/secret-token\"\nname = \"chat\"\n",
        smtpd.port, hook.port
    );
    write(&s.cfg, &config(&s, &notify));
    let d = Daemon::start(&s.pair.server, &s.cfg, &s.dirs);
    for i in 10..15 {
        s.pair.add_client_addr(&format!("198.51.100.{i}/24"));
    }

    // First ban of a quiet period: out at once on both channels.
    let t0 = Instant::now();
    flood(&s, "198.51.100.10");
    wait_until("the first mail", Duration::from_secs(5), || smtpd.messages().len() == 1);
    wait_until("the first webhook", Duration::from_secs(5), || hook.bodies.lock().unwrap().len() == 1);
    let (subject, body) = &smtpd.messages()[0];
    assert_eq!(subject, "[sipshield pbx-test] 1 automatic bans", "{body}");
    assert!(
        body.contains("top sources: 198.51.100.10 (1)") && body.contains("198.51.100.10 banned for 600s"),
        "{body}"
    );
    assert!(body.contains("To: noc@example.org, oncall@example.org"), "{body}");
    let first_sent = t0.elapsed();

    // Four more sources banned within the interval: held for the next digest.
    for i in 11..15 {
        flood(&s, &format!("198.51.100.{i}"));
    }
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed() + Duration::from_secs(1)));
    assert_eq!(smtpd.messages().len(), 1, "a second mail within the interval");
    assert_eq!(hook.bodies.lock().unwrap().len(), 1, "a second webhook within the interval");
    wait_until("the digest mail", Duration::from_secs(8), || smtpd.messages().len() == 2);
    wait_until("the digest webhook", Duration::from_secs(8), || hook.bodies.lock().unwrap().len() == 2);
    assert!(t0.elapsed() >= first_sent + Duration::from_secs(9), "the digest came before the interval");
    let (subject, body) = &smtpd.messages()[1];
    assert_eq!(subject, "[sipshield pbx-test] 4 automatic bans", "{body}");
    for i in 11..15 {
        assert!(body.contains(&format!("198.51.100.{i} (1)")), "198.51.100.{i} missing: {body}");
    }
    let w = hook.bodies.lock().unwrap()[1].clone();
    assert!(w["text"].as_str().unwrap().starts_with("sipshield on pbx-test: 4 automatic bans"), "{w}");
    assert_eq!(w["alerts"].as_array().unwrap().len(), 4, "{w}");
    // Nothing more while it is quiet.
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(smtpd.messages().len(), 2);

    let (_, m, _) = scrape(&s.pair.server, "127.0.0.1:9610");
    assert!(m.contains(&format!("sipshield_notify_sent_total{{channel=\"smtp 127.0.0.1:{}\"}} 2", smtpd.port)), "{m}");
    assert!(m.contains("sipshield_notify_sent_total{channel=\"chat\"} 2"), "{m}");
    assert!(!d.log_text().contains("secret-token"), "the webhook URL was logged");
}

#[test]
fn an_unreachable_smtp_server_is_retried_and_counted_while_filtering_goes_on() {
    if !require_root("an_unreachable_smtp_server_is_retried_and_counted_while_filtering_goes_on") {
        return;
    }
    let s = setup("nu");
    let port = free_port(&s.pair.server);
    let notify = format!(
        "[notify]\nattempts = 3\nretry_backoff = \"300ms\"\n[notify.smtp]\nserver = \"127.0.0.1\"\nport = {port}\n\
         tls = \"none\"\nusername = \"sipshield\"\npassword = \"hunter2-secret\"\nfrom = \"sipshield@example.org\"\nto = [\"noc@example.org\"]\n"
    );
    write(&s.cfg, &config(&s, &notify));
    let d = Daemon::start(&s.pair.server, &s.cfg, &s.dirs);
    s.pair.add_client_addr("198.51.100.30/24");
    s.pair.add_client_addr("203.0.113.9/24");
    flood(&s, "198.51.100.30");
    let channel = format!("channel=\"smtp 127.0.0.1:{port}\"");
    let metric = |name: &str| -> u64 {
        let (_, body, _) = scrape(&s.pair.server, "127.0.0.1:9610");
        body.lines()
            .find(|l| l.starts_with(&format!("{name}{{{channel}}}")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    // While the deliveries fail, the filter keeps dropping: the blacklist and the ban.
    let before = packets(&s.dirs.json(&["stats"]), "blacklisted");
    s.pair.send_udp(ip("203.0.113.9"), ip(SERVER), 5060, vec![register(1)]);
    wait_until("the blacklisted drop", Duration::from_secs(5), || {
        packets(&s.dirs.json(&["stats"]), "blacklisted") == before + 1
    });
    let banned = packets(&s.dirs.json(&["stats"]), "banned");
    s.pair.send_udp(ip("198.51.100.30"), ip(SERVER), 5060, vec![register(99)]);
    wait_until("the banned drop", Duration::from_secs(5), || packets(&s.dirs.json(&["stats"]), "banned") == banned + 1);
    wait_until("three attempts, then given up", Duration::from_secs(20), || {
        metric("sipshield_notify_given_up_total") == 1
    });
    assert_eq!(metric("sipshield_notify_failures_total"), 3);
    assert_eq!(metric("sipshield_notify_sent_total"), 0);
    let log = d.log_text();
    assert!(log.contains("delivery attempt 3 failed") && log.contains("giving up after 3 attempts"), "{log}");
    assert!(!log.contains("hunter2-secret"), "the SMTP password was logged");
}

// ---------------------------------------------------------------------------------------------
// The Debian package

fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_debian_package_installs_runs_and_purges_cleanly() {
    if !require_root("the_debian_package_installs_runs_and_purges_cleanly") {
        return;
    }
    // Package the binary these tests run (its profile), with xtask built alongside it.
    let bin = sipshield_bin();
    let dir = bin.parent().unwrap();
    let profile = if dir.ends_with("debug") { "dev" } else { "release" };
    let xtask = dir.join("xtask");
    assert!(xtask.exists(), "{} is missing: build the workspace first", xtask.display());
    let (ok, out) = run(Command::new(&xtask).args(["deb", "--profile", profile, "--no-build"]));
    assert!(ok, "cargo xtask deb failed: {out}");
    let deb = PathBuf::from(out.lines().last().unwrap().trim());
    assert!(deb.extension().is_some_and(|e| e == "deb"), "{out}");

    let _ = run(Command::new("dpkg").args(["-P", "sipshield"])); // a leftover of an interrupted run
    let (ok, out) = run(Command::new("dpkg").arg("-i").arg(&deb));
    assert!(ok, "dpkg -i: {out}");
    let installed = run(Command::new("dpkg").args(["-L", "sipshield"])).1;
    let files: Vec<String> = installed.lines().filter(|l| Path::new(l).is_file()).map(str::to_string).collect();
    for want in [
        "/usr/sbin/sipshield",
        "/lib/systemd/system/sipshield.service",
        "/etc/sipshield/sipshield.toml",
        "/etc/logrotate.d/sipshield",
        "/usr/share/man/man1/sipshield.1",
        "/usr/share/man/man1/sipshield-check.1",
        "/usr/share/bash-completion/completions/sipshield",
        "/usr/share/sipshield/prometheus/sipshield.rules.yml",
    ] {
        assert!(files.iter().any(|f| f == want), "{want} not installed: {installed}");
    }
    let conffiles = run(Command::new("dpkg-query").args(["-W", "-f=${Conffiles}", "sipshield"])).1;
    assert!(conffiles.contains("/etc/sipshield/sipshield.toml"), "{conffiles}");
    let (ok, out) = run(Command::new("/usr/sbin/sipshield").arg("--version"));
    assert!(ok && out.starts_with("sipshield "), "{out}");
    let (ok, out) = run(Command::new("man").args(["-w", "sipshield"]));
    assert!(ok && out.trim() == "/usr/share/man/man1/sipshield.1", "man -w: {out}");
    // The packaged example config is read by the packaged binary (its interface, eth1, may
    // not exist here: only the summary is checked).
    let (_, out) =
        run(Command::new("/usr/sbin/sipshield").args(["check", "--config", "/etc/sipshield/sipshield.toml"]));
    assert!(out.contains("blacklist: ") && out.contains("rate rules: register"), "{out}");
    if Path::new("/usr/bin/systemd-analyze").exists() {
        let (ok, out) = run(Command::new("systemd-analyze").args(["verify", "/lib/systemd/system/sipshield.service"]));
        assert!(ok, "systemd-analyze verify: {out}");
    }

    let (ok, out) = run(Command::new("dpkg").args(["-r", "sipshield"]));
    assert!(ok, "dpkg -r: {out}");
    assert!(!Path::new("/usr/sbin/sipshield").exists(), "the binary stayed after dpkg -r");
    assert!(Path::new("/etc/sipshield/sipshield.toml").exists(), "dpkg -r keeps the conffile");
    let (ok, out) = run(Command::new("dpkg").args(["-P", "sipshield"]));
    assert!(ok, "dpkg -P: {out}");
    for f in &files {
        assert!(!Path::new(f).exists(), "{f} left behind after purge");
    }
    assert!(!Path::new("/etc/sipshield").exists(), "/etc/sipshield left behind after purge");
    let (installed, _) = run(Command::new("dpkg").args(["-s", "sipshield"]));
    assert!(!installed, "dpkg still knows sipshield after purge");
}
