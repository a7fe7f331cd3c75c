//! Header pipeline: every parsing case through the real program (BPF_PROG_TEST_RUN), checking
//! the verdict and the per-reason packet and byte counters.
use sipshield_tests::frames::{
    truncated, with_ethertype, with_ipv4_version_ihl, with_tcp_data_offset, with_udp_length, PacketBuilder, L4,
    TCP_ACK, TCP_PSH,
};
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::*;

fn sip() -> Vec<u8> {
    SipMessage::request("OPTIONS", "100", "198.51.100.2").via("203.0.113.9:5060").user_agent("Linphone/5.2").build()
}

fn udp4() -> PacketBuilder {
    PacketBuilder::udp(ip("203.0.113.9"), ip("198.51.100.2"), 5060, 5060).payload(&sip())
}
fn udp6() -> PacketBuilder {
    PacketBuilder::udp(ip("2001:db8:9::9"), ip("2001:db8::2"), 5060, 5060).payload(&sip())
}
fn tcp4() -> PacketBuilder {
    PacketBuilder::tcp(ip("203.0.113.9"), ip("198.51.100.2"), 40000, 5060)
}

/// A config whose blacklist lists the test sources, so "parsed correctly" shows as
/// `blacklisted` (the source address was found) and "not parsed" as `malformed`.
const LISTED: &str = "[blacklist]\nentries = [\"203.0.113.9\", \"2001:db8:9::9\"]\n";

#[test]
fn header_pipeline_table() {
    if !require_root("header_pipeline_table") {
        return;
    }
    let mut f = filter_with("");
    use Want::*;
    let arp = with_ethertype(&udp4().build(), 0x0806);
    let bad_version = with_ipv4_version_ihl(&udp4().build(), 5, 5);
    let short_ihl = with_ipv4_version_ihl(&udp4().build(), 4, 4); // < 20 bytes
    let ihl_past_end = truncated(&with_ipv4_version_ihl(&udp4().build(), 4, 15), 14 + 40); // 60-byte header
    let bad_doff = with_tcp_data_offset(&tcp4().payload(&sip()).build(), 4);
    let doff_past_end = with_tcp_data_offset(&tcp4().build(), 15); // 60-byte TCP header in a 20-byte segment
    let udp_len_bad = with_udp_length(&udp4().build(), 4);

    let frags4 = udp4().build_fragments(64, 7);
    let frags6 = udp6().build_fragments(64, 7);
    assert!(frags4.len() >= 2 && frags6.len() >= 2);
    let v6_ext = udp6().ipv6_ext(0, 0).ipv6_ext(43, 1).ipv6_ext(60, 0).build();
    let v6_trunc_ext = truncated(&udp6().ipv6_ext(60, 2).build(), 14 + 40 + 10);

    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("ipv4 udp", udp4().build(), Pass(REASON_PASS)),
        ("ipv4 tcp", tcp4().payload(&sip()).build(), Pass(REASON_PASS)),
        (
            "ipv4 tcp with options",
            PacketBuilder::new(
                ip("203.0.113.9"),
                ip("198.51.100.2"),
                L4::Tcp { sport: 1, dport: 5060, flags: TCP_PSH | TCP_ACK, data_offset_words: 8 },
            )
            .payload(&sip())
            .build(),
            Pass(REASON_PASS),
        ),
        ("ipv4 options (IHL 8)", udp4().ipv4_options(3).build(), Pass(REASON_PASS)),
        ("ipv4 icmp", PacketBuilder::new(ip("203.0.113.9"), ip("198.51.100.2"), L4::Icmp).build(), Pass(REASON_PASS)),
        ("802.1Q", udp4().vlan(100).build(), Pass(REASON_PASS)),
        ("802.1ad + 802.1Q", udp4().qinq(200, 100).build(), Pass(REASON_PASS)),
        ("ipv6 udp", udp6().build(), Pass(REASON_PASS)),
        ("ipv6 ext headers", v6_ext.clone(), Pass(REASON_PASS)),
        ("ipv6 vlan", udp6().vlan(7).build(), Pass(REASON_PASS)),
        ("ipv4 first fragment", frags4[0].clone(), Pass(REASON_PASS)),
        ("ipv4 later fragment", frags4[1].clone(), Pass(REASON_PASS)),
        ("ipv6 first fragment", frags6[0].clone(), Pass(REASON_PASS)),
        ("ipv6 later fragment", frags6[1].clone(), Pass(REASON_PASS)),
        ("non-IP (ARP ethertype)", arp, Pass(REASON_PASS)),
        // (Frames shorter than an Ethernet header never reach XDP; test_run refuses them too.)
        ("ethernet header only", truncated(&udp4().build(), 14), Pass(REASON_MALFORMED)),
        ("truncated vlan tag", truncated(&udp4().vlan(5).build(), 16), Pass(REASON_MALFORMED)),
        ("truncated ipv4 header", truncated(&udp4().build(), 14 + 12), Pass(REASON_MALFORMED)),
        ("ipv4 bad version", bad_version, Pass(REASON_MALFORMED)),
        ("ipv4 IHL < 5", short_ihl, Pass(REASON_MALFORMED)),
        ("ipv4 IHL past the end", ihl_past_end, Pass(REASON_MALFORMED)),
        ("truncated ipv6 header", truncated(&udp6().build(), 14 + 30), Pass(REASON_MALFORMED)),
        ("truncated udp header", truncated(&udp4().build(), 14 + 20 + 4), Pass(REASON_MALFORMED)),
        ("udp length < 8", udp_len_bad, Pass(REASON_MALFORMED)),
        (
            "truncated tcp header",
            truncated(&PacketBuilder::tcp(ip("203.0.113.9"), ip("198.51.100.2"), 1, 5060).build(), 14 + 20 + 10),
            Pass(REASON_MALFORMED),
        ),
        ("tcp data offset < 5", bad_doff, Pass(REASON_MALFORMED)),
        ("tcp data offset past the end", doff_past_end, Pass(REASON_MALFORMED)),
        ("truncated ipv6 ext header", v6_trunc_ext, Pass(REASON_MALFORMED)),
    ];
    check_table(&mut f, &table);

    // The same packets from a listed source: a parsed source address is checked against the
    // blacklist through every header layout (VLAN, options, extension headers, fragments).
    let mut f = filter_with(LISTED);
    let listed: Vec<(&str, Vec<u8>, Want)> = vec![
        ("listed ipv4", udp4().build(), Drop(REASON_BLACKLISTED)),
        ("listed ipv4 options", udp4().ipv4_options(10).build(), Drop(REASON_BLACKLISTED)),
        ("listed qinq", udp4().qinq(1, 2).build(), Drop(REASON_BLACKLISTED)),
        ("listed ipv6 ext", v6_ext, Drop(REASON_BLACKLISTED)),
        ("listed ipv6 behind an AH", udp6().ipv6_ah(4).build(), Drop(REASON_BLACKLISTED)),
        ("listed ipv4 later fragment", frags4[1].clone(), Drop(REASON_BLACKLISTED)),
        ("listed ipv6 later fragment", frags6[1].clone(), Drop(REASON_BLACKLISTED)),
        ("listed ipv4 truncated udp (source known)", truncated(&udp4().build(), 14 + 20 + 4), Drop(REASON_BLACKLISTED)),
        ("listed but truncated ipv4 header", truncated(&udp4().build(), 14 + 12), Pass(REASON_MALFORMED)),
    ];
    check_table(&mut f, &listed);
}

/// IPv6 with an Authentication Header (next header 51, length field in 4-octet units minus 2)
/// before UDP: the program must step over it to the SIP payload. A wrong AH length puts the
/// UDP header elsewhere, and the scanner is then missed.
#[test]
fn authentication_header_is_parsed_through() {
    if !require_root("authentication_header_is_parsed_through") {
        return;
    }
    let mut f = filter_with("");
    use Want::*;
    let scanner = || SipMessage::request("REGISTER", "100", "example.com").user_agent("friendly-scanner").build();
    let from = |port: u16| PacketBuilder::udp(ip("2001:db8:9::9"), ip("2001:db8::2"), 5070, port);
    let big = SipMessage::request("INVITE", "100", "example.com")
        .user_agent("friendly-scanner")
        .user_agent_at(100)
        .body(&"v=0\r\n".repeat(200))
        .build();
    let frags = from(5060).ipv6_ah(4).payload(&big).build_fragments(600, 11);
    assert!(frags.len() >= 2);
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("AH (96-bit ICV), legit UA", from(5060).ipv6_ah(4).payload(&sip()).build(), Pass(REASON_PASS)),
        ("AH (96-bit ICV), scanner UA", from(5060).ipv6_ah(4).payload(&scanner()).build(), Drop(REASON_SCANNER)),
        ("AH (256-bit ICV), scanner UA", from(5060).ipv6_ah(10).payload(&scanner()).build(), Drop(REASON_SCANNER)),
        ("AH, scanner UA to a non-SIP port", from(9999).ipv6_ah(4).payload(&scanner()).build(), Pass(REASON_PASS)),
        (
            "hop-by-hop + AH + destination options, scanner UA",
            from(5060).ipv6_ext(0, 0).ipv6_ah(4).ipv6_ext(60, 1).payload(&scanner()).build(),
            Drop(REASON_SCANNER),
        ),
        (
            "AH over 802.1ad + 802.1Q, scanner UA",
            from(5060).qinq(3, 4).ipv6_ah(4).payload(&scanner()).build(),
            Drop(REASON_SCANNER),
        ),
        ("AH + first fragment carries the UA", frags[0].clone(), Drop(REASON_SCANNER)),
        ("AH + later fragment", frags[1].clone(), Pass(REASON_PASS)),
        ("AH cut before its length field", truncated(&udp6().ipv6_ah(4).build(), 14 + 40 + 1), Pass(REASON_MALFORMED)),
        ("AH cut inside its ICV", truncated(&udp6().ipv6_ah(4).build(), 14 + 40 + 16), Pass(REASON_MALFORMED)),
        ("AH longer than the frame", truncated(&udp6().ipv6_ah(60).build(), 14 + 40 + 200), Pass(REASON_MALFORMED)),
    ];
    check_table(&mut f, &table);
}

#[test]
fn drop_malformed_and_dry_run() {
    if !require_root("drop_malformed_and_dry_run") {
        return;
    }
    let mut f = filter_with("drop_malformed = true\n");
    check(&mut f, "malformed dropped", &truncated(&udp4().build(), 20), Want::Drop(REASON_MALFORMED));
    check(&mut f, "good passes", &udp4().build(), Want::Pass(REASON_PASS));

    // Dry run: counted under the reason, but passed.
    let mut f = filter_with(&format!("dry_run = true\n{LISTED}"));
    check(&mut f, "dry-run blacklisted", &udp4().build(), Want::Pass(REASON_BLACKLISTED));
    f.update_config(|c| c.flags &= !CFG_DRY_RUN).unwrap();
    check(&mut f, "enforced blacklisted", &udp4().build(), Want::Drop(REASON_BLACKLISTED));
}

#[test]
fn counters_are_per_reason_packets_and_bytes() {
    if !require_root("counters_are_per_reason_packets_and_bytes") {
        return;
    }
    let mut f = filter_with(LISTED);
    let a = udp4().build();
    let b = PacketBuilder::udp(ip("198.51.100.50"), ip("198.51.100.2"), 1, 5060).payload(&sip()).build();
    for _ in 0..3 {
        f.test_run(&a).unwrap();
    }
    for _ in 0..2 {
        f.test_run(&b).unwrap();
    }
    let st = f.stats().unwrap();
    assert_eq!(st.reason_total(REASON_BLACKLISTED), Counter { packets: 3, bytes: 3 * a.len() as u64 });
    assert_eq!(st.reason_total(REASON_PASS), Counter { packets: 2, bytes: 2 * b.len() as u64 });
    assert_eq!(st.total_packets(), 5);
}
