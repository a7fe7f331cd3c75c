//! Differential test: generated packets through the kernel (`BPF_PROG_TEST_RUN` on the real
//! program, with the maps filled from a config as the controller fills them) and through the
//! reference model (`sipshield-model`) with the same policy, state and clock; the action and
//! the reason of every packet must agree, and so must the counters and the bans at the end of
//! each phase. The kernel must never answer anything but `XDP_PASS` or `XDP_DROP`.
//!
//! Seeded and reproducible: `SIPSHIELD_DIFF_SEED=N` (printed by every run) and
//! `SIPSHIELD_DIFF_COUNT=M` (default [`DEFAULT_COUNT`]); `cargo xtask difftest --seed N --count M`
//! runs a long one. A disagreement prints the packet as hex and writes the phase's packets up to
//! it as a pcap, with the phase's config beside it, for `sipshield replay --config`.
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sipshield::filter::{Filter, XDP_DROP, XDP_PASS};
use sipshield_tests::frames::{PacketBuilder, DEST_OPTS, HOP_BY_HOP, L4, ROUTING};
use sipshield_tests::model::{policy_of, Action, Model};
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::*;

/// Packets per CI run (spread over the phases).
const DEFAULT_COUNT: usize = 120_000;
/// The program clock starts here (ns; replay treats 0 as "real clock").
const CLOCK_START: u64 = 1_000_000_000_000;

/// A policy under test: its TOML (written next to a failure's pcap) and its share of packets.
struct Phase {
    name: &'static str,
    toml: String,
    share: usize,
}

const LISTS: &str = r#"
[blacklist]
entries = ["203.0.113.66", "203.0.113.128/27", "2001:db8:bad::/48", "2001:db8:6::66", "198.51.100.77"]
[allowlist]
entries = ["198.51.100.200", "203.0.113.140", "2001:db8:a11::/48"]
"#;

fn phases() -> Vec<Phase> {
    let rules = r#"
[ratelimit.register]
rate = 5.0
burst = 3
ban_after = 4
ban_ttl = "2s"
window = "1s"
[ratelimit.options]
rate = 2.0
burst = 2
[ratelimit.invite]
rate = 20.0
burst = 5
ban_after = 10
ban_ttl = "3s"
window = "2s"
[ratelimit.any]
rate = 30.0
burst = 10
ban_after = 20
ban_ttl = "1s"
window = "1s"
"#;
    let scanners = r#"
[scanners]
user_agent = ["evil-ua", "x"]
to = ["scan"]
contact = ["\"bad"]
via = ["sip/2.0/udp 6.6.6.6"]
call_id = ["deadbeef"]
subject = ["spam"]
"#;
    vec![
        Phase { name: "enforce", toml: format!("{LISTS}{rules}{scanners}"), share: 4 },
        Phase {
            name: "dry-run",
            toml: format!(
                "dry_run = true\ndrop_malformed = true\n[sip]\nports = [5060, 5080]\ntcp = false\n{LISTS}{rules}{scanners}\n"
            )
            .replace("[ratelimit.register]", "[ratelimit]\nipv6_prefix = 48\n[ratelimit.register]"),
            share: 2,
        },
        Phase {
            name: "rate-only",
            toml: format!(
                "drop_malformed = true\n[scanners]\nenabled = false\n[ratelimit]\nipv6_prefix = 128\n[ratelimit.any]\nrate = 10.0\nburst = 4\nban_after = 3\nban_ttl = \"1500ms\"\nwindow = \"1s\"\n{}",
                LISTS
            ),
            share: 2,
        },
        Phase { name: "scan-only", toml: format!("[sip]\nports = [5060, 5061, 15060]\n{scanners}"), share: 2 },
    ]
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")))
}

#[test]
fn kernel_agrees_with_the_model() {
    if !require_root("kernel_agrees_with_the_model") {
        return;
    }
    let seed = env_u64("SIPSHIELD_DIFF_SEED").unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64
    });
    let count = env_u64("SIPSHIELD_DIFF_COUNT").map_or(DEFAULT_COUNT, |c| c as usize);
    eprintln!("difftest: seed {seed}, {count} packets (SIPSHIELD_DIFF_SEED={seed} reproduces this run)");
    let phases = phases();
    let shares: usize = phases.iter().map(|p| p.share).sum();
    let started = Instant::now();
    let mut total = 0;
    for (i, phase) in phases.iter().enumerate() {
        let n = count * phase.share / shares;
        let t = Instant::now();
        let mut rng = fastrand::Rng::with_seed(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        run_phase(phase, n, seed, &mut rng);
        eprintln!("difftest: phase {}: {n} packets agree ({:.1}s)", phase.name, t.elapsed().as_secs_f64());
        total += n;
    }
    let secs = started.elapsed().as_secs_f64();
    eprintln!("difftest: {total} packets agree in {secs:.1}s ({:.0} packets/s)", total as f64 / secs);
    assert!(count < 1000 || total >= count - phases.len(), "every packet ran");
}

/// The kernel side: a private filter, its config (the clock set per packet) and the
/// slot-0 reason counters before the next packet.
struct Kernel {
    f: Filter,
    cfg: Config,
    before: [u64; NUM_REASONS as usize],
}

impl Kernel {
    fn new(toml: &str) -> Kernel {
        let f = filter_with(toml);
        let cfg = f.config().expect("config");
        let before = f.slot0_counts().expect("stats");
        Kernel { f, cfg, before }
    }

    /// (action, reason) of one frame at `now`.
    fn run(&mut self, frame: &[u8], now: u64) -> (u32, u32) {
        if self.cfg.clock_ns != now {
            self.cfg.clock_ns = now;
            self.f.set_config(&self.cfg).expect("set config");
        }
        let action = self.f.test_run(frame).expect("test_run");
        let after = self.f.slot0_counts().expect("stats");
        let grown: Vec<u32> = (0..NUM_REASONS).filter(|r| after[*r as usize] != self.before[*r as usize]).collect();
        self.before = after;
        assert_eq!(grown.len(), 1, "the program counted {grown:?} for one packet");
        (action, grown[0])
    }
}

fn run_phase(phase: &Phase, n: usize, seed: u64, rng: &mut fastrand::Rng) {
    let cfg = sipshield::config::Config::parse(&phase.toml, Path::new("difftest.toml"))
        .unwrap_or_else(|e| panic!("phase {}: {e:#}", phase.name));
    let mut kernel = Kernel::new(&phase.toml);
    let policy = policy_of(&cfg, &[]).expect("model policy");
    let mut model = Model::new(policy, kernel.f.rate_seed().expect("seed"));
    let mut gen = Gen::new(rng);
    let mut now = CLOCK_START;
    let mut sent: Vec<(u64, Vec<u8>)> = Vec::with_capacity(n);
    for i in 0..n {
        now += gen.time_step();
        let frame = gen.frame();
        let (action, reason) = kernel.run(&frame, now);
        let want = model.classify(&frame, now);
        let want_action = if want.action == Action::Drop { XDP_DROP } else { XDP_PASS };
        sent.push((now, frame));
        if (action, reason) != (want_action, want.reason as u32) {
            let frame = &sent.last().unwrap().1;
            let dir = write_failure(phase, seed, &sent);
            panic!(
                "phase {} packet {i} (seed {seed}): kernel {} ({}), model {} ({}) [{:?}]\nframe ({} bytes): {}\n\
                 reproduce: sipshield replay --config {} {}",
                phase.name,
                action_name(action),
                reason_name(reason),
                action_name(want_action),
                reason_name(want.reason as u32),
                want,
                frame.len(),
                hex(frame),
                dir.join("config.toml").display(),
                dir.join("capture.pcap").display(),
            );
        }
    }
    // The totals and the bans agree too.
    let kernel_counts = kernel.f.slot0_counts().expect("stats");
    let model_counts: Vec<u64> = model.counts.to_vec();
    assert_eq!(kernel_counts.to_vec(), model_counts, "phase {}: counters per reason", phase.name);
    let bans = kernel.f.stats().expect("stats").events[EVSTAT_BANS as usize];
    assert_eq!(bans, model.state.bans_installed, "phase {}: bans installed", phase.name);
    eprintln!(
        "difftest: phase {}: reasons {:?}, {} bans",
        phase.name,
        REASON_NAMES.iter().zip(model_counts.iter()).filter(|(_, c)| **c != 0).collect::<Vec<_>>(),
        bans
    );
}

fn action_name(a: u32) -> &'static str {
    match a {
        XDP_PASS => "pass",
        XDP_DROP => "drop",
        0 => "ABORTED",
        _ => "unexpected action",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Write the phase's config and its packets up to the failing one (pcap, ns timestamps on the
/// program clock) into a fresh directory; returns it.
fn write_failure(phase: &Phase, seed: u64, sent: &[(u64, Vec<u8>)]) -> PathBuf {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let base = std::env::var_os("SIPSHIELD_DIFF_OUT").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    let dir = base.join(format!("sipshield-difftest-{seed}-{}-{}", phase.name, std::process::id()));
    std::fs::create_dir_all(&dir).expect("failure directory");
    std::fs::write(dir.join("config.toml"), &phase.toml).expect("config.toml");
    let file = std::fs::File::create(dir.join("capture.pcap")).expect("capture.pcap");
    let header = PcapHeader { ts_resolution: pcap_file::TsResolution::NanoSecond, ..Default::default() };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    for (ts, frame) in sent {
        w.write_packet(&PcapPacket::new(Duration::from_nanos(*ts), frame.len() as u32, frame)).expect("pcap packet");
    }
    dir
}

// ---------------------------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------------------------

/// Sources that send often (so rate limits, bans and their expiry happen): listed, allowed,
/// and plain ones, IPv4 and IPv6 (two IPv6 ones share a /48 and a /64).
const HOT: &[&str] = &[
    "198.51.100.10",
    "198.51.100.11",
    "203.0.113.5",
    "203.0.113.66",
    "203.0.113.130",
    "203.0.113.140",
    "198.51.100.200",
    "198.51.100.77",
    "2001:db8:1::10",
    "2001:db8:1::11",
    "2001:db8:1:0:1::12",
    "2001:db8:bad::1",
    "2001:db8:a11::5",
    "2001:db8:6::66",
    "2001:db8:7::1",
];

const USER_AGENTS: &[&str] = &[
    "Linphone/5.2.0 (belle-sip/5.2.0)",
    "Yealink SIP-T46S 66.86.0.15",
    "friendly-scanner",
    "sipvicious 0.3.4",
    "SIPCLI/v1.8",
    "Evil-UA 1.0",
    "x",
    "X-Lite",
    "",
    "\"quoted\"",
    "VaxSIPUserAgent/3.1",
    "pplsip",
    "Asterisk PBX 18.0",
    "sip-scan",
    "smap 0.6",
];

const METHODS: &[&str] = &[
    "REGISTER",
    "INVITE",
    "OPTIONS",
    "ACK",
    "BYE",
    "CANCEL",
    "SUBSCRIBE",
    "NOTIFY",
    "MESSAGE",
    "INFO",
    "PRACK",
    "UPDATE",
    "REFER",
    "PUBLISH",
    "PING",
    "FOO",
    "X-CUSTOM",
    "foo",
    "Ab",
    "A",
    "a.b!%*_+`'~",
    "register",
    "INVITEX",
    "REGISTERS",
    "INV",
    "SIP/2.0",
];

const HEADER_NAMES_ODD: &[&str] = &[
    "User-Agent",
    "user-agent",
    "USER-AGENT",
    "User-Agentx",
    "From",
    "f",
    "FROM",
    "To",
    "t",
    "Contact",
    "m",
    "Via",
    "v",
    "Call-ID",
    "i",
    "Subject",
    "s",
    "Server",
    "Supported",
    "fromage",
    "tox",
    "X-Padding",
];

const SEPARATORS: &[&str] =
    &[": ", ":", " : ", "\t:\t", "  :\r\n\t", ":\r\n ", " ", ":  \r\n", "::", ": \"", ":\t\"", ""];

const VALUES: &[&str] = &[
    "friendly-scanner",
    "sipvicious",
    "evil-ua",
    "Scanner <sip:1@x>",
    "scan",
    "\"bad guy\" <sip:x@y>",
    "SIP/2.0/UDP 6.6.6.6:5060",
    "SIP/2.0/UDP 198.51.100.10:5060;branch=z9hG4bK1",
    "deadbeef@host",
    "Spam offer",
    "<sip:100@198.51.100.1>;tag=1",
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "x",
    "",
];

struct Gen<'a> {
    rng: &'a mut fastrand::Rng,
    seq: u64,
    /// A flood in progress: its source, method and packets left (rate limits, bans, expiry).
    flood: Option<(IpAddr, &'static str, usize)>,
}

impl Gen<'_> {
    fn new(rng: &mut fastrand::Rng) -> Gen<'_> {
        Gen { rng, seq: 0, flood: None }
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.rng.usize(..xs.len())]
    }

    fn chance(&mut self, percent: u32) -> bool {
        self.rng.u32(..100) < percent
    }

    /// Time between packets: mostly milliseconds, sometimes a jump past windows and bans, or
    /// the same instant.
    fn time_step(&mut self) -> u64 {
        match self.rng.u32(..1000) {
            0..=49 => 0,
            50..=949 => self.rng.u64(10_000..5_000_000),
            950..=994 => self.rng.u64(5_000_000..500_000_000),
            _ => self.rng.u64(1_000_000_000..4_000_000_000),
        }
    }

    /// Start a flood now and then; while one runs, most packets are its requests.
    fn flood_request(&mut self) -> Option<(IpAddr, &'static str)> {
        if self.flood.is_none() && self.chance(2) {
            let v6 = self.chance(40);
            let src = self.source(v6);
            let method = self.pick(&["REGISTER", "REGISTER", "INVITE", "OPTIONS", "PING", "MESSAGE"]);
            self.flood = Some((src, method, self.rng.usize(5..120)));
        }
        let (src, method, left) = self.flood?;
        self.flood = if left > 1 { Some((src, method, left - 1)) } else { None };
        self.chance(80).then_some((src, method))
    }

    fn source(&mut self, v6: bool) -> IpAddr {
        if self.chance(45) {
            let hot: Vec<&str> = HOT.iter().copied().filter(|s| s.contains(':') == v6).collect();
            return ip(self.pick(&hot));
        }
        if v6 {
            let mut o = [0u8; 16];
            o[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
            for b in o[4..].iter_mut() {
                *b = self.rng.u8(..);
            }
            if self.chance(30) {
                o[4..6].copy_from_slice(&[0x0b, 0xad]); // inside the blacklisted 2001:db8:bad::/48
            }
            IpAddr::from(o)
        } else {
            let net = if self.chance(50) { [198, 51, 100] } else { [203, 0, 113] };
            IpAddr::from([net[0], net[1], net[2], self.rng.u8(..)])
        }
    }

    fn dport(&mut self) -> u16 {
        match self.rng.u32(..100) {
            0..=59 => 5060,
            60..=69 => 5061,
            70..=79 => 5080,
            80..=84 => 15060,
            _ => self.rng.u16(1..),
        }
    }

    /// A SIP message (or something on a SIP port that is not one).
    fn payload(&mut self) -> Vec<u8> {
        self.seq += 1;
        match self.rng.u32(..100) {
            0..=49 => self.kit_message(),
            50..=79 => self.raw_message(),
            80..=87 => {
                let code = self.pick(&[100u16, 180, 200, 401, 403, 404, 500]);
                let mut m = SipMessage::response(code, "Reason", self.pick(METHODS));
                if self.chance(50) {
                    m = m.user_agent(self.pick(USER_AGENTS));
                }
                m.seq(self.seq).build()
            }
            88..=93 => (0..self.rng.usize(0..200)).map(|_| self.rng.u8(..)).collect(),
            _ => {
                let n = self.rng.usize(0..12);
                b"REGISTER sip:x SIP/2.0\r\n"[..n.min(24)].to_vec()
            }
        }
    }

    /// A message from the kit's generator with its variations.
    fn kit_message(&mut self) -> Vec<u8> {
        let method = self.pick(&METHODS[..16]);
        let mut m = SipMessage::request(method, "100", "198.51.100.1").seq(self.seq);
        if self.chance(60) {
            m = m.user_agent(self.pick(USER_AGENTS));
        } else if self.chance(30) {
            m = m.no_user_agent();
        }
        if self.chance(15) {
            m = m.compact();
        }
        if self.chance(10) {
            m = m.fold_user_agent();
        }
        if self.chance(15) {
            let name = self.pick(HEADER_NAMES_ODD);
            let sep = self.pick(SEPARATORS);
            m = m.user_agent_spelling(name, sep);
        }
        if self.chance(15) {
            m = m.from_display(self.pick(&["sipvicious", "friendly-scanner", "Alice", "bad"]));
        }
        if self.chance(10) {
            let off = self.rng.usize(30..1600);
            m = m.user_agent_at(off);
        }
        for _ in 0..self.rng.usize(0..4) {
            let line = format!("{}{}{}", self.pick(HEADER_NAMES_ODD), self.pick(SEPARATORS), self.pick(VALUES));
            m = m.raw_header(&line);
        }
        if self.chance(10) {
            m = m.body("v=0\r\nUser-Agent: friendly-scanner\r\n");
        }
        let mut b = m.build();
        self.mutate(&mut b);
        b
    }

    /// A message written line by line: any method token, any header spelling, CRLF or LF,
    /// many short lines (the kernel's scan budget), long lines.
    fn raw_message(&mut self) -> Vec<u8> {
        let eol: &str = if self.chance(80) { "\r\n" } else { "\n" };
        let mut s = format!("{} sip:{}@198.51.100.1 SIP/2.0{eol}", self.pick(METHODS), self.rng.u32(..1000));
        let lines = match self.rng.u32(..10) {
            0 => self.rng.usize(100..400),
            _ => self.rng.usize(0..12),
        };
        let short = self.chance(30);
        for _ in 0..lines {
            if short {
                s += self.pick(&["f:x", "t\t:y", "f", "m:", "s: spam", "v:a", "i:deadbeef", "u", "x"]);
            } else {
                s += self.pick(HEADER_NAMES_ODD);
                s += self.pick(SEPARATORS);
                s += self.pick(VALUES);
            }
            s += if self.chance(95) { eol } else { self.pick(&["\r", "\0", "\t", "\r\r\n", "\n\r"]) };
        }
        if self.chance(80) {
            s += eol;
        }
        let mut b = s.into_bytes();
        self.mutate(&mut b);
        b
    }

    /// Sometimes flip, insert or delete a few bytes.
    fn mutate(&mut self, b: &mut Vec<u8>) {
        if b.is_empty() || !self.chance(15) {
            return;
        }
        for _ in 0..self.rng.usize(1..4) {
            let i = self.rng.usize(..b.len());
            match self.rng.u32(..3) {
                0 => {
                    let any = self.rng.u8(..);
                    b[i] = self.pick(&[b'\r', b'\n', 0, b'\t', b' ', b':', b'"', any]);
                }
                1 => b.insert(i, self.pick(&[b'\r', b'\n', b' ', b'\t'])),
                _ => {
                    b.remove(i);
                }
            }
            if b.is_empty() {
                return;
            }
        }
    }

    /// A whole frame: L2 tags, IPv4 (options, fragments) or IPv6 (extension chains, AH,
    /// fragments), UDP/TCP/ICMP, a payload; then sometimes corrupted or truncated.
    fn frame(&mut self) -> Vec<u8> {
        if let Some((src, method)) = self.flood_request() {
            self.seq += 1;
            let dst = if src.is_ipv6() { ip("2001:db8::1") } else { ip("198.51.100.1") };
            let mut m = SipMessage::request(method, "100", "198.51.100.1").seq(self.seq);
            if self.chance(3) {
                m = m.user_agent("friendly-scanner");
            }
            return PacketBuilder::udp(src, dst, 5060, 5060).payload(&m.build()).build();
        }
        let v6 = self.chance(35);
        let src = self.source(v6);
        let dst = if v6 { ip("2001:db8::1") } else { ip("198.51.100.1") };
        let dport = self.dport();
        let sport = if self.chance(70) { 5060 } else { self.rng.u16(1..) };
        let l4 = match self.rng.u32(..100) {
            0..=69 => L4::Udp { sport, dport },
            70..=91 => L4::Tcp { sport, dport, flags: 0x18, data_offset_words: self.rng.u8(5..=15) },
            _ => L4::Icmp,
        };
        let mut b = PacketBuilder::new(src, dst, l4).payload(&self.payload());
        match self.rng.u32(..100) {
            0..=9 => b = b.vlan(self.rng.u16(..)),
            10..=17 => b = b.qinq(self.rng.u16(..), self.rng.u16(..)),
            _ => {}
        }
        if !v6 && self.chance(15) {
            b = b.ipv4_options(self.rng.u8(1..=10));
        }
        if v6 && self.chance(25) {
            for _ in 0..self.rng.usize(1..10) {
                b = if self.chance(25) {
                    b.ipv6_ah(self.pick(&[2u8, 4, 6]))
                } else {
                    b.ipv6_ext(self.pick(&[HOP_BY_HOP, ROUTING, DEST_OPTS]), self.rng.u8(0..3))
                };
            }
        }
        let mut f = if self.chance(6) {
            let frags = b.build_fragments(8 * self.rng.usize(1..40), self.rng.u32(..));
            frags[self.rng.usize(..frags.len())].clone()
        } else {
            b.build()
        };
        self.corrupt(&mut f, &b);
        f
    }

    /// Header corruption and truncation at every layer.
    fn corrupt(&mut self, f: &mut Vec<u8>, b: &PacketBuilder) {
        let l3 = b.l3_offset();
        let l4 = b.l4_offset().min(f.len());
        match self.rng.u32(..100) {
            // Truncate anywhere (never below an Ethernet header: XDP never sees that).
            0..=7 => {
                let n = self.rng.usize(14..=f.len());
                f.truncate(n);
            }
            // Truncate near a layer boundary.
            8..=11 => {
                let at = self.pick(&[l3, l3 + 20, l3 + 40, l4, l4 + 8, l4 + 20]) as isize;
                let n = (at + self.rng.isize(-3..4)).clamp(14, f.len() as isize) as usize;
                f.truncate(n);
            }
            // One random byte in the headers.
            12..=17 => {
                let i = self.rng.usize(12..(l4 + 24).min(f.len()).max(13));
                if i < f.len() {
                    f[i] = self.rng.u8(..);
                }
            }
            // A chosen field: version/IHL, fragment bits, UDP length, TCP offset, next header.
            18..=23 if f.len() > l4 + 14 => match (self.rng.u32(..5), f[l3] >> 4) {
                (0, _) => f[l3] = self.rng.u8(..),
                (1, 4) => f[l3 + 6] = self.pick(&[0x20, 0x00, 0x01, 0x3f, 0x40, 0x60]),
                (1, 6) => f[l3 + 6] = self.pick(&[0u8, 43, 44, 51, 60, 17, 6, 59, 255]),
                (2, _) if f.len() > l4 + 6 => {
                    f[l4 + 4] = 0;
                    f[l4 + 5] = self.rng.u8(0..12);
                }
                (3, _) => f[l4 + 12] = self.rng.u8(..),
                (_, _) => f[12] = self.pick(&[0x81, 0x88, 0x86, 0x08]),
            },
            _ => {}
        }
    }
}
