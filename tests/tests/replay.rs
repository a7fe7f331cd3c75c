//! `sipshield replay`: a capture through the real program with the maps filled from a config,
//! with the capture's timestamps driving rate limits.
use std::borrow::Cow;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;

fn write_pcap(path: &std::path::Path, frames: &[(Duration, Vec<u8>)]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w =
        PcapWriter::with_header(file, PcapHeader { datalink: pcap_file::DataLink::ETHERNET, ..Default::default() })
            .unwrap();
    for (ts, f) in frames {
        w.write_packet(&PcapPacket { timestamp: *ts, orig_len: f.len() as u32, data: Cow::Borrowed(f) }).unwrap();
    }
}

#[test]
fn replay_reports_each_packet() {
    if !require_root("replay_reports_each_packet") {
        return;
    }
    let dir = sipshield_tests::tmp::dir("replay");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, "[blacklist]\nentries = [\"203.0.113.66\"]\n[ratelimit.register]\nrate = 2\nburst = 2\nban_after = 3\nban_ttl = \"1m\"\n").unwrap();
    let reg = |src: &str, ua: &str| {
        PacketBuilder::udp(ip(src), ip("198.51.100.2"), 5070, 5060)
            .payload(&SipMessage::request("REGISTER", "1", "example.com").user_agent(ua).build())
            .build()
    };
    let t = |ms: u64| Duration::from_millis(1_700_000_000_000 + ms);
    let mut frames = vec![
        (t(0), reg("203.0.113.10", "Linphone")),
        (t(1), reg("203.0.113.66", "Linphone")),
        (t(2), reg("203.0.113.11", "friendly-scanner")),
        (
            t(3),
            PacketBuilder::udp(ip("2001:db8::9"), ip("2001:db8::2"), 1, 5060)
                .payload(&SipMessage::request("OPTIONS", "a", "x").build())
                .build(),
        ),
    ];
    // A flood from .20 within 10 ms: 2 pass, then excess, ban after 3 excess, then banned.
    for i in 0..8 {
        frames.push((t(10 + i), reg("203.0.113.20", "Linphone")));
    }
    // One per second from .21 — at the configured rate: all pass (timestamps drive the clock).
    for i in 0..5 {
        frames.push((t(100 + i * 1000), reg("203.0.113.21", "Linphone")));
    }
    let cap = dir.join("c.pcap");
    write_pcap(&cap, &frames);
    let out = std::process::Command::new(sipshield_bin())
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg(&cap)
        .arg("--json")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect();
    assert_eq!(lines.len(), frames.len());
    let got: Vec<(String, String)> =
        lines.iter().map(|l| (l["verdict"].as_str().unwrap().into(), l["reason"].as_str().unwrap().into())).collect();
    let want: Vec<(&str, &str)> = vec![
        ("pass", "pass"),
        ("drop", "blacklisted"),
        ("drop", "scanner"),
        ("pass", "pass"),
        ("pass", "pass"),
        ("pass", "pass"),
        ("drop", "ratelimit"),
        ("drop", "ratelimit"),
        ("drop", "ratelimit"),
        ("drop", "banned"),
        ("drop", "banned"),
        ("drop", "banned"),
        ("pass", "pass"),
        ("pass", "pass"),
        ("pass", "pass"),
        ("pass", "pass"),
        ("pass", "pass"),
    ];
    let got_ref: Vec<(&str, &str)> = got.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
    assert_eq!(got_ref, want);
    assert_eq!(lines[1]["src"], "203.0.113.66");
    assert_eq!(lines[3]["src"], "2001:db8::9");
    assert_eq!(lines[0]["index"], 0);
    assert_eq!(lines[0]["dport"], 5060);

    // Human output ends with a summary.
    let out =
        std::process::Command::new(sipshield_bin()).args(["replay", "--config"]).arg(&cfg).arg(&cap).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("total 17 packets: pass=9 blacklisted=1 banned=3 scanner=1 ratelimit=3"), "{text}");

    // A file that is not a pcap is a clear error.
    let bogus = dir.join("bogus.pcap");
    std::fs::write(&bogus, b"not a capture").unwrap();
    let out = std::process::Command::new(sipshield_bin())
        .args(["replay", "--config"])
        .arg(&cfg)
        .arg(&bogus)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus.pcap: not a pcap file"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `frame_info` (etherparse, lax) names the endpoints of every layout the program parses.
#[test]
fn frame_info_names_the_endpoints() {
    use sipshield::replay::frame_info;
    use sipshield_tests::frames::{truncated, with_ethertype};
    let v4 = || PacketBuilder::udp(ip("203.0.113.9"), ip("198.51.100.2"), 5070, 5060).payload(&[7; 300]);
    let v6 = || PacketBuilder::udp(ip("2001:db8:9::9"), ip("2001:db8::2"), 5070, 5060).payload(&[7; 300]);
    let tcp = PacketBuilder::tcp(ip("2001:db8:9::9"), ip("2001:db8::2"), 40000, 5061).vlan(7).build();
    let frags4 = v4().ipv4_options(2).build_fragments(64, 1);
    let frags6 = v6().ipv6_ah(4).build_fragments(64, 1);
    // (what, frame, source shown, protocol, (sport, dport))
    type Case<'a> = (&'a str, Vec<u8>, Option<&'a str>, u8, (u16, u16));
    let cases: Vec<Case<'_>> = vec![
        ("ipv4 udp", v4().build(), Some("203.0.113.9"), 17, (5070, 5060)),
        ("ipv4 qinq + options", v4().qinq(1, 2).ipv4_options(3).build(), Some("203.0.113.9"), 17, (5070, 5060)),
        ("ipv6 tcp 802.1Q", tcp, Some("2001:db8:9::9"), 6, (40000, 5061)),
        (
            "ipv6 hop-by-hop + AH + destination options",
            v6().ipv6_ext(0, 0).ipv6_ah(4).ipv6_ext(60, 1).build(),
            Some("2001:db8:9::9"),
            17,
            (5070, 5060),
        ),
        ("ipv4 first fragment", frags4[0].clone(), Some("203.0.113.9"), 17, (5070, 5060)),
        ("ipv4 later fragment", frags4[1].clone(), Some("203.0.113.9"), 17, (0, 0)),
        ("ipv6 AH + first fragment", frags6[0].clone(), Some("2001:db8:9::9"), 17, (5070, 5060)),
        ("ipv6 AH + later fragment", frags6[1].clone(), Some("2001:db8:9::9"), 17, (0, 0)),
        ("truncated udp header", truncated(&v4().build(), 14 + 20 + 2), Some("203.0.113.9"), 17, (0, 0)),
        ("not IP", with_ethertype(&v4().build(), 0x0806), None, 0, (0, 0)),
        ("ethernet header only", truncated(&v4().build(), 14), None, 0, (0, 0)),
    ];
    for (name, frame, src, proto, ports) in cases {
        let i = frame_info(&frame);
        assert_eq!(i.src.map(|a| a.to_string()).as_deref(), src, "{name}: {i:?}");
        assert_eq!((i.proto, (i.sport, i.dport)), (proto, ports), "{name}: {i:?}");
    }
}
