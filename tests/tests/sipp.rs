//! sipp (Debian `sip-tester`) as real SIP peers across the veth pair: a legitimate UAC
//! registering at a normal rate is never dropped; a REGISTER flood from one source is held to
//! the configured rate and then banned.
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use sipshield_tests::*;

const UAS: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="registrar">
  <recv request="." regexp_match="true"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:];tag=[pid]sipshield[call_number]
[last_Call-ID:]
[last_CSeq:]
Contact: <sip:[local_ip]:[local_port]>
Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

const UAC_REGISTER: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="register">
  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:[call_number]@[remote_ip]>;tag=[pid]reg[call_number]
To: <sip:[call_number]@[remote_ip]>
Call-ID: [call_id]
CSeq: 1 REGISTER
Contact: <sip:[call_number]@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 3600
User-Agent: Yealink SIP-T46S 66.86.0.15
Content-Length: 0

    ]]>
  </send>
  <recv response="200"/>
</scenario>
"#;

/// Fire-and-forget REGISTERs (a flood does not wait for answers).
const FLOOD: &str = r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="flood">
  <send>
    <![CDATA[
REGISTER sip:[remote_ip] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:100@[remote_ip]>;tag=[pid]f[call_number]
To: <sip:100@[remote_ip]>
Call-ID: [call_id]
CSeq: [call_number] REGISTER
Contact: <sip:100@[local_ip]:[local_port]>
Max-Forwards: 70
Expires: 3600
User-Agent: Linphone/5.2
Content-Length: 0

    ]]>
  </send>
</scenario>
"#;

fn sipp() -> PathBuf {
    for p in ["/usr/bin/sipp", "/usr/local/bin/sipp"] {
        if Path::new(p).exists() {
            return p.into();
        }
    }
    panic!("sipp is not installed (Debian sip-tester; cargo xtask setup installs it)");
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_sipp(
    ns: &str,
    dir: &Path,
    scenario: &str,
    src: &str,
    port: u16,
    rate: u32,
    count: u32,
) -> (bool, Duration, String) {
    let t0 = Instant::now();
    let out = NetnsPair::command(ns, &sipp())
        .current_dir(dir)
        .args(["-sf", scenario, "198.51.100.2:5060", "-i", src, "-p", &port.to_string()])
        .args([
            "-r",
            &rate.to_string(),
            "-m",
            &count.to_string(),
            "-nostdin",
            "-timeout",
            "60s",
            "-recv_timeout",
            "5000",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run sipp");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), t0.elapsed(), text)
}

#[test]
fn sipp_legit_passes_flood_is_limited_and_banned() {
    if !require_root("sipp_legit_passes_flood_is_limited_and_banned") {
        return;
    }
    let net = NetnsPair::new("s");
    net.add_client_addr("198.51.100.99/24");
    net.add_client_addr("198.51.100.98/24");
    let dir = sipshield_tests::tmp::dir("sipp");
    for (f, t) in [("uas.xml", UAS), ("uac_register.xml", UAC_REGISTER), ("flood.xml", FLOOD)] {
        std::fs::write(dir.join(f), t).unwrap();
    }
    let rate = 20u32;
    let burst = 20u32;
    let cfg = dir.join("s.toml");
    let write_cfg = |ban_after: u32| {
        std::fs::write(
            &cfg,
            format!("interfaces = [\"vsrv\"]\n[metrics]\nenabled = false\n[events]\nstdout = false\n[ratelimit.register]\nrate = {rate}\nburst = {burst}\nban_after = {ban_after}\nwindow = \"10s\"\nban_ttl = \"5m\"\n"),
        )
        .unwrap()
    };
    write_cfg(0);
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-sipp-{}", std::process::id()));
    let ctl = Controller::start(&net.server, &cfg, &dir.join("state"), &pin);
    let _uas = Killed(
        NetnsPair::command(&net.server, &sipp())
            .current_dir(&dir)
            .args(["-sf", "uas.xml", "-i", "198.51.100.2", "-p", "5060", "-nostdin", "-timeout", "120s"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));

    // 1. A legitimate phone registering at a normal rate: every REGISTER answered, no drops.
    let (ok, _, text) = run_sipp(&net.client, &dir, "uac_register.xml", "198.51.100.1", 5070, 2, 10);
    assert!(ok, "legit sipp UAC failed:\n{text}");
    let st = ctl.stats();
    for r in ["ratelimit", "scanner", "banned", "blacklisted"] {
        assert_eq!(packets(&st, r), 0, "legit traffic dropped as {r}: {st}");
    }

    // 2. A flood from one source without bans: passes are held to burst + rate x time (±5%).
    let (_, elapsed, text) = run_sipp(&net.client, &dir, "flood.xml", "198.51.100.99", 5071, 200, 1000);
    let st = ctl.stats();
    let limited = packets(&st, "ratelimit");
    assert!(limited > 0, "flood not limited: {st}\n{text}");
    // REGISTERs that passed = sent - limited (the flood scenario sends exactly one per call).
    let passed = 1000 - limited;
    let secs = elapsed.as_secs_f64();
    let measured = (passed as f64 - burst as f64) / secs;
    let err = (measured - rate as f64).abs() / rate as f64;
    eprintln!("flood: 1000 REGISTERs in {secs:.2}s, {passed} passed, {limited} limited: {measured:.2}/s for a limit of {rate}/s ({:.1}% off)", err * 100.0);
    assert!(err <= 0.05, "passed rate {measured:.2}/s is not within 5% of {rate}/s ({passed} passed in {secs:.2}s)");

    // 3. With ban_after: the flooder is banned, another phone is unaffected.
    write_cfg(50);
    ctl.cli(&["reload"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while ctl.log_text().matches("configuration reloaded").count() == 0 {
        assert!(Instant::now() < deadline, "reload not applied");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, _, text) = run_sipp(&net.client, &dir, "flood.xml", "198.51.100.98", 5072, 400, 800);
    let st = ctl.stats();
    assert!(packets(&st, "banned") > 0, "flooder not banned: {st}\n{text}");
    let bans = ctl.cli(&["ban", "list", "--json"]);
    assert!(bans.contains("198.51.100.98"), "{bans}");
    let (ok, _, text) = run_sipp(&net.client, &dir, "uac_register.xml", "198.51.100.1", 5073, 2, 6);
    assert!(ok, "legit UAC affected by another source's ban:\n{text}");
    let ev = ctl.cli(&["events", "--json", "-n", "1000"]);
    assert!(ev.lines().any(|l| l.contains("\"ban_secs\"") && l.contains("198.51.100.98")), "no ban event:\n{ev}");
    ctl.cli(&["detach"]);
}
