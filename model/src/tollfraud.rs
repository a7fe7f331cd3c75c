//! The toll-fraud guard, as the kernel's `tollfraud.rs` decides it: the user part of the
//! Request-URI of an INVITE or MESSAGE (`sip:`, `sips:` or `tel:`, any case), reduced to a
//! leading `+` and its digits (separators `-`, `.`, ` `, `(`, `)` skipped, anything else ends
//! it, at most `TF_KEY_LEN` bytes kept, `TF_SCAN_BYTES` walked), then matched: a number that
//! starts with an international prefix followed by a configured prefix (the longest such
//! match decides) is dropped in deny mode; in allow-only mode an international number that no
//! allowed prefix covers is dropped. Numbers without an international prefix never match.
use xdp_common::{METHOD_INVITE, TF_KEY_LEN, TF_SCAN_BYTES};

/// `[tollfraud]` in semantic form.
#[derive(Clone, Debug, Default)]
pub struct TollFraud {
    /// International prefixes as dialled (`+`, `00`, …).
    pub international: Vec<Vec<u8>>,
    /// Digits of the deny (or allow) prefixes, in rule-id order from 1.
    pub prefixes: Vec<Vec<u8>>,
    pub allow_only: bool,
}

/// The number the kernel reads from `payload` (an INVITE or MESSAGE), if any.
pub fn dialled(payload: &[u8], method: u8) -> Option<Vec<u8>> {
    let start = if method == METHOD_INVITE { 7 } else { 8 };
    let at = |i: usize| payload.get(i).copied().unwrap_or(0);
    let lower = |i: usize| at(i).to_ascii_lowercase();
    let mut p = start;
    let scheme: Vec<u8> = (0..5).map(|i| lower(start + i)).collect();
    if scheme.starts_with(b"sip:") || scheme.starts_with(b"tel:") {
        p += 4;
    } else if scheme.starts_with(b"sips:") {
        p += 5;
    } else {
        return None;
    }
    let mut out = vec![];
    for i in 0..TF_SCAN_BYTES {
        let c = at(p + i);
        if c.is_ascii_digit() || (c == b'+' && out.is_empty()) {
            out.push(c);
            if out.len() == TF_KEY_LEN {
                break;
            }
        } else if !matches!(c, b'-' | b'.' | b' ' | b'(' | b')') {
            break;
        }
    }
    (!out.is_empty() && out != b"+").then_some(out)
}

impl TollFraud {
    /// `Some(rule id)` when a call to `number` is dropped (0: allow-only, no prefix covers it).
    pub fn decide(&self, number: &[u8]) -> Option<u32> {
        let mut best: Option<(usize, u32)> = None;
        let mut international = false;
        for intl in &self.international {
            if !number.starts_with(intl) {
                continue;
            }
            international = true;
            for (i, d) in self.prefixes.iter().enumerate() {
                let len = intl.len() + d.len();
                if number[intl.len()..].starts_with(d) && best.is_none_or(|(l, _)| len > l) {
                    best = Some((len, i as u32 + 1));
                }
            }
        }
        match (self.allow_only, best) {
            (false, Some((_, id))) => Some(id),
            (true, None) if international => Some(0),
            _ => None,
        }
    }
}
