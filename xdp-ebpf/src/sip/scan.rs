//! The header scan: a `bpf_loop` callback that walks the header lines of the copied payload,
//! 16 bytes per round, and checks the lines that can hold a signature against the signature
//! trie (with a prefilter in front of it).
use core::ffi::c_void;

use aya_ebpf::maps::lpm_trie::Key;
use xdp_common::*;

use super::{lit, mask};
use crate::maps::{SCRATCH, SIG_0, SIG_1, SIG_PREFILTER};

const WORD_MASK: usize = SCRATCH_SIZE / 8 - 1;

/// 8 bytes of the scratch buffer starting at byte `pos` (little-endian), from two aligned
/// loads. Positions are masked into the buffer, so this never reads outside the map value.
#[inline(always)]
pub(super) fn load_at(buf: *const u64, pos: usize) -> u64 {
    let wi = (pos >> 3) & WORD_MASK;
    let sh = ((pos & 7) * 8) as u32;
    let w0 = unsafe { *buf.add(wi) };
    let w1 = unsafe { *buf.add(wi + 1) };
    if sh == 0 {
        w0
    } else {
        (w0 >> sh) | (w1 << (64 - sh))
    }
}

/// Keep buffer positions in [0, SCRATCH_SIZE): the verifier then sees every position as the same
/// bounded range, so loop and callback states converge instead of being explored per offset.
#[inline(always)]
pub(super) fn clamp(buf: *const u64, pos: usize) -> usize {
    // The last scratch word is never written, so it is always 0 and this equals
    // `pos & (SIZE - 1)`; but to the verifier it is an unknown map value, so the result is the
    // whole range [0, SIZE) and loop/callback states converge instead of growing each round.
    let zero = unsafe { *buf.add(SCRATCH_WORDS - 1) } as usize;
    (pos | zero) & (SCRATCH_SIZE - 1)
}

/// Byte index (0..8) of the first byte flagged in a `bytes_eq` mask (non-zero), computed with a
/// multiply instead of branches so the result is an unknown-but-bounded scalar to the verifier.
#[inline(always)]
pub(super) fn first_flagged(m: u64) -> usize {
    let low = (m & m.wrapping_neg()) >> 7; // 1 << 8k
    (low.wrapping_mul(0x0001_0203_0405_0607) >> 56) as usize & 7
}

/// State shared with the `bpf_loop` callback (lives on the caller's stack).
#[repr(C)]
pub struct ScanState {
    /// Start of the line to examine next.
    pub pos: u64,
    /// Valid bytes in the scratch buffer.
    pub len: u64,
    pub sig_headers: u32,
    pub sig_gen: u32,
    /// 1 + matched signature id, or 0.
    pub found: u32,
    /// Bit (c - 'a') set for every lowercase first letter of a header that has signatures.
    pub letters: u32,
    /// Where the newline scan resumes.
    pub rp: u32,
    pub _pad: u32,
}

/// First letters (as `1 << (c - 'a')`) of the header names and compact forms in `sig_headers`.
#[inline(always)]
pub fn header_letters(sig_headers: u32) -> u32 {
    const fn bit(c: u8) -> u32 {
        1 << (c - b'a')
    }
    let mut m = 0;
    if sig_headers & (1 << HDR_USER_AGENT) != 0 {
        m |= bit(b'u');
    }
    if sig_headers & (1 << HDR_FROM) != 0 {
        m |= bit(b'f');
    }
    if sig_headers & (1 << HDR_TO) != 0 {
        m |= bit(b't');
    }
    if sig_headers & (1 << HDR_CONTACT) != 0 {
        m |= bit(b'c') | bit(b'm');
    }
    if sig_headers & (1 << HDR_VIA) != 0 {
        m |= bit(b'v');
    }
    if sig_headers & (1 << HDR_CALL_ID) != 0 {
        m |= bit(b'c') | bit(b'i');
    }
    if sig_headers & ((1 << HDR_SUBJECT) | (1 << HDR_SERVER)) != 0 {
        m |= bit(b's');
    }
    m
}

/// Header id and name length of the line starting at `pos`, or (0, 0).
#[inline(always)]
fn header_at(buf: *const u64, pos: usize) -> (u32, usize) {
    let h = lower8(load_at(buf, pos));
    let h2 = lower8(load_at(buf, pos + 8));
    let (id, n) = if h == lit(b"user-age") && h2 & mask(2) == lit(b"nt") {
        (HDR_USER_AGENT, 10)
    } else if h & mask(4) == lit(b"from") {
        (HDR_FROM, 4)
    } else if h & mask(7) == lit(b"contact") {
        (HDR_CONTACT, 7)
    } else if h & mask(7) == lit(b"call-id") {
        (HDR_CALL_ID, 7)
    } else if h & mask(7) == lit(b"subject") {
        (HDR_SUBJECT, 7)
    } else if h & mask(6) == lit(b"server") {
        (HDR_SERVER, 6)
    } else if h & mask(3) == lit(b"via") {
        (HDR_VIA, 3)
    } else if h & mask(2) == lit(b"to") {
        (HDR_TO, 2)
    } else {
        match h as u8 {
            b'f' => (HDR_FROM, 1),
            b't' => (HDR_TO, 1),
            b'm' => (HDR_CONTACT, 1),
            b'v' => (HDR_VIA, 1),
            b'i' => (HDR_CALL_ID, 1),
            b's' => (HDR_SUBJECT, 1),
            _ => (0, 0),
        }
    };
    if id == 0 {
        return (0, 0);
    }
    // The name must be followed by optional whitespace and the colon.
    let c = if n >= 8 { (h2 >> (8 * (n - 8) as u32)) as u8 } else { (h >> (8 * n as u32)) as u8 };
    if c == b':' || c == b' ' || c == b'\t' {
        (id, n)
    } else {
        (0, 0)
    }
}

/// The value word at `pos`, lowercased and cut at the end of the line; `alive` becomes 0 once
/// the line has ended, so later words read as zero.
#[inline(always)]
fn value_word(buf: *const u64, pos: usize, alive: &mut u64) -> u64 {
    let w = load_at(buf, pos) & *alive;
    let (cut, hit) = cut_at(w, bytes_eq(w, b'\r') | bytes_eq(w, b'\n'));
    if hit {
        *alive = 0;
    }
    lower8(cut)
}

/// Examine the header line at `st.pos` against the signatures. Returns true when a signature
/// matched (stored in `st.found`).
#[inline(always)]
fn check_line(buf: *const u64, st: &mut ScanState) -> bool {
    let pos = clamp(buf, st.pos as usize);
    // Cheap pre-filter: only lines whose first letter starts a header with signatures.
    let c0 = (byte_at(buf, pos) | 0x20).wrapping_sub(b'a') as u32;
    if c0 >= 26 || (st.letters >> c0) & 1 == 0 {
        return false;
    }
    let (hdr, n) = header_at(buf, pos);
    if hdr == 0 || st.sig_headers & (1 << hdr) == 0 {
        return false;
    }
    // Skip whitespace, the colon, whitespace and folded continuation (CRLF + SP/HT).
    let mut p = clamp(buf, pos + n);
    let mut seen_colon = false;
    for _ in 0..12 {
        let c = byte_at(buf, p);
        if c == b' ' || c == b'\t' {
            p = clamp(buf, p + 1);
        } else if c == b':' && !seen_colon {
            seen_colon = true;
            p = clamp(buf, p + 1);
        } else if c == b'\r' && seen_colon {
            let c3 = byte_at(buf, p + 2);
            if byte_at(buf, p + 1) == b'\n' && (c3 == b' ' || c3 == b'\t') {
                p = clamp(buf, p + 3);
            } else {
                break;
            }
        } else {
            break;
        }
    }
    if !seen_colon {
        return false;
    }
    // A display name in From/To/Contact may be quoted: match what is inside the quotes.
    if (hdr == HDR_FROM || hdr == HDR_TO || hdr == HDR_CONTACT) && byte_at(buf, p) == b'"' {
        p = clamp(buf, p + 1);
    }
    let mut words = [0u64; SIG_MAX_LEN / 8];
    // Bytes past the payload are zero (see copy_payload); stop at the end of the line.
    let mut alive = u64::MAX;
    words[0] = value_word(buf, p, &mut alive);
    // Only values whose first two bytes can start a signature of this header go to the trie.
    match SIG_PREFILTER.get(st.sig_gen & 1) {
        Some(pf) if pf.may_match(hdr, words[0] as u8, (words[0] >> 8) as u8) => {}
        _ => return false,
    }
    let mut k = 1usize;
    while k < SIG_MAX_LEN / 8 {
        words[k] = value_word(buf, clamp(buf, p + 8 * k), &mut alive);
        k += 1;
    }
    // SAFETY: [u64; 4] and [u8; 32] have the same size; byte order is little-endian as in userspace.
    let data = SigKeyData {
        header: hdr,
        value: unsafe { core::mem::transmute::<[u64; SIG_MAX_LEN / 8], [u8; SIG_MAX_LEN]>(words) },
    };
    let key = Key::new(32 + 8 * SIG_MAX_LEN as u32, data);
    let hit = if st.sig_gen == 0 { SIG_0.get(&key) } else { SIG_1.get(&key) };
    if let Some(id) = hit {
        st.found = *id + 1;
        return true;
    }
    false
}

/// Can the candidate line at `p` be passed over without `check_line`? Only for the two common
/// headers in canonical form, `User-Agent: v…` and `From: v…` (one space after the colon, no
/// quote): true when the prefilter rules the value out. Straight-line code run inside the scan,
/// so a legitimate message's User-Agent and From cost no extra scan step; anything else
/// (other headers, spacing, folding, quotes, a possible match) goes to `check_line`, which
/// decides exactly.
#[inline(always)]
fn quick_reject(buf: *const u64, st: &ScanState, pf: Option<&SigPrefilter>, p: usize) -> bool {
    let pf = match pf {
        Some(pf) => pf,
        None => return false,
    };
    let w = lower8(load_at(buf, p));
    let (hdr, vw) = if w == lit(b"user-age") {
        let w2 = lower8(load_at(buf, clamp(buf, p + 8)));
        if w2 & mask(4) != lit(b"nt: ") {
            return false;
        }
        (HDR_USER_AGENT, w2 >> 32)
    } else if w & mask(6) == lit(b"from: ") {
        (HDR_FROM, w >> 48)
    } else {
        return false;
    };
    if st.sig_headers & (1 << hdr) == 0 {
        return true;
    }
    let v0 = vw as u8;
    let v1 = (vw >> 8) as u8;
    if v0 == b' ' || v0 == b'\t' || v0 == b'"' || v0 == b'\r' || v0 == b'\n' {
        return false;
    }
    // As in `check_line`: the value ends at the line end.
    let v1 = if v1 == b'\r' || v1 == b'\n' { 0 } else { v1 };
    !pf.may_match(hdr, v0, v1)
}

/// Flags (0x80) bytes below 0x10 (`\t`, `\n`, `\r`, NUL) somewhere in `w` (AND with 0x80..80):
/// a pair of words without any holds no line end and is skipped with ~7 instructions per word.
/// (May also flag a byte above such a byte; callers recheck exactly.)
#[inline(always)]
pub(super) fn ctl_bytes(w: u64) -> u64 {
    w.wrapping_sub(0x1010_1010_1010_1010) & !w
}

/// Byte `pos` (< SCRATCH_SIZE) of the scratch buffer.
#[inline(always)]
pub(super) fn byte_at(buf: *const u64, pos: usize) -> u8 {
    unsafe { *(buf as *const u8).add(pos & (SCRATCH_SIZE - 1)) }
}

/// Rounds per scan step (each round covers 16 bytes or one line end).
const SCAN_ROUNDS: usize = 64;

/// Scan steps per message: a step scans up to `SCAN_ROUNDS` rounds or checks one candidate
/// header line. 1536 bytes hold at most 256 header lines of 6 bytes ("f: x\r\n"), so every
/// line of an inspected payload is reached; the bound also caps the work a crafted packet can
/// cause.
pub const SCAN_STEPS: u32 = 320;

/// `bpf_loop` callback. Two kinds of steps: if `st.pos` holds a candidate line, check it
/// against the signatures; otherwise scan forward from `st.rp`, 16 bytes per round, for the
/// next line whose first letter can start a header that has signatures (other lines cost only
/// the scan). Returns 1 to stop (match, end of headers or end of data).
pub extern "C" fn scan_lines(_i: u64, ctx: *mut c_void) -> i64 {
    let st = unsafe { &mut *(ctx as *mut ScanState) };
    let buf = match SCRATCH.get_ptr(0) {
        Some(p) => p as *const u64,
        None => return 1,
    };
    let len = st.len as usize;
    if st.pos != 0 {
        if check_line(buf, st) {
            return 1;
        }
        st.pos = 0;
    }
    let pf = SIG_PREFILTER.get(st.sig_gen & 1);
    // `from`: first byte not examined yet. Laundered each round (see `clamp`) so the verifier
    // sees one bounded state per round whatever path led there.
    let mut from = st.rp as usize;
    for _ in 0..SCAN_ROUNDS {
        let at = clamp(buf, from);
        let wi = at >> 3;
        let keep = u64::MAX << (8 * (at & 7));
        let w0 = unsafe { *buf.add(wi) };
        let w1 = unsafe { *buf.add(wi + 1) };
        let next_pair = (wi << 3) + 16;
        let c0 = ctl_bytes(w0) & keep & 0x8080_8080_8080_8080;
        let c1 = ctl_bytes(w1) & 0x8080_8080_8080_8080;
        if c0 | c1 == 0 {
            if next_pair >= len {
                return 1;
            }
            from = next_pair;
            continue;
        }
        // The first control byte decides: "\r\n" or a bare '\n' ends the line; anything else
        // ('\t', a lone '\r', NUL) is stepped over.
        let q = if c0 != 0 { (wi << 3) + first_flagged(c0) } else { (wi << 3) + 8 + first_flagged(c1) };
        if q >= len {
            return 1;
        }
        let ch = byte_at(buf, q);
        let p = if ch == b'\n' {
            q + 1
        } else if ch == b'\r' && byte_at(buf, q + 1) == b'\n' {
            q + 2
        } else {
            from = q + 1;
            continue;
        };
        if p >= len {
            return 1;
        }
        let c = byte_at(buf, p);
        if c == b'\r' || c == b'\n' {
            return 1; // empty line: end of the header section
        }
        let l = (c | 0x20).wrapping_sub(b'a') as u32;
        if l < 26 && (st.letters >> l) & 1 != 0 && !quick_reject(buf, st, pf, p) {
            st.pos = p as u64;
            st.rp = p as u32;
            return 0;
        }
        from = p;
    }
    st.rp = clamp(buf, from) as u32;
    0
}
