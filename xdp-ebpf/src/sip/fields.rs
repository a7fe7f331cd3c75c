//! The header fields the authentication checks need (`Call-ID`, `CSeq`, `To` user, presence of
//! `Authorization`/`Proxy-Authorization`), read from the payload already copied into `SCRATCH`
//! by a `bpf_loop` walk over the header lines. Used by the ingress bookkeeping (`auth`) and the
//! egress program (`egress`); results go to the per-CPU `AUTH_SCRATCH` (`SipFields`).
use core::ffi::c_void;

use aya_ebpf::helpers::bpf_loop;
use xdp_common::*;

use super::scan::{byte_at, clamp, ctl_bytes, first_flagged, load_at};
use super::{lit, mask};
use crate::maps::{AUTH_SCRATCH, SCRATCH};

/// First letters of the lines looked at: `a`uthorization, `p`roxy-authorization, `c`all-id,
/// `c`seq, `i` (compact Call-ID), `t`o / `t` (compact To).
#[allow(clippy::eq_op)] // every bit is written as its letter's offset from `a`, `a` included
const LETTERS: u32 =
    (1 << (b'a' - b'a')) | (1 << (b'p' - b'a')) | (1 << (b'c' - b'a')) | (1 << (b'i' - b'a')) | (1 << (b't' - b'a'));

/// Rounds per step of the line walk (each round covers 16 bytes or one line end).
const ROUNDS: usize = 64;
/// Steps per message (a step walks up to `ROUNDS` rounds or examines one candidate line).
const STEPS: u32 = 320;

/// State of the walk (on the caller's stack).
#[repr(C)]
struct WalkState {
    /// Candidate line to examine next (0: none).
    pos: u64,
    /// Valid bytes in the scratch buffer.
    len: u64,
    /// Where the newline search resumes.
    rp: u64,
}

/// Read the fields of the SIP message of `len` bytes in `SCRATCH` into `AUTH_SCRATCH[0]`;
/// returns 1 when done (0: no scratch). The request or status line is skipped: the walk starts
/// with the line after the first newline.
///
/// A global function: the verifier checks it once, whatever the paths of its callers.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sip_fields(len: u32) -> u32 {
    let out = match AUTH_SCRATCH.get_ptr_mut(0) {
        Some(p) => unsafe { &mut *p },
        None => return 0,
    };
    out.callid = 0;
    out.to_hash = 0;
    out.cseq = 0;
    out.flags = 0;
    out.cseq_method = 0;
    let u = &mut out.user as *mut [u8; EVENT_DETAIL_LEN] as *mut u32;
    let mut i = 0;
    while i < EVENT_DETAIL_LEN / 4 {
        // Volatile: LLVM would merge the stores into a call to a BPF `memset`.
        unsafe { core::ptr::write_volatile(u.add(i), 0) };
        i += 1;
    }
    let buf = match SCRATCH.get_ptr(0) {
        Some(p) => p as *const u64,
        None => return 0,
    };
    // Start unknown-but-bounded (see `sip_scan`): the callback is verified once.
    let zero = unsafe { *buf.add(SCRATCH_WORDS - 1) };
    let mut st = WalkState { pos: zero, len: (len & 0x7ff) as u64, rp: zero };
    unsafe {
        bpf_loop(STEPS, walk as *mut c_void, &mut st as *mut WalkState as *mut c_void, 0);
    }
    1
}

/// `bpf_loop` callback: examine the candidate line at `st.pos`, or look for the next line
/// whose first letter is in `LETTERS`. Returns 1 at the end of the headers or of the data.
extern "C" fn walk(_i: u64, ctx: *mut c_void) -> i64 {
    let st = unsafe { &mut *(ctx as *mut WalkState) };
    let buf = match SCRATCH.get_ptr(0) {
        Some(p) => p as *const u64,
        None => return 1,
    };
    let out = match AUTH_SCRATCH.get_ptr_mut(0) {
        Some(p) => unsafe { &mut *p },
        None => return 1,
    };
    let len = st.len as usize;
    if st.pos != 0 {
        // A step of its own: the walk below is then verified from one state, not once per
        // outcome of `examine`.
        examine(buf, clamp(buf, st.pos as usize), out);
        st.pos = 0;
        return 0;
    }
    let mut from = st.rp as usize;
    for _ in 0..ROUNDS {
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
        if l < 26 && (LETTERS >> l) & 1 != 0 {
            st.pos = p as u64;
            st.rp = p as u64;
            return 0;
        }
        from = p;
    }
    st.rp = clamp(buf, from) as u64;
    0
}

const F_CRED: u32 = 1;
const F_CALLID: u32 = 2;
const F_CSEQ: u32 = 3;
const F_TO: u32 = 4;

/// The field of the header line at `pos` and the length of its name, or (0, 0).
#[inline(always)]
fn field_at(buf: *const u64, pos: usize) -> (u32, usize) {
    let h = lower8(load_at(buf, pos));
    let h2 = lower8(load_at(buf, clamp(buf, pos + 8)));
    let (id, n) = if h == lit(b"authoriz") && h2 & mask(5) == lit(b"ation") {
        (F_CRED, 13)
    } else if h == lit(b"proxy-au") && h2 == lit(b"thorizat") {
        // "proxy-authorization": the last three letters are checked below.
        (F_CRED, 19)
    } else if h & mask(7) == lit(b"call-id") {
        (F_CALLID, 7)
    } else if h & mask(4) == lit(b"cseq") {
        (F_CSEQ, 4)
    } else if h & mask(2) == lit(b"to") {
        (F_TO, 2)
    } else {
        match h as u8 {
            b'i' => (F_CALLID, 1),
            b't' => (F_TO, 1),
            _ => (0, 0),
        }
    };
    if id == 0 {
        return (0, 0);
    }
    if n == 19 && lower8(load_at(buf, clamp(buf, pos + 16))) & mask(3) != lit(b"ion") {
        return (0, 0);
    }
    // The name must be followed by optional whitespace and the colon.
    let c = byte_at(buf, pos + n);
    if c == b':' || c == b' ' || c == b'\t' {
        (id, n)
    } else {
        (0, 0)
    }
}

/// Position of the value after the name: whitespace, the colon, whitespace skipped.
#[inline(always)]
fn value_start(buf: *const u64, pos: usize) -> usize {
    let mut p = pos;
    for _ in 0..8 {
        let c = byte_at(buf, p);
        if c == b' ' || c == b'\t' || c == b':' {
            p = clamp(buf, p + 1);
        } else {
            break;
        }
    }
    p
}

/// Examine the candidate line at `pos` and store what it holds in `out`.
#[inline(always)]
fn examine(buf: *const u64, pos: usize, out: &mut SipFields) {
    let (id, n) = field_at(buf, pos);
    if id == 0 {
        return;
    }
    let p = value_start(buf, clamp(buf, pos + n));
    if id == F_CRED {
        out.flags |= SF_CREDENTIALS;
    } else if id == F_CALLID {
        out.callid = value_hash(buf, p);
    } else if id == F_CSEQ {
        cseq(buf, p, out);
    } else {
        to_user(buf, p, out);
    }
}

/// `sip_hash` of the value at `p` up to the end of its line (at most 64 bytes).
#[inline(always)]
fn value_hash(buf: *const u64, p: usize) -> u64 {
    let mut words = [0u64; SIP_HASH_WORDS];
    let mut alive = u64::MAX;
    let mut k = 0;
    while k < SIP_HASH_WORDS {
        let w = load_at(buf, clamp(buf, p + 8 * k)) & alive;
        let (cut, hit) = cut_at(w, bytes_eq(w, b'\r') | bytes_eq(w, b'\n'));
        if hit {
            alive = 0;
        }
        words[k] = cut;
        k += 1;
    }
    let h = sip_hash(&words);
    if h == 0 {
        1
    } else {
        h
    }
}

/// CSeq: the number (up to 10 digits) and the method (REGISTER, INVITE, OPTIONS or other).
#[inline(always)]
fn cseq(buf: *const u64, p: usize, out: &mut SipFields) {
    let mut n: u32 = 0;
    let mut q = p;
    for _ in 0..10 {
        let c = byte_at(buf, q);
        if !c.is_ascii_digit() {
            break;
        }
        n = n.wrapping_mul(10).wrapping_add((c - b'0') as u32);
        q = clamp(buf, q + 1);
    }
    out.cseq = if n == 0 { 1 << 31 } else { n };
    let m = value_start(buf, q);
    let w = load_at(buf, m);
    out.cseq_method = if w == lit(b"REGISTER") {
        METHOD_REGISTER as u32
    } else if w & mask(6) == lit(b"INVITE") {
        METHOD_INVITE as u32
    } else if w & mask(7) == lit(b"OPTIONS") {
        METHOD_OPTIONS as u32
    } else {
        METHOD_OTHER as u32
    };
}

/// Flags (0x80) the bytes below 0x21 (controls, space) of `w`, exactly.
#[inline(always)]
fn below_0x21(w: u64) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let t = (w & LOW7).wrapping_add(0x5f5f_5f5f_5f5f_5f5f);
    !(t | w) & HIGH
}

/// The user of the `To` URI (`"Name" <sip:user@host>`, `sip:user@host;tag=…`): the bytes
/// between the scheme's colon and the '@' (URIs without a user give none), its first
/// `EVENT_DETAIL_LEN` bytes kept as text, all of it (up to 64 bytes) hashed. Word-wise
/// (bytes_eq masks), so the verifier sees a few short loops rather than one per byte.
#[inline(always)]
fn to_user(buf: *const u64, p: usize, out: &mut SipFields) {
    // The URI starts after a '<' before the end of the line (within 48 bytes), else at `p`.
    let mut start = p;
    let mut k = 0;
    while k < 6 {
        let w = load_at(buf, clamp(buf, p + 8 * k));
        let end = bytes_eq(w, b'\r') | bytes_eq(w, b'\n');
        let lt = bytes_eq(w, b'<');
        let (lt_before_end, _) = cut_at(lt, end);
        if lt_before_end != 0 {
            start = clamp(buf, p + 8 * k + first_flagged(lt_before_end) + 1);
            break;
        }
        if end != 0 {
            break;
        }
        k += 1;
    }
    // The scheme (sip, sips, tel) ends at the first ':' within 8 bytes.
    let colon = bytes_eq(load_at(buf, start), b':');
    if colon == 0 {
        return;
    }
    let u = clamp(buf, start + first_flagged(colon) + 1);
    // The user ends at '@'; any other delimiter first means the URI has no user part.
    let mut words = [0u64; SIP_HASH_WORDS];
    let mut at = false;
    let mut k = 0;
    while k < SIP_HASH_WORDS {
        let w = load_at(buf, clamp(buf, u + 8 * k));
        let stop = bytes_eq(w, b'@')
            | bytes_eq(w, b'>')
            | bytes_eq(w, b';')
            | bytes_eq(w, b'"')
            | bytes_eq(w, b':')
            | below_0x21(w);
        let (cut, hit) = cut_at(w, stop);
        words[k] = cut;
        if hit {
            at = byte_at(buf, u + 8 * k + first_flagged(stop)) == b'@';
            break;
        }
        k += 1;
    }
    if !at || words[0] == 0 {
        return;
    }
    let h = sip_hash(&words);
    out.to_hash = if h == 0 { 1 } else { h };
    // The text: the first 28 bytes, as seven 4-byte stores.
    let dst = &mut out.user as *mut [u8; EVENT_DETAIL_LEN] as *mut u32;
    let mut j = 0;
    while j < EVENT_DETAIL_LEN / 4 {
        let v = (words[j >> 1] >> (32 * (j & 1))) as u32;
        unsafe { core::ptr::write_volatile(dst.add(j), v) };
        j += 1;
    }
}

/// The status code of a response (`SIP/2.0 NNN`) in the first two scratch words, or 0.
#[inline(always)]
pub fn status_of(w0: u64, w1: u64) -> u16 {
    if w0 != lit(b"SIP/2.0 ") {
        return 0;
    }
    let d0 = (w1 & 0xff) as u8;
    let d1 = ((w1 >> 8) & 0xff) as u8;
    let d2 = ((w1 >> 16) & 0xff) as u8;
    if !d0.is_ascii_digit() || !d1.is_ascii_digit() || !d2.is_ascii_digit() {
        return 0;
    }
    (d0 - b'0') as u16 * 100 + (d1 - b'0') as u16 * 10 + (d2 - b'0') as u16
}
