//! `sipshield replay`: a capture through the real program with the maps filled from a config,
//! with the capture's timestamps driving rate limits; every capture format and link type the
//! reader takes; the output (JSON fields, summary, dropped frames as pcap); capture errors.
use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;
use sipshield::replay::capture::Capture;
use sipshield_tests::captures::{self, Iface};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;

const CONFIG: &str = "[blacklist]\nentries = [\"203.0.113.66\"]\n[ratelimit.register]\nrate = 2\nburst = 2\nban_after = 3\nban_ttl = \"1m\"\n";

fn reg(src: &str, ua: &str) -> Vec<u8> {
    PacketBuilder::udp(ip(src), ip("198.51.100.2"), 5070, 5060)
        .payload(&SipMessage::request("REGISTER", "1", "example.com").user_agent(ua).build())
        .build()
}

/// Capture time `ms` milliseconds into the trace, ns since the epoch.
fn t(ms: u64) -> u64 {
    (1_700_000_000_000 + ms) * 1_000_000
}

/// The scenario: (time, Ethernet frame, expected verdict, reason).
fn scenario() -> Vec<(u64, Vec<u8>, &'static str, &'static str)> {
    let mut s = vec![
        (t(0), reg("203.0.113.10", "Linphone"), "pass", "pass"),
        (t(1), reg("203.0.113.66", "Linphone"), "drop", "blacklisted"),
        (t(2), reg("203.0.113.11", "friendly-scanner"), "drop", "scanner"),
        (
            t(3),
            PacketBuilder::udp(ip("2001:db8::9"), ip("2001:db8::2"), 1, 5060)
                .payload(&SipMessage::request("OPTIONS", "a", "x").build())
                .build(),
            "pass",
            "pass",
        ),
    ];
    // A flood from .20 within 10 ms: 2 pass, then excess, ban after 3 excess, then banned.
    let flood = [("pass", "pass"), ("pass", "pass"), ("drop", "ratelimit"), ("drop", "ratelimit")];
    let flood =
        flood.iter().chain(&[("drop", "ratelimit"), ("drop", "banned"), ("drop", "banned"), ("drop", "banned")]);
    for (i, (v, r)) in flood.enumerate() {
        s.push((t(10 + i as u64), reg("203.0.113.20", "Linphone"), *v, *r));
    }
    // One per second from .21 — at the configured rate: all pass (timestamps drive the clock).
    for i in 0..5 {
        s.push((t(100 + i * 1000), reg("203.0.113.21", "Linphone"), "pass", "pass"));
    }
    s
}

fn replay(cfg: &Path, cap: &Path, extra: &[&str]) -> Output {
    Command::new(sipshield_bin()).args(["replay", "--config"]).arg(cfg).arg(cap).args(extra).output().unwrap()
}

fn json_lines(out: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("JSON line")).collect()
}

/// Every format and link type: the scenario written as it, replayed, gives the same verdicts.
#[test]
fn every_capture_format_replays_the_same() {
    if !require_root("every_capture_format_replays_the_same") {
        return;
    }
    let dir = sipshield_tests::tmp::dir("replay-formats");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let sc = scenario();
    let framed = |lt: u32| -> Vec<(u64, Vec<u8>)> {
        sc.iter().map(|(ts, f, _, _)| (*ts, captures::relink(lt, f, false))).collect()
    };
    // (name, writer)
    type Write<'a> = Box<dyn Fn(&Path) + 'a>;
    let mut cases: Vec<(String, Write<'_>)> = vec![];
    for (lt, name) in [
        (captures::ETHERNET, "ethernet"),
        (captures::SLL, "sll"),
        (captures::SLL2, "sll2"),
        (captures::NULL, "null"),
        (captures::LOOP, "loop"),
        (captures::RAW, "raw"),
        (captures::DLT_RAW_12, "dlt-raw-12"),
        (captures::DLT_RAW_14, "dlt-raw-14"),
    ] {
        for nanos in [false, true] {
            let frames = framed(lt);
            cases.push((
                format!("pcap {name} {}", if nanos { "ns" } else { "µs" }),
                Box::new(move |p: &Path| captures::write_pcap(p, lt, nanos, &frames)),
            ));
        }
    }
    // IPV4/IPV6: one family each, on the interface of its own link type.
    // pcapng: four interfaces, each with its link type and resolution; packets spread over them.
    let ifaces = [
        Iface { linktype: captures::ETHERNET, tsresol: 9 },
        Iface { linktype: captures::SLL2, tsresol: 6 },
        Iface { linktype: captures::IPV4, tsresol: 0x80 | 30 },
        Iface { linktype: captures::IPV6, tsresol: 3 },
    ];
    let packets: Vec<(u32, u64, Vec<u8>)> = sc
        .iter()
        .enumerate()
        .map(|(i, (ts, f, _, _))| {
            let v6 = f[12..14] == [0x86, 0xdd];
            let iface = if v6 { 3 } else { (i % 3) as u32 };
            (iface, *ts, captures::relink(ifaces[iface as usize].linktype, f, false))
        })
        .collect();
    cases.push((
        "pcapng ethernet/sll2/ipv4/ipv6".into(),
        Box::new(move |p: &Path| captures::write_pcapng(p, &ifaces, &packets)),
    ));

    for (name, write) in &cases {
        let cap = dir.join("c.cap");
        write(&cap);
        let out = replay(&cfg, &cap, &["--json"]);
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let lines = json_lines(&out);
        let got: Vec<(&str, &str)> =
            lines.iter().map(|l| (l["verdict"].as_str().unwrap(), l["reason"].as_str().unwrap())).collect();
        let want: Vec<(&str, &str)> = sc.iter().map(|(_, _, v, r)| (*v, *r)).collect();
        assert_eq!(got, want, "{name}");
        // The capture's own time (the ms timestamps are exact in every resolution but 2^-30 s,
        // which rounds down by at most 2 ns).
        for (l, (ts, ..)) in lines.iter().zip(&sc) {
            let when = humantime::parse_rfc3339(l["time"].as_str().unwrap()).unwrap();
            let ns = when.duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
            assert!(ns <= *ts && ts - ns <= 2, "{name}: {l} vs {ts}");
        }
        assert_eq!(lines[1]["src"], "203.0.113.66", "{name}");
        assert_eq!(lines[3]["src"], "2001:db8::9", "{name}");
        assert_eq!((lines[0]["index"].as_u64(), lines[0]["dport"].as_u64()), (Some(0), Some(5060)), "{name}");
        assert_eq!(lines[2]["method"], "REGISTER", "{name}");
        assert!(lines[2]["signature"].as_str().unwrap().contains("friendly-scanner"), "{name}: {}", lines[2]);
        assert!(lines[0].get("signature").is_none(), "{name}");
    }
}

/// Human output ends with the totals; `--summary` prints the table, `--summary --json` one
/// object; `--write-dropped` writes the dropped frames as a pcap tshark reads.
#[test]
fn summary_and_dropped_frames() {
    if !require_root("summary_and_dropped_frames") {
        return;
    }
    let dir = sipshield_tests::tmp::dir("replay-summary");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let sc = scenario();
    let cap = dir.join("c.pcap");
    let frames: Vec<(u64, Vec<u8>)> = sc.iter().map(|(ts, f, ..)| (*ts, f.clone())).collect();
    captures::write_pcap(&cap, captures::ETHERNET, false, &frames);

    let out = replay(&cfg, &cap, &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("total 17 packets: banned=3 blacklisted=1 pass=9 ratelimit=3 scanner=1"), "{text}");
    assert!(text.contains("method=REGISTER signature=\"user-agent: friendly-scanner\""), "{text}");

    let out = replay(&cfg, &cap, &["--summary"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("17 packets, 8 dropped\n"), "{text}");
    assert!(text.contains("  203.0.113.20                                  6        8\n"), "{text}");

    let dropped = dir.join("dropped.pcap");
    let out = replay(&cfg, &cap, &["--summary", "--json", "--write-dropped", dropped.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let sum: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((sum["packets"].as_u64(), sum["dropped"].as_u64()), (Some(17), Some(8)), "{sum}");
    assert_eq!(sum["reasons"]["ratelimit"], 3, "{sum}");
    assert_eq!(sum["top_sources"][0]["src"], "203.0.113.20", "{sum}");
    assert_eq!(sum["top_sources"][0]["dropped"], 6, "{sum}");
    assert_eq!(sum["top_signatures"][0][1], 1, "{sum}");

    // tshark opens it: the 8 dropped frames, their sources and capture times.
    let ts = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(&dropped)
        .args(["-T", "fields", "-e", "ip.src", "-e", "frame.time_epoch", "-e", "sip.Method"])
        .output()
        .expect("tshark");
    assert!(ts.status.success(), "{}", String::from_utf8_lossy(&ts.stderr));
    let rows: Vec<String> = String::from_utf8_lossy(&ts.stdout).lines().map(String::from).collect();
    let want: Vec<String> = sc
        .iter()
        .filter(|(_, _, v, _)| *v == "drop")
        .map(|(ts, f, ..)| {
            let src = std::net::Ipv4Addr::new(f[26], f[27], f[28], f[29]);
            format!("{src}\t{}.{:09}\tREGISTER", ts / 1_000_000_000, ts % 1_000_000_000)
        })
        .collect();
    assert_eq!(rows, want);
}

/// A truncated or corrupt capture: the verdicts so far, then an error naming the packet index
/// and byte offset, and a non-zero exit.
#[test]
fn broken_captures_fail_after_the_verdicts_so_far() {
    if !require_root("broken_captures_fail_after_the_verdicts_so_far") {
        return;
    }
    let dir = sipshield_tests::tmp::dir("replay-broken");
    let cfg = dir.join("c.toml");
    std::fs::write(&cfg, CONFIG).unwrap();
    let frames: Vec<(u64, Vec<u8>)> = (0..5).map(|i| (t(i), reg("203.0.113.10", "Linphone"))).collect();
    let whole = dir.join("whole.pcap");
    captures::write_pcap(&whole, captures::ETHERNET, false, &frames);
    let bytes = std::fs::read(&whole).unwrap();
    let rec = 16 + frames[0].1.len();
    // (what, file contents, verdict lines printed, error text)
    let mut bad_len = bytes.clone();
    // Record 3's captured length: larger than its original length.
    let at = 24 + 3 * rec + 8;
    bad_len[at..at + 4].copy_from_slice(&100_000u32.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, usize, String)> = vec![
        (
            "cut inside the last record",
            bytes[..bytes.len() - 10].to_vec(),
            4,
            format!(
                "packet 4 at byte offset {}: truncated: the capture ends {} bytes into this record",
                24 + 4 * rec,
                rec - 10
            ),
        ),
        (
            "cut inside a record header",
            bytes[..24 + 2 * rec + 7].to_vec(),
            2,
            format!("packet 2 at byte offset {}: truncated", 24 + 2 * rec),
        ),
        ("corrupt length", bad_len, 3, format!("packet 3 at byte offset {}: truncated", 24 + 3 * rec)),
    ];
    for (name, data, n, err) in cases {
        let cap = dir.join("broken.pcap");
        std::fs::write(&cap, &data).unwrap();
        let out = replay(&cfg, &cap, &["--json"]);
        assert!(!out.status.success(), "{name}");
        assert_eq!(json_lines(&out).len(), n, "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("broken.pcap: {err}")), "{name}: {stderr}");
        // Human output: the verdicts and the totals, then the error.
        let out = replay(&cfg, &cap, &[]);
        assert!(!out.status.success(), "{name}");
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("total {n} packets")), "{name}");
    }
}

/// What is not a capture, or not a link type replay reads, is named in the error.
#[test]
fn unreadable_captures_are_named() {
    let dir = sipshield_tests::tmp::dir("replay-unsupported");
    let open_err = |data: &[u8]| Capture::new("x.cap", data).err().map(|e| e.to_string());
    assert_eq!(
        open_err(b"not a capture").as_deref(),
        Some("x.cap: not a pcap or pcapng capture (magic number 0x6e6f7420)")
    );
    assert_eq!(open_err(b"ab").as_deref(), Some("x.cap: not a pcap or pcapng capture (only 2 bytes)"));
    let p = dir.join("wifi.pcap");
    captures::write_pcap(&p, 105, false, &[(t(0), vec![0; 40])]);
    let e = Capture::open(&p).err().unwrap().to_string();
    assert!(e.contains("wifi.pcap: link type 105 (IEEE802_11) is not supported; replay reads Ethernet (1)"), "{e}");
    // pcapng: the interface of an unsupported type fails at its first packet, after the others.
    let p = dir.join("mixed.pcapng");
    let eth = reg("203.0.113.10", "Linphone");
    captures::write_pcapng(
        &p,
        &[Iface { linktype: captures::ETHERNET, tsresol: 6 }, Iface { linktype: 147, tsresol: 6 }],
        &[(0, t(0), eth.clone()), (1, t(1), eth.clone())],
    );
    let got: Vec<Result<usize, String>> =
        Capture::open(&p).unwrap().map(|f| f.map(|f| f.index).map_err(|e| e.to_string())).collect();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0], Ok(0));
    let e = got[1].clone().unwrap_err();
    assert!(e.contains("mixed.pcapng: packet 1 at byte offset"), "{e}");
    assert!(e.contains("interface 1: link type 147 (USER0) is not supported"), "{e}");
}

/// The reader alone: each link type's frame comes out as the Ethernet frame XDP would see
/// (synthesised addresses aside), with its capture time and direction.
#[test]
fn reader_synthesises_ethernet() {
    let dir = sipshield_tests::tmp::dir("replay-reader");
    let v4 = reg("203.0.113.10", "Linphone");
    let tagged = PacketBuilder::udp(ip("203.0.113.10"), ip("198.51.100.2"), 5070, 5060).vlan(7).payload(b"x").build();
    let v6 = PacketBuilder::udp(ip("2001:db8::9"), ip("2001:db8::2"), 1, 5060).payload(b"y").build();
    // (link type, frames it can carry, keeps the source MAC)
    let cases: Vec<(u32, Vec<&Vec<u8>>, bool)> = vec![
        (captures::ETHERNET, vec![&v4, &tagged, &v6], true),
        (captures::SLL, vec![&v4, &tagged, &v6], true),
        (captures::SLL2, vec![&v4, &tagged, &v6], true),
        (captures::NULL, vec![&v4, &v6], false),
        (captures::LOOP, vec![&v4, &v6], false),
        (captures::RAW, vec![&v4, &v6], false),
        (captures::IPV4, vec![&v4], false),
        (captures::IPV6, vec![&v6], false),
    ];
    for (lt, frames, mac) in cases {
        for nanos in [false, true] {
            let p = dir.join("r.pcap");
            let ts = t(5) + if nanos { 123 } else { 0 };
            let written: Vec<(u64, Vec<u8>)> = frames.iter().map(|f| (ts, captures::relink(lt, f, false))).collect();
            captures::write_pcap(&p, lt, nanos, &written);
            let got: Vec<_> = Capture::open(&p).unwrap().map(|f| f.unwrap()).collect();
            assert_eq!(got.len(), frames.len(), "link type {lt}");
            for (g, f) in got.iter().zip(&frames) {
                assert_eq!(g.eth[12..], f[12..], "link type {lt}: EtherType, tags and packet");
                if mac {
                    assert_eq!(g.eth[6..12], f[6..12], "link type {lt}: source MAC");
                } else {
                    assert_eq!(g.eth[..12], [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1], "link type {lt}: synthesised MACs");
                }
                assert_eq!((g.ts_ns, g.linktype, g.outgoing), (ts, lt, false), "link type {lt}");
                assert_eq!(g.wire_len as usize, g.eth.len(), "link type {lt}");
            }
        }
    }
    // Cooked frames the host sent are marked (they never met the ingress hook).
    for lt in [captures::SLL, captures::SLL2] {
        let p = dir.join("out.pcap");
        captures::write_pcap(&p, lt, false, &[(t(0), captures::relink(lt, &v4, true))]);
        let f = Capture::open(&p).unwrap().next().unwrap().unwrap();
        assert!(f.outgoing, "link type {lt}");
    }
    // pcapng timestamp resolutions: 10^-n and 2^-n.
    for tsresol in [0u8, 3, 6, 9, 0x80 | 10, 0x80 | 30] {
        let p = dir.join("r.pcapng");
        let iface = Iface { linktype: captures::ETHERNET, tsresol };
        let ns = t(1234);
        captures::write_pcapng(&p, &[iface], &[(0, ns, v4.clone())]);
        let f = Capture::open(&p).unwrap().next().unwrap().unwrap();
        let exact = iface.units(ns) as u128 * 1_000_000_000;
        let want = if tsresol & 0x80 != 0 { exact >> (tsresol & 0x7f) } else { exact / 10u128.pow(tsresol as u32) };
        assert_eq!(f.ts_ns as u128, want, "tsresol {tsresol:#x}");
        assert!(ns - f.ts_ns < 1_000_000_000, "tsresol {tsresol:#x}");
    }
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
