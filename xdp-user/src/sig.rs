//! Scanner signatures: the default list, loading into the kernel's signature trie (two
//! generations, switched atomically), and reading them back.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_validation() {
        assert!(Signature::new(HDR_USER_AGENT, "").is_err());
        assert!(Signature::new(HDR_USER_AGENT, &"x".repeat(33)).is_err());
        assert_eq!(Signature::new(HDR_USER_AGENT, "SIPVicious").unwrap().text, "sipvicious");
        assert_eq!(header_id("user_agent"), Some(HDR_USER_AGENT));
        assert_eq!(header_id("Call-ID"), Some(HDR_CALL_ID));
    }
}
