//! Unit tests of the policy merge functions (`policy.rs`): the configuration plus the CLI's
//! runtime edits, as start, reload and every edit compute them.
use std::path::Path;

use xdp_common::{HDR_FROM, HDR_USER_AGENT};

use super::*;
use crate::lists::parse_list;

fn sig(h: u32, t: &str) -> Signature {
    Signature::new(h, t).unwrap()
}

fn pair(h: &str, t: &str) -> (String, String) {
    (h.to_string(), t.to_string())
}

#[test]
fn allowlist_is_the_config_plus_the_cli_entries() {
    let mut src = parse_list("198.51.100.1\nbogus\n2001:db8::/48\n", "al.txt", true).unwrap();
    assert_eq!(src.skipped.len(), 1);
    let rt = Runtime { allow: vec!["203.0.113.0/24".into(), "198.51.100.1".into()], ..Default::default() };
    let m = merged_allowlist(&src, &rt);
    assert_eq!((m.v4.len(), m.net4.len(), m.net6.len()), (1, 1, 1), "an entry in both is held once");
    assert!(m.contains("203.0.113.9".parse().unwrap()) && m.contains("2001:db8::5".parse().unwrap()));
    assert!(m.skipped.is_empty(), "skipped lines were reported when the config was read");
    // The source is not changed.
    src.skipped.clear();
    assert_eq!(src.len(), 2);
    assert_eq!(merged_allowlist(&src, &Runtime::default()), src);
}

#[test]
fn signatures_are_the_config_plus_additions_minus_exclusions() {
    let src = vec![sig(HDR_USER_AGENT, "sipvicious"), sig(HDR_FROM, "sipvicious"), sig(HDR_USER_AGENT, "sipcli")];
    assert_eq!(merged_signatures(&src, &Runtime::default()).unwrap(), src);

    // An exclusion names its header and matches the text case-insensitively; the same text
    // under another header stays.
    let rt = Runtime { scanners_del: vec![pair("user-agent", "SIPVicious")], ..Default::default() };
    assert_eq!(merged_signatures(&src, &rt).unwrap(), [sig(HDR_FROM, "sipvicious"), sig(HDR_USER_AGENT, "sipcli")]);
    let rt = Runtime { scanners_del: vec![pair("from", "sipcli")], ..Default::default() };
    assert_eq!(merged_signatures(&src, &rt).unwrap(), src, "no such signature: nothing removed");

    // Additions come last, lowercased, and once.
    let rt = Runtime {
        scanners_add: vec![pair("user_agent", "Evil-Scanner"), pair("from", "sipvicious"), pair("to", "x")],
        ..Default::default()
    };
    let m = merged_signatures(&src, &rt).unwrap();
    assert_eq!(m.len(), 5);
    assert_eq!(m[3..], [sig(HDR_USER_AGENT, "evil-scanner"), sig(xdp_common::HDR_TO, "x")]);

    for rt in [
        Runtime { scanners_add: vec![pair("x-bogus", "a")], ..Default::default() },
        Runtime { scanners_del: vec![pair("x-bogus", "a")], ..Default::default() },
    ] {
        let e = merged_signatures(&src, &rt).unwrap_err().to_string();
        assert!(e.contains("unknown header \"x-bogus\""), "{e}");
    }
}

#[test]
fn dry_run_override_wins_over_the_config() {
    for (dry_run, over, want) in [
        (false, None, false),
        (true, None, true),
        (false, Some(true), true),
        (true, Some(true), true),
        (true, Some(false), false),
        (false, Some(false), false),
    ] {
        let cfg = Config { dry_run, drop_malformed: true, ..Default::default() };
        let f = flags(&cfg, &Runtime { dry_run: over, ..Default::default() });
        assert_eq!(f & CFG_DRY_RUN != 0, want, "config {dry_run}, override {over:?}");
        assert_eq!(f & !CFG_DRY_RUN, cfg.flags() & !CFG_DRY_RUN, "the other flags are the config's");
    }
}

#[test]
fn scalars_and_ports_come_from_the_config() {
    let cfg = Config::parse(
        "[sip]\nports = [5060, 64, 65535]\n[events]\nreasons = [\"banned\", \"malformed\"]\nrate = 4\nburst = 3\n\
         [ratelimit]\nipv6_prefix = 56\n[ratelimit.invite]\nrate = 2\nburst = 5\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let src = Sources {
        blacklist: IpList::default(),
        allowlist: IpList::default(),
        signatures: vec![],
        geo: None,
        groups: Default::default(),
    };
    let p = Policy::new(&cfg, &src, &Runtime { dry_run: Some(true), ..Default::default() }).unwrap();
    let mut k = KConfig::default();
    p.scalars(&mut k);
    assert_eq!(k.flags, cfg.flags() | CFG_DRY_RUN);
    assert_eq!(k.rl_v6_prefix, 56);
    assert_eq!(k.event_reasons, 1 << xdp_common::REASON_BANNED | 1 << xdp_common::REASON_MALFORMED);
    assert_eq!((k.event_interval_ns, k.event_burst_ns), (250_000_000, 750_000_000));
    assert_eq!((reason_index("pass"), reason_index("malformed"), reason_index("nope")), (Some(0), Some(7), None));
    // A reason listed twice is still on.
    let mut twice = cfg.clone();
    twice.events.reasons = vec!["scanner".into(), "scanner".into()];
    let p2 = Policy::new(&twice, &src, &Runtime::default()).unwrap();
    p2.scalars(&mut k);
    assert_eq!(k.event_reasons, 1 << xdp_common::REASON_SCANNER);

    let ports = &p.ports.ports;
    assert_eq!(ports.len(), SIP_PORT_WORDS as usize);
    assert_eq!((ports[0], ports[1], ports[5060 / 64], ports[1023]), (0, 1, 1 << (5060 % 64), 1 << 63));
    assert_eq!(ports.iter().map(|w| w.count_ones()).sum::<u32>(), 3);
    let invite = crate::config::method_slot("invite").unwrap() as usize;
    assert_eq!(p.ports.rules[invite], cfg.ratelimit.rules["invite"].kernel_rule());
    assert_eq!(p.ports.rules.iter().filter(|r| r.interval_ns != 0).count(), 1);

    // The generation field and the part's name.
    let mut k = KConfig { policy_gen: 1, ..Default::default() };
    assert_eq!(p.ports.live(&k), 1);
    p.ports.set_live(&mut k, 0);
    assert_eq!(
        (k.policy_gen, p.ports.name()),
        (0, "SIP ports, rate rules, port rules, groups and toll-fraud prefixes")
    );
}

/// A CrowdSec decision never drops the allowlist or a member of a group a `[[port]]` rule
/// trusts (`allow`), CLI additions included; groups no rule trusts give no exemption.
#[test]
fn never_banned_is_the_allowlist_and_the_trusted_groups() {
    let cfg = Config::parse(
        "[sip]\nports = [5060]\n[groups.trunks]\nentries = [\"198.51.100.0/28\"]\n\
         [groups.others]\nentries = [\"198.51.100.200\"]\n[[port]]\nports = [5060]\nallow = [\"trunks\"]\n",
        Path::new("t.toml"),
    )
    .unwrap();
    let src = Sources {
        blacklist: IpList::default(),
        allowlist: parse_list("203.0.113.9\n", "al.txt", false).unwrap(),
        signatures: vec![],
        geo: None,
        groups: read_groups(&cfg).unwrap(),
    };
    let rt = Runtime { groups: [("trunks".to_string(), vec!["2001:db8::7".to_string()])].into(), ..Default::default() };
    let l = never_banned(&cfg, &src, &rt);
    for (ip, want) in [
        ("203.0.113.9", true),
        ("198.51.100.5", true),
        ("2001:db8::7", true),
        ("198.51.100.200", false),
        ("198.51.100.16", false),
    ] {
        assert_eq!(l.contains(ip.parse().unwrap()), want, "{ip}");
    }
}
