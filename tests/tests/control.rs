//! Protection never lapses through the control plane: a fault-injection suite with one
//! regression test per way a controller used to lose protection (issue 18), live in network
//! namespaces where it matters.
use std::io::{Read, Write};
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use sipshield::config::Config;
use sipshield_tests::controller::{scrape, Daemon, Dirs};
use sipshield_tests::tmp::TempDir;
use sipshield_tests::{ip, packets, require_root, NetnsPair};

const SERVER: &str = "198.51.100.2";

fn tmp_dir(tag: &str) -> TempDir {
    TempDir::new(tag).expect("scratch dir")
}

/// A REGISTER with the given User-Agent.
fn register(ua: &str, n: usize) -> Vec<u8> {
    format!(
        "REGISTER sip:{SERVER} SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.1:5070;branch=z9hG4bK{n}\r\n\
         From: <sip:100@{SERVER}>;tag={n}\r\nTo: <sip:100@{SERVER}>\r\nCall-ID: {n}@test\r\n\
         CSeq: {n} REGISTER\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n"
    )
    .into_bytes()
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
}

/// `status --json` without what changes by itself.
fn stable_status(d: &Dirs) -> Value {
    let mut v = d.status();
    v.as_object_mut().unwrap().remove("uptime_secs");
    v
}

fn counter(d: &Dirs, reason: &str) -> u64 {
    packets(&d.json(&["stats"]), reason)
}

/// Send `payloads` from `src` to the server's `port` and wait until the counters saw them.
fn send(pair: &NetnsPair, d: &Dirs, src: &str, port: u16, payloads: Vec<Vec<u8>>) {
    let total_before: u64 = d.json(&["stats"])["total"]["packets"].as_u64().unwrap();
    let n = payloads.len() as u64;
    pair.send_udp(ip(src), ip(SERVER), port, payloads);
    let deadline = Instant::now() + Duration::from_secs(5);
    while d.json(&["stats"])["total"]["packets"].as_u64().unwrap() < total_before + n {
        assert!(Instant::now() < deadline, "the filter did not count {n} packets");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What the filter does with a scanner, a burst of 30 REGISTERs and a blacklisted source on
/// `port`: (scanner drops, ratelimit drops, blacklisted drops). With burst 5 at least 25 of
/// the 30 are dropped (all 30 when the source's bucket is still empty from a previous round).
fn verdicts(pair: &NetnsPair, d: &Dirs, port: u16) -> (u64, bool, u64) {
    let before = (counter(d, "scanner"), counter(d, "ratelimit"), counter(d, "blacklisted"));
    send(pair, d, "198.51.100.1", port, vec![register("friendly-scanner", 1)]);
    send(pair, d, "198.51.100.1", port, (0..30).map(|i| register("Yealink SIP-T46S", 100 + i)).collect());
    send(pair, d, "203.0.113.9", port, vec![register("Yealink SIP-T46S", 999)]);
    let limited = counter(d, "ratelimit") - before.1;
    (counter(d, "scanner") - before.0, limited >= 25, counter(d, "blacklisted") - before.2)
}

fn base_config(extra: &str) -> String {
    format!(
        "interfaces = [\"vsrv\"]\nmode = \"native\"\n[sip]\nports = [5060]\n\
         [blacklist]\nentries = [\"203.0.113.9\"]\n[allowlist]\nentries = [\"198.51.100.50\"]\n\
         [ratelimit.register]\nrate = 1.0\nburst = 5\n[metrics]\nlisten = \"127.0.0.1:9611\"\n{extra}"
    )
}

#[test]
fn rejected_reload_changes_nothing() {
    if !require_root("rejected_reload_changes_nothing") {
        return;
    }
    let pair = NetnsPair::new("rr");
    pair.add_client_addr("203.0.113.9/24");
    let tmp = tmp_dir("rejected-reload");
    let dirs = Dirs::new("rr", &tmp);
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config(""));
    let _d = Daemon::start(&pair.server, &cfg, &dirs);
    let before = stable_status(&dirs);
    assert_eq!(verdicts(&pair, &dirs, 5060), (1, true, 1), "the policy before the reload");

    // Over capacity (65,537 IPv6 ranges), with the SIP port and the rate rule changed too.
    let big = tmp.join("v6-ranges.txt");
    let text: String = (0..65_537u32).map(|i| format!("2001:db8:{:x}:{:x}::/64\n", i >> 16, i & 0xffff)).collect();
    write(&big, &text);
    let bad = base_config("")
        .replace("ports = [5060]", "ports = [5080]")
        .replace("rate = 1.0\nburst = 5", "rate = 1000.0\nburst = 1000")
        .replace("entries = [\"203.0.113.9\"]", &format!("entries = [\"203.0.113.9\"]\nfiles = [{big:?}]"));
    write(&cfg, &bad);
    let err = dirs.fails(&["reload"]);
    assert!(err.contains("capacity") && err.contains("nothing was changed") || err.contains("capacity"), "{err}");
    assert_eq!(stable_status(&dirs), before, "a rejected reload changed the running state");
    assert_eq!(verdicts(&pair, &dirs, 5060), (1, true, 1), "a rejected reload changed the verdicts");

    // The same config at start-up, adopting the running filter: refused, nothing changed.
    drop(_d);
    let mut again = Daemon::spawn(&pair.server, &cfg, &dirs);
    let st = again.wait_exit(Duration::from_secs(60)).expect("the start with a bad config must end");
    assert!(!st.success(), "a start with an over-capacity list must fail");
    assert!(again.log_text().contains("capacity"), "{}", again.log_text());
    let offline = dirs.status();
    assert_eq!(offline["sip_ports"], before["sip_ports"]);
    assert_eq!(offline["lists"]["blacklist"], before["lists"]["blacklist"]);
    assert_eq!(offline["lists"]["allowlist"], before["lists"]["allowlist"]);
    assert_eq!(verdicts(&pair, &dirs, 5060), (1, true, 1), "a refused start changed the verdicts");
}

#[test]
fn empty_config_is_rejected_by_reload_and_sighup() {
    if !require_root("empty_config_is_rejected_by_reload_and_sighup") {
        return;
    }
    let pair = NetnsPair::new("ec");
    let tmp = tmp_dir("empty-config");
    let dirs = Dirs::new("ec", &tmp);
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config(""));
    let d = Daemon::start(&pair.server, &cfg, &dirs);
    let before = stable_status(&dirs);
    write(&cfg, "");
    let err = dirs.fails(&["reload"]);
    assert!(err.contains("interfaces"), "{err}");
    d.signal(nix::sys::signal::Signal::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log_text().contains("reload rejected") {
        assert!(Instant::now() < deadline, "SIGHUP with an empty config was not rejected:\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(stable_status(&dirs), before);
}

/// A tmpfs of `kib` KiB mounted on `dir` (unmounted on drop).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, kib: u32) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={kib}k"), "tmpfs"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
        Tmpfs(dir.to_path_buf())
    }

    /// Fill the file system; returns the filler file.
    fn fill(&self) -> std::path::PathBuf {
        let p = self.0.join("filler");
        let mut f = std::fs::File::create(&p).unwrap();
        let block = vec![0u8; 4096];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
        p
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

#[test]
fn a_full_state_dir_fails_edits_cleanly() {
    if !require_root("a_full_state_dir_fails_edits_cleanly") {
        return;
    }
    let pair = NetnsPair::new("fd");
    let tmp = tmp_dir("full-disk");
    let dirs = Dirs::new("fd", &tmp);
    let fs = Tmpfs::mount(&dirs.state, 256);
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config("[events]\nstdout = false\n"));
    let d = Daemon::start(&pair.server, &cfg, &dirs);
    for e in ["198.51.100.61", "198.51.100.62", "2001:db8:61::/48"] {
        dirs.ok(&["allow", "add", e]);
    }
    dirs.ok(&["scanners", "add", "evilbot"]);
    let runtime_before = std::fs::read_to_string(dirs.state.join("runtime.json")).unwrap();
    let filler = fs.fill();

    let err = dirs.fails(&["allow", "add", "198.51.100.63"]);
    assert!(err.contains("runtime.json"), "the error must name the file: {err}");
    let err = dirs.fails(&["scanners", "add", "otherbot"]);
    assert!(err.contains("runtime.json"), "{err}");
    let err = dirs.fails(&["allow", "del", "198.51.100.61"]);
    assert!(err.contains("runtime.json"), "{err}");
    // Nothing changed: neither the live filter nor the file.
    let allow: Vec<String> = serde_json::from_value(dirs.json(&["allow", "list"])).unwrap();
    assert!(allow.contains(&"198.51.100.61".to_string()) && !allow.contains(&"198.51.100.63".to_string()), "{allow:?}");
    assert_eq!(std::fs::read_to_string(dirs.state.join("runtime.json")).unwrap(), runtime_before);
    // The controller still answers and says so; a reload keeps every runtime entry.
    assert_eq!(dirs.status()["controller"], "running");
    dirs.ok(&["reload"]);
    let allow: Vec<String> = serde_json::from_value(dirs.json(&["allow", "list"])).unwrap();
    for e in ["198.51.100.61", "198.51.100.62", "2001:db8:61::/48", "198.51.100.50"] {
        assert!(allow.contains(&e.to_string()), "{e} lost after a reload on a full disk: {allow:?}");
    }
    let sigs = dirs.json(&["scanners", "list"]);
    assert!(sigs["signatures"].as_array().unwrap().iter().any(|s| s["text"] == "evilbot"), "{sigs}");
    // With space again, the same edit works.
    std::fs::remove_file(filler).unwrap();
    dirs.ok(&["allow", "add", "198.51.100.63"]);
    drop(d);
}

#[test]
fn a_corrupt_runtime_file_is_an_error_naming_it() {
    if !require_root("a_corrupt_runtime_file_is_an_error_naming_it") {
        return;
    }
    let pair = NetnsPair::new("cr");
    let tmp = tmp_dir("corrupt-runtime");
    let dirs = Dirs::new("cr", &tmp);
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config(""));
    std::fs::create_dir_all(&dirs.state).unwrap();
    write(&dirs.state.join("runtime.json"), "{\"allow\": [\"198.51.100.61\"");
    let mut d = Daemon::spawn(&pair.server, &cfg, &dirs);
    let st = d.wait_exit(Duration::from_secs(30)).expect("a start with a corrupt runtime.json must end");
    assert!(!st.success());
    let log = d.log_text();
    assert!(log.contains("runtime.json") && log.contains("corrupt"), "{log}");
    assert!(!dirs.pin.exists(), "a failed start left pins behind");
    // The file is kept for the operator, not replaced.
    assert!(std::fs::read_to_string(dirs.state.join("runtime.json")).unwrap().contains("198.51.100.61"));
}

#[test]
fn concurrent_cli_edits_end_like_serial_edits() {
    if !require_root("concurrent_cli_edits_end_like_serial_edits") {
        return;
    }
    let pair = NetnsPair::new("ce");
    let tmp = tmp_dir("concurrent-edits");
    let dirs = Dirs::new("ce", &tmp);
    let list = tmp.join("bl.txt");
    write(&list, "203.0.113.77\n");
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config("").replace("[allowlist]", &format!("files = [{list:?}]\n[allowlist]")));
    let _d = Daemon::start(&pair.server, &cfg, &dirs);
    let dirs = std::sync::Arc::new(dirs);
    // 4 threads x 250 edits: each thread owns 25 entries and adds (even rounds) or deletes (odd
    // rounds) them, 10 rounds; in the last round entries k % 3 == 0 are not deleted.
    let expected_allow =
        |t: u32| -> Vec<String> { (0..25).filter(|k| k % 3 == 0).map(|k| format!("2001:db8:{t}::{k:x}")).collect() };
    let edits: Vec<_> = (0..4u32)
        .map(|t| {
            let dirs = dirs.clone();
            std::thread::spawn(move || {
                for r in 0..10 {
                    for k in 0..25u32 {
                        if t == 3 {
                            // Scanner signatures instead of addresses.
                            let text = format!("bot{k}");
                            let verb = if r % 2 == 0 { "add" } else { "del" };
                            if r == 9 && k % 3 == 0 {
                                continue;
                            }
                            dirs.ok(&["scanners", verb, &text]);
                        } else {
                            let e = format!("2001:db8:{t}::{k:x}");
                            let verb = if r % 2 == 0 { "add" } else { "del" };
                            if r == 9 && k % 3 == 0 {
                                continue;
                            }
                            dirs.ok(&["allow", verb, &e]);
                        }
                    }
                }
            })
        })
        .collect();
    let reloads = {
        let dirs = dirs.clone();
        std::thread::spawn(move || {
            for i in 0..20 {
                if i % 2 == 0 {
                    dirs.ok(&["reload"]);
                } else {
                    dirs.ok(&["blacklist", "reload"]);
                }
            }
        })
    };
    for h in edits {
        h.join().expect("edit thread");
    }
    reloads.join().expect("reload thread");
    // The serial outcome.
    let mut want: Vec<String> = (0..3).flat_map(expected_allow).collect();
    want.push("198.51.100.50".into());
    let rt: Value = serde_json::from_str(&std::fs::read_to_string(dirs.state.join("runtime.json")).unwrap()).unwrap();
    let mut got_rt: Vec<String> = serde_json::from_value(rt["allow"].clone()).unwrap();
    got_rt.push("198.51.100.50".into());
    let norm = |mut v: Vec<String>| {
        v.iter_mut().for_each(|s| *s = s.parse::<IpAddr>().map(|a| a.to_string()).unwrap_or(s.clone()));
        v.sort();
        v
    };
    assert_eq!(norm(got_rt), norm(want.clone()), "runtime.json");
    let live: Vec<String> = serde_json::from_value(dirs.json(&["allow", "list"])).unwrap();
    assert_eq!(norm(live), norm(want), "the live allowlist");
    let sigs = dirs.json(&["scanners", "list"]);
    let mut bots: Vec<String> = sigs["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["text"].as_str())
        .filter(|t| t.starts_with("bot"))
        .map(String::from)
        .collect();
    bots.sort();
    let mut want_bots: Vec<String> = (0..25).filter(|k| k % 3 == 0).map(|k| format!("bot{k}")).collect();
    want_bots.sort();
    assert_eq!(bots, want_bots, "scanner signatures");
    assert!(sigs["excluded"].as_array().unwrap().is_empty(), "add then del left an exclusion: {sigs}");
}

#[test]
fn edit_semantics_are_exact() {
    if !require_root("edit_semantics_are_exact") {
        return;
    }
    let pair = NetnsPair::new("es");
    let tmp = tmp_dir("edit-semantics");
    let dirs = Dirs::new("es", &tmp);
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config("[scanners]\nuser_agent = [\"configbot\"]\n"));
    let _d = Daemon::start(&pair.server, &cfg, &dirs);
    let allow0 = dirs.json(&["allow", "list"]);
    // A configured entry cannot be deleted from the CLI; the error says where it comes from.
    let err = dirs.fails(&["allow", "del", "198.51.100.50"]);
    assert!(err.contains("configuration") && err.contains("sipshield.toml"), "{err}");
    // add then del returns exactly to the previous state, also for a configured entry.
    dirs.ok(&["allow", "add", "198.51.100.70"]);
    dirs.ok(&["allow", "del", "198.51.100.70"]);
    dirs.ok(&["allow", "add", "198.51.100.50"]);
    dirs.ok(&["allow", "del", "198.51.100.50"]);
    assert_eq!(dirs.json(&["allow", "list"]), allow0);
    // scanners add X; del X leaves no marker: a later config signature X is live.
    let sigs0 = dirs.json(&["scanners", "list"]);
    dirs.ok(&["scanners", "add", "laterbot"]);
    dirs.ok(&["scanners", "del", "laterbot"]);
    assert_eq!(dirs.json(&["scanners", "list"]), sigs0);
    write(&cfg, &base_config("[scanners]\nuser_agent = [\"configbot\", \"laterbot\"]\n"));
    dirs.ok(&["reload"]);
    let sigs = dirs.json(&["scanners", "list"]);
    assert!(sigs["signatures"].as_array().unwrap().iter().any(|s| s["text"] == "laterbot"), "{sigs}");
    // Deleting a configured signature is an explicit, listed exclusion; add undoes it.
    dirs.ok(&["scanners", "del", "configbot"]);
    let sigs = dirs.json(&["scanners", "list"]);
    assert!(!sigs["signatures"].as_array().unwrap().iter().any(|s| s["text"] == "configbot"));
    assert_eq!(sigs["excluded"][0][1], "configbot", "{sigs}");
    dirs.ok(&["scanners", "add", "configbot"]);
    assert!(dirs.json(&["scanners", "list"])["excluded"].as_array().unwrap().is_empty());
    // CLI dry-run overrides the config across reloads until `dry-run config`.
    dirs.ok(&["dry-run", "on"]);
    dirs.ok(&["reload"]);
    let st = dirs.status();
    assert_eq!((st["dry_run"].as_bool(), st["dry_run_source"].as_str()), (Some(true), Some("cli")));
    dirs.ok(&["dry-run", "config"]);
    let st = dirs.status();
    assert_eq!((st["dry_run"].as_bool(), st["dry_run_source"].as_str()), (Some(false), Some("config")));
    // ban del tells "not banned" apart.
    let err = dirs.fails(&["ban", "del", "198.51.100.99"]);
    assert!(err.contains("not banned"), "{err}");
    // Out-of-range TTLs are refused before anything happens.
    let err = dirs.fails(&["ban", "add", "198.51.100.99", "--ttl", "1000years"]);
    assert!(err.contains("out of range"), "{err}");
    assert!(dirs.json(&["ban", "list"]).as_array().unwrap().is_empty());
    // Interfaces and the metrics listener are not changed by a reload: refused, explicitly.
    write(&cfg, &base_config("").replace("interfaces = [\"vsrv\"]", "interfaces = [\"vsrv\", \"lo\"]"));
    let err = dirs.fails(&["reload"]);
    assert!(err.contains("interfaces changed"), "{err}");
    write(&cfg, &base_config("").replace("9611", "9613"));
    let err = dirs.fails(&["reload"]);
    assert!(err.contains("[metrics] changed"), "{err}");
}

#[test]
fn failed_starts_leave_nothing_pinned() {
    if !require_root("failed_starts_leave_nothing_pinned") {
        return;
    }
    let pair = NetnsPair::new("fs");
    let tmp = tmp_dir("failed-start");
    let dirs = Dirs::new("fs", &tmp);
    let cfg = tmp.join("sipshield.toml");
    // The metrics port is taken: refused before the kernel is touched.
    let _taken = NetnsPair::in_ns(&pair.server, || std::net::TcpListener::bind("127.0.0.1:9611").expect("bind 9611"));
    write(&cfg, &base_config(""));
    let mut d = Daemon::spawn(&pair.server, &cfg, &dirs);
    assert!(!d.wait_exit(Duration::from_secs(30)).expect("must end").success());
    assert!(d.log_text().contains("metrics.listen"), "{}", d.log_text());
    assert!(!dirs.pin.exists(), "pins left by a start refused before loading");
    // The second interface cannot take native XDP: the first one is detached again and the
    // fresh pins are removed.
    write(&cfg, &base_config("").replace("[\"vsrv\"]", "[\"vsrv\", \"lo\"]").replace("9611", "9612"));
    let mut d = Daemon::spawn(&pair.server, &cfg, &dirs);
    assert!(!d.wait_exit(Duration::from_secs(30)).expect("must end").success());
    assert!(d.log_text().contains("lo"), "{}", d.log_text());
    assert!(!dirs.pin.exists(), "pins left by a start that failed to attach");
}

#[test]
fn lifecycle_signals_detach_and_pipes() {
    if !require_root("lifecycle_signals_detach_and_pipes") {
        return;
    }
    let pair = NetnsPair::new("lc");
    let tmp = tmp_dir("lifecycle");
    let dirs = Dirs::new("lc", &tmp);
    // A large list makes the start take a while: signals arrive during it.
    let list = tmp.join("bl.txt");
    let text: String = (0..300_000u32).map(|i| format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255)).collect();
    write(&list, &text);
    let cfg = tmp.join("sipshield.toml");
    write(&cfg, &base_config("").replace("[allowlist]", &format!("files = [{list:?}]\n[allowlist]")));
    let mut d = Daemon::spawn(&pair.server, &cfg, &dirs);
    // nsenter execs sipshield: signal the controller once its `main` runs (it blocks SIGHUP
    // first thing; before that, the process is still starting up, not the controller).
    let status = format!("/proc/{}/status", d.child.id());
    let deadline = Instant::now() + Duration::from_secs(10);
    let hup_blocked = || {
        let text = std::fs::read_to_string(&status).unwrap_or_default();
        let mask = |field: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(0)
        };
        // Blocked until the handler is installed, caught after.
        (mask("SigBlk:") | mask("SigCgt:")) & 1 != 0
    };
    while !hup_blocked() {
        assert!(Instant::now() < deadline, "sipshield did not start");
        std::thread::sleep(Duration::from_millis(1));
    }
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(1500) {
        d.signal(nix::sys::signal::Signal::SIGHUP);
        d.signal(nix::sys::signal::Signal::SIGUSR1);
        std::thread::sleep(Duration::from_millis(20));
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!("a signal during the start killed the controller ({st}):\n{}", d.log_text());
        }
    }
    d.wait_ready(&dirs, Duration::from_secs(60));
    // `status | head` ends quietly.
    let out = dirs.command(&[]).arg0_status_pipe().output().unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"), "{}", String::from_utf8_lossy(&out.stderr));
    // `detach` while the controller runs: it detaches and the controller stops.
    let msg = dirs.ok(&["detach"]);
    assert!(msg.contains("controller stops"), "{msg}");
    let st = d.wait_exit(Duration::from_secs(20)).expect("the controller must stop after detach");
    assert!(st.success(), "{st}");
    assert!(!dirs.pin.exists(), "detach left pins");
}

/// `sh -c "sipshield status | head -c 1"` with the same environment.
trait StatusPipe {
    fn arg0_status_pipe(&mut self) -> &mut Self;
}

impl StatusPipe for std::process::Command {
    fn arg0_status_pipe(&mut self) -> &mut Self {
        let bin = sipshield_tests::sipshield_bin();
        // Replace the program: a shell pipeline into `head`, which closes the pipe early.
        let env: Vec<(std::ffi::OsString, std::ffi::OsString)> =
            self.get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))).collect();
        *self = std::process::Command::new("sh");
        self.arg("-c").arg(format!("{} status | head -c 1 >/dev/null; sleep 0.2", bin.display()));
        self.envs(env);
        self
    }
}

/// A tiny HTTP server in namespace `ns` serving `body` on any path, in a mode the test sets:
/// answer, hang (accept and never answer), or trickle (a byte per 200 ms).
struct Feed {
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    body: std::sync::Arc<std::sync::Mutex<String>>,
}

const ANSWER: u8 = 0;
const HANG: u8 = 1;
const TRICKLE: u8 = 2;

impl Feed {
    fn start(ns: &str, port: u16, body: &str) -> Feed {
        let listener = NetnsPair::in_ns(ns, move || std::net::TcpListener::bind(("127.0.0.1", port)).unwrap());
        let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(ANSWER));
        let body = std::sync::Arc::new(std::sync::Mutex::new(body.to_string()));
        let (m, b) = (mode.clone(), body.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut s) = conn else { continue };
                let (m, b) = (m.clone(), b.clone());
                std::thread::spawn(move || {
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf);
                    match m.load(std::sync::atomic::Ordering::SeqCst) {
                        HANG => std::thread::sleep(Duration::from_secs(60)),
                        TRICKLE => {
                            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n");
                            for _ in 0..300 {
                                if s.write_all(b"1").is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        }
                        _ => {
                            let body = b.lock().unwrap().clone();
                            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
                        }
                    }
                });
            }
        });
        Feed { mode, body }
    }

    fn set(&self, mode: u8) {
        self.mode.store(mode, std::sync::atomic::Ordering::SeqCst);
    }
}

#[test]
fn slow_feeds_and_big_refreshes_never_stall() {
    if !require_root("slow_feeds_and_big_refreshes_never_stall") {
        return;
    }
    let pair = NetnsPair::new("sf");
    pair.add_client_addr("203.0.113.9/24");
    let tmp = tmp_dir("slow-feeds");
    let dirs = Dirs::new("sf", &tmp);
    // 1M addresses in a file, plus two URL feeds that answer at start and misbehave later.
    let big = tmp.join("1m.txt");
    let mut text = String::with_capacity(16 << 20);
    for i in 0..1_000_000u32 {
        text.push_str(&format!("10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255));
    }
    write(&big, &text);
    let hang = Feed::start(&pair.server, 8081, "203.0.113.10\n");
    let trickle = Feed::start(&pair.server, 8082, "203.0.113.11\n");
    let cfg = tmp.join("sipshield.toml");
    write(
        &cfg,
        &base_config("[events]\nstdout = false\nrate = 1000\nburst = 1000\n").replace(
            "[blacklist]\nentries = [\"203.0.113.9\"]",
            &format!(
                "[blacklist]\nentries = [\"203.0.113.9\"]\nfiles = [{big:?}]\nurls = [\"http://127.0.0.1:8081/a\", \"http://127.0.0.1:8082/b\"]\ntimeout = \"20s\""
            ),
        ),
    );
    let _d = Daemon::start(&pair.server, &cfg, &dirs);
    let total0 = dirs.status()["lists"]["blacklist"]["v4"].as_u64().unwrap();
    assert_eq!(total0, 1_000_003);
    hang.set(HANG);
    trickle.set(TRICKLE);
    // A refresh now hangs on the feeds for up to 20 s (and loads 1M entries around it).
    let refresh = dirs.command(&["blacklist", "reload"]).output();
    let _ = refresh; // (the CLI waited; run it in the background instead below)
    let events = dirs.state.join("events.jsonl");
    let events0 = std::fs::metadata(&events).map(|m| m.len()).unwrap_or(0);
    let bg = dirs.command(&["blacklist", "reload"]).spawn().unwrap();
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    let mut edits = Duration::ZERO;
    let mut n = 0;
    while t0.elapsed() < Duration::from_secs(8) {
        let (status, body, took) = scrape(&pair.server, "127.0.0.1:9611");
        assert!(status.contains("200"), "{status}");
        assert!(body.contains("sipshield_packets"));
        worst = worst.max(took);
        let te = Instant::now();
        dirs.ok(&["allow", "add", &format!("198.51.100.{}", 100 + n)]);
        edits = edits.max(te.elapsed());
        pair.send_udp(ip("203.0.113.9"), ip(SERVER), 5060, vec![register("Yealink", n)]);
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(worst < Duration::from_millis(200), "/metrics took {worst:?} during a hanging refresh");
    assert!(edits < Duration::from_secs(2), "a CLI edit waited {edits:?} behind a hanging feed");
    let events1 = std::fs::metadata(&events).map(|m| m.len()).unwrap_or(0);
    assert!(events1 > events0, "no events were written while the feeds hung");
    let mut bg = bg;
    let out = bg.wait().unwrap();
    assert!(!out.success(), "a refresh whose feed hangs must fail");
    // The last good list stays.
    assert_eq!(dirs.status()["lists"]["blacklist"]["v4"].as_u64().unwrap(), total0);
    // An empty answer is a failed refresh too: the last good list stays.
    hang.set(ANSWER);
    trickle.set(ANSWER);
    *hang.body.lock().unwrap() = String::new();
    let err = dirs.fails(&["blacklist", "reload"]);
    assert!(err.contains("no valid entry"), "{err}");
    assert_eq!(dirs.status()["lists"]["blacklist"]["v4"].as_u64().unwrap(), total0);
    // A 1M-entry refresh that works: metrics keep answering meanwhile.
    *hang.body.lock().unwrap() = "203.0.113.12\n".into();
    let bg = dirs.command(&["blacklist", "reload"]).spawn().unwrap();
    let t0 = Instant::now();
    let mut worst = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(2) {
        worst = worst.max(scrape(&pair.server, "127.0.0.1:9611").2);
    }
    let mut bg = bg;
    assert!(bg.wait().unwrap().success());
    assert!(worst < Duration::from_millis(200), "/metrics took {worst:?} during a 1M-entry refresh");
}

#[test]
fn config_bounds_name_the_key_and_the_range() {
    let parse = |t: &str| Config::parse(t, Path::new("b.toml")).map(|_| ()).unwrap_err().to_string();
    let rule = |body: &str| parse(&format!("[ratelimit.register]\n{body}\n"));
    let e = rule("rate = 5.0\nburst = 5\nban_ttl = \"1000years\"");
    assert!(e.contains("ratelimit.register.ban_ttl") && e.contains("1s to 10 years"), "{e}");
    let e = rule("rate = 1e-12\nburst = 20");
    assert!(e.contains("ratelimit.register.rate") && e.contains("0.001"), "{e}");
    let e = rule("rate = 1e-9\nburst = 20");
    assert!(e.contains("out of range"), "{e}");
    let e = rule("rate = 5.0\nburst = 5\nwindow = \"0s\"");
    assert!(e.contains("ratelimit.register.window"), "{e}");
    let e = rule("rate = 5.0\nburst = 5\nban_ttl = \"0s\"");
    assert!(e.contains("ban_ttl"), "{e}");
    let e = rule("rate = 5.0\nburst = 0");
    assert!(e.contains("burst"), "{e}");
    let e = parse("[ratelimit.register]\nrate = 1.0\nburst = 1\n[ratelimit.REGISTER]\nrate = 2.0\nburst = 2\n");
    assert!(e.contains("case-insensitive"), "{e}");
    let e = parse("interfaces = [\"eth1\", \"eth1\"]\n");
    assert!(e.contains("listed twice"), "{e}");
    let e = parse("[blacklist]\nentries = [\"0.0.0.0/0\"]\n");
    assert!(e.contains("allow_match_all"), "{e}");
    let e = parse("[allowlist]\nentries = [\"::/0\"]\n");
    assert!(e.contains("allow_match_all"), "{e}");
    assert!(Config::parse("[allowlist]\nentries = [\"::/0\"]\nallow_match_all = true\n", Path::new("b.toml")).is_ok());
    let e = parse("[blacklist]\nfiles = [\"/dev/zero\"]\n");
    assert!(e.contains("not a regular file"), "{e}");
    let e = parse("[blacklist]\ntimeout = \"0s\"\n");
    assert!(e.contains("blacklist.timeout"), "{e}");
    let e = parse("[crowdsec]\nlapi_url = \"http://127.0.0.1:8080\"\n");
    assert!(e.contains("crowdsec"), "{e}");
    let e = parse("[metrics]\nlisten = \"localhost\"\n");
    assert!(e.contains("metrics") || e.contains("listen"), "{e}");
}
