//! `cargo xtask demo`: sipshield between two network namespaces, fed a short mixed SIP stream,
//! with the live counters, bans and events printed from its own CLI. Doubles as a smoke test:
//! it fails unless every expected reason was counted.
//!
//! Only namespaces it creates are touched (the veth pair is created directly inside them); the
//! root namespace's interfaces, addresses and routes are never used. Pins live in their own
//! directory (`/sys/fs/bpf/sipshield-demo`) and state in a private temporary directory, so a
//! real installation is not disturbed.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use sipshield_tests::netns::{Netns, NetnsPair};
use sipshield_tests::sip::SipMessage;
use sipshield_tests::tmp::TempDir;

use crate::util::{self, is_root};

const CLIENT_NS: &str = "sipshield-demo-client";
const SERVER_NS: &str = "sipshield-demo-server";
const CLIENT_IF: &str = "demo-cli";
const SERVER_IF: &str = "demo-srv";
const PIN_DIR: &str = "/sys/fs/bpf/sipshield-demo";

const SERVER_V4: &str = "198.51.100.2";
const SERVER_V6: &str = "2001:db8::2";
const LEGIT_V4: &str = "198.51.100.10";
const LEGIT_V6: &str = "2001:db8::10";
const BLACKLISTED: &str = "198.51.100.66";
const SCANNER: &str = "198.51.100.77";
const FLOODER: &str = "198.51.100.99";
const SIP_PORT: u16 = 5060;

const LEGIT_MSGS: u32 = 20;
const LEGIT_V6_MSGS: u32 = 5;
const SCANNER_MSGS: u32 = 50;
const BLACKLISTED_MSGS: u32 = 50;
const FLOOD_MSGS: u32 = 500;
const AFTER_BAN_MSGS: u32 = 10;

/// The demo config; its `interfaces = [...]` line is replaced with the server veth.
const CONFIG_TEMPLATE: &str = include_str!("../../sipshield.demo.toml");

/// Reasons the demo's traffic must produce.
const EXPECTED: &[&str] = &["pass", "blacklisted", "scanner", "ratelimit", "banned"];

// ------------------------------------------------------------------------------------------
// Ctrl-C: stop the bounded loops early and let the guards clean up.
// ------------------------------------------------------------------------------------------

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn install_sigint() {
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGINT, on_sigint as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_sigint as *const () as libc::sighandler_t);
    }
}

fn check_interrupt() -> Result<()> {
    if INTERRUPTED.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// Sleep in small steps so Ctrl-C is noticed.
fn nap(d: Duration) -> Result<()> {
    let end = Instant::now() + d;
    loop {
        check_interrupt()?;
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
    }
}

// ------------------------------------------------------------------------------------------
// Guards.
// ------------------------------------------------------------------------------------------

/// The client and server namespaces joined by a veth pair created inside them (the test kit's
/// fixture: deleted on drop, also on error).
fn namespaces() -> Result<NetnsPair> {
    for ns in [CLIENT_NS, SERVER_NS] {
        if sipshield_tests::netns::path(ns).exists() {
            println!("removing leftover namespace {ns}");
        }
    }
    let pair = NetnsPair::create(CLIENT_NS, SERVER_NS, CLIENT_IF, SERVER_IF)?;
    let client_addrs = [LEGIT_V4, BLACKLISTED, SCANNER, FLOODER];
    for a in client_addrs {
        pair.client_ns().add_addr(CLIENT_IF, &format!("{a}/24"))?;
    }
    pair.client_ns().add_addr(CLIENT_IF, &format!("{LEGIT_V6}/64"))?;
    pair.server_ns().add_addr(SERVER_IF, &format!("{SERVER_V4}/24"))?;
    pair.server_ns().add_addr(SERVER_IF, &format!("{SERVER_V6}/64"))?;
    println!(
        "namespaces {CLIENT_NS} ({CLIENT_IF}: {} {LEGIT_V6}) <-> {SERVER_NS} ({SERVER_IF}: {SERVER_V4} {SERVER_V6})",
        client_addrs.join(" ")
    );
    Ok(pair)
}

/// How to run the `sipshield` CLI against the demo's pins and state.
#[derive(Clone)]
struct Cli {
    bin: PathBuf,
    state_dir: PathBuf,
}

impl Cli {
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.args(args).env("SIPSHIELD_STATE_DIR", &self.state_dir).env("SIPSHIELD_PIN_DIR", PIN_DIR);
        c
    }

    /// Run a verb, print it like a shell transcript, return stdout.
    fn show(&self, args: &[&str]) -> Result<String> {
        println!("\n$ sipshield {}", args.join(" "));
        let out = util::capture(&mut self.command(args))?;
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        print!("{stdout}");
        if !out.status.success() {
            bail!(
                "`sipshield {}` failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(stdout)
    }

    /// `sipshield detach` of everything under the demo's pin dir, and the pin dir itself.
    fn detach(&self) -> Result<String> {
        let out = util::output(&mut self.command(&["detach"]))?;
        Ok(out.trim().to_string())
    }
}

/// The running controller: on drop, detach the filter and stop the process.
struct Controller {
    child: Option<Child>,
    cli: Cli,
    log: PathBuf,
}

impl Controller {
    fn start(cli: &Cli, ns: &Netns, config: &Path, log: &Path) -> Result<Controller> {
        let logf = std::fs::File::create(log)?;
        let mut cmd = ns.command(&cli.bin);
        cmd.args(["run", "--config"])
            .arg(config)
            .env("SIPSHIELD_STATE_DIR", &cli.state_dir)
            .env("SIPSHIELD_PIN_DIR", PIN_DIR)
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf);
        println!(
            "\n$ SIPSHIELD_STATE_DIR={} SIPSHIELD_PIN_DIR={PIN_DIR} nsenter --net={} {} run --config {}",
            cli.state_dir.display(),
            ns.path().display(),
            cli.bin.display(),
            config.display()
        );
        let child = cmd.spawn().context("cannot start sipshield in the server namespace")?;
        let mut c = Controller { child: Some(child), cli: cli.clone(), log: log.into() };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if let Some(line) = text.lines().find(|l| l.contains("sipshield running")) {
                for l in text.lines().filter(|l| l.contains("attached to")) {
                    println!("  {l}");
                }
                println!("  {}", line.chars().take(200).collect::<String>());
                return Ok(c);
            }
            if let Some(st) = c.child.as_mut().and_then(|ch| ch.try_wait().ok().flatten()) {
                bail!("sipshield run exited ({st}) before it was running; its log:\n{text}");
            }
            if Instant::now() > deadline {
                bail!("sipshield run did not report \"sipshield running\" within 30s; its log:\n{text}");
            }
            nap(Duration::from_millis(100))?;
        }
    }

    /// Detach, then stop the controller (SIGTERM, SIGKILL after 5s).
    fn stop(&mut self) -> Result<()> {
        let detach = self.cli.detach();
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child's pid (sipshield itself: it joined the
            // namespace before exec).
            unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
            let end = Instant::now() + Duration::from_secs(5);
            loop {
                if child.try_wait()?.is_some() {
                    break;
                }
                if Instant::now() > end {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            println!("controller stopped");
        }
        let msg = detach?;
        println!("$ sipshield detach\n{msg}");
        Ok(())
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if self.child.is_some() {
            if let Err(e) = self.stop() {
                eprintln!("cleanup: {e:#}");
            }
            if let Ok(text) = std::fs::read_to_string(&self.log) {
                let tail: Vec<&str> = text.lines().rev().take(15).collect();
                eprintln!("last controller log lines:");
                for l in tail.iter().rev() {
                    eprintln!("  {l}");
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// SIP traffic.
// ------------------------------------------------------------------------------------------

fn host(a: &SocketAddr) -> String {
    match a {
        SocketAddr::V4(v) => format!("{}:{}", v.ip(), v.port()),
        SocketAddr::V6(v) => format!("[{}]:{}", v.ip(), v.port()),
    }
}

fn host_ip(a: IpAddr) -> String {
    match a {
        IpAddr::V4(v) => v.to_string(),
        IpAddr::V6(v) => format!("[{v}]"),
    }
}

fn join<T>(h: std::thread::JoinHandle<Result<T>>) -> Result<T> {
    h.join().map_err(|_| anyhow!("traffic thread panicked"))?
}

fn sock(src: &str) -> Result<(UdpSocket, SocketAddr)> {
    let a: IpAddr = src.parse()?;
    let s = UdpSocket::bind((a, 0)).with_context(|| format!("bind {src}"))?;
    let local = s.local_addr()?;
    Ok((s, local))
}

/// Send bounded by count and by a deadline; returns how many were sent.
fn pace(what: &str, n: u32, gap: Duration, deadline: Instant, mut send: impl FnMut(u32) -> Result<()>) -> Result<u32> {
    let mut sent = 0;
    for i in 0..n {
        if INTERRUPTED.load(Ordering::SeqCst) || Instant::now() > deadline {
            eprintln!("{what}: stopped after {sent} of {n}");
            break;
        }
        send(i)?;
        sent += 1;
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
    }
    Ok(sent)
}

/// A legitimate desk phone: REGISTER refreshes and OPTIONS keepalives at a normal rate, plus a
/// second phone on IPv6.
fn legit_phone(deadline: Instant) -> Result<(u32, u32)> {
    let server: IpAddr = SERVER_V4.parse()?;
    let (s, local) = sock(LEGIT_V4)?;
    let via = host(&local);
    let call_id = format!("reg-{}@{LEGIT_V4}", std::process::id());
    let ua = "Yealink SIP-T46S 66.86.0.15";
    let sent4 = pace("legit", LEGIT_MSGS, Duration::from_millis(100), deadline, |i| {
        let msg = if i % 2 == 0 {
            SipMessage::request("REGISTER", "1001", SERVER_V4)
                .call_id(&call_id)
                .cseq(i + 1)
                .contact(&format!("<sip:1001@{via}>;expires=3600"))
                .header("Allow", "INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, OPTIONS, INFO, MESSAGE")
        } else {
            SipMessage::request("OPTIONS", "1001", SERVER_V4)
                .uri(&format!("sip:{SERVER_V4}"))
                .to(&format!("sip:{SERVER_V4}"))
                .header("Accept", "application/sdp")
        };
        s.send_to(&msg.via(&via).seq(u64::from(i)).user_agent(ua).build(), (server, SIP_PORT))?;
        Ok(())
    })?;
    let server6: IpAddr = SERVER_V6.parse()?;
    let (s6, local6) = sock(LEGIT_V6)?;
    let sent6 = pace("legit v6", LEGIT_V6_MSGS, Duration::from_millis(100), deadline, |i| {
        let msg = SipMessage::request("OPTIONS", "1002", &host_ip(server6))
            .uri(&format!("sip:{}", host_ip(server6)))
            .via(&host(&local6))
            .seq(u64::from(i))
            .user_agent(ua)
            .header("Accept", "application/sdp");
        s6.send_to(&msg.build(), (server6, SIP_PORT))?;
        Ok(())
    })?;
    Ok((sent4, sent6))
}

#[derive(Default, Debug)]
struct AttackSent {
    scanner: u32,
    blacklisted: u32,
    flood: u32,
    after_ban: u32,
}

/// sipvicious-style OPTIONS sweep, calls from a blacklisted address, then a REGISTER flood
/// (password guessing) that first hits the rate limit and then the automatic ban.
fn attackers(deadline: Instant) -> Result<AttackSent> {
    let server: IpAddr = SERVER_V4.parse()?;
    let mut sent = AttackSent::default();
    std::thread::sleep(Duration::from_millis(300));

    let (scan, scan_local) = sock(SCANNER)?;
    let (bl, bl_local) = sock(BLACKLISTED)?;
    // Interleave the scanner and the blacklisted caller for ~0.6 s.
    for i in 0..SCANNER_MSGS.max(BLACKLISTED_MSGS) {
        if INTERRUPTED.load(Ordering::SeqCst) || Instant::now() > deadline {
            break;
        }
        if i < SCANNER_MSGS {
            let ext = 100 + i;
            let who = format!("sip:{ext}@1.1.1.1");
            let msg = SipMessage::request("OPTIONS", &ext.to_string(), SERVER_V4)
                .from_display("sipvicious")
                .from(&who)
                .to(&who)
                .via(&host(&scan_local))
                .seq(u64::from(i))
                .user_agent("friendly-scanner")
                .header("Accept", "application/sdp");
            scan.send_to(&msg.build(), (server, SIP_PORT))?;
            sent.scanner += 1;
        }
        if i < BLACKLISTED_MSGS {
            let msg = SipMessage::request("INVITE", &format!("0044{:09}", 203000000 + i), SERVER_V4)
                .from(&format!("sip:00972{:07}@{BLACKLISTED}", 5550000 + i))
                .via(&host(&bl_local))
                .contact(&format!("<sip:caller@{}>", host(&bl_local)))
                .seq(u64::from(i))
                .user_agent("Zoiper rv2.10.20.3");
            bl.send_to(&msg.build(), (server, SIP_PORT))?;
            sent.blacklisted += 1;
        }
        std::thread::sleep(Duration::from_millis(12));
    }

    // REGISTER flood: extension guessing as fast as the socket goes.
    let (fl, fl_local) = sock(FLOODER)?;
    let flood_msg = |i: u32| {
        SipMessage::request("REGISTER", &(1000 + i % 200).to_string(), SERVER_V4)
            .via(&host(&fl_local))
            .contact(&format!("<sip:flood@{}>", host(&fl_local)))
            .expires(60)
            .cseq(i + 1)
            .seq(u64::from(i))
            .user_agent("Zoiper rv2.10.20.3")
            .build()
    };
    sent.flood = pace("flood", FLOOD_MSGS, Duration::ZERO, deadline, |i| {
        fl.send_to(&flood_msg(i), (server, SIP_PORT))?;
        Ok(())
    })?;
    std::thread::sleep(Duration::from_millis(300));
    // A few more, well under the rate: dropped because the source is banned now.
    sent.after_ban = pace("after ban", AFTER_BAN_MSGS, Duration::from_millis(50), deadline, |i| {
        fl.send_to(&flood_msg(FLOOD_MSGS + i), (server, SIP_PORT))?;
        Ok(())
    })?;
    Ok(sent)
}

/// A UDP listener on the server's SIP port (what the SIP server would see): counts datagrams
/// per source until `stop`.
fn listener(bind: SocketAddr, stop: Arc<AtomicBool>) -> Result<HashMap<IpAddr, u64>> {
    let s = UdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))?;
    let mut seen = HashMap::new();
    let mut buf = [0u8; 4096];
    let hard_end = Instant::now() + Duration::from_secs(120);
    while !stop.load(Ordering::SeqCst) && Instant::now() < hard_end {
        match s.recv_from(&mut buf) {
            Ok((_, from)) => *seen.entry(from.ip()).or_insert(0) += 1,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(seen)
}

// ------------------------------------------------------------------------------------------
// The demo.
// ------------------------------------------------------------------------------------------

fn render_config() -> Result<String> {
    let mut found = false;
    let mut out = String::new();
    for line in CONFIG_TEMPLATE.lines() {
        if !found && line.trim_start().starts_with("interfaces") && line.contains('=') {
            out.push_str(&format!("interfaces = [\"{SERVER_IF}\"]\n"));
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        bail!("sipshield.demo.toml has no top-level `interfaces = [...]` line to fill in");
    }
    Ok(out)
}

/// `reason -> packets` from the table printed by `sipshield stats`.
fn parse_stats(table: &str) -> HashMap<String, u64> {
    let mut m = HashMap::new();
    for line in table.lines() {
        let mut w = line.split_whitespace();
        if let (Some(name), Some(n)) = (w.next(), w.next()) {
            if let Ok(n) = n.parse::<u64>() {
                if name.chars().all(|c| c.is_ascii_lowercase()) {
                    m.insert(name.to_string(), n);
                }
            }
        }
    }
    m
}

pub fn run() -> Result<()> {
    install_sigint();
    crate::setup::run()?;
    if !is_root() {
        bail!("the demo creates network namespaces and loads an XDP program: run it as root");
    }
    let root = util::workspace_root();
    util::step("cargo build --release -p xdp-user");
    util::run(util::cargo().current_dir(&root).args(["build", "--release", "-p", "xdp-user"]))?;
    let bin = util::target_dir().join("release/sipshield");
    if !bin.exists() {
        bail!("{} is missing after the build", bin.display());
    }
    check_interrupt()?;

    util::step("demo: network namespaces, config, controller");
    let tmp = TempDir::new("demo")?;
    let cli = Cli { bin: bin.clone(), state_dir: tmp.join("state") };
    std::fs::create_dir_all(&cli.state_dir)?;
    // Leftovers of an earlier, interrupted demo would be adopted with their counters: remove.
    if Path::new(PIN_DIR).exists() {
        println!("removing leftover pins in {PIN_DIR}: {}", cli.detach().unwrap_or_else(|e| format!("{e:#}")));
        let _ = std::fs::remove_dir_all(PIN_DIR);
    }
    let netns = namespaces()?;
    let config = tmp.join("sipshield.demo.toml");
    std::fs::write(&config, render_config()?)?;
    println!("config {} (from sipshield.demo.toml, interfaces = [\"{SERVER_IF}\"])", config.display());
    let mut ctl = Controller::start(&cli, netns.server_ns(), &config, &tmp.join("controller.log"))?;
    cli.show(&["status"])?;

    util::step("demo: traffic from the client namespace");
    println!(
        "legit {LEGIT_V4}: {LEGIT_MSGS} REGISTER/OPTIONS over ~2s (+{LEGIT_V6_MSGS} OPTIONS from {LEGIT_V6}); \
         scanner {SCANNER}: {SCANNER_MSGS} OPTIONS (friendly-scanner); blacklisted {BLACKLISTED}: {BLACKLISTED_MSGS} INVITE; \
         flooder {FLOODER}: {FLOOD_MSGS} REGISTER at full speed, then {AFTER_BAN_MSGS} more"
    );
    let stop = Arc::new(AtomicBool::new(false));
    let l4 = {
        let stop = stop.clone();
        netns.server_ns().spawn(move || listener(SocketAddr::new(SERVER_V4.parse()?, SIP_PORT), stop))
    };
    let l6 = {
        let stop = stop.clone();
        netns.server_ns().spawn(move || listener(SocketAddr::new(SERVER_V6.parse()?, SIP_PORT), stop))
    };
    std::thread::sleep(Duration::from_millis(200));
    let deadline = Instant::now() + Duration::from_secs(20);
    let legit = netns.client_ns().spawn(move || legit_phone(deadline));
    let attack = netns.client_ns().spawn(move || attackers(deadline));

    nap(Duration::from_millis(1200))?;
    println!("\n-- live, while sending:");
    cli.show(&["stats"])?;
    let legit = join(legit);
    let attack = join(attack);
    // Let the event stream reach the controller's log, then stop listening.
    nap(Duration::from_millis(700))?;
    stop.store(true, Ordering::SeqCst);
    let mut received: HashMap<IpAddr, u64> = join(l4)?;
    received.extend(join(l6)?);
    let (legit4, legit6) = legit?;
    let attack = attack?;

    util::step("demo: after the traffic");
    let table = cli.show(&["stats"])?;
    cli.show(&["stats", "--json"])?;
    let bans = cli.show(&["ban", "list"])?;
    cli.show(&["events", "-n", "10"])?;

    util::step("demo: cleanup");
    ctl.stop()?;
    drop(ctl);
    drop(netns);
    println!("deleted namespaces {CLIENT_NS} and {SERVER_NS}");
    drop(tmp);

    // ---- summary ----
    util::step("demo: summary");
    let got = |a: &str| received.get(&a.parse::<IpAddr>().unwrap()).copied().unwrap_or(0);
    println!(
        "sent: legit {legit4} (+{legit6} IPv6), scanner {}, blacklisted {}, flood {} (+{} after the ban)",
        attack.scanner, attack.blacklisted, attack.flood, attack.after_ban
    );
    println!(
        "the server's SIP socket received: legit {}/{legit4}, legit IPv6 {}/{legit6}, scanner {}, blacklisted {}, flooder {}",
        got(LEGIT_V4),
        got(LEGIT_V6),
        got(SCANNER),
        got(BLACKLISTED),
        got(FLOODER)
    );
    let stats = parse_stats(&table);
    let mut failures = vec![];
    for r in EXPECTED {
        let n = stats.get(*r).copied();
        let ok = n.unwrap_or(0) > 0;
        println!(
            "  [{}] {r:<12} {}",
            if ok { " ok " } else { "FAIL" },
            n.map(|n| n.to_string()).unwrap_or_else(|| "missing".into())
        );
        if !ok {
            failures.push(format!(
                "reason {r} counted {}",
                n.map(|n| n.to_string()).unwrap_or_else(|| "nothing (missing from `sipshield stats`)".into())
            ));
        }
    }
    let mut check = |ok: bool, what: String| {
        println!("  [{}] {what}", if ok { " ok " } else { "FAIL" });
        if !ok {
            failures.push(what);
        }
    };
    check(bans.contains(FLOODER), format!("flooder {FLOODER} is in `sipshield ban list`"));
    check(
        got(LEGIT_V4) == legit4 as u64 && got(LEGIT_V6) == legit6 as u64,
        "every legitimate message reached the server".into(),
    );
    check(got(SCANNER) == 0 && got(BLACKLISTED) == 0, "no scanner or blacklisted message reached the server".into());
    if failures.is_empty() {
        println!("\ndemo passed: pass, blacklisted, scanner, ratelimit and banned were all counted");
        Ok(())
    } else {
        bail!("demo failed: {}", failures.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_gets_the_interface() {
        let c = render_config().unwrap();
        assert!(c.contains(&format!("interfaces = [\"{SERVER_IF}\"]")));
        assert!(c.contains("[ratelimit.register]"));
    }

    #[test]
    fn stats_table_parses() {
        let t = "reason              packets            bytes             \npass                      25             9000             \nbanned                     3              300\n";
        let m = parse_stats(t);
        assert_eq!(m.get("pass"), Some(&25));
        assert_eq!(m.get("banned"), Some(&3));
        assert_eq!(m.get("reason"), None);
    }
}
