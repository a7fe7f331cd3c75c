//! A userspace model of the kernel's SIP scan (xdp-ebpf `sip_scan`): the tests check the
//! program's decisions against it on generated messages.
use sipshield::sig::Signature;
use xdp_common::*;

/// Method id of a SIP payload, as the kernel classifies it.
pub fn method_of(payload: &[u8]) -> u8 {
    const TABLE: &[(&[u8], u8)] = &[
        (b"REGISTER ", METHOD_REGISTER),
        (b"SIP/2.0 ", METHOD_RESPONSE),
        (b"INVITE ", METHOD_INVITE),
        (b"OPTIONS ", METHOD_OPTIONS),
        (b"ACK ", METHOD_ACK),
        (b"BYE ", METHOD_BYE),
        (b"CANCEL ", METHOD_CANCEL),
        (b"SUBSCRIBE ", METHOD_SUBSCRIBE),
        (b"NOTIFY ", METHOD_NOTIFY),
        (b"MESSAGE ", METHOD_MESSAGE),
        (b"INFO ", METHOD_INFO),
        (b"PRACK ", METHOD_PRACK),
        (b"UPDATE ", METHOD_UPDATE),
        (b"REFER ", METHOD_REFER),
        (b"PUBLISH ", METHOD_PUBLISH),
    ];
    if payload.len() < 8 {
        return METHOD_NONE;
    }
    for (p, m) in TABLE {
        if payload.starts_with(p) {
            return *m;
        }
    }
    if payload[..3].iter().all(|c| c.is_ascii_uppercase()) {
        METHOD_OTHER
    } else {
        METHOD_NONE
    }
}

/// Header id of a header line (name, optional whitespace, colon), as the kernel parses it:
/// (id, length of the name).
pub fn header_of(line: &[u8]) -> Option<(u32, usize)> {
    let lower: Vec<u8> = line.iter().take(16).map(|c| c.to_ascii_lowercase()).collect();
    let names: &[(&[u8], u32)] = &[
        (b"user-agent", HDR_USER_AGENT),
        (b"from", HDR_FROM),
        (b"contact", HDR_CONTACT),
        (b"call-id", HDR_CALL_ID),
        (b"subject", HDR_SUBJECT),
        (b"server", HDR_SERVER),
        (b"via", HDR_VIA),
        (b"to", HDR_TO),
        (b"f", HDR_FROM),
        (b"t", HDR_TO),
        (b"m", HDR_CONTACT),
        (b"v", HDR_VIA),
        (b"i", HDR_CALL_ID),
        (b"s", HDR_SUBJECT),
    ];
    for (n, id) in names {
        if lower.starts_with(n) {
            let next = *line.get(n.len())?;
            return matches!(next, b':' | b' ' | b'\t').then_some((*id, n.len()));
        }
    }
    None
}

/// Model of the kernel scan: (method, index of the matched signature).
/// Mirrors the kernel's limits: the first `SIP_SCAN_MAX` bytes, header section only, values
/// compared on their first `SIG_MAX_LEN` bytes.
pub fn model_scan(payload: &[u8], sigs: &[Signature]) -> (u8, Option<usize>) {
    let method = method_of(payload);
    if method == METHOD_NONE || method == METHOD_RESPONSE || sigs.is_empty() {
        return (method, None);
    }
    let data = &payload[..payload.len().min(SIP_SCAN_MAX as usize)];
    let mut lines = data.split(|c| *c == b'\n');
    lines.next(); // request line
    let mut rest_off = data.iter().position(|c| *c == b'\n').map(|p| p + 1).unwrap_or(data.len());
    for line in lines {
        let start = rest_off;
        rest_off += line.len() + 1;
        if line.is_empty() || line[0] == b'\r' {
            break;
        }
        let Some((hdr, n)) = header_of(line) else { continue };
        // Skip whitespace, colon, whitespace and a folded line break.
        let bytes = &data[start..];
        let mut p = n;
        let mut colon = false;
        for _ in 0..12 {
            match bytes.get(p) {
                Some(b' ') | Some(b'\t') => p += 1,
                Some(b':') if !colon => {
                    colon = true;
                    p += 1
                }
                Some(b'\r')
                    if colon
                        && bytes.get(p + 1) == Some(&b'\n')
                        && matches!(bytes.get(p + 2), Some(b' ') | Some(b'\t')) =>
                {
                    p += 3
                }
                _ => break,
            }
        }
        if !colon {
            continue;
        }
        if matches!(hdr, HDR_FROM | HDR_TO | HDR_CONTACT) && bytes.get(p) == Some(&b'"') {
            p += 1;
        }
        let value: Vec<u8> = bytes[p.min(bytes.len())..]
            .iter()
            .take(SIG_MAX_LEN)
            .take_while(|c| **c != b'\r' && **c != b'\n')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        // Longest matching prefix wins, like the LPM trie.
        let best = sigs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.header == hdr && value.starts_with(s.text.as_bytes()))
            .max_by_key(|(_, s)| s.text.len());
        if let Some((i, _)) = best {
            return (method, Some(i));
        }
    }
    (method, None)
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
    fn methods_and_header_names() {
        assert_eq!(method_of(b"REGISTER sip:x SIP/2.0"), METHOD_REGISTER);
        assert_eq!(method_of(b"FOOBAR sip:x SIP/2.0"), METHOD_OTHER);
        assert_eq!(method_of(b"foo sip:x SIP/2.0"), METHOD_NONE);
        assert_eq!(method_of(b"INVITE"), METHOD_NONE, "shorter than 8 bytes");
        assert_eq!(header_of(b"User-Agent : x"), Some((HDR_USER_AGENT, 10)));
        assert_eq!(header_of(b"f: x"), Some((HDR_FROM, 1)));
        assert_eq!(header_of(b"fx: x"), None);
    }
}
