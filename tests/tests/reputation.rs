//! IP reputation: blacklist, allowlist and timed bans through the real program, generation
//! swaps, and bad input that must leave the live filter untouched.
use std::io::{Read, Write};
use std::time::Duration;

use sipshield::bans::{add as ban_add, del as ban_del, list as ban_list};
use sipshield::config::ListCfg;
use sipshield::filter::{clock_ns, Filter, ListKind};
use sipshield::lists::{self, IpList};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::*;

fn payload() -> Vec<u8> {
    SipMessage::request("OPTIONS", "100", "198.51.100.2").build()
}

fn from(src: &str) -> Vec<u8> {
    let dst = if src.contains(':') { "2001:db8::2" } else { "198.51.100.2" };
    PacketBuilder::udp(ip(src), ip(dst), 5070, 5060).payload(&payload()).build()
}

const CFG: &str = r#"
[blacklist]
entries = ["203.0.113.7", "203.0.113.128/25", "198.51.100.0/26", "2001:db8:bad::1", "2001:db8:bad:1::/64"]
[allowlist]
entries = ["198.51.100.10", "203.0.113.200/29", "2001:db8:bad:1::5"]
"#;

#[test]
fn reputation_table() {
    if !require_root("reputation_table") {
        return;
    }
    let mut f = filter_with(CFG);
    use Want::*;
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("v4 exact listed", from("203.0.113.7"), Drop(REASON_BLACKLISTED)),
        ("v4 inside listed /25", from("203.0.113.130"), Drop(REASON_BLACKLISTED)),
        ("v4 next to listed", from("203.0.113.8"), Pass(REASON_PASS)),
        ("v4 below listed /25", from("203.0.113.127"), Pass(REASON_PASS)),
        ("v6 exact listed", from("2001:db8:bad::1"), Drop(REASON_BLACKLISTED)),
        ("v6 inside listed /64", from("2001:db8:bad:1::99"), Drop(REASON_BLACKLISTED)),
        ("v6 unlisted", from("2001:db8:bad:2::1"), Pass(REASON_PASS)),
        ("allowlisted exact inside blacklisted /26", from("198.51.100.10"), Pass(REASON_ALLOWLISTED)),
        ("allowlisted range inside blacklisted /25", from("203.0.113.201"), Pass(REASON_ALLOWLISTED)),
        ("allowlisted v6 inside blacklisted /64", from("2001:db8:bad:1::5"), Pass(REASON_ALLOWLISTED)),
        ("blacklisted /26 not allowlisted", from("198.51.100.11"), Drop(REASON_BLACKLISTED)),
        (
            "listed behind 802.1Q",
            PacketBuilder::udp(ip("203.0.113.7"), ip("198.51.100.2"), 1, 5060).vlan(10).payload(&payload()).build(),
            Drop(REASON_BLACKLISTED),
        ),
        (
            "listed behind QinQ",
            PacketBuilder::udp(ip("2001:db8:bad::1"), ip("2001:db8::2"), 1, 5060)
                .qinq(10, 20)
                .payload(&payload())
                .build(),
            Drop(REASON_BLACKLISTED),
        ),
        (
            "allowlisted behind 802.1Q",
            PacketBuilder::udp(ip("198.51.100.10"), ip("198.51.100.2"), 1, 5060).vlan(10).payload(&payload()).build(),
            Pass(REASON_ALLOWLISTED),
        ),
    ];
    check_table(&mut f, &table);

    // Timed bans.
    for a in ["198.51.100.200", "2001:db8:5::5", "203.0.113.202", "198.51.100.10"] {
        ban_add(&mut f, ip(a), Duration::from_secs(60)).unwrap();
    }
    let table: Vec<(&str, Vec<u8>, Want)> = vec![
        ("banned v4", from("198.51.100.200"), Drop(REASON_BANNED)),
        ("banned v6", from("2001:db8:5::5"), Drop(REASON_BANNED)),
        ("banned v6 neighbour passes", from("2001:db8:5::6"), Pass(REASON_PASS)),
        ("banned inside allowlisted range: allowlist wins", from("203.0.113.202"), Pass(REASON_ALLOWLISTED)),
        ("banned and allowlisted exact: allowlist wins", from("198.51.100.10"), Pass(REASON_ALLOWLISTED)),
    ];
    check_table(&mut f, &table);
    let bans = ban_list(&f).unwrap();
    assert_eq!(bans.len(), 4, "{bans:?}");
    assert!(bans.iter().all(|b| b.expires_in > 50.0 && b.expires_in <= 60.0), "{bans:?}");

    // Expiry in the kernel, without userspace: move the program's clock past the deadline.
    f.update_config(|c| c.clock_ns = clock_ns() + 61_000_000_000).unwrap();
    check(&mut f, "expired v4 ban", &from("198.51.100.200"), Pass(REASON_PASS));
    check(&mut f, "expired v6 ban", &from("2001:db8:5::5"), Pass(REASON_PASS));
    f.update_config(|c| c.clock_ns = 0).unwrap();
    check(&mut f, "ban active again on the real clock", &from("198.51.100.200"), Drop(REASON_BANNED));
    assert!(ban_del(&mut f, ip("198.51.100.200")).unwrap());
    assert!(!ban_del(&mut f, ip("198.51.100.200")).unwrap());
    check(&mut f, "unbanned", &from("198.51.100.200"), Pass(REASON_PASS));
}

#[test]
fn swap_switches_generation_and_frees_the_old_one() {
    if !require_root("swap_switches_generation_and_frees_the_old_one") {
        return;
    }
    let mut f = filter_with("[blacklist]\nentries = [\"203.0.113.1\", \"203.0.113.2\", \"203.0.112.0/24\"]\n");
    let gen0 = f.config().unwrap().blacklist_gen;
    let new = lists::parse_list("203.0.113.2\n203.0.113.3\n2001:db8:9::/48\n", "new.txt", false).unwrap();
    let r = f.swap_list(ListKind::Blacklist, &new).unwrap();
    assert_eq!((r.v4, r.net6), (2, 1));
    assert_ne!(f.config().unwrap().blacklist_gen, gen0, "generation must flip");
    use Want::*;
    check(&mut f, "only in old list", &from("203.0.113.1"), Pass(REASON_PASS));
    check(&mut f, "old range gone", &from("203.0.112.9"), Pass(REASON_PASS));
    check(&mut f, "in both", &from("203.0.113.2"), Drop(REASON_BLACKLISTED));
    check(&mut f, "only in new", &from("203.0.113.3"), Drop(REASON_BLACKLISTED));
    check(&mut f, "new v6 range", &from("2001:db8:9:1::1"), Drop(REASON_BLACKLISTED));
    assert_eq!(f.read_list(ListKind::Blacklist).unwrap(), new);
    // The previous generation's maps are empty again.
    let old = gen0 & 1;
    let h: aya::maps::HashMap<_, [u8; 4], u32> =
        aya::maps::HashMap::try_from(f.map(&format!("BL_V4_{old}")).unwrap()).unwrap();
    assert_eq!(h.keys().count(), 0, "old generation not released");
}

#[test]
fn bad_input_keeps_the_last_good_state() {
    if !require_root("bad_input_keeps_the_last_good_state") {
        return;
    }
    let dir = sipshield_tests::tmp::dir("rep");
    let mut f = filter_with("[blacklist]\nentries = [\"203.0.113.1\"]\n[allowlist]\nentries = [\"198.51.100.10\"]\n");
    let good = f.read_list(ListKind::Blacklist).unwrap();

    // Malformed line: error names file and line; nothing changes.
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, "203.0.113.5\n# comment\n203.0.113.300\n").unwrap();
    let err = lists::read_list_file(&bad, &Default::default()).unwrap_err().to_string();
    assert!(err.contains("bad.txt:3") && err.contains("203.0.113.300"), "{err}");
    // skip_invalid reports instead.
    let l =
        lists::read_list_file(&bad, &sipshield::config::ListCfg { skip_invalid: true, ..Default::default() }).unwrap();
    assert_eq!((l.len(), l.skipped.len()), (1, 1));

    // Deleted file.
    let gone = dir.join("gone.txt");
    std::fs::write(&gone, "203.0.113.9\n").unwrap();
    std::fs::remove_file(&gone).unwrap();
    let err = lists::load_sources(&ListCfg {
        files: vec![gone.clone()],
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("gone.txt"), "{err}");

    // Unreachable URL (nothing listens on port 1 of loopback).
    let err = lists::load_sources(&ListCfg {
        urls: vec!["http://127.0.0.1:1/list.txt".into()],
        timeout: Duration::from_secs(2),
        ..Default::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("127.0.0.1:1") && err.contains("fetch failed"), "{err}");

    // Over capacity: the error names the list and the numbers; the live list is untouched.
    let mut huge = IpList::default();
    for i in 0..=AL_CAPACITY {
        huge.v4.insert((0x0a00_0000u32 + i).to_be_bytes());
    }
    let err = f.swap_list(ListKind::Allowlist, &huge).unwrap_err().to_string();
    assert!(
        err.contains("allowlist")
            && err.contains(&format!("{}", AL_CAPACITY + 1))
            && err.contains(&AL_CAPACITY.to_string()),
        "{err}"
    );
    check(&mut f, "allowlist still live", &from("198.51.100.10"), Want::Pass(REASON_ALLOWLISTED));
    check(&mut f, "blacklist still live", &from("203.0.113.1"), Want::Drop(REASON_BLACKLISTED));
    assert_eq!(f.read_list(ListKind::Blacklist).unwrap(), good);
}

#[test]
fn lists_fetch_over_http() {
    // A one-shot HTTP server on loopback serving a list.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf).unwrap();
        let body = "# feed\n203.0.113.44\n2001:db8:44::/48 ; range\n";
        write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
    });
    let url = format!("http://127.0.0.1:{port}/list.txt");
    let l = lists::load_sources(&ListCfg {
        urls: vec![url],
        entries: vec!["198.51.100.1".into()],
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .unwrap();
    server.join().unwrap();
    assert_eq!((l.v4.len(), l.net6.len()), (2, 1));
}

#[test]
fn table_overflow_path() {
    if !require_root("table_overflow_path") {
        return;
    }
    // 0.0.0.0 cannot live in the bucket table (0 marks an empty slot): it takes the overflow
    // hash, which the program then consults.
    let mut f = filter_with("[blacklist]\nentries = [\"0.0.0.0\", \"203.0.113.1\"]\n");
    assert_eq!(f.config().unwrap().bl4_overflow, 1);
    check(&mut f, "0.0.0.0 via overflow", &from("0.0.0.0"), Want::Drop(REASON_BLACKLISTED));
    check(&mut f, "table entry", &from("203.0.113.1"), Want::Drop(REASON_BLACKLISTED));
    let l = f.read_list(ListKind::Blacklist).unwrap();
    assert_eq!(l.v4.len(), 2);
    // Swapping to a list without overflow clears the flag.
    let l = lists::parse_list("203.0.113.2\n", "x", false).unwrap();
    f.swap_list(ListKind::Blacklist, &l).unwrap();
    assert_eq!(f.config().unwrap().bl4_overflow, 0);
    check(&mut f, "0.0.0.0 gone", &from("0.0.0.0"), Want::Pass(REASON_PASS));
}

#[test]
fn bucket_table_places_every_address() {
    let mut x: u32 = 0x9e37_79b9;
    let addrs: Vec<[u8; 4]> = (0..BL4_TABLE_CAPACITY)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x.to_be_bytes()
        })
        .collect();
    let (t, overflow) = sipshield::filter::build_table4(addrs.iter().copied());
    assert!(overflow.len() < 16, "{} of {} overflowed", overflow.len(), addrs.len());
    for a in addrs.iter().step_by(97) {
        let k = u32::from_ne_bytes(*a);
        let found =
            [bl4_hash1(k), bl4_hash2(k)].iter().any(|b| t[*b as usize].keys.contains(&k)) || overflow.contains(a);
        assert!(found, "{a:?} lost");
    }
}

#[test]
fn a_million_entries_fit() {
    if !require_root("a_million_entries_fit") {
        return;
    }
    let mut f = Filter::load_private().unwrap();
    let mut l = IpList::default();
    for i in 0..1_000_000u32 {
        l.v4.insert((0x2000_0000u32 + i * 7).to_be_bytes());
    }
    for i in 0..1000u32 {
        l.v6.insert(std::net::Ipv6Addr::new(0x2001, 0xdb8, 7, 0, 0, 0, 0, i as u16 + 1).octets());
        l.net4.insert(((0x4000_0000u32 + (i << 8)).to_be_bytes(), 24));
    }
    let cfg = sipshield::config::Config::parse("[sip]\nports = [5060]\n", std::path::Path::new("t.toml")).unwrap();
    sipshield::policy::apply_config(&mut f, &cfg).unwrap();
    let r = f.swap_list(ListKind::Blacklist, &l).unwrap();
    assert_eq!(r.v4, 1_000_000);
    // All of them fit the bucket table (no overflow at this load).
    assert_eq!(f.config().unwrap().bl4_overflow, 0);
    assert_eq!(f.read_list(ListKind::Blacklist).unwrap().v4.len(), 1_000_000);
    let listed = std::net::Ipv4Addr::from(0x2000_0000u32 + 999_999 * 7).to_string();
    check(&mut f, "last of 1M", &from(&listed), Want::Drop(REASON_BLACKLISTED));
    let unlisted = std::net::Ipv4Addr::from(0x2000_0000u32 + 999_999 * 7 + 1).to_string();
    check(&mut f, "between entries", &from(&unlisted), Want::Pass(REASON_PASS));
}

/// `BAN_PRESENT[family]`: whether the program looks up that ban map at all.
fn ban_flags(f: &Filter) -> [u32; 2] {
    let a: aya::maps::Array<_, u32> = aya::maps::Array::try_from(f.map("BAN_PRESENT").unwrap()).unwrap();
    [a.get(&BAN_PRESENT_V4, 0).unwrap(), a.get(&BAN_PRESENT_V6, 0).unwrap()]
}

/// The program's clock (jiffies calibrated against CLOCK_MONOTONIC at load) agrees with the
/// controller's: a 600 ms ban holds at once and has lapsed a second later, a 5 s ban still
/// holds. Empty ban maps are not looked up, and the flag follows the maps: set by a ban, cleared
/// by the sweep once the map is empty again.
#[test]
fn program_clock_and_ban_presence() {
    if !require_root("program_clock_and_ban_presence") {
        return;
    }
    let mut f = filter_with("[sip]\nports = [5060]\n");
    let clock = f.clock_params().unwrap();
    assert!(
        (1_000_000..=10_000_000).contains(&clock.jiffy_ns),
        "the clock was not calibrated to a kernel tick: jiffy_ns = {}",
        clock.jiffy_ns
    );
    assert_eq!(ban_flags(&f), [0, 0], "a fresh filter has no bans to look up");
    use Want::*;
    ban_add(&mut f, ip("198.51.100.201"), Duration::from_millis(600)).unwrap();
    assert_eq!(ban_flags(&f), [1, 0], "an IPv4 ban flags the IPv4 map only");
    ban_add(&mut f, ip("198.51.100.202"), Duration::from_secs(5)).unwrap();
    ban_add(&mut f, ip("2001:db8:5::9"), Duration::from_millis(600)).unwrap();
    assert_eq!(ban_flags(&f), [1, 1]);
    check(&mut f, "short ban holds", &from("198.51.100.201"), Drop(REASON_BANNED));
    check(&mut f, "short v6 ban holds", &from("2001:db8:5::9"), Drop(REASON_BANNED));
    std::thread::sleep(Duration::from_millis(1000));
    check(&mut f, "short ban lapsed on the program's clock", &from("198.51.100.201"), Pass(REASON_PASS));
    check(&mut f, "short v6 ban lapsed", &from("2001:db8:5::9"), Pass(REASON_PASS));
    check(&mut f, "5 s ban still holds", &from("198.51.100.202"), Drop(REASON_BANNED));
    // The sweep removes the expired bans; the IPv6 map is empty again and stops being looked up.
    assert_eq!(sipshield::bans::gc(&mut f).unwrap().0, 2);
    assert_eq!(ban_flags(&f), [1, 0]);
    assert!(ban_del(&mut f, ip("198.51.100.202")).unwrap());
    sipshield::bans::gc(&mut f).unwrap();
    assert_eq!(ban_flags(&f), [0, 0]);
    check(&mut f, "no bans: passes", &from("198.51.100.202"), Pass(REASON_PASS));
    // A ban installed while the flag is clear is enforced at once.
    ban_add(&mut f, ip("198.51.100.202"), Duration::from_secs(5)).unwrap();
    check(&mut f, "new ban after the flag was cleared", &from("198.51.100.202"), Drop(REASON_BANNED));
}

/// Every edge of the IPv4 ranges (first and last address inside, first outside on both sides),
/// exact addresses and unlisted neighbours in the same /24 (where the per-/24 bitmap is set and
/// the table or the trie must still say no).
fn range_edges() -> Vec<(&'static str, Vec<u8>, Want)> {
    use Want::*;
    let d = Drop(REASON_BLACKLISTED);
    let p = Pass(REASON_PASS);
    vec![
        ("/8 first", from("10.0.0.0"), d),
        ("/8 last", from("10.255.255.255"), d),
        ("below /8", from("9.255.255.255"), p),
        ("above /8", from("11.0.0.0"), p),
        ("/12 first", from("172.16.0.0"), d),
        ("/12 last", from("172.31.255.255"), d),
        ("below /12", from("172.15.255.255"), p),
        ("above /12", from("172.32.0.0"), p),
        ("/23 first", from("192.168.0.0"), d),
        ("/23 last", from("192.168.1.255"), d),
        ("below /23", from("192.167.255.255"), p),
        ("above /23", from("192.168.2.0"), p),
        ("/24 first", from("198.18.0.0"), d),
        ("/24 last", from("198.18.0.255"), d),
        ("below /24", from("198.17.255.255"), p),
        ("above /24", from("198.18.1.0"), p),
        ("/25 first", from("203.0.113.128"), d),
        ("/25 last", from("203.0.113.255"), d),
        ("below /25, same /24", from("203.0.113.127"), p),
        ("above /25", from("203.0.114.0"), p),
        ("/30 first", from("100.64.0.8"), d),
        ("/30 last", from("100.64.0.11"), d),
        ("below /30, same /24", from("100.64.0.7"), p),
        ("above /30, same /24", from("100.64.0.12"), p),
        ("exact", from("100.64.1.1"), d),
        ("next to exact, same /24", from("100.64.1.2"), p),
        ("0.0.0.0 (overflow hash)", from("0.0.0.0"), d),
        ("next to 0.0.0.0, same /24", from("0.0.0.1"), p),
        ("255.255.255.255", from("255.255.255.255"), d),
        ("next to 255.255.255.255, same /24", from("255.255.255.254"), p),
        ("unlisted, far", from("1.2.3.4"), p),
        ("v6 unaffected", from("2001:db8:1::1"), p),
    ]
}

const EDGES: &str = r#"
[blacklist]
entries = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/23", "198.18.0.0/24", "203.0.113.128/25",
           "100.64.0.8/30", "100.64.1.1", "0.0.0.0", "255.255.255.255"]
"#;

#[test]
fn blacklist_range_edges_with_and_without_the_bitmap() {
    if !require_root("blacklist_range_edges_with_and_without_the_bitmap") {
        return;
    }
    let mut f = filter_with(EDGES);
    let c = f.config().unwrap();
    assert_ne!(c.present & PRESENT_BL_BM4, 0, "a swap leaves the bitmap on");
    check_table(&mut f, &range_edges());

    // A generation filled by a build without the bitmap (bit clear): the full lookup, same verdicts.
    f.update_config(|c| c.present &= !PRESENT_BL_BM4).unwrap();
    check_table(&mut f, &range_edges());

    // The bitmap is what the program reads first: with the bit set and the live bitmap emptied,
    // listed sources pass (this is never a live state; it shows the miss path skips the rest).
    let g = (c.blacklist_gen & 1) as usize;
    let zeros = vec![0u64; BL4_BITMAP_WORDS as usize];
    f.fill_array(maps::BL_BM4[g], 0, &zeros).unwrap();
    f.update_config(|c| c.present |= PRESENT_BL_BM4).unwrap();
    check(&mut f, "bitmap emptied: exact passes", &from("100.64.1.1"), Want::Pass(REASON_PASS));
    check(&mut f, "bitmap emptied: /8 passes", &from("10.1.2.3"), Want::Pass(REASON_PASS));

    // From that state (live generation without a bitmap, bit clear) a swap fills the idle
    // generation's bitmap and sets the bit after the flip.
    f.update_config(|c| c.present &= !PRESENT_BL_BM4).unwrap();
    let l = lists::parse_list(&EDGES_LIST.join("\n"), "edges.txt", false).unwrap();
    f.swap_list(ListKind::Blacklist, &l).unwrap();
    assert_ne!(f.config().unwrap().present & PRESENT_BL_BM4, 0);
    check_table(&mut f, &range_edges());
    // And back to the first generation (its bitmap was emptied by the release, then refilled).
    f.swap_list(ListKind::Blacklist, &l).unwrap();
    check_table(&mut f, &range_edges());

    // An empty list: nothing listed, the bitmap empty.
    f.swap_list(ListKind::Blacklist, &IpList::default()).unwrap();
    for (name, frame, _) in range_edges() {
        check(&mut f, name, &frame, Want::Pass(REASON_PASS));
    }
}

const EDGES_LIST: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/23",
    "198.18.0.0/24",
    "203.0.113.128/25",
    "100.64.0.8/30",
    "100.64.1.1",
    "0.0.0.0",
    "255.255.255.255",
];

/// The bitmap against a plain model: a /24's bit is set exactly when some entry of the list
/// intersects it.
#[test]
fn bitmap_marks_exactly_the_slash24s_a_list_touches() {
    let l = lists::parse_list(&EDGES_LIST.join("\n"), "edges.txt", false).unwrap();
    let bm = sipshield::addrlist::build_bitmap4(&l);
    let touched = |s24: u32| {
        let (lo, hi) = (s24 << 8, (s24 << 8) | 0xff);
        l.v4.iter().any(|a| u32::from_be_bytes(*a) >> 8 == s24)
            || l.net4.iter().any(|(a, len)| {
                let m = if *len == 0 { 0 } else { u32::MAX << (32 - len) };
                let start = u32::from_be_bytes(*a) & m;
                let end = start | !m;
                start <= hi && lo <= end
            })
    };
    let mut set = 0u64;
    for s24 in 0..(1u32 << 24) {
        let (w, bit) = bl4_bitmap_pos((s24 << 8).to_be_bytes());
        let on = bm[w as usize] & bit != 0;
        assert_eq!(on, touched(s24), "/24 {:?}", (s24 << 8).to_be_bytes());
        set += on as u64;
    }
    // /8 + /12 + /23 + /24 + three single /24s (the /25, the /30 and 100.64.1.1) + 0/24 + 255.255.255/24.
    assert_eq!(set, 65_536 + 4096 + 2 + 1 + 3 + 1 + 1);
}
