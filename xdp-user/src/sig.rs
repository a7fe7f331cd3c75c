//! Scanner signatures: the default list, loading into the kernel's signature trie (two
//! generations, switched atomically), and reading them back.
use std::collections::BTreeSet;

use anyhow::{bail, Result};
use aya::maps::{lpm_trie::Key, Array, LpmTrie};
use xdp_common::*;

use crate::filter::Filter;

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

/// Load `sigs` into the inactive generation and switch to it (one config write: the generation
/// and the header mask change together), then empty the old generation.
pub fn load(filter: &mut Filter, sigs: &[Signature]) -> Result<()> {
    if sigs.len() > SIG_MAX as usize {
        bail!("{} signatures exceed the capacity of {SIG_MAX}", sigs.len());
    }
    let _lock = filter.write_lock()?;
    let live = filter.config()?.sig_gen & 1;
    let next = 1 - live;
    clear(filter, next)?;
    let mut headers = 0u32;
    let mut prefilter = SigPrefilter { ready: 1, ..Default::default() };
    {
        let mut t: LpmTrie<_, SigKeyData, u32> = LpmTrie::try_from(filter.map_mut(&format!("SIG_{next}"))?)?;
        for (id, s) in sigs.iter().enumerate() {
            t.insert(&trie_key(s), id as u32, 0)?;
            headers |= 1 << s.header;
            prefilter.add(s.header, s.text.as_bytes());
        }
    }
    {
        let mut a: Array<_, SigPrefilter> = Array::try_from(filter.map_mut("SIG_PREFILTER")?)?;
        a.set(next, prefilter, 0)?;
    }
    filter.update_config(|c| {
        c.sig_gen = next;
        c.sig_headers = headers;
    })?;
    clear(filter, live)
}

fn clear(filter: &mut Filter, g: u32) -> Result<()> {
    let mut t: LpmTrie<_, SigKeyData, u32> = LpmTrie::try_from(filter.map_mut(&format!("SIG_{g}"))?)?;
    let keys: Vec<_> = t.keys().collect::<Result<_, _>>()?;
    for k in keys {
        t.remove(&k)?;
    }
    Ok(())
}

/// The live signatures, ordered by id, read back from the kernel.
pub fn read(filter: &Filter) -> Result<Vec<Signature>> {
    let g = filter.config()?.sig_gen & 1;
    let t: LpmTrie<_, SigKeyData, u32> = LpmTrie::try_from(filter.map(&format!("SIG_{g}"))?)?;
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
