//! SIP inspection in XDP: scanner signatures on real-shaped messages and per-source method rate
//! limits with automatic bans, through the real program; plus a differential check of the
//! kernel scan against the userspace model (`sipshield_tests::model::model_scan`).
use sipshield::filter::{clock_ns, Filter};
use sipshield::sig;
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::model::model_scan;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::*;

fn udp(src: &str, port: u16, payload: &[u8]) -> PacketBuilder {
    let dst = if src.contains(':') { "2001:db8::2" } else { "198.51.100.2" };
    PacketBuilder::udp(ip(src), ip(dst), 5070, port).payload(payload)
}

fn register(ua: &str) -> Vec<u8> {
    SipMessage::request("REGISTER", "100", "example.com").user_agent(ua).build()
}

const SCANNERS: &str = "[sip]\nports = [5060, 5080]\n";

#[test]
fn scanner_table() {
    if !require_root("scanner_table") {
        return;
    }
    let mut f = filter_with(SCANNERS);
    use Want::*;
    let far =
        SipMessage::request("INVITE", "100", "example.com").user_agent("friendly-scanner").user_agent_at(1200).build();
    assert!(far.len() > 1200 && far.len() < 1450, "far message is {} bytes", far.len());
    let far_legit = SipMessage::request("INVITE", "100", "example.com")
        .user_agent("Grandstream GXP2170")
        .user_agent_at(1200)
        .build();
    let big = SipMessage::request("INVITE", "100", "example.com")
        .user_agent("sipvicious 0.3.4")
        .user_agent_at(100)
        .body(&"v=0\r\n".repeat(200))
        .build();
    let frags = udp("203.0.113.5", 5060, &big).build_fragments(600, 9);
    assert!(frags.len() >= 2);
    let tail_frags = udp(
        "203.0.113.5",
        5060,
        &SipMessage::request("INVITE", "1", "example.com").user_agent("friendly-scanner").user_agent_at(1200).build(),
    )
    .build_fragments(512, 10);
    let folded =
        SipMessage::request("REGISTER", "100", "example.com").user_agent("friendly-scanner").fold_user_agent().build();
    let spaced = SipMessage::request("OPTIONS", "100", "example.com")
        .user_agent("SIPVicious")
        .user_agent_spelling("user-agent", " \t:   ")
        .build();
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "scanner UA near the start",
            udp("203.0.113.5", 5060, &register("friendly-scanner")).build(),
            Drop(REASON_SCANNER),
        ),
        ("scanner UA ~1200 bytes in", udp("203.0.113.5", 5060, &far).build(), Drop(REASON_SCANNER)),
        ("legit UA ~1200 bytes in", udp("203.0.113.5", 5060, &far_legit).build(), Pass(REASON_PASS)),
        (
            "sipvicious INVITE",
            udp(
                "203.0.113.5",
                5060,
                &SipMessage::request("INVITE", "100", "example.com").user_agent("sipvicious").build(),
            )
            .build(),
            Drop(REASON_SCANNER),
        ),
        (
            "OPTIONS sipcli",
            udp(
                "203.0.113.5",
                5060,
                &SipMessage::request("OPTIONS", "100", "example.com").user_agent("sipcli/v1.8").build(),
            )
            .build(),
            Drop(REASON_SCANNER),
        ),
        (
            "VaxSIPUserAgent mixed case",
            udp("203.0.113.5", 5060, &register("VaXsIpUsErAgEnT/3.1")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "compact headers + From display name",
            udp(
                "203.0.113.5",
                5060,
                &SipMessage::request("INVITE", "100", "example.com")
                    .compact()
                    .no_user_agent()
                    .from_display("sipvicious")
                    .build(),
            )
            .build(),
            Drop(REASON_SCANNER),
        ),
        ("folded UA value", udp("203.0.113.5", 5060, &folded).build(), Drop(REASON_SCANNER)),
        ("whitespace before colon", udp("203.0.113.5", 5060, &spaced).build(), Drop(REASON_SCANNER)),
        ("Yealink", udp("203.0.113.5", 5060, &register("Yealink SIP-T46S 66.86.0.15")).build(), Pass(REASON_PASS)),
        ("Grandstream", udp("203.0.113.5", 5060, &register("Grandstream GXP2170 1.0.11.3")).build(), Pass(REASON_PASS)),
        ("Linphone", udp("203.0.113.5", 5060, &register("Linphone/5.2")).build(), Pass(REASON_PASS)),
        (
            "Asterisk (spoofed by scanners, but a real product)",
            udp("203.0.113.5", 5060, &register("Asterisk PBX 18.0.0")).build(),
            Pass(REASON_PASS),
        ),
        (
            "response with scanner UA",
            udp(
                "203.0.113.5",
                5060,
                &SipMessage::response(200, "OK", "OPTIONS").user_agent("friendly-scanner").build(),
            )
            .build(),
            Pass(REASON_PASS),
        ),
        (
            "scanner to a non-SIP port",
            udp("203.0.113.5", 9999, &register("friendly-scanner")).build(),
            Pass(REASON_PASS),
        ),
        (
            "scanner to second SIP port",
            udp("203.0.113.5", 5080, &register("friendly-scanner")).build(),
            Drop(REASON_SCANNER),
        ),
        ("scanner over IPv6", udp("2001:db8:77::1", 5060, &register("friendly-scanner")).build(), Drop(REASON_SCANNER)),
        (
            "scanner behind 802.1Q",
            udp("203.0.113.5", 5060, &register("friendly-scanner")).vlan(42).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "scanner over IPv6 + QinQ",
            udp("2001:db8:77::1", 5060, &register("sipvicious")).qinq(1, 2).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "scanner over TCP",
            PacketBuilder::tcp(ip("203.0.113.5"), ip("198.51.100.2"), 40000, 5060)
                .payload(&register("friendly-scanner"))
                .build(),
            Drop(REASON_SCANNER),
        ),
        ("first fragment carries the UA", frags[0].clone(), Drop(REASON_SCANNER)),
        ("later fragment: IP checks only", frags[1].clone(), Pass(REASON_PASS)),
        ("UA only in a later fragment", tail_frags[0].clone(), Pass(REASON_PASS)),
        (
            "body mentions a scanner",
            udp(
                "203.0.113.5",
                5060,
                &SipMessage::request("MESSAGE", "1", "example.com")
                    .user_agent("Linphone")
                    .body("User-Agent: friendly-scanner")
                    .build(),
            )
            .build(),
            Pass(REASON_PASS),
        ),
        ("not SIP at all", udp("203.0.113.5", 5060, b"\r\n\r\n").build(), Pass(REASON_PASS)),
    ];
    check_table(&mut f, &table);
}

/// The prefilter in front of the signature trie and the in-scan pass over canonical
/// `User-Agent: v` / `From: v` lines: every spelling still reaches the exact check, values that
/// share a signature's first bytes are looked up and pass, one-byte signatures still match.
#[test]
fn prefilter_and_canonical_lines() {
    if !require_root("prefilter_and_canonical_lines") {
        return;
    }
    let mut f = filter_with(SCANNERS);
    use Want::*;
    // The standard headers, then `hdrs` verbatim (one per CRLF-terminated line).
    let msg = |hdrs: &str| {
        hdrs.split_terminator("\r\n")
            .fold(
                SipMessage::request("OPTIONS", "100", "example.com").via("203.0.113.5:5060").no_user_agent(),
                |m, l| m.raw_header(l),
            )
            .build()
    };
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        (
            "canonical scanner UA",
            udp("203.0.113.5", 5060, &msg("User-Agent: friendly-scanner\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "no space after the colon",
            udp("203.0.113.5", 5060, &msg("User-Agent:friendly-scanner\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "two spaces after the colon",
            udp("203.0.113.5", 5060, &msg("User-Agent:  friendly-scanner\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "tab after the colon",
            udp("203.0.113.5", 5060, &msg("User-Agent:\tsipvicious\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "upper-case name and value",
            udp("203.0.113.5", 5060, &msg("USER-AGENT: SIPCLI/1.0\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "unquoted From display name",
            udp("203.0.113.5", 5060, &msg("From: sipvicious <sip:100@1.1.1.1>;tag=1\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "quoted From display name",
            udp("203.0.113.5", 5060, &msg("From: \"friendly-scanner\" <sip:100@1.1.1.1>;tag=1\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "compact From",
            udp("203.0.113.5", 5060, &msg("f: sipvicious <sip:100@1.1.1.1>\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "UA sharing a signature's first bytes",
            udp("203.0.113.5", 5060, &msg("User-Agent: Sipura SPA-3000\r\n")).build(),
            Pass(REASON_PASS),
        ),
        (
            "From sharing a signature's first bytes",
            udp("203.0.113.5", 5060, &msg("From: sipgate <sip:1@x>\r\n")).build(),
            Pass(REASON_PASS),
        ),
        (
            "legit canonical UA then scanner From",
            udp("203.0.113.5", 5060, &msg("User-Agent: Yealink\r\nFrom: \"sipvicious\" <sip:1@x>\r\n")).build(),
            Drop(REASON_SCANNER),
        ),
        ("one-letter UA value", udp("203.0.113.5", 5060, &msg("User-Agent: s\r\n")).build(), Pass(REASON_PASS)),
        ("empty UA value", udp("203.0.113.5", 5060, &msg("User-Agent: \r\n")).build(), Pass(REASON_PASS)),
        (
            "UA at the very end, no final CRLF",
            udp("203.0.113.5", 5060, b"OPTIONS sip:1@x SIP/2.0\r\nVia: SIP/2.0/UDP x\r\nUser-Agent: friendly-scanner")
                .build(),
            Drop(REASON_SCANNER),
        ),
    ];
    check_table(&mut f, &table);
    // A one-byte signature (its header is always looked up) still matches.
    let mut sigs = sig::read(&f).unwrap();
    sigs.push(sig::Signature::new(HDR_USER_AGENT, "z").unwrap());
    sig::load(&mut f, &sigs).unwrap();
    check(
        &mut f,
        "one-byte signature",
        &udp("203.0.113.5", 5060, &msg("User-Agent: Zoiper 5\r\n")).build(),
        Drop(REASON_SCANNER),
    );
    check(
        &mut f,
        "other UAs still pass",
        &udp("203.0.113.5", 5060, &msg("User-Agent: Linphone\r\n")).build(),
        Pass(REASON_PASS),
    );
}

#[test]
fn scanners_configurable_and_swappable() {
    if !require_root("scanners_configurable_and_swappable") {
        return;
    }
    let mut f = filter_with("[scanners]\ndefaults = false\nuser_agent = [\"BadBot\"]\nsubject = [\"spam\"]\n");
    use Want::*;
    let bad = udp("203.0.113.5", 5060, &register("badbot 1.0")).build();
    check(&mut f, "custom UA", &bad, Drop(REASON_SCANNER));
    check(&mut f, "defaults off", &udp("203.0.113.5", 5060, &register("friendly-scanner")).build(), Pass(REASON_PASS));
    let subj = SipMessage::request("MESSAGE", "1", "example.com").header("Subject", "SPAM offer").build();
    check(&mut f, "subject signature", &udp("203.0.113.5", 5060, &subj).build(), Drop(REASON_SCANNER));
    // Swap in a new set (as `sipshield scanners add/del` does).
    let mut sigs = sig::read(&f).unwrap();
    sigs.retain(|s| s.text != "badbot");
    sigs.push(sig::Signature::new(HDR_USER_AGENT, "friendly-scanner").unwrap());
    sig::load(&mut f, &sigs).unwrap();
    check(&mut f, "removed signature", &bad, Pass(REASON_PASS));
    check(
        &mut f,
        "added signature",
        &udp("203.0.113.5", 5060, &register("friendly-scanner")).build(),
        Drop(REASON_SCANNER),
    );
    let mut got = sig::read(&f).unwrap();
    got.sort();
    sigs.sort();
    assert_eq!(got, sigs);
}

const RL: &str = "[ratelimit]\nipv6_prefix = 64\n[ratelimit.register]\nrate = 5\nburst = 5\nban_after = 10\nwindow = \"10s\"\nban_ttl = \"60s\"\n";

/// Run `frame` with the program's clock at `t` ns; returns the reason counted.
fn at(f: &mut Filter, t: u64, frame: &[u8]) -> u32 {
    f.update_config(|c| c.clock_ns = t).unwrap();
    let before = f.stats().unwrap();
    f.test_run(frame).unwrap();
    let after = f.stats().unwrap();
    (0..NUM_REASONS).find(|r| after.reason_total(*r).packets != before.reason_total(*r).packets).expect("a reason")
}

#[test]
fn register_flood_is_limited_then_banned() {
    if !require_root("register_flood_is_limited_then_banned") {
        return;
    }
    let mut f = filter_with(RL);
    let t0 = clock_ns();
    let reg = udp("203.0.113.50", 5060, &register("Linphone/5.2")).build();
    // Burst of 5 passes, the 6th is excess.
    for i in 0..5 {
        assert_eq!(at(&mut f, t0 + i, &reg), REASON_PASS, "burst packet {i}");
    }
    assert_eq!(at(&mut f, t0 + 10, &reg), REASON_RATELIMIT);
    // After 1 s, 5 tokens are back: conforming traffic at exactly the rate passes.
    let t1 = t0 + 1_000_000_000;
    for i in 0..5u64 {
        assert_eq!(at(&mut f, t1 + i * 200_000_000, &reg), REASON_PASS, "refilled packet {i}");
    }
    // INVITEs are not limited by the REGISTER rule.
    let inv = udp("203.0.113.50", 5060, &SipMessage::request("INVITE", "1", "example.com").build()).build();
    for _ in 0..20 {
        assert_eq!(at(&mut f, t1 + 1_000_000_000, &inv), REASON_PASS);
    }
    // A flood in a fresh window (the excess at t0+10ns belongs to the previous 10 s window):
    // excess packets accumulate; the 10th excess in the window installs a ban.
    let t2 = t0 + 11_000_000_000;
    let mut reasons = vec![];
    for i in 0..30u64 {
        reasons.push(at(&mut f, t2 + i * 1000, &reg));
    }
    let passed = reasons.iter().filter(|r| **r == REASON_PASS).count();
    let limited = reasons.iter().filter(|r| **r == REASON_RATELIMIT).count();
    let banned = reasons.iter().filter(|r| **r == REASON_BANNED).count();
    assert!(passed <= 5, "{reasons:?}");
    assert_eq!(limited, 10, "the 10th excess packet triggers the ban: {reasons:?}");
    assert_eq!(passed + limited + banned, 30);
    assert!(banned >= 15, "{reasons:?}");
    let st = f.stats().unwrap();
    assert_eq!(st.events[EVSTAT_BANS as usize], 1, "one ban installed");
    // Banned for ban_ttl, for every method; expires by itself.
    assert_eq!(at(&mut f, t2 + 59_000_000_000, &inv), REASON_BANNED);
    assert_eq!(at(&mut f, t2 + 61_000_000_000, &inv), REASON_PASS);
    // Another source is unaffected.
    let other = udp("203.0.113.51", 5060, &register("Linphone/5.2")).build();
    assert_eq!(at(&mut f, t2 + 100, &other), REASON_PASS);
}

#[test]
fn ipv6_sources_share_a_bucket_per_64() {
    if !require_root("ipv6_sources_share_a_bucket_per_64") {
        return;
    }
    let mut f = filter_with(RL);
    let t0 = clock_ns();
    // Rotating addresses inside one /64 share one bucket.
    for i in 0..5u64 {
        let p = udp(&format!("2001:db8:1:2::{:x}", i + 1), 5060, &register("Linphone")).build();
        assert_eq!(at(&mut f, t0 + i, &p), REASON_PASS);
    }
    let p = udp("2001:db8:1:2::ffff", 5060, &register("Linphone")).build();
    assert_eq!(at(&mut f, t0 + 10, &p), REASON_RATELIMIT);
    // Another /64 has its own bucket.
    let q = udp("2001:db8:1:3::1", 5060, &register("Linphone")).build();
    assert_eq!(at(&mut f, t0 + 11, &q), REASON_PASS);
    // Ban of the whole /64 after 10 excess packets.
    for i in 0..12u64 {
        let p = udp(&format!("2001:db8:1:2::{:x}", 0x100 + i), 5060, &register("Linphone")).build();
        at(&mut f, t0 + 20 + i, &p);
    }
    let p = udp("2001:db8:1:2:aaaa::1", 5060, &SipMessage::request("OPTIONS", "1", "x").build()).build();
    assert_eq!(at(&mut f, t0 + 100, &p), REASON_BANNED, "the /64 is banned");
    let bans = sipshield::bans::list(&f).unwrap();
    assert!(bans.iter().any(|b| b.address == "2001:db8:1:2::" && b.prefix == 64), "{bans:?}");
}

/// The kernel and the userspace model agree on a spread of generated messages.
#[test]
fn kernel_scan_matches_the_model() {
    if !require_root("kernel_scan_matches_the_model") {
        return;
    }
    let mut f = filter_with("");
    let sigs = sig::read(&f).unwrap();
    let uas = [
        "friendly-scanner",
        "Friendly-Scanner-2",
        "friendly-scanne",
        "sipvicious",
        "xsipvicious",
        "SIPScan",
        "sip-scan",
        "Zoiper",
        "pplsip",
        "smap 0.6",
        "s",
        "",
    ];
    let methods = ["REGISTER", "INVITE", "OPTIONS", "SUBSCRIBE", "NOTIFY", "FOO"];
    let mut n = 0;
    for (i, ua) in uas.iter().enumerate() {
        for (j, m) in methods.iter().enumerate() {
            for &offset in &[0usize, 300, 700, 1100, 1300] {
                let mut msg = SipMessage::request(m, "100", "example.com").user_agent(ua);
                if offset > 0 {
                    msg = msg.user_agent_at(offset);
                }
                if (i + j) % 3 == 0 {
                    msg = msg.compact();
                }
                let payload = msg.build();
                let (_, want) = model_scan(&payload, &sigs);
                let frame = udp("203.0.113.9", 5060, &payload).build();
                let action = f.test_run(&frame).unwrap();
                let kernel_drop = action == sipshield::filter::XDP_DROP;
                assert_eq!(
                    kernel_drop,
                    want.is_some(),
                    "method {m} ua {ua:?} offset {offset}: kernel {kernel_drop}, model {want:?}\n{}",
                    String::from_utf8_lossy(&payload)
                );
                n += 1;
            }
        }
    }
    assert_eq!(n, uas.len() * methods.len() * 5);
}

/// Sources spoofed into the very set of a flooder's bucket (found with the table's seed) evict
/// one another, not the flooder: a bucket counting excess is replaced last, so spraying
/// one-packet sources cannot reset a flooder's history (with plain LRU it would be gone after
/// the fourth).
#[test]
fn spoofed_churn_in_a_set_keeps_a_flooders_history() {
    if !require_root("spoofed_churn_in_a_set_keeps_a_flooders_history") {
        return;
    }
    let mut f = filter_with(RL);
    let t0 = clock_ns();
    let payload = register("Linphone/5.2");
    let flooder: std::net::Ipv4Addr = "203.0.113.99".parse().unwrap();
    let reg = udp(&flooder.to_string(), 5060, &payload).build();
    let seen: Vec<u32> = (0..8).map(|_| at(&mut f, t0, &reg)).collect();
    assert_eq!(
        seen,
        [REASON_PASS; 5].iter().chain(&[REASON_RATELIMIT; 3]).copied().collect::<Vec<_>>(),
        "burst of 5, then limited"
    );
    let seed = f.rate_seed().unwrap();
    assert_ne!(seed, 0, "the table is seeded at load");
    let tag = rl_tag(FAMILY_V4, METHOD_REGISTER);
    let key = |a: std::net::Ipv4Addr| {
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&a.octets());
        rl_addr(FAMILY_V4, src, 64)
    };
    let set = rl_set(key(flooder), tag, seed);
    // Sources hashing into the flooder's set (BPF_PROG_TEST_RUN only: nothing is sent anywhere).
    let colliders: Vec<std::net::Ipv4Addr> = (0x0a00_0000u32..)
        .map(std::net::Ipv4Addr::from)
        .filter(|a| rl_set(key(*a), tag, seed) == set)
        .take(3 * RL_WAYS)
        .collect();
    for c in &colliders {
        let fr = udp(&c.to_string(), 5060, &payload).build();
        assert_eq!(at(&mut f, t0, &fr), REASON_PASS, "a new source {c} gets a bucket, even in a full set");
    }
    assert_eq!(
        at(&mut f, t0, &reg),
        REASON_RATELIMIT,
        "the flooder's bucket survived {} spoofed sources in its set",
        colliders.len()
    );
    // Its excess count survived too: the ban comes at ban_after = 10 excess packets as usual.
    let until_ban: Vec<u32> = (0..6).map(|_| at(&mut f, t0, &reg)).collect();
    assert_eq!(until_ban, [REASON_RATELIMIT; 6], "excess 5..10 (the 10th installs the ban)");
    assert_eq!(at(&mut f, t0, &reg), REASON_BANNED, "banned after the 10th excess packet");
}

/// A spoofed flood from a million random sources: the rate-limit state is a fixed-size table
/// (RL_CAPACITY buckets, preallocated), so memory cannot grow; evicted buckets only forget an
/// attacker's history, and a legitimate client never loses more than its own fresh bucket.
#[test]
fn a_million_spoofed_sources_cannot_exhaust_state() {
    if !require_root("a_million_spoofed_sources_cannot_exhaust_state") {
        return;
    }
    let mut f = filter_with(RL);
    let t0 = clock_ns();
    let payload = register("Linphone");
    let mut frame = udp("10.0.0.1", 5060, &payload).build();
    let legit = udp("198.51.100.10", 5060, &register("Yealink SIP-T46S 66.86.0.15")).build();
    let mut x: u32 = 0x1234_5678;
    f.update_config(|c| c.clock_ns = t0).unwrap();
    let t = std::time::Instant::now();
    for i in 0..1_000_000u32 {
        // xorshift: pseudo-random, never repeating within the run
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        frame[14 + 12..14 + 16].copy_from_slice(&x.to_be_bytes());
        // IPv4 checksum is not checked by the program; keep the frame otherwise identical.
        let a = f.test_run(&frame).unwrap();
        assert_eq!(a, sipshield::filter::XDP_PASS, "spoofed source {i} (one packet each) must not be limited");
        if i % 100_000 == 0 {
            // The legitimate phone registers once a second (program clock), during the flood.
            f.update_config(|c| c.clock_ns = t0 + (i as u64 / 100_000) * 1_000_000_000).unwrap();
            assert_eq!(f.test_run(&legit).unwrap(), sipshield::filter::XDP_PASS, "legit client during the flood");
        }
    }
    let elapsed = t.elapsed();
    let entries = f.rate_buckets_in_use().unwrap();
    eprintln!(
        "1M spoofed sources in {:.2}s: rate-limit table holds {entries} buckets (capacity {RL_CAPACITY})",
        elapsed.as_secs_f64()
    );
    assert!(entries > RL_CAPACITY as usize * 9 / 10, "the table should be full of the flood's buckets");
    // The legitimate client is still served, and a real flooder is still caught afterwards.
    f.update_config(|c| c.clock_ns = t0 + 20_000_000_000).unwrap();
    assert_eq!(f.test_run(&legit).unwrap(), sipshield::filter::XDP_PASS);
    let flooder = udp("203.0.113.99", 5060, &payload).build();
    let mut limited = 0;
    for _ in 0..10 {
        if f.test_run(&flooder).unwrap() == sipshield::filter::XDP_DROP {
            limited += 1;
        }
    }
    assert_eq!(limited, 5, "burst of 5 then limited, even with the map full");
}

/// A message with this first line and a scanner's User-Agent.
fn scanner_after(first_line: &str) -> Vec<u8> {
    format!("{first_line}\r\nVia: SIP/2.0/UDP 203.0.113.5:5060\r\nUser-Agent: friendly-scanner\r\n\r\n").into_bytes()
}

/// RFC 3261 extension methods: any `token SP Request-URI SP SIP/2.0` line is a request and gets
/// the signatures and the `any` rate rule like REGISTER or OPTIONS; responses and lines that are
/// not request lines do not.
#[test]
fn extension_methods_are_requests() {
    if !require_root("extension_methods_are_requests") {
        return;
    }
    let mut f = filter_with(SCANNERS);
    use Want::*;
    let src = "203.0.113.5";
    let ext = |m: &str| SipMessage::request(m, "100", "example.com").user_agent("friendly-scanner").build();
    let long = format!("FOO sip:{}@example.com SIP/2.0", "1".repeat(1600));
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("extension method", udp(src, 5060, &ext("PING")).build(), Drop(REASON_SCANNER)),
        ("one-letter method", udp(src, 5060, &ext("X")).build(), Drop(REASON_SCANNER)),
        ("lower-case method (a token too)", udp(src, 5060, &ext("foo")).build(), Drop(REASON_SCANNER)),
        ("every token character", udp(src, 5060, &ext("a1.b!%*_+`'~-Z")).build(), Drop(REASON_SCANNER)),
        ("two-letter method, IPv6", udp("2001:db8:9::9", 5060, &ext("AB")).build(), Drop(REASON_SCANNER)),
        (
            "LF line ends",
            udp(src, 5060, b"FOO sip:x SIP/2.0\nUser-Agent: friendly-scanner\n\n").build(),
            Drop(REASON_SCANNER),
        ),
        (
            "over TCP",
            PacketBuilder::tcp(ip(src), ip("198.51.100.2"), 40000, 5060).payload(&ext("PING")).build(),
            Drop(REASON_SCANNER),
        ),
        ("known method still", udp(src, 5060, &ext("OPTIONS")).build(), Drop(REASON_SCANNER)),
        // Not request lines: passed uninspected.
        ("response", udp(src, 5060, &scanner_after("SIP/2.0 200 OK")).build(), Pass(REASON_PASS)),
        ("no SIP version", udp(src, 5060, &scanner_after("FOO sip:x")).build(), Pass(REASON_PASS)),
        ("other version", udp(src, 5060, &scanner_after("FOO sip:x SIP/2.1")).build(), Pass(REASON_PASS)),
        ("text after the version", udp(src, 5060, &scanner_after("FOO sip:x SIP/2.0 x")).build(), Pass(REASON_PASS)),
        ("no Request-URI", udp(src, 5060, &scanner_after("FOO SIP/2.0")).build(), Pass(REASON_PASS)),
        ("two spaces", udp(src, 5060, &scanner_after("FOO  sip:x SIP/2.0")).build(), Pass(REASON_PASS)),
        ("not a token", udp(src, 5060, &scanner_after("FO(O) sip:x SIP/2.0")).build(), Pass(REASON_PASS)),
        ("leading space", udp(src, 5060, &scanner_after(" FOO sip:x SIP/2.0")).build(), Pass(REASON_PASS)),
        ("request line past the inspected bytes", udp(src, 5060, &scanner_after(&long)).build(), Pass(REASON_PASS)),
        ("binary", udp(src, 5060, &[0xffu8; 64]).build(), Pass(REASON_PASS)),
    ];
    check_table(&mut f, &table);

    // The `any` rule counts extension requests, not responses or other payloads.
    let rl = "[scanners]\nenabled = false\n[ratelimit.any]\nrate = 1\nburst = 2\n";
    let t0 = clock_ns();
    let cases: [(&str, Vec<u8>, [u32; 3]); 4] = [
        ("extension", ext("PING"), [REASON_PASS, REASON_PASS, REASON_RATELIMIT]),
        ("lower-case", ext("ping"), [REASON_PASS, REASON_PASS, REASON_RATELIMIT]),
        ("response", scanner_after("SIP/2.0 404 Not Found"), [REASON_PASS; 3]),
        ("not a request line", scanner_after("PING sip:x"), [REASON_PASS; 3]),
    ];
    for (name, payload, want) in cases {
        let mut f = filter_with(rl);
        let frame = udp("203.0.113.77", 5060, &payload).build();
        let got: Vec<u32> = (0..3).map(|i| at(&mut f, t0 + i, &frame)).collect();
        assert_eq!(got, want, "{name}");
    }
}
