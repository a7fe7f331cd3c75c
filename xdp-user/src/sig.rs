//! Scanner signatures: the default list, loading into the kernel's signature trie (two
//! generations, switched atomically), reading them back, and a pure-Rust model of the kernel's
//! SIP scan used by tests to check the kernel's decisions.
use std::collections::BTreeSet;

use anyhow::{bail, Result};
use aya::maps::{lpm_trie::Key, Array, LpmTrie};
use xdp_common::*;

use crate::filter::Filter;
use crate::gen::Part;

/// A signature: case-insensitive prefix of a header's value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
pub struct Signature {
    /// `HDR_*` id.
    pub header: u32,
    /// Lowercase prefix.
    pub text: String,
}

impl Signature {
    pub fn new(header: u32, text: &str) -> Result<Signature> {
        if text.is_empty() || text.len() > SIG_MAX_LEN {
            bail!("signature {text:?}: must be 1..={SIG_MAX_LEN} bytes");
        }
        if text.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            bail!("signature {text:?}: must not contain CR, LF or NUL");
        }
        if header == 0 || header >= NUM_HEADERS {
            bail!("unknown header id {header}");
        }
        Ok(Signature { header, text: text.to_ascii_lowercase() })
    }
    pub fn header_name(&self) -> &'static str {
        HEADER_NAMES[self.header as usize]
    }
}

/// Header id for a config/CLI header name (`user-agent`, `user_agent`, `from`, ...).
pub fn header_id(name: &str) -> Option<u32> {
    let n = name.to_ascii_lowercase().replace('_', "-");
    HEADER_NAMES.iter().position(|h| !h.is_empty() && *h == n).map(|i| i as u32)
}

/// The built-in list: (header, prefix, source). Only tools that identify themselves; real
/// products that scanners merely spoof (Asterisk, Zoiper, Polycom, ...) are deliberately absent.
pub const DEFAULT_SIGNATURES: &[(u32, &str, &str)] = &[
    (HDR_USER_AGENT, "friendly-scanner", "sipvicious default UA; Kamailio default config; ET VOIP rules"),
    (HDR_USER_AGENT, "sipvicious", "sipvicious; Kamailio secfilter"),
    (HDR_USER_AGENT, "sipcli", "SIPCli; Kamailio default config; ET SCAN SipCLI"),
    (HDR_USER_AGENT, "sip-scan", "ET VOIP rules"),
    (HDR_USER_AGENT, "sipscan", "SIPScan; ET VOIP rules"),
    (HDR_USER_AGENT, "vaxsipuseragent", "VaxSIPUserAgent; Kamailio default config"),
    (HDR_USER_AGENT, "pplsip", "pplsip; Kamailio default config"),
    (HDR_USER_AGENT, "iwar", "iWar war dialer; ET VOIP rules"),
    (HDR_USER_AGENT, "sundayddr", "sundayddr scanner; ET VOIP rules"),
    (HDR_USER_AGENT, "sivus", "SiVuS scanner"),
    (HDR_USER_AGENT, "smap", "smap SIP scanner"),
    (HDR_USER_AGENT, "siparmyknife", "SIP Army Knife fuzzer"),
    (HDR_USER_AGENT, "voip-scanner", "generic scanner UA"),
    (HDR_FROM, "sipvicious", "sipvicious svwar/svmap From display name"),
    (HDR_FROM, "friendly-scanner", "sipvicious clones' From display name"),
];

/// Signatures from the `[scanners]` config section.
pub fn from_config(cfg: &crate::config::ScannersCfg) -> Result<Vec<Signature>> {
    let mut set = BTreeSet::new();
    if !cfg.enabled {
        return Ok(vec![]);
    }
    let disabled: BTreeSet<String> = cfg.disable.iter().map(|s| s.to_ascii_lowercase()).collect();
    if cfg.defaults {
        for (h, t, _) in DEFAULT_SIGNATURES {
            if !disabled.contains(*t) {
                set.insert(Signature::new(*h, t)?);
            }
        }
    }
    for (key, list) in cfg.header_lists() {
        let h = header_id(key).expect("config keys are header names");
        for t in list {
            set.insert(Signature::new(h, t).map_err(|e| anyhow::anyhow!("scanners.{key}: {e}"))?);
        }
    }
    Ok(set.into_iter().collect())
}

fn trie_key(s: &Signature) -> Key<SigKeyData> {
    let mut value = [0u8; SIG_MAX_LEN];
    value[..s.text.len()].copy_from_slice(s.text.as_bytes());
    Key::new(32 + 8 * s.text.len() as u32, SigKeyData { header: s.header, value })
}

/// A signature set for the kernel: the trie of one generation, its prefilter and the header
/// mask (which changes with the generation, in the same config write).
pub struct SigPart<'a> {
    sigs: &'a [Signature],
}

impl<'a> SigPart<'a> {
    pub fn new(sigs: &'a [Signature]) -> SigPart<'a> {
        SigPart { sigs }
    }

    fn headers(&self) -> u32 {
        self.sigs.iter().fold(0, |m, s| m | 1 << s.header)
    }
}

impl Part for SigPart<'_> {
    fn name(&self) -> &'static str {
        "scanner signatures"
    }
    fn live(&self, c: &Config) -> u32 {
        c.sig_gen
    }
    fn set_live(&self, c: &mut Config, g: u32) {
        c.sig_gen = g;
    }
    fn check(&self) -> Result<()> {
        if self.sigs.len() > SIG_MAX as usize {
            bail!("{} scanner signatures exceed the capacity of {SIG_MAX}", self.sigs.len());
        }
        Ok(())
    }
    fn fill(&self, f: &mut Filter, g: u32) -> Result<()> {
        let mut prefilter = SigPrefilter { ready: 1, ..Default::default() };
        let mut entries = Vec::with_capacity(self.sigs.len());
        for (id, s) in self.sigs.iter().enumerate() {
            let k = trie_key(s);
            entries.push((k.data(), k.prefix_len(), id as u32));
            prefilter.add(s.header, s.text.as_bytes());
        }
        crate::trie::fill(f, maps::SIG[(g & 1) as usize], &entries)?;
        let mut a: Array<_, SigPrefilter> = Array::try_from(f.map_mut(maps::SIG_PREFILTER)?)?;
        a.set(g & 1, prefilter, 0).map_err(|e| anyhow::anyhow!("map {}: {e}", maps::SIG_PREFILTER))
    }
    fn clear(&self, f: &mut Filter, g: u32) -> Result<()> {
        crate::trie::clear::<SigKeyData, u32>(f, maps::SIG[(g & 1) as usize]).map(|_| ())
    }
    fn configure(&self, c: &mut Config) {
        c.sig_headers = self.headers();
    }
}

/// Load `sigs` into the inactive generation and switch to it.
pub fn load(filter: &mut Filter, sigs: &[Signature]) -> Result<()> {
    crate::gen::swap(filter, &[&SigPart::new(sigs)], |_| {}).map(|_| ())
}

/// The live signatures, ordered by id, read back from the kernel.
pub fn read(filter: &Filter) -> Result<Vec<Signature>> {
    let g = filter.config()?.sig_gen & 1;
    let t: LpmTrie<_, SigKeyData, u32> = LpmTrie::try_from(filter.map(maps::SIG[g as usize])?)?;
    let mut out = vec![];
    for kv in t.iter() {
        let (k, id) = kv?;
        let d = k.data();
        let n = ((k.prefix_len() - 32) / 8) as usize;
        let text = String::from_utf8_lossy(&d.value[..n.min(SIG_MAX_LEN)]).into_owned();
        out.push((id, Signature { header: d.header, text }));
    }
    out.sort();
    Ok(out.into_iter().map(|(_, s)| s).collect())
}

// ------------------------------------------------------------------------------------------
// Userspace model of the kernel's SIP scan (xdp-ebpf `sip_scan`).
// ------------------------------------------------------------------------------------------

/// Method id of a SIP payload, as the kernel classifies it.
pub fn method_of(payload: &[u8]) -> u8 {
    let starts = |p: &[u8]| payload.len() >= p.len() && &payload[..p.len()] == p;
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
        if starts(p) {
            return *m;
        }
    }
    if payload[..3].iter().all(|c| c.is_ascii_uppercase()) {
        METHOD_OTHER
    } else {
        METHOD_NONE
    }
}

/// Header id of a header line (name, optional whitespace, colon), as the kernel parses it.
fn header_of(line: &[u8]) -> Option<(u32, usize)> {
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

/// Model of the kernel scan: returns (method, matched signature index).
/// Mirrors the kernel's limits: the first `SIP_SCAN_MAX` bytes, header section only, lines
/// up to 512 bytes, values compared on their first `SIG_MAX_LEN` bytes.
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

    fn defaults() -> Vec<Signature> {
        from_config(&crate::config::ScannersCfg::default()).unwrap()
    }

    #[test]
    fn defaults_match_scanners_not_products() {
        let sigs = defaults();
        let scan = |ua: &str| {
            let msg = format!("OPTIONS sip:100@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 203.0.113.5:5060\r\nUser-Agent: {ua}\r\nContent-Length: 0\r\n\r\n");
            model_scan(msg.as_bytes(), &sigs).1.is_some()
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
        let msg = b"INVITE sip:1@x SIP/2.0\r\nf: \"sipvicious\"<sip:100@1.1.1.1>;tag=1\r\n\r\n";
        assert!(model_scan(msg, &sigs).1.is_some());
        let msg = b"REGISTER sip:x SIP/2.0\r\nUser-Agent :\r\n friendly-scanner\r\n\r\n";
        assert!(model_scan(msg, &sigs).1.is_some());
        let resp = b"SIP/2.0 200 OK\r\nUser-Agent: friendly-scanner\r\n\r\n";
        assert_eq!(model_scan(resp, &sigs), (METHOD_RESPONSE, None));
        // Only the header section counts.
        let body = b"MESSAGE sip:x SIP/2.0\r\nContent-Length: 30\r\n\r\nUser-Agent: friendly-scanner\r\n";
        assert_eq!(model_scan(body, &sigs), (METHOD_MESSAGE, None));
    }

    #[test]
    fn signature_validation() {
        assert!(Signature::new(HDR_USER_AGENT, "").is_err());
        assert!(Signature::new(HDR_USER_AGENT, &"x".repeat(33)).is_err());
        assert_eq!(Signature::new(HDR_USER_AGENT, "SIPVicious").unwrap().text, "sipvicious");
        assert_eq!(header_id("user_agent"), Some(HDR_USER_AGENT));
        assert_eq!(header_id("Call-ID"), Some(HDR_CALL_ID));
    }
}
