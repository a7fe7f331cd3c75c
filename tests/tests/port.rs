//! Per-port policy (`[groups]`, `[[port]]`) and the toll-fraud guard (`[tollfraud]`) through
//! the real program (BPF_PROG_TEST_RUN): each row checks the verdict and the reason counter.
use std::net::IpAddr;
use std::path::Path;

use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};
use sipshield::config::Config;
use sipshield::portpolicy::{tollfraud_model, PortTables};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::*;

const SERVER: &str = "198.51.100.2";
const SERVER6: &str = "2001:db8::2";

const POLICY: &str = r#"
[sip]
ports = [5060, 5061, 5080]
[allowlist]
entries = ["203.0.113.200"]
[groups.trunks]
entries = ["198.51.100.0/28", "2001:db8:7::/48"]
[groups.offices]
entries = ["198.51.100.77", "2001:db8:8::1"]
[groups.admins]
entries = ["203.0.113.0/29"]
[[port]]
name = "management"
ports = [22, 443, 5001]
protocol = "tcp"
allow = ["admins"]
[[port]]
name = "trunks"
ports = [5060]
allow = ["trunks", "offices"]
methods = ["INVITE", "ACK", "BYE", "CANCEL", "OPTIONS"]
[[port]]
name = "range"
ports = ["6000-6010"]
protocol = "udp"
allow = ["offices"]
[[port]]
name = "mobile"
ports = [5080]
known = ["offices"]
unknown_options = "drop"
[tollfraud]
deny_prefixes = ["882", "+53", "44 90"]
"#;

fn server(src: &str) -> &'static str {
    if src.contains(':') {
        SERVER6
    } else {
        SERVER
    }
}

fn req(method: &str, uri: &str) -> Vec<u8> {
    SipMessage::request(method, "100", "example.com").uri(uri).user_agent("Yealink SIP-T46S").build()
}

fn udp(src: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::udp(ip(src), ip(server(src)), 5060, dport).payload(payload).build()
}

fn tcp(src: &str, dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::tcp(ip(src), ip(server(src)), 40000, dport).payload(payload).build()
}

fn invite() -> Vec<u8> {
    req("INVITE", "sip:200@example.com")
}

#[test]
fn port_rules_table() {
    if !require_root("port_rules_table") {
        return;
    }
    let mut f = filter_with(POLICY);
    use Want::*;
    let (trunk, trunk6, office, office6) = ("198.51.100.5", "2001:db8:7::9", "198.51.100.77", "2001:db8:8::1");
    let (stranger, stranger6, admin) = ("203.0.113.50", "2001:db8:9::9", "203.0.113.3");
    let register = SipMessage::request("REGISTER", "100", "example.com").build();
    let options = req("OPTIONS", "sip:example.com");
    let ok = SipMessage::response(200, "OK", "INVITE").build();
    let ssh = b"SSH-2.0-OpenSSH_9.2\r\n".to_vec();
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        // Trusted-only SIP port: groups by exact address and by range, both families, both protocols.
        ("trunk range udp", udp(trunk, 5060, &invite()), Pass(REASON_PASS)),
        ("trunk range tcp", tcp(trunk, 5060, &invite()), Pass(REASON_PASS)),
        ("trunk range first address", udp("198.51.100.0", 5060, &invite()), Pass(REASON_PASS)),
        ("trunk range last address", udp("198.51.100.15", 5060, &invite()), Pass(REASON_PASS)),
        ("one past the trunk range", udp("198.51.100.16", 5060, &invite()), Drop(REASON_PORT)),
        ("trunk ipv6 range", udp(trunk6, 5060, &invite()), Pass(REASON_PASS)),
        ("office exact", udp(office, 5060, &invite()), Pass(REASON_PASS)),
        ("office exact ipv6", tcp(office6, 5060, &invite()), Pass(REASON_PASS)),
        ("next to the office", udp("198.51.100.78", 5060, &invite()), Drop(REASON_PORT)),
        ("stranger udp", udp(stranger, 5060, &invite()), Drop(REASON_PORT)),
        ("stranger tcp", tcp(stranger, 5060, &invite()), Drop(REASON_PORT)),
        ("stranger ipv6", udp(stranger6, 5060, &invite()), Drop(REASON_PORT)),
        (
            "stranger behind a vlan tag",
            PacketBuilder::udp(ip(stranger), ip(SERVER), 5060, 5060).vlan(9).payload(&invite()).build(),
            Drop(REASON_PORT),
        ),
        ("stranger, non-SIP payload", udp(stranger, 5060, b"hello, world"), Drop(REASON_PORT)),
        ("allowlist passes everything", udp("203.0.113.200", 5060, &register), Pass(REASON_ALLOWLISTED)),
        ("admin on a SIP port", udp(admin, 5060, &invite()), Drop(REASON_PORT)),
        // Methods per port.
        ("trunk REGISTER", udp(trunk, 5060, &register), Drop(REASON_METHOD)),
        ("trunk REGISTER over tcp", tcp(trunk, 5060, &register), Drop(REASON_METHOD)),
        ("trunk OPTIONS", udp(trunk, 5060, &options), Pass(REASON_PASS)),
        ("trunk ACK", udp(trunk, 5060, &req("ACK", "sip:200@example.com")), Pass(REASON_PASS)),
        ("trunk SUBSCRIBE", udp(trunk, 5060, &req("SUBSCRIBE", "sip:200@example.com")), Drop(REASON_METHOD)),
        ("trunk unknown method", udp(trunk, 5060, &req("FOOBAR", "sip:200@example.com")), Drop(REASON_METHOD)),
        ("trunk response passes", udp(trunk, 5060, &ok), Pass(REASON_PASS)),
        ("trunk non-SIP payload passes", udp(trunk, 5060, b"\r\n\r\n keepalive"), Pass(REASON_PASS)),
        // No rule on 5061: open.
        ("stranger on 5061", udp(stranger, 5061, &register), Pass(REASON_PASS)),
        // Management ports: TCP only.
        ("admin ssh", tcp(admin, 22, &ssh), Pass(REASON_PASS)),
        ("admin range last", tcp("203.0.113.7", 443, &ssh), Pass(REASON_PASS)),
        ("one past the admin range", tcp("203.0.113.8", 443, &ssh), Drop(REASON_PORT)),
        ("stranger ssh", tcp(stranger, 22, &ssh), Drop(REASON_PORT)),
        ("trunk on a management port", tcp(trunk, 5001, &ssh), Drop(REASON_PORT)),
        ("stranger ssh over udp: no rule", udp(stranger, 22, &ssh), Pass(REASON_PASS)),
        ("stranger tcp 21: no rule", tcp(stranger, 21, &ssh), Pass(REASON_PASS)),
        // Port ranges.
        ("office range first", udp(office, 6000, b"rtp"), Pass(REASON_PASS)),
        ("stranger range first", udp(stranger, 6000, b"rtp"), Drop(REASON_PORT)),
        ("stranger range last", udp(stranger, 6010, b"rtp"), Drop(REASON_PORT)),
        ("stranger one past the range", udp(stranger, 6011, b"rtp"), Pass(REASON_PASS)),
        ("stranger one before the range", udp(stranger, 5999, b"rtp"), Pass(REASON_PASS)),
        ("stranger range over tcp: no rule", tcp(stranger, 6005, b"rtp"), Pass(REASON_PASS)),
        // Unknown OPTIONS on an open port.
        ("stranger OPTIONS", udp(stranger, 5080, &options), Drop(REASON_METHOD)),
        ("stranger OPTIONS ipv6", udp(stranger6, 5080, &options), Drop(REASON_METHOD)),
        ("office OPTIONS", udp(office, 5080, &options), Pass(REASON_PASS)),
        ("stranger REGISTER on the open port", udp(stranger, 5080, &register), Pass(REASON_PASS)),
        ("stranger INVITE on the open port", udp(stranger, 5080, &invite()), Pass(REASON_PASS)),
    ];
    check_table(&mut f, &table);
}

#[test]
fn tollfraud_table() {
    if !require_root("tollfraud_table") {
        return;
    }
    let mut f = filter_with(POLICY);
    use Want::*;
    let trunk = "198.51.100.5";
    let uri = |u: &str| format!("sip:{u}@example.com;user=phone");
    let cases: Vec<(&str, String, &str, Want)> = vec![
        ("+882", uri("+88212345678"), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("00882", uri("0088212345678"), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("011882", uri("01188212345678"), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("+53 with dashes", uri("+53-7-1234567"), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("00 53 with dots and parentheses", uri("(00) 53.7.123"), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("+44 90 (two-part prefix)", uri("+449012345"), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("+44 80: allowed", uri("+448012345"), "INVITE", Pass(REASON_PASS)),
        ("+1 212 with separators", uri("+1 (212) 555-0100"), "INVITE", Pass(REASON_PASS)),
        ("882 without international prefix", uri("88212345"), "INVITE", Pass(REASON_PASS)),
        ("an extension", uri("200"), "INVITE", Pass(REASON_PASS)),
        ("a name", "sip:alice@example.com".to_string(), "INVITE", Pass(REASON_PASS)),
        ("sips scheme", "sips:+88212345@example.com".to_string(), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("SIP scheme in capitals", "SIP:+88212345@example.com".to_string(), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("tel URI", "tel:+53-7-1234567".to_string(), "INVITE", Drop(REASON_TOLLFRAUD)),
        ("MESSAGE to +882", uri("+88212345678"), "MESSAGE", Drop(REASON_TOLLFRAUD)),
        ("OPTIONS to +882 is not a call", uri("+88212345678"), "OPTIONS", Pass(REASON_PASS)),
        ("a '+' inside ends the number", uri("1+882"), "INVITE", Pass(REASON_PASS)),
        ("a lone +", uri("+"), "INVITE", Pass(REASON_PASS)),
    ];
    let cfg = Config::parse(POLICY, Path::new("test.toml")).unwrap();
    let tf = cfg.tollfraud.as_ref().unwrap();
    let mut want_hits = [0u64; 4];
    let mut table: Vec<(&str, Vec<u8>, Want)> = vec![];
    for (name, u, method, want) in &cases {
        // The model agrees with the expected verdict.
        let user = u.split_once(':').unwrap().1;
        let model = tollfraud_model(tf, user).filter(|_| *method != "OPTIONS");
        assert_eq!(model.is_some(), matches!(want, Drop(_)), "{name}: model");
        if let Some(id) = model {
            want_hits[id as usize] += 1;
        }
        // A trunk on its port (MESSAGE is not one of its methods: 5061, which has no rule).
        let port = if *method == "MESSAGE" { 5061 } else { 5060 };
        table.push((name, udp(trunk, port, &req(method, u)), *want));
        // 5061 has no port rule: the guard applies to every SIP port.
        table.push((name, tcp("203.0.113.50", 5061, &req(method, u)), *want));
    }
    check_table(&mut f, &table);
    let hits: Vec<u64> = f.tollfraud_hits(4).unwrap().iter().map(|c| c.packets).collect();
    assert_eq!(hits, want_hits.iter().map(|n| n * 2).collect::<Vec<_>>(), "drops per rule");
    assert_eq!(hits[1..], [12, 6, 2], "882, 53, 44 90");

    // Allow-only: international numbers outside the allowed prefixes are dropped.
    let mut f =
        filter_with("[tollfraud]\nallow_prefixes = [\"33\", \"32\"]\ninternational_prefixes = [\"+\", \"00\"]\n");
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("allowed +33", udp(trunk, 5060, &req("INVITE", &uri("+33612345678"))), Pass(REASON_PASS)),
        ("allowed 0032", udp(trunk, 5060, &req("INVITE", &uri("0032 2 123 45 67"))), Pass(REASON_PASS)),
        ("+44 not allowed", udp(trunk, 5060, &req("INVITE", &uri("+442079460000"))), Drop(REASON_TOLLFRAUD)),
        ("00882 not allowed", udp(trunk, 5060, &req("MESSAGE", &uri("00882123"))), Drop(REASON_TOLLFRAUD)),
        ("national", udp(trunk, 5060, &req("INVITE", &uri("0612345678"))), Pass(REASON_PASS)),
        ("011 is not international here", udp(trunk, 5060, &req("INVITE", &uri("011882"))), Pass(REASON_PASS)),
    ];
    check_table(&mut f, &table);
    assert_eq!(f.tollfraud_hits(1).unwrap()[0].packets, 2, "allow-only misses are rule 0");
}

/// The kernel's group lookup agrees with the userspace model on nested ranges, exact
/// addresses inside ranges, and addresses around every boundary.
#[test]
fn group_membership_matches_the_model() {
    if !require_root("group_membership_matches_the_model") {
        return;
    }
    let toml = r#"
[sip]
ports = [5060]
[groups.a]
entries = ["10.0.0.0/8", "2001:db8::/32"]
[groups.b]
entries = ["10.1.0.0/16", "10.1.2.3", "2001:db8:1::/48"]
[groups.c]
entries = ["10.1.2.0/24", "2001:db8:1:2::5"]
[[port]]
ports = [7001]
allow = ["a"]
[[port]]
ports = [7002]
allow = ["b"]
[[port]]
ports = [7003]
allow = ["c"]
"#;
    let cfg = Config::parse(toml, Path::new("test.toml")).unwrap();
    let groups = sipshield::policy::read_groups(&cfg).unwrap();
    let tables = PortTables::new(&cfg, &groups).unwrap();
    let mut f = filter_with(toml);
    let probes = [
        "10.0.0.1",
        "9.255.255.255",
        "11.0.0.0",
        "10.1.0.0",
        "10.1.255.255",
        "10.2.0.0",
        "10.1.2.3",
        "10.1.2.4",
        "10.1.3.0",
        "10.1.1.255",
        "2001:db8::1",
        "2001:db9::1",
        "2001:db8:1::1",
        "2001:db8:1:2::5",
        "2001:db8:1:2::6",
        "2001:db8:2::5",
    ];
    for p in probes {
        let bits = tables.groups_of(p.parse::<IpAddr>().unwrap());
        for (i, port) in [7001u16, 7002, 7003].iter().enumerate() {
            let member = bits & (1 << i) != 0;
            let dst = if p.contains(':') { SERVER6 } else { SERVER };
            let frame = PacketBuilder::udp(ip(p), ip(dst), 1, *port).payload(b"x").build();
            let want = if member { Want::Pass(REASON_PASS) } else { Want::Drop(REASON_PORT) };
            check(&mut f, &format!("{p} to {port}"), &frame, want);
        }
    }
    // Spot checks of the model itself.
    let g = |s: &str| tables.groups_of(s.parse().unwrap());
    assert_eq!((g("10.1.2.3"), g("10.1.2.4"), g("10.1.3.1"), g("10.9.9.9")), (7, 7, 3, 1));
    assert_eq!(g("10.2.0.1"), 1);
    assert_eq!((g("2001:db8:1:2::5"), g("2001:db8:1::9"), g("2001:db8:5::1")), (7, 3, 1));
}

fn geo_db(dir: &Path) -> std::path::PathBuf {
    let mut w = Writer::builder("GeoLite2-Country").ip_version(IpVersion::V6).build();
    for (net, code) in [("198.51.100.0/24", "FR"), ("203.0.113.0/25", "CN"), ("203.0.113.128/26", "DE")] {
        let n: IpNet = net.parse().unwrap();
        w.insert_value(n, Value::map([("country", Value::map([("iso_code", Value::from(code))]))])).unwrap();
    }
    let path = dir.join("port.mmdb");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    path
}

#[test]
fn countries_per_port() {
    if !require_root("countries_per_port") {
        return;
    }
    let dir = tmp::dir("port-geo");
    let db = geo_db(dir.path());
    let toml = format!(
        "[sip]\nports = [5060, 5061]\n[geoip]\ndatabase = \"{}\"\ndeny_countries = [\"CN\"]\n[[port]]\nports = [5061]\nallow_countries = [\"FR\"]\n[[port]]\nports = [8443]\nprotocol = \"tcp\"\ndeny_countries = [\"DE\"]\n",
        db.display()
    );
    let mut f = filter_with(&toml);
    use Want::*;
    let (fr, cn, de, unknown) = ("198.51.100.7", "203.0.113.9", "203.0.113.130", "203.0.113.200");
    let register = SipMessage::request("REGISTER", "100", "example.com").build();
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("FR on 5061", udp(fr, 5061, &register), Pass(REASON_PASS)),
        ("DE on 5061", udp(de, 5061, &register), Drop(REASON_GEO)),
        ("DE on 5061 tcp", tcp(de, 5061, &register), Drop(REASON_GEO)),
        ("CN on 5061", udp(cn, 5061, &register), Drop(REASON_GEO)),
        ("not in the database on 5061 (unknown = allow)", udp(unknown, 5061, &register), Pass(REASON_PASS)),
        ("DE on 5060 (global policy only)", udp(de, 5060, &register), Pass(REASON_PASS)),
        ("CN on 5060 (global policy)", udp(cn, 5060, &register), Drop(REASON_GEO)),
        ("DE on 8443 (not a SIP port)", tcp(de, 8443, b"\x16\x03\x01"), Drop(REASON_GEO)),
        ("CN on 8443 (global scope is sip)", tcp(cn, 8443, b"\x16\x03\x01"), Pass(REASON_PASS)),
        ("FR on 8443", tcp(fr, 8443, b"\x16\x03\x01"), Pass(REASON_PASS)),
    ];
    check_table(&mut f, &table);
    let st = f.stats().unwrap();
    let de_idx = sipshield::countries::index_of("DE").unwrap() as usize;
    assert_eq!(st.countries[de_idx].packets, 3, "per-port drops are counted per country");
}

/// A rejected policy (overlap, unknown group, bad range) leaves the running one in place.
#[test]
fn bad_policies_change_nothing() {
    if !require_root("bad_policies_change_nothing") {
        return;
    }
    let mut f = filter_with(POLICY);
    let stranger = udp("203.0.113.50", 5060, &invite());
    check(&mut f, "before", &stranger, Want::Drop(REASON_PORT));
    let before = f.config().unwrap();
    for (bad, want) in [
        (
            format!("{POLICY}[[port]]\nname = \"dup\"\nports = [\"5050-5070\"]\nprotocol = \"udp\"\n"),
            "port[1] (\"trunks\") and port[4] (\"dup\") both cover udp port 5060",
        ),
        (
            POLICY.replace("allow = [\"trunks\", \"offices\"]", "allow = [\"trunk\"]"),
            "port[1] (\"trunks\").allow: unknown group \"trunk\"",
        ),
        (POLICY.replace("ports = [\"6000-6010\"]", "ports = [\"6010-6000\"]"), "range \"6010-6000\" is empty"),
    ] {
        let e = format!("{:#}", Config::parse(&bad, Path::new("bad.toml")).unwrap_err());
        assert!(e.contains(want), "{e} should contain {want}");
        assert_eq!(f.config().unwrap(), before, "the kernel config is untouched");
        check(&mut f, "after a rejected policy", &stranger, Want::Drop(REASON_PORT));
    }
}
