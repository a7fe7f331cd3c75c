//! GeoIP country policy: reading `.mmdb` databases (MaxMind and flat schemas), building the
//! kernel tables, and loading them into the XDP program with atomic generation swaps.
//!
//! Fixtures are written in code with `mmdb-writer` into a temporary directory. The kernel tests
//! run the program with `BPF_PROG_TEST_RUN` and need root: without root they print a loud
//! "SKIPPED" notice and return, unless `CI` is set, in which case they fail
//! (`sipshield_tests::require_root`).
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use aya::maps::LpmTrie;
use mmdb_writer::ipnet::IpNet;
use mmdb_writer::{IpVersion, Value, Writer};
use sipshield::countries::{code_of, index_of};
use sipshield::filter::{Filter, XDP_DROP, XDP_PASS};
use sipshield::geo::{self, GeoDb, GeoPolicy, Schema};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::tmp::{self, TempDir};
use sipshield_tests::{ip, packets, require_root, Controller, NetnsPair};
use xdp_common::{CFG_GEO_ENABLED, CFG_GEO_SCOPE_ALL, CFG_GEO_UNKNOWN_DROP, REASON_GEO};

const SIP_PORT: u16 = 5060;

// ---------------------------------------------------------------------------------------------
// Fixtures.
// ---------------------------------------------------------------------------------------------

/// A fresh, empty scratch directory for one test, removed when it goes out of scope.
fn scratch(test: &str) -> TempDir {
    tmp::dir(&format!("geo-{test}"))
}

fn idx(code: &str) -> u8 {
    index_of(code).unwrap_or_else(|| panic!("{code} is not in the country table"))
}

/// Which shape the fixture records have.
#[derive(Clone, Copy, Debug)]
enum Shape {
    MaxMind,
    Flat,
}

fn record(shape: Shape, code: &str) -> Value {
    match shape {
        Shape::MaxMind => Value::map([
            ("continent", Value::map([("code", Value::from("EU"))])),
            ("country", Value::map([("iso_code", Value::from(code)), ("geoname_id", Value::from(3_017_382u32))])),
            ("registered_country", Value::map([("iso_code", Value::from(code))])),
        ]),
        Shape::Flat => Value::map([("country_code", Value::from(code))]),
    }
}

/// The main fixture: documentation ranges plus a split /24 under a covering /16.
/// Later inserts win in mmdb-writer, so more specific networks come after the ones they split.
const FIXTURE: &[(&str, &str)] = &[
    ("198.51.100.0/24", "FR"),
    ("203.0.113.0/25", "CN"),
    ("203.0.113.128/26", "DE"),
    // 203.0.113.192/26: not in the database.
    ("100.64.0.0/16", "US"),
    ("100.64.1.0/26", "CN"),
    ("100.64.1.100/32", "DE"),
    ("2001:db8:1::/48", "FR"),
    ("2001:db8:2::/48", "CN"),
];

/// Write a database with `nets` (network, country code) in `shape` to `dir/name`.
fn write_db(dir: &Path, name: &str, shape: Shape, version: IpVersion, nets: &[(&str, &str)]) -> PathBuf {
    let db_type = match shape {
        Shape::MaxMind => "GeoLite2-Country",
        Shape::Flat => "ip-location-db country",
    };
    let mut w = Writer::builder(db_type).ip_version(version).build();
    for (net, code) in nets {
        let n: IpNet = net.parse().unwrap_or_else(|e| panic!("{net}: {e}"));
        w.insert_value(n, record(shape, code)).unwrap_or_else(|e| panic!("inserting {net}: {e}"));
    }
    let path = dir.join(name);
    std::fs::write(&path, w.to_bytes().expect("serialising the fixture")).expect("writing the fixture");
    path
}

/// Addresses probed in the pure tests: (address, expected country code or "--").
const PROBES: &[(&str, &str)] = &[
    ("198.51.100.0", "FR"),
    ("198.51.100.7", "FR"),
    ("198.51.100.255", "FR"),
    ("198.51.101.1", "--"),
    ("203.0.113.5", "CN"),
    ("203.0.113.127", "CN"),
    ("203.0.113.128", "DE"),
    ("203.0.113.130", "DE"),
    ("203.0.113.191", "DE"),
    ("203.0.113.192", "--"),
    ("203.0.113.255", "--"),
    ("100.64.0.1", "US"),
    ("100.64.255.255", "US"),
    ("100.64.1.5", "CN"),
    ("100.64.1.63", "CN"),
    ("100.64.1.64", "US"),
    ("100.64.1.100", "DE"),
    ("100.64.1.101", "US"),
    ("8.8.8.8", "--"),
    ("0.0.0.0", "--"),
    ("255.255.255.255", "--"),
    ("2001:db8:1::1", "FR"),
    ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", "FR"),
    ("2001:db8:2::1", "CN"),
    ("2001:db8:3::1", "--"),
    ("2a00:1450::1", "--"),
];

// ---------------------------------------------------------------------------------------------
// 1. Pure: reading and table building.
// ---------------------------------------------------------------------------------------------

fn check_db_against_tables(path: &Path, db: &GeoDb, with_v6: bool) {
    let t = geo::build_tables(db);
    assert_eq!(t.rows.len(), 65536, "{}: GEO_V4 rows", path.display());
    for (a, want) in PROBES {
        let a = ip(a);
        if a.is_ipv6() && !with_v6 {
            continue;
        }
        let direct = geo::lookup_file(path, a).unwrap_or_else(|e| panic!("direct lookup of {a}: {e:#}"));
        let model = geo::lookup_tables(&t, a);
        assert_eq!(code_of(direct), *want, "{}: direct maxminddb lookup of {a}", path.display());
        assert_eq!(
            code_of(model),
            *want,
            "{}: table lookup of {a} (direct lookup says {})",
            path.display(),
            code_of(direct)
        );
    }
    // Every address of the split /24s agrees with the database.
    for net in ["203.0.113.", "100.64.1.", "198.51.100."] {
        for last in 0..=255u8 {
            let a = ip(&format!("{net}{last}"));
            let direct = geo::lookup_file(path, a).expect("direct lookup");
            assert_eq!(geo::lookup_tables(&t, a), direct, "{}: {a}", path.display());
        }
    }
}

fn read_fixture(shape: Shape, version: IpVersion, name: &str) {
    let dir = scratch(name);
    let path =
        write_db(&dir, "fixture.mmdb", shape, version, if version == IpVersion::V4 { &FIXTURE[..6] } else { FIXTURE });
    let db = geo::read_db(&path).unwrap_or_else(|e| panic!("read_db {}: {e:#}", path.display()));
    let want_schema = match shape {
        Shape::MaxMind => Schema::MaxMind,
        Shape::Flat => Schema::Flat,
    };
    assert_eq!(db.schema, want_schema, "schema of {}", path.display());
    assert_eq!(db.path, path);
    assert!(!db.database_type.is_empty());
    // The database yields the leaves of its tree: networks as inserted where they do not
    // overlap, and the pieces of 100.64.0.0/16 that remain US around 100.64.1.0/26 and /32.
    assert!(db.v4.contains(&([198, 51, 100, 0], 24, idx("FR"))), "v4 networks: {:?}", db.v4);
    assert!(db.v4.contains(&([203, 0, 113, 0], 25, idx("CN"))), "v4 networks: {:?}", db.v4);
    assert!(db.v4.contains(&([203, 0, 113, 128], 26, idx("DE"))), "v4 networks: {:?}", db.v4);
    assert!(db.v4.contains(&([100, 64, 1, 100], 32, idx("DE"))), "v4 networks: {:?}", db.v4);
    if version == IpVersion::V6 {
        // Only the two real IPv6 networks: no IPv4 aliases (::/96, ::ffff:0:0/96, 2002::/16, 2001::/32).
        let mut v6 = db.v6.clone();
        v6.sort();
        let fr = ip("2001:db8:1::");
        let cn = ip("2001:db8:2::");
        let (IpAddr::V6(fr), IpAddr::V6(cn)) = (fr, cn) else { unreachable!() };
        assert_eq!(v6, vec![(fr.octets(), 48, idx("FR")), (cn.octets(), 48, idx("CN"))], "IPv6 networks");
    } else {
        assert!(db.v6.is_empty());
    }
    check_db_against_tables(&path, &db, version == IpVersion::V6);
    let t = geo::build_tables(&db);
    // Two split /24s: 203.0.113.0/24 and 100.64.1.0/24; the trie holds exactly the longer
    // networks inside them (the leaves are disjoint, so no covering /24 is needed).
    assert_eq!(t.split_24s(), 2, "split /24s");
    let mut long: Vec<_> = db.v4.iter().filter(|n| n.1 > 24).map(|&(a, l, c)| (a, l, c as u32)).collect();
    let mut net4 = t.net4.clone();
    long.sort();
    net4.sort();
    assert_eq!(net4, long, "GEO_NET4 entries");
    assert!(net4.contains(&([100, 64, 1, 101], 32, idx("US") as u32)), "net4: {net4:?}");
    // IPv4-mapped IPv6 sources are looked up in the IPv6 tables by the program: unknown.
    assert_eq!(geo::lookup_tables(&t, ip("::ffff:198.51.100.7")), 0);
}

#[test]
fn read_maxmind_schema() {
    read_fixture(Shape::MaxMind, IpVersion::V6, "read-maxmind");
}

#[test]
fn read_flat_schema() {
    read_fixture(Shape::Flat, IpVersion::V6, "read-flat");
}

#[test]
fn read_ipv4_only_database() {
    read_fixture(Shape::Flat, IpVersion::V4, "read-v4only");
}

#[test]
fn maxmind_falls_back_to_registered_country() {
    let dir = scratch("registered");
    let mut w = Writer::new("GeoIP2-Country");
    let only_registered = Value::map([("registered_country", Value::map([("iso_code", Value::from("JP"))]))]);
    w.insert_value("192.0.2.0/24".parse::<IpNet>().unwrap(), only_registered).unwrap();
    w.insert_value("198.51.100.0/24".parse::<IpNet>().unwrap(), record(Shape::MaxMind, "FR")).unwrap();
    // A record without any country (e.g. only a continent) is unknown.
    let no_country = Value::map([("continent", Value::map([("code", Value::from("EU"))]))]);
    w.insert_value("203.0.113.0/24".parse::<IpNet>().unwrap(), no_country).unwrap();
    let path = dir.join("registered.mmdb");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let db = geo::read_db(&path).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(db.schema, Schema::MaxMind);
    let t = geo::build_tables(&db);
    assert_eq!(code_of(geo::lookup_tables(&t, ip("192.0.2.9"))), "JP");
    assert_eq!(code_of(geo::lookup_tables(&t, ip("198.51.100.9"))), "FR");
    assert_eq!(code_of(geo::lookup_tables(&t, ip("203.0.113.9"))), "--");
}

/// An IPv6 network that contains all of `::/96` (where the IPv4 space lives). Without IPv4 data
/// the reader reports it like an IPv4 network: it must be neither lost nor duplicated. With
/// IPv4 data the tree splits it around `::/96`, and only the pieces outside become IPv6 entries.
#[test]
fn ipv6_network_containing_the_ipv4_space() {
    let dir = scratch("v6-around-v4");
    let IpAddr::V6(cn) = ip("2001:db8:1::") else { unreachable!() };
    for (len, with_v4) in [(8u8, false), (64, false), (8, true), (64, true)] {
        let mut w = Writer::new("GeoLite2-Country");
        let outer: IpNet = format!("::/{len}").parse().unwrap();
        w.insert_value(outer, record(Shape::MaxMind, "DE")).unwrap();
        if with_v4 {
            w.insert_value("198.51.100.0/24".parse::<IpNet>().unwrap(), record(Shape::MaxMind, "FR")).unwrap();
        }
        w.insert_value("2001:db8:1::/48".parse::<IpNet>().unwrap(), record(Shape::MaxMind, "CN")).unwrap();
        let path = dir.join(format!("outer{len}-{with_v4}.mmdb"));
        std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
        let what = format!("::/{len} DE{}", if with_v4 { " + 198.51.100.0/24 FR" } else { "" });
        let db = geo::read_db(&path).unwrap_or_else(|e| panic!("{what}: {e:#}"));
        let mut v6 = db.v6.clone();
        v6.sort();
        if with_v4 {
            let ipv4_space = |a: &[u8; 16]| a[..12].iter().all(|&b| b == 0);
            assert!(v6.iter().all(|(a, l, _)| !(ipv4_space(a) && *l >= 96)), "{what}: inside ::/96: {v6:?}");
            assert!(v6.iter().filter(|e| e.0 != cn.octets()).all(|e| e.2 == idx("DE")), "{what}: {v6:?}");
        } else {
            assert_eq!(v6, vec![([0; 16], len, idx("DE")), (cn.octets(), 48, idx("CN"))], "{what}: IPv6 networks");
            assert_eq!(db.v4, vec![([0; 4], 0, idx("DE"))], "{what}: IPv4 networks");
        }
        let t = geo::build_tables(&db);
        let probes = [
            ("198.51.100.1", if with_v4 { "FR" } else { "DE" }),
            ("8.8.8.8", "DE"),
            ("::1:2:3:4", "DE"),
            ("2001:db8:1::1", "CN"),
            ("2a00::1", "--"),
        ];
        for (a, want) in probes {
            let a = ip(a);
            assert_eq!(code_of(geo::lookup_file(&path, a).unwrap()), want, "{what}: direct lookup of {a}");
            assert_eq!(code_of(geo::lookup_tables(&t, a)), want, "{what}: table lookup of {a}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Schema detection and broken files.
// ---------------------------------------------------------------------------------------------

fn expect_err(path: &Path, what: &str) -> String {
    match geo::read_db(path) {
        Ok(db) => panic!(
            "{what}: read_db({}) succeeded with {} v4 / {} v6 networks",
            path.display(),
            db.v4.len(),
            db.v6.len()
        ),
        Err(e) => {
            let msg = format!("{e:#}");
            eprintln!("{what}: {msg}");
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            assert!(msg.contains(&name), "{what}: the error does not name the file {name}: {msg}");
            msg
        }
    }
}

#[test]
fn rejects_other_schemas() {
    let dir = scratch("schema");
    let mut w = Writer::new("GeoLite2-ASN");
    let asn = Value::map([("asn", Value::from(64_500u32)), ("autonomous_system_organization", Value::from("Example"))]);
    w.insert_value("198.51.100.0/24".parse::<IpNet>().unwrap(), asn).unwrap();
    let path = dir.join("asn.mmdb");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    let msg = expect_err(&path, "ASN database");
    assert!(msg.contains("GeoLite2-ASN"), "the error does not show the database_type: {msg}");
    assert!(
        msg.contains("asn") && msg.contains("autonomous_system_organization"),
        "the error does not list the keys: {msg}"
    );
    assert!(
        msg.contains("country_code") && msg.contains("iso_code"),
        "the error does not say what was expected: {msg}"
    );

    // Records that are not maps at all.
    let mut w = Writer::new("Strings");
    w.insert_value("198.51.100.0/24".parse::<IpNet>().unwrap(), Value::from("FR")).unwrap();
    let path = dir.join("strings.mmdb");
    std::fs::write(&path, w.to_bytes().unwrap()).unwrap();
    expect_err(&path, "database of plain strings");

    // An empty database.
    let path = dir.join("empty.mmdb");
    std::fs::write(&path, Writer::new("Empty").to_bytes().unwrap()).unwrap();
    let msg = expect_err(&path, "empty database");
    assert!(msg.contains("no records"), "{msg}");
}

#[test]
fn rejects_corrupt_files() {
    let dir = scratch("corrupt");
    // Pseudo-random bytes (xorshift, deterministic).
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let random: Vec<u8> = (0..64 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let path = dir.join("random.mmdb");
    std::fs::write(&path, &random).unwrap();
    expect_err(&path, "random bytes");

    let good = write_db(&dir, "good.mmdb", Shape::MaxMind, IpVersion::V6, FIXTURE);
    let bytes = std::fs::read(&good).unwrap();
    geo::read_db(&good).expect("the untouched fixture reads");

    // Truncated: the metadata at the end is gone.
    let path = dir.join("truncated.mmdb");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    expect_err(&path, "truncated file");

    // Search tree cut short but metadata intact.
    let path = dir.join("short-tree.mmdb");
    let mut cut = bytes[..16].to_vec();
    cut.extend_from_slice(&bytes[bytes.len() - 200.min(bytes.len() - 16)..]);
    std::fs::write(&path, &cut).unwrap();
    expect_err(&path, "search tree cut short");

    // Overwritten search tree and data: must fail cleanly or read something, never panic.
    let path = dir.join("scribbled.mmdb");
    let mut scribbled = bytes.clone();
    // The search tree is at the start of the file (1470 bytes for this fixture); keep the metadata.
    for (i, b) in scribbled[..1000].iter_mut().enumerate() {
        *b ^= (i as u8).wrapping_mul(0x9d) | 1;
    }
    std::fs::write(&path, &scribbled).unwrap();
    match geo::read_db(&path) {
        Ok(db) => eprintln!("scribbled: read {} v4 / {} v6 networks", db.v4.len(), db.v6.len()),
        Err(e) => {
            eprintln!("scribbled: {e:#}");
            assert!(format!("{e:#}").contains("scribbled.mmdb"), "{e:#}");
        }
    }

    // Missing file.
    let path = dir.join("missing.mmdb");
    expect_err(&path, "missing file");
}

/// Damaged files (random bytes changed anywhere, including the metadata) fail with an error
/// naming the file or read as some database, but never panic, hang or overflow the stack
/// (cycles in the search tree or between data pointers).
#[test]
fn damaged_files_never_crash() {
    let dir = scratch("damaged");
    let good = write_db(&dir, "good.mmdb", Shape::MaxMind, IpVersion::V6, FIXTURE);
    let bytes = std::fs::read(&good).unwrap();
    let mut rng = Rng(7);
    let path = dir.join("damaged.mmdb");
    let (mut read, mut failed) = (0, 0);
    for k in 0..3000 {
        let mut b = bytes.clone();
        for _ in 0..1 + rng.below(8) {
            // Every other file is damaged near the end, where the metadata is.
            let i = if k % 2 == 0 { rng.below(b.len() as u64) as usize } else { b.len() - 1 - rng.below(300) as usize };
            b[i] = rng.next() as u8;
        }
        std::fs::write(&path, &b).unwrap();
        match geo::read_db(&path) {
            Ok(_) => read += 1,
            Err(e) => {
                failed += 1;
                assert!(format!("{e:#}").contains("damaged.mmdb"), "case {k}: {e:#}");
            }
        }
    }
    eprintln!("damaged files: {read} still readable, {failed} rejected");
    assert!(failed > 0);
}

// ---------------------------------------------------------------------------------------------
// 3./4. Privileged: the program's verdicts.
// ---------------------------------------------------------------------------------------------

fn new_filter(scope_all: bool) -> Filter {
    let mut f = Filter::load_private().unwrap_or_else(|e| panic!("Filter::load_private: {e:#}"));
    let cfg = sipshield::config::Config::parse(&format!("[sip]\nports = [{SIP_PORT}]\n"), Path::new("t.toml")).unwrap();
    sipshield::policy::apply_config(&mut f, &cfg).expect("apply_config");
    f.update_config(|c| {
        c.flags |= CFG_GEO_ENABLED;
        if scope_all {
            c.flags |= CFG_GEO_SCOPE_ALL;
        }
    })
    .expect("update_config");
    f
}

fn policy(allow: &[&str], unknown_drop: bool) -> GeoPolicy {
    GeoPolicy { allow: allow.iter().map(|s| s.to_string()).collect(), deny: vec![], unknown_drop }
}

/// Run one UDP packet from `src` to `dport` through the program.
fn verdict(f: &mut Filter, src: &str, dport: u16) -> u32 {
    let src = ip(src);
    let dst = if src.is_ipv4() { ip("192.0.2.1") } else { ip("2001:db8:ffff::1") };
    let frame =
        PacketBuilder::udp(src, dst, 40000, dport).payload(&SipMessage::request("OPTIONS", "x", "x").build()).build();
    f.test_run(&frame).unwrap_or_else(|e| panic!("test_run {src}: {e:#}"))
}

fn name(v: u32) -> &'static str {
    match v {
        XDP_DROP => "DROP",
        XDP_PASS => "PASS",
        _ => "?",
    }
}

/// Assert verdicts for `(source, destination port, expected action)`.
fn expect(f: &mut Filter, what: &str, cases: &[(&str, u16, u32)]) {
    for &(src, port, want) in cases {
        let got = verdict(f, src, port);
        assert_eq!(name(got), name(want), "{what}: {src} → port {port}");
    }
}

fn load(f: &mut Filter, path: &Path, p: &GeoPolicy) -> geo::GeoReport {
    let db = geo::read_db(path).unwrap_or_else(|e| panic!("{e:#}"));
    geo::load_geo(f, &db, p).unwrap_or_else(|e| panic!("load_geo {}: {e:#}", path.display()))
}

fn trie_len<K: aya::Pod>(f: &Filter, map: &str) -> usize {
    let t: LpmTrie<_, K, u32> = LpmTrie::try_from(f.map(map).unwrap()).unwrap();
    t.keys().count()
}

/// Entries of the GEO_NET4 / GEO_V6 tries of generation `g`.
fn tries(f: &Filter, g: u32) -> (usize, usize) {
    (trie_len::<[u8; 4]>(f, &format!("GEO_NET4_{g}")), trie_len::<[u8; 16]>(f, &format!("GEO_V6_{g}")))
}

fn kernel_verdicts(shape: Shape, test: &str) {
    if !require_root(test) {
        return;
    }
    let dir = scratch(test);
    let path = write_db(&dir, "countries.mmdb", shape, IpVersion::V6, FIXTURE);
    let mut f = new_filter(false);
    let r = load(&mut f, &path, &policy(&["FR"], false));
    assert_eq!(r.generation, 1);
    assert_eq!(r.split_24s, 2);
    assert_eq!(r.v6_networks, 2);
    assert_eq!(f.config().unwrap().geo_gen, 1);
    let cn = idx("CN") as usize;
    let before = f.stats().unwrap();
    expect(
        &mut f,
        "allow FR, unknown allow, scope sip",
        &[
            ("198.51.100.7", SIP_PORT, XDP_PASS),
            ("203.0.113.5", SIP_PORT, XDP_DROP),
            ("8.8.8.8", SIP_PORT, XDP_PASS),
            ("203.0.113.200", SIP_PORT, XDP_PASS),
            ("203.0.113.5", 22, XDP_PASS),
            ("2001:db8:1::1", SIP_PORT, XDP_PASS),
            ("2001:db8:2::1", SIP_PORT, XDP_DROP),
            ("2001:db8:3::1", SIP_PORT, XDP_PASS),
            ("203.0.113.130", SIP_PORT, XDP_DROP),
            ("100.64.1.100", SIP_PORT, XDP_DROP),
            ("100.64.1.101", SIP_PORT, XDP_DROP),
        ],
    );
    let after = f.stats().unwrap();
    // CN: 203.0.113.5 and 2001:db8:2::1.
    assert_eq!(after.countries[cn].packets - before.countries[cn].packets, 2, "GEO_DROPS[CN]");
    assert_eq!(after.reason_total(REASON_GEO).packets - before.reason_total(REASON_GEO).packets, 5, "geo drops");
    assert_eq!(geo::lookup_live(&f, ip("203.0.113.130")).unwrap(), (idx("DE"), true));
    assert_eq!(geo::lookup_live(&f, ip("198.51.100.1")).unwrap(), (idx("FR"), false));
    assert_eq!(geo::lookup_live(&f, ip("100.64.1.20")).unwrap(), (idx("CN"), true));
    assert_eq!(geo::lookup_live(&f, ip("100.64.1.200")).unwrap(), (idx("US"), true));
    assert_eq!(geo::lookup_live(&f, ip("2001:db8:2::9")).unwrap(), (idx("CN"), true));
    assert_eq!(geo::lookup_live(&f, ip("8.8.8.8")).unwrap(), (0, false));

    // Scope all: non-SIP traffic is filtered too.
    f.update_config(|c| c.flags |= CFG_GEO_SCOPE_ALL).unwrap();
    expect(&mut f, "scope all", &[("203.0.113.5", 22, XDP_DROP), ("198.51.100.7", 22, XDP_PASS)]);
    f.update_config(|c| c.flags &= !CFG_GEO_SCOPE_ALL).unwrap();

    // Allow DE as well and drop unknown sources.
    let r = load(&mut f, &path, &policy(&["FR", "DE"], true));
    assert_eq!(r.generation, 0);
    assert_ne!(f.config().unwrap().flags & CFG_GEO_UNKNOWN_DROP, 0, "unknown-drop flag");
    expect(
        &mut f,
        "allow FR+DE, unknown drop",
        &[
            ("203.0.113.130", SIP_PORT, XDP_PASS),
            ("100.64.1.100", SIP_PORT, XDP_PASS),
            ("203.0.113.5", SIP_PORT, XDP_DROP),
            ("198.51.100.7", SIP_PORT, XDP_PASS),
            ("8.8.8.8", SIP_PORT, XDP_DROP),
            ("203.0.113.200", SIP_PORT, XDP_DROP),
            ("2001:db8:3::1", SIP_PORT, XDP_DROP),
            ("8.8.8.8", 22, XDP_PASS),
        ],
    );
    assert_eq!(geo::lookup_live(&f, ip("8.8.8.8")).unwrap(), (0, true));

    // Deny list instead of an allow list.
    let deny = GeoPolicy { allow: vec![], deny: vec!["CN".into()], unknown_drop: false };
    geo::load_geo(&mut f, &geo::read_db(&path).unwrap(), &deny).unwrap();
    assert_eq!(f.config().unwrap().flags & CFG_GEO_UNKNOWN_DROP, 0, "unknown-drop flag");
    expect(
        &mut f,
        "deny CN",
        &[
            ("203.0.113.5", SIP_PORT, XDP_DROP),
            ("100.64.1.5", SIP_PORT, XDP_DROP),
            ("203.0.113.130", SIP_PORT, XDP_PASS),
            ("100.64.1.200", SIP_PORT, XDP_PASS),
            ("8.8.8.8", SIP_PORT, XDP_PASS),
            ("2001:db8:2::1", SIP_PORT, XDP_DROP),
        ],
    );

    // GeoIP disabled: nothing is dropped.
    f.update_config(|c| c.flags &= !CFG_GEO_ENABLED).unwrap();
    expect(&mut f, "geo disabled", &[("203.0.113.5", SIP_PORT, XDP_PASS), ("2001:db8:2::1", SIP_PORT, XDP_PASS)]);
}

#[test]
fn kernel_verdicts_maxmind() {
    kernel_verdicts(Shape::MaxMind, "kernel-maxmind");
}

#[test]
fn kernel_verdicts_flat() {
    kernel_verdicts(Shape::Flat, "kernel-flat");
}

#[test]
fn scope_all_from_the_start() {
    if !require_root("scope_all_from_the_start") {
        return;
    }
    let dir = scratch("scope-all");
    let path = write_db(&dir, "countries.mmdb", Shape::MaxMind, IpVersion::V6, FIXTURE);
    let mut f = new_filter(true);
    load(&mut f, &path, &policy(&["FR"], false));
    expect(
        &mut f,
        "scope all",
        &[
            ("203.0.113.5", 22, XDP_DROP),
            ("203.0.113.5", SIP_PORT, XDP_DROP),
            ("198.51.100.7", 22, XDP_PASS),
            ("8.8.8.8", 22, XDP_PASS),
            ("2001:db8:2::1", 443, XDP_DROP),
        ],
    );
}

#[test]
fn atomic_reload() {
    if !require_root("atomic_reload") {
        return;
    }
    let dir = scratch("reload");
    let a = write_db(&dir, "a.mmdb", Shape::MaxMind, IpVersion::V6, FIXTURE);
    // B: countries swapped, no split /24 any more, other IPv6 networks.
    let b = write_db(
        &dir,
        "b.mmdb",
        Shape::Flat,
        IpVersion::V6,
        &[("198.51.100.0/24", "CN"), ("203.0.113.0/24", "FR"), ("2001:db8:2::/48", "FR"), ("2001:db8:5::/48", "CN")],
    );
    let mut f = new_filter(false);
    let allow_fr = policy(&["FR"], false);

    load(&mut f, &a, &allow_fr);
    assert_eq!(f.config().unwrap().geo_gen, 1);
    let net4_a = geo::build_tables(&geo::read_db(&a).unwrap()).net4.len();
    assert!(net4_a >= 4);
    assert_eq!(tries(&f, 1), (net4_a, 2), "live tries after loading A");
    assert_eq!(tries(&f, 0), (0, 0), "inactive tries after loading A");
    let with_a = [
        ("198.51.100.7", SIP_PORT, XDP_PASS),
        ("203.0.113.5", SIP_PORT, XDP_DROP),
        ("203.0.113.200", SIP_PORT, XDP_PASS),
        ("2001:db8:1::1", SIP_PORT, XDP_PASS),
        ("2001:db8:2::1", SIP_PORT, XDP_DROP),
        ("2001:db8:5::1", SIP_PORT, XDP_PASS),
    ];
    expect(&mut f, "database A", &with_a);

    let r = load(&mut f, &b, &allow_fr);
    assert_eq!(r.generation, 0);
    assert_eq!(r.split_24s, 0);
    assert_eq!(tries(&f, 0), (0, 2), "live tries after loading B");
    assert_eq!(tries(&f, 1), (0, 0), "the previous generation's tries are emptied");
    let with_b = [
        ("198.51.100.7", SIP_PORT, XDP_DROP),
        ("203.0.113.5", SIP_PORT, XDP_PASS),
        ("203.0.113.200", SIP_PORT, XDP_PASS),
        ("100.64.1.5", SIP_PORT, XDP_PASS),
        ("2001:db8:1::1", SIP_PORT, XDP_PASS),
        ("2001:db8:2::1", SIP_PORT, XDP_PASS),
        ("2001:db8:5::1", SIP_PORT, XDP_DROP),
    ];
    expect(&mut f, "database B", &with_b);

    // A corrupt database never gets to the kernel; the verdicts stay.
    let corrupt = dir.join("corrupt.mmdb");
    let bytes = std::fs::read(&a).unwrap();
    std::fs::write(&corrupt, &bytes[..bytes.len() / 3]).unwrap();
    let e = geo::read_db(&corrupt).expect_err("a corrupt database must not read");
    assert!(format!("{e:#}").contains("corrupt.mmdb"), "{e:#}");
    expect(&mut f, "after the corrupt database", &with_b);

    // Failures inside load_geo leave the live generation alone.
    let db_a = geo::read_db(&a).unwrap();
    let e = geo::load_geo(&mut f, &db_a, &policy(&["FR", "XX"], false)).expect_err("unknown country code");
    assert!(format!("{e:#}").contains("XX"), "{e:#}");
    let mut huge = db_a.clone();
    huge.v6 = (0..xdp_common::GEO_V6_CAPACITY as u128 + 1)
        .map(|i| (((0x2a00u128 << 112) | (i << 64)).to_be_bytes(), 64, 1))
        .collect();
    let e = geo::load_geo(&mut f, &huge, &allow_fr).expect_err("over capacity");
    let msg = format!("{e:#}");
    assert!(
        msg.contains(&(xdp_common::GEO_V6_CAPACITY + 1).to_string())
            && msg.contains(&xdp_common::GEO_V6_CAPACITY.to_string()),
        "the capacity error must name the numbers: {msg}"
    );
    assert_eq!(f.config().unwrap().geo_gen, 0, "the live generation stays");
    assert_eq!(tries(&f, 0), (0, 2));
    assert_eq!(tries(&f, 1), (0, 0));
    expect(&mut f, "after failed loads", &with_b);

    // And back to A.
    let r = load(&mut f, &a, &allow_fr);
    assert_eq!(r.generation, 1);
    assert_eq!(tries(&f, 0), (0, 0));
    expect(&mut f, "database A again", &with_a);
}

// ---------------------------------------------------------------------------------------------
// Performance: a synthetic database of ~500k networks.
// Run with: cargo test --release -p sipshield-tests --test geo -- --ignored --nocapture
// ---------------------------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Write a country database with about `v4 + v6` disjoint networks.
fn synthetic_db(path: &Path, v4: usize, v6: usize) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut w = Writer::builder("GeoLite2-Country").ip_version(IpVersion::V6).build();
    let code = |rng: &mut Rng| code_of(1 + rng.below(249) as u8);
    // IPv4: walk 1.0.0.0 upwards in blocks of /18../24, with ~30% of the networks longer than /24 (/25../32).
    let mut cur: u64 = 1 << 24;
    let mut n = 0;
    while n < v4 {
        let len = if rng.below(100) < 30 { 25 + rng.below(8) as u8 } else { 18 + rng.below(7) as u8 };
        let size = 1u64 << (32 - len);
        cur = cur.div_ceil(size) * size;
        if cur + size >= 224 << 24 {
            break;
        }
        let net = IpNet::new(IpAddr::V4((cur as u32).into()), len).unwrap();
        w.insert_value(net, record(Shape::MaxMind, code(&mut rng))).unwrap();
        n += 1;
        // Occasional gaps (unknown space).
        cur += size + if rng.below(10) == 0 { size } else { 0 };
    }
    // IPv6: /29../48 blocks from 2400::.
    let mut cur: u128 = 0x2400u128 << 112;
    for _ in 0..v6 {
        let len = 29 + rng.below(20) as u8;
        let size = 1u128 << (128 - len);
        cur = cur.div_ceil(size) * size;
        let net = IpNet::new(IpAddr::V6(cur.into()), len).unwrap();
        w.insert_value(net, record(Shape::MaxMind, code(&mut rng))).unwrap();
        cur += size;
    }
    std::fs::write(path, w.to_bytes().unwrap()).unwrap();
}

#[test]
#[ignore = "performance: builds a ~500k-network database; run in release with --ignored"]
fn load_500k_networks() {
    let dir = scratch("perf");
    let path = dir.join("big.mmdb");
    let t = Instant::now();
    synthetic_db(&path, 330_000, 170_000);
    eprintln!(
        "generated {} ({} bytes) in {:.2}s",
        path.display(),
        std::fs::metadata(&path).unwrap().len(),
        t.elapsed().as_secs_f64()
    );

    let t0 = Instant::now();
    let db = geo::read_db(&path).unwrap_or_else(|e| panic!("{e:#}"));
    let read = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let tables = geo::build_tables(&db);
    let build = t1.elapsed().as_secs_f64();
    eprintln!(
        "read_db: {} v4 + {} v6 networks in {read:.3}s; build_tables: {} split /24s, {} net4, {} v6 in {build:.3}s",
        db.v4.len(),
        db.v6.len(),
        tables.split_24s(),
        tables.net4.len(),
        tables.v6.len()
    );
    assert!(db.v4.len() + db.v6.len() >= 450_000, "the synthetic database is too small");

    // Spot-check the model against direct lookups.
    let mut rng = Rng(42);
    for _ in 0..200 {
        let (a, len, _) = db.v4[rng.below(db.v4.len() as u64) as usize];
        let host_mask = if len >= 32 { 0 } else { u32::MAX >> len };
        let host = u32::from_be_bytes(a) | (rng.next() as u32 & host_mask);
        let addr = IpAddr::V4(host.into());
        assert_eq!(geo::lookup_tables(&tables, addr), geo::lookup_file(&path, addr).unwrap(), "{addr}");
    }

    if !require_root("load_500k_networks (kernel part)") {
        return;
    }
    let mut f = new_filter(false);
    let p = policy(&["FR", "DE"], false);
    let total = Instant::now();
    let db = geo::read_db(&path).unwrap();
    let r = geo::load_geo(&mut f, &db, &p).unwrap_or_else(|e| panic!("{e:#}"));
    let first = total.elapsed().as_secs_f64();
    eprintln!("read+build+load (first load): {first:.3}s; report: {r:?}");
    // A reload also empties the previous generation (the expensive part of a swap).
    let total = Instant::now();
    let db = geo::read_db(&path).unwrap();
    let r = geo::load_geo(&mut f, &db, &p).unwrap_or_else(|e| panic!("{e:#}"));
    let second = total.elapsed().as_secs_f64();
    eprintln!("read+build+load (reload, incl. cleanup): {second:.3}s; report: {r:?}");

    // The kernel tables agree with the model.
    for _ in 0..2000 {
        let addr = if rng.below(2) == 0 {
            let (a, _, _) = db.v4[rng.below(db.v4.len() as u64) as usize];
            IpAddr::V4((u32::from_be_bytes(a) + rng.below(4) as u32).into())
        } else {
            let (a, _, _) = db.v6[rng.below(db.v6.len() as u64) as usize];
            IpAddr::V6((u128::from_be_bytes(a) + rng.below(1 << 20) as u128).into())
        };
        assert_eq!(geo::lookup_live(&f, addr).unwrap().0, geo::lookup_tables(&tables, addr), "{addr}");
    }
    if !cfg!(debug_assertions) {
        assert!(first <= 2.0 && second <= 2.0, "read+build+load took {first:.3}s / {second:.3}s (limit 2s)");
    }
}

// ---------------------------------------------------------------------------------------------
// The controller: [geoip] config, `geo lookup`, per-country stats, reload on file change.
// ---------------------------------------------------------------------------------------------

#[test]
fn controller_geo_policy_lookup_and_file_reload() {
    if !require_root("controller_geo_policy_lookup_and_file_reload") {
        return;
    }
    let dir = scratch("daemon");
    let db = write_db(&dir, "country.mmdb", Shape::MaxMind, IpVersion::V6, FIXTURE);
    let net = NetnsPair::new("geo");
    net.add_client_addr("203.0.113.5/24");
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "interfaces = [\"vsrv\"]\n[metrics]\nenabled = false\n[events]\nstdout = false\n[geoip]\ndatabase = \"{}\"\nallow_countries = [\"FR\"]\nunknown = \"drop\"\n",
            db.display()
        ),
    )
    .unwrap();
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-geo-{}", std::process::id()));
    let ctl = Controller::start(&net.server, &cfg, &dir.join("state"), &pin);
    let out = ctl.cli(&["geo", "lookup", "198.51.100.1"]);
    assert!(out.contains("country FR -> pass"), "{out}");
    let out = ctl.cli(&["geo", "lookup", "203.0.113.5"]);
    assert!(out.contains("country CN -> drop (geo)"), "{out}");
    let out = ctl.cli(&["geo", "lookup", "203.0.113.200"]);
    assert!(out.contains("country -- -> drop (geo)"), "unknown follows unknown = drop: {out}");

    // Live packets from a CN source to the SIP port are dropped and counted per country;
    // a non-SIP port is left alone (scope = "sip").
    let sip = SipMessage::request("OPTIONS", "a", "x").build();
    net.send_udp("203.0.113.5".parse().unwrap(), "198.51.100.2".parse().unwrap(), SIP_PORT, vec![sip.clone(); 3]);
    net.send_udp("203.0.113.5".parse().unwrap(), "198.51.100.2".parse().unwrap(), 2222, vec![sip.clone(); 2]);
    let st = ctl.stats();
    assert_eq!(packets(&st, "geo"), 3, "{st}");
    assert_eq!(st["countries"]["CN"]["packets"], 3, "{st}");
    let table = ctl.cli(&["stats"]);
    assert!(table.contains("geo drops by country: CN=3"), "{table}");

    // The database file changes: reloaded within seconds (203.0.113.0/25 becomes FR).
    let mut changed: Vec<(&str, &str)> = FIXTURE.to_vec();
    changed.push(("203.0.113.0/25", "FR"));
    let tmp = write_db(&dir, "new.mmdb", Shape::Flat, IpVersion::V6, &changed);
    std::fs::rename(&tmp, &db).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !ctl.cli(&["geo", "lookup", "203.0.113.5"]).contains("country FR -> pass") {
        assert!(std::time::Instant::now() < deadline, "database change not picked up:\n{}", ctl.log_text());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    // A corrupt replacement is rejected; the previous database stays live.
    std::fs::write(&db, b"\x00\x01garbage, not an mmdb").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while !ctl.log_text().contains("was rejected, keeping the previous one") {
        assert!(std::time::Instant::now() < deadline, "corrupt database not reported:\n{}", ctl.log_text());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(ctl.cli(&["geo", "lookup", "203.0.113.5"]).contains("country FR -> pass"));
    assert!(ctl.cli(&["geo", "lookup", "198.51.100.9"]).contains("country FR -> pass"));
    let status: serde_json::Value = serde_json::from_str(&ctl.cli(&["status", "--json"])).unwrap();
    assert_eq!(status["lists"]["loads"]["geoip"]["errors"], 1, "{status}");
    ctl.cli(&["detach"]);
}

#[test]
fn a_500k_geoip_reload_never_stalls_metrics_or_events() {
    if !require_root("a_500k_geoip_reload_never_stalls_metrics_or_events") {
        return;
    }
    let dir = scratch("geo-stall");
    let db = write_db(&dir, "country.mmdb", Shape::MaxMind, IpVersion::V6, FIXTURE);
    let big = dir.join("big.mmdb");
    synthetic_db(&big, 330_000, 170_000);
    let net = NetnsPair::new("gst");
    net.add_client_addr("203.0.113.9/24");
    let cfg = dir.join("s.toml");
    std::fs::write(
        &cfg,
        format!(
            "interfaces = [\"vsrv\"]\n[metrics]\nlisten = \"127.0.0.1:9614\"\n[events]\nstdout = false\nrate = 1000\nburst = 1000\n[blacklist]\nentries = [\"203.0.113.9\"]\n[geoip]\ndatabase = \"{}\"\ndeny_countries = [\"CN\"]\n",
            db.display()
        ),
    )
    .unwrap();
    let pin = PathBuf::from(format!("/sys/fs/bpf/sipshield-test-geostall-{}", std::process::id()));
    let ctl = Controller::start(&net.server, &cfg, &dir.join("state"), &pin);
    let events = dir.join("state").join("events.jsonl");
    let events0 = std::fs::metadata(&events).map(|m| m.len()).unwrap_or(0);
    // Swap the 500k-network database in: the controller reloads it on its own.
    std::fs::rename(&big, &db).unwrap();
    let t0 = Instant::now();
    let mut worst = std::time::Duration::ZERO;
    let sip = SipMessage::request("OPTIONS", "a", "x").build();
    let mut reloaded = false;
    while t0.elapsed() < std::time::Duration::from_secs(30) {
        let (status, _, took) = sipshield_tests::controller::scrape(&net.server, "127.0.0.1:9614");
        assert!(status.contains("200"), "{status}");
        worst = worst.max(took);
        net.send_udp(ip("203.0.113.9"), ip("198.51.100.2"), SIP_PORT, vec![sip.clone()]);
        if ctl.log_text().contains("reloaded") {
            reloaded = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(reloaded, "the 500k database was not reloaded:\n{}", ctl.log_text());
    assert!(worst < std::time::Duration::from_millis(200), "/metrics took {worst:?} during the GeoIP reload");
    let events1 = std::fs::metadata(&events).map(|m| m.len()).unwrap_or(0);
    assert!(events1 > events0, "no events were written during the GeoIP reload");
}
