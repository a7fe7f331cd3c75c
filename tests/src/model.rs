//! The bridge between the controller's configuration and the reference model
//! (`sipshield-model`): [`policy_of`] turns a `sipshield::config::Config` (and the sources it
//! names, read as the controller reads them) into the model's semantic [`Policy`]; plus the
//! scan helpers the SIP tests use ([`model_scan`]).
use std::collections::BTreeSet;

use anyhow::{anyhow, Result};
use ipnet::IpNet;
use sipshield::config::{Config, Scope, Unknown};
use sipshield::lists::IpList;
use sipshield::sig::Signature;
pub use sipshield_model::{Action, AddrSet, GeoPolicy, Model, Outcome, Policy, Rule};
use xdp_common::*;

/// Method id of a SIP payload, as the kernel classifies it (payloads shorter than 8 bytes are
/// not inspected).
pub fn method_of(payload: &[u8]) -> u8 {
    if payload.len() < 8 {
        return METHOD_NONE;
    }
    sipshield_model::sip::method::method_of(&payload[..payload.len().min(SIP_SCAN_MAX as usize)])
}

/// Model of the kernel's SIP inspection of one payload: (method, index of the matched
/// signature).
pub fn model_scan(payload: &[u8], sigs: &[Signature]) -> (u8, Option<usize>) {
    let method = method_of(payload);
    if method == METHOD_NONE || method == METHOD_RESPONSE || sigs.is_empty() {
        return (method, None);
    }
    let data = &payload[..payload.len().min(SIP_SCAN_MAX as usize)];
    (method, sipshield_model::sip::scan::scan(data, &model_signatures(sigs)))
}

/// Signatures in the model's form, in id order.
pub fn model_signatures(sigs: &[Signature]) -> Vec<(u32, Vec<u8>)> {
    sigs.iter().map(|s| (s.header, s.text.as_bytes().to_vec())).collect()
}

/// An address list as the model's range set.
pub fn addr_set(l: &IpList) -> AddrSet {
    let v4 = l.v4.iter().map(|a| IpNet::new((*a).into(), 32).expect("/32"));
    let v6 = l.v6.iter().map(|a| IpNet::new((*a).into(), 128).expect("/128"));
    let n4 = l.net4.iter().map(|(a, p)| IpNet::new((*a).into(), *p).expect("valid range"));
    let n6 = l.net6.iter().map(|(a, p)| IpNet::new((*a).into(), *p).expect("valid range"));
    AddrSet::new(v4.chain(v6).chain(n4).chain(n6))
}

/// The model's policy for `cfg`: lists and signatures read from its sources as the controller
/// reads them (`policy::Sources`); GeoIP from `geo_nets` (the (network, country code) pairs the
/// test wrote into its database), since the model does not read `.mmdb` files.
pub fn policy_of(cfg: &Config, geo_nets: &[(IpNet, &str)]) -> Result<Policy> {
    let src = sipshield::policy::Sources::read(cfg)?;
    let mut rules = std::collections::BTreeMap::new();
    for (name, r) in &cfg.ratelimit.rules {
        let slot = sipshield::config::method_slot(name).ok_or_else(|| anyhow!("ratelimit.{name}: no slot"))?;
        rules.insert(
            slot,
            Rule {
                interval_ns: (1e9 / r.rate).round().max(1.0) as u64,
                burst: r.burst as u64,
                ban_after: r.ban_after,
                ban_ttl_ns: r.ban_ttl.as_nanos() as u64,
                window_ns: r.window.as_nanos() as u64,
            },
        );
    }
    let geo = match &cfg.geoip {
        None => None,
        Some(g) => {
            let idx = |c: &str| sipshield::countries::index_of(c).ok_or_else(|| anyhow!("country {c:?}"));
            let allow: BTreeSet<u8> = g.allow_countries.iter().map(|c| idx(c)).collect::<Result<_>>()?;
            let deny: BTreeSet<u8> = g.deny_countries.iter().map(|c| idx(c)).collect::<Result<_>>()?;
            let mut drop: BTreeSet<u8> =
                (1..=255u8).filter(|c| (!allow.is_empty() && !allow.contains(c)) || deny.contains(c)).collect();
            if g.unknown == Unknown::Drop {
                drop.insert(0);
            }
            let nets = geo_nets.iter().map(|(n, c)| Ok((*n, idx(c)?))).collect::<Result<_>>()?;
            Some(GeoPolicy { nets, drop, scope_all: g.scope == Scope::All })
        }
    };
    Ok(Policy {
        dry_run: cfg.dry_run,
        drop_malformed: cfg.drop_malformed,
        sip_ports: cfg.sip.ports.iter().copied().collect(),
        sip_tcp: cfg.sip.tcp,
        allowlist: addr_set(&src.allowlist),
        blacklist: addr_set(&src.blacklist),
        geo,
        scanners_enabled: cfg.scanners.enabled,
        signatures: model_signatures(&src.signatures),
        rules,
        rl_v6_prefix: cfg.ratelimit.ipv6_prefix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::SipMessage;

    fn defaults() -> Vec<Signature> {
        sipshield::sig::from_config(&sipshield::config::ScannersCfg::default()).unwrap()
    }

    #[test]
    fn defaults_match_scanners_not_products() {
        let sigs = defaults();
        let scan = |ua: &str| {
            let msg = SipMessage::request("OPTIONS", "100", "198.51.100.1").via("203.0.113.5:5060").user_agent(ua);
            model_scan(&msg.build(), &sigs).1.is_some()
        };
        for ua in
            ["friendly-scanner", "sipvicious 0.3.4", "SIPCLI/v1.8", "VaxSIPUserAgent/3.1", "pplsip", "Friendly-Scanner"]
        {
            assert!(scan(ua), "{ua} should match");
        }
        for ua in [
            "Yealink SIP-T46S 66.86.0.15",
            "Grandstream GXP2170 1.0.11.3",
            "Linphone/5.2",
            "Asterisk PBX 18.0",
            "Zoiper rv2.10",
            "PolycomVVX-VVX_400",
        ] {
            assert!(!scan(ua), "{ua} must pass");
        }
    }

    #[test]
    fn compact_from_display_name_and_folding() {
        let sigs = defaults();
        let msg = SipMessage::request("INVITE", "1", "x").compact().no_user_agent().from_display("sipvicious").build();
        assert!(model_scan(&msg, &sigs).1.is_some());
        let msg = SipMessage::request("REGISTER", "1", "x").user_agent("friendly-scanner").fold_user_agent().build();
        assert!(model_scan(&msg, &sigs).1.is_some());
        let resp = SipMessage::response(200, "OK", "OPTIONS").user_agent("friendly-scanner").build();
        assert_eq!(model_scan(&resp, &sigs), (METHOD_RESPONSE, None));
        // Only the header section counts.
        let body = SipMessage::request("MESSAGE", "1", "x").body("User-Agent: friendly-scanner\r\n").build();
        assert_eq!(model_scan(&body, &sigs), (METHOD_MESSAGE, None));
    }

    #[test]
    fn methods() {
        assert_eq!(method_of(b"REGISTER sip:x SIP/2.0"), METHOD_REGISTER);
        assert_eq!(method_of(b"FOOBAR sip:x SIP/2.0"), METHOD_OTHER);
        assert_eq!(method_of(b"INVITE"), METHOD_NONE, "shorter than 8 bytes");
    }
}
