//! The header scan, as the kernel's `sip/scan.rs` runs it: the header lines after the request
//! line (up to the empty line that ends them) are examined in order; a line of a header that
//! has signatures (full or compact name, optional whitespace, colon, whitespace, one folded
//! line break, and for From/To/Contact an opening quote) has its value, lowercased and cut at
//! the end of the line, compared on its first `SIG_MAX_LEN` bytes with the signatures; the
//! first line that matches decides (the longest signature of it, like the kernel's LPM trie).
//!
//! The kernel bounds its work: `SCAN_STEPS` steps of at most `SCAN_ROUNDS` rounds, a step ending
//! at each candidate line. The model counts the same steps and rounds (a round steps over one
//! control byte below 0x10, or skips a 16-byte pair of words without one), so a message with
//! more candidate lines than the budget is judged as the kernel judges it.
use xdp_common::*;

/// `bpf_loop` iterations (kernel `SCAN_STEPS`).
pub const SCAN_STEPS: usize = 320;
/// Rounds per step (kernel `SCAN_ROUNDS`).
pub const SCAN_ROUNDS: usize = 64;
/// Whitespace/colon/fold bytes stepped over after a header name.
const SKIP_MAX: usize = 12;

/// Header names and compact forms with signatures in scope, in the kernel's order of tests.
const NAMES: &[(&[u8], u32)] = &[
    (b"user-agent", HDR_USER_AGENT),
    (b"from", HDR_FROM),
    (b"contact", HDR_CONTACT),
    (b"call-id", HDR_CALL_ID),
    (b"subject", HDR_SUBJECT),
    (b"server", HDR_SERVER),
    (b"via", HDR_VIA),
    (b"to", HDR_TO),
];
const COMPACT: &[(u8, u32)] =
    &[(b'f', HDR_FROM), (b't', HDR_TO), (b'm', HDR_CONTACT), (b'v', HDR_VIA), (b'i', HDR_CALL_ID), (b's', HDR_SUBJECT)];

/// The payload with zeros after it (the kernel's copy zeroes the bytes that follow).
struct Buf<'a> {
    data: &'a [u8],
}

impl Buf<'_> {
    fn at(&self, i: usize) -> u8 {
        self.data.get(i).copied().unwrap_or(0)
    }
    fn lower(&self, i: usize) -> u8 {
        self.at(i).to_ascii_lowercase()
    }
    /// Little-endian word of the 8 bytes at `i`.
    fn word(&self, i: usize) -> u64 {
        u64::from_le_bytes(std::array::from_fn(|k| self.at(i + k)))
    }
}

/// Signature id of the first header line that matches, if any.
pub fn scan(payload: &[u8], sigs: &[(u32, Vec<u8>)]) -> Option<usize> {
    let b = Buf { data: payload };
    let len = payload.len();
    let headers = sigs.iter().fold(0u32, |m, (h, _)| m | 1 << h);
    let letters = first_letters(headers);
    let mut prefilter = SigPrefilter::default();
    for (h, t) in sigs {
        prefilter.add(*h, t);
    }
    let is_letter = |c: u8| {
        let l = (c | 0x20).wrapping_sub(b'a') as u32;
        l < 26 && (letters >> l) & 1 != 0
    };
    let mut candidate: Option<usize> = None;
    let mut resume = 0usize;
    for _ in 0..SCAN_STEPS {
        if let Some(pos) = candidate.take() {
            if let Some(id) = check_line(&b, pos, headers, sigs) {
                return Some(id);
            }
        }
        let mut from = resume;
        let mut found = false;
        for _ in 0..SCAN_ROUNDS {
            match round(&b, len, from) {
                Round::Stop => return None,
                Round::Skip(next) => from = next,
                Round::LineStart(p) => {
                    let c = b.at(p);
                    if c == b'\r' || c == b'\n' {
                        return None; // the empty line: end of the header section
                    }
                    if is_letter(c) && !quick_reject(&b, p, headers, &prefilter) {
                        candidate = Some(p);
                        resume = p;
                        found = true;
                        break;
                    }
                    from = p;
                }
            }
        }
        if !found {
            resume = from;
        }
    }
    None
}

enum Round {
    Stop,
    /// Continue the search at this position.
    Skip(usize),
    /// A line starts here (inside the payload).
    LineStart(usize),
}

/// One round of the search for the next line start from `from`: the kernel looks at the
/// aligned pair of words holding `from`, for the first byte flagged as a control byte.
fn round(b: &Buf<'_>, len: usize, from: usize) -> Round {
    let wi = from / 8;
    let keep = u64::MAX << (8 * (from % 8));
    // Bytes below 0x10, flagged in their high bit (plus bytes a borrow reaches; the first
    // flag of a word is a real control byte or a byte a lower control byte borrowed from).
    let ctl = |w: u64| w.wrapping_sub(0x1010_1010_1010_1010) & !w & 0x8080_8080_8080_8080;
    let c0 = ctl(b.word(wi * 8)) & keep;
    let c1 = ctl(b.word(wi * 8 + 8));
    let next_pair = wi * 8 + 16;
    if c0 | c1 == 0 {
        return if next_pair >= len { Round::Stop } else { Round::Skip(next_pair) };
    }
    let q =
        if c0 != 0 { wi * 8 + c0.trailing_zeros() as usize / 8 } else { wi * 8 + 8 + c1.trailing_zeros() as usize / 8 };
    if q >= len {
        return Round::Stop;
    }
    let p = match b.at(q) {
        b'\n' => q + 1,
        b'\r' if b.at(q + 1) == b'\n' => q + 2,
        _ => return Round::Skip(q + 1),
    };
    if p >= len {
        Round::Stop
    } else {
        Round::LineStart(p)
    }
}

/// Bit (c - 'a') for the first letter of every name and compact form of `headers`.
fn first_letters(headers: u32) -> u32 {
    let mut m = 0;
    for (name, h) in NAMES {
        if headers & (1 << h) != 0 {
            m |= 1 << (name[0] - b'a');
        }
    }
    for (c, h) in COMPACT {
        if headers & (1 << h) != 0 {
            m |= 1 << (c - b'a');
        }
    }
    m
}

/// The header of the line at `pos` and the length of its name: a full name (case-insensitive)
/// or, when no full name matches, a compact form; followed by ':', ' ' or '\t'.
fn header_at(b: &Buf<'_>, pos: usize) -> Option<(u32, usize)> {
    let starts = |name: &[u8]| name.iter().enumerate().all(|(i, c)| b.lower(pos + i) == *c);
    let (h, n) = NAMES
        .iter()
        .find(|(name, _)| starts(name))
        .map(|(name, h)| (*h, name.len()))
        .or_else(|| COMPACT.iter().find(|(c, _)| b.lower(pos) == *c).map(|(_, h)| (*h, 1)))?;
    matches!(b.at(pos + n), b':' | b' ' | b'\t').then_some((h, n))
}

/// The kernel's shortcut for `User-Agent: v` and `From: v` (exactly one space after the colon,
/// value not starting with whitespace, a quote or a line end): lines the signature prefilter
/// rules out are passed over without a scan step.
fn quick_reject(b: &Buf<'_>, p: usize, headers: u32, pf: &SigPrefilter) -> bool {
    let lower_is = |at: usize, s: &[u8]| s.iter().enumerate().all(|(i, c)| b.lower(at + i) == *c);
    let (h, v) = if lower_is(p, b"user-agent: ") {
        (HDR_USER_AGENT, p + 12)
    } else if lower_is(p, b"from: ") {
        (HDR_FROM, p + 6)
    } else {
        return false;
    };
    if headers & (1 << h) == 0 {
        return true;
    }
    let v0 = b.lower(v);
    if matches!(v0, b' ' | b'\t' | b'"' | b'\r' | b'\n') {
        return false;
    }
    let v1 = match b.lower(v + 1) {
        b'\r' | b'\n' => 0,
        c => c,
    };
    !pf.may_match(h, v0, v1)
}

/// Check the header line at `pos` against the signatures.
fn check_line(b: &Buf<'_>, pos: usize, headers: u32, sigs: &[(u32, Vec<u8>)]) -> Option<usize> {
    let (h, n) = header_at(b, pos)?;
    if headers & (1 << h) == 0 {
        return None;
    }
    let mut p = pos + n;
    let mut colon = false;
    for _ in 0..SKIP_MAX {
        match b.at(p) {
            b' ' | b'\t' => p += 1,
            b':' if !colon => {
                colon = true;
                p += 1;
            }
            b'\r' if colon && b.at(p + 1) == b'\n' && matches!(b.at(p + 2), b' ' | b'\t') => p += 3,
            _ => break,
        }
    }
    if !colon {
        return None;
    }
    if matches!(h, HDR_FROM | HDR_TO | HDR_CONTACT) && b.at(p) == b'"' {
        p += 1;
    }
    let value: Vec<u8> = (p..p + SIG_MAX_LEN).map(|i| b.lower(i)).take_while(|c| *c != b'\r' && *c != b'\n').collect();
    sigs.iter()
        .enumerate()
        .filter(|(_, (sh, t))| *sh == h && value.starts_with(t))
        .max_by_key(|(_, (_, t))| t.len())
        .map(|(i, _)| i)
}
