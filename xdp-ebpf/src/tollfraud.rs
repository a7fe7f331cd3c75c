//! The toll-fraud guard: the user part of the Request-URI of an INVITE or MESSAGE, normalised
//! (a leading `+` and digits; the visual separators `-`, `.`, ` `, `(`, `)` skipped), looked up
//! in the `TF_PREFIX_*` trie of the live policy generation. The trie holds every configured
//! prefix once per international prefix (`+882`, `00882`, `011882`: stripping the international
//! prefix costs nothing at run time); in allow-only mode the bare international prefixes are
//! entries that drop, so an international number no allowed prefix covers is dropped, and a
//! number without an international prefix (an extension, a national number) matches nothing.
use core::ffi::c_void;

use aya_ebpf::{helpers::bpf_loop, maps::lpm_trie::Key};
use xdp_common::*;

use crate::maps::{SCRATCH, TF_PREFIX_0, TF_PREFIX_1};

/// Byte `pos` (< SCRATCH_SIZE) of the scratch buffer.
#[inline(always)]
fn byte_at(buf: *const u64, pos: usize) -> u8 {
    unsafe { *(buf as *const u8).add(pos & (SCRATCH_SIZE - 1)) }
}

/// Offset of the Request-URI's user part (after `sip:`, `sips:` or `tel:`, any case) in a
/// request line whose method token plus space is `start` bytes long; 0 for other schemes.
#[inline(always)]
fn user_start(buf: *const u64, start: usize) -> usize {
    let c = |i: usize| byte_at(buf, start + i) | 0x20;
    let colon = |i: usize| byte_at(buf, start + i) == b':';
    if c(0) == b's' && c(1) == b'i' && c(2) == b'p' {
        if colon(3) {
            return start + 4;
        }
        if c(3) == b's' && colon(4) {
            return start + 5;
        }
    } else if c(0) == b't' && c(1) == b'e' && c(2) == b'l' && colon(3) {
        return start + 4;
    }
    0
}

/// State of the number walk, shared with the `bpf_loop` callback (on the caller's stack).
#[repr(C)]
struct Walk {
    /// Next byte of the user part.
    pos: u64,
    /// Bytes kept so far.
    n: u64,
    /// The kept bytes, little-endian.
    w: [u64; 3],
}

/// `bpf_loop` callback: one byte of the user part. Keeps a leading `+` and digits, skips the
/// visual separators, stops at anything else or once `TF_KEY_LEN` bytes are kept.
extern "C" fn walk_step(_i: u64, ctx: *mut c_void) -> i64 {
    let st = unsafe { &mut *(ctx as *mut Walk) };
    let buf = match SCRATCH.get_ptr(0) {
        Some(p) => p as *const u64,
        None => return 1,
    };
    let c = byte_at(buf, st.pos as usize);
    st.pos = (st.pos + 1) & (SCRATCH_SIZE as u64 - 1);
    let n = st.n & 31;
    if c.is_ascii_digit() || (c == b'+' && n == 0) {
        let b = (c as u64) << ((n & 7) * 8);
        if n < 8 {
            st.w[0] |= b;
        } else if n < 16 {
            st.w[1] |= b;
        } else {
            st.w[2] |= b;
        }
        st.n = n + 1;
        return if n + 1 >= TF_KEY_LEN as u64 { 1 } else { 0 };
    }
    if tf_is_separator(c) {
        0
    } else {
        1
    }
}

/// Check the Request-URI of the INVITE/MESSAGE in the scratch buffer (copied by `sip_scan`)
/// against the prefixes of policy generation `gen`. Returns 0 to pass, else `1 + rule id` of
/// the dropping entry. The normalised number is left in the scratch buffer at
/// `TF_SCRATCH_WORD` (three words) for the drop event.
///
/// A global function, verified once on its own (like `sip_scan`); the walk is a `bpf_loop`
/// whose state starts "unknown" (see `sip_scan`), so its callback is verified once.
#[no_mangle]
#[inline(never)]
pub extern "C" fn tf_check(method: u32, gen: u32) -> u64 {
    let buf = match SCRATCH.get_ptr_mut(0) {
        Some(p) => p as *mut u64,
        None => return 0,
    };
    let start = if method == METHOD_INVITE as u32 { 7 } else { 8 };
    let p = user_start(buf, start);
    if p == 0 {
        return 0;
    }
    // The scratch buffer's last word is never written (always 0), but unknown to the verifier.
    let zero = unsafe { *buf.add(SCRATCH_WORDS - 1) };
    let mut st = Walk { pos: p as u64 | zero, n: zero, w: [zero, zero, zero] };
    unsafe {
        bpf_loop(TF_SCAN_BYTES as u32, walk_step as *mut c_void, &mut st as *mut Walk as *mut c_void, 0);
    }
    let [w0, w1, w2] = st.w;
    // Not a dialled number (a name, or a lone '+').
    if st.n == 0 || (st.n == 1 && w0 == b'+' as u64) {
        return 0;
    }
    unsafe {
        *buf.add(TF_SCRATCH_WORD) = w0;
        *buf.add(TF_SCRATCH_WORD + 1) = w1;
        *buf.add(TF_SCRATCH_WORD + 2) = w2;
    }
    // SAFETY: [u64; 3] and [u8; 24] have the same size; little-endian byte order as userspace.
    let data = unsafe { core::mem::transmute::<[u64; 3], [u8; TF_KEY_LEN]>([w0, w1, w2]) };
    // Full-length lookup: the padding bytes are 0, which no stored prefix holds.
    let key = Key::new(8 * TF_KEY_LEN as u32, data);
    let hit = if gen & 1 == 0 { TF_PREFIX_0.get(&key) } else { TF_PREFIX_1.get(&key) };
    match hit {
        Some(v) if *v & TF_DROP != 0 => 1 + (*v & !TF_DROP) as u64,
        _ => 0,
    }
}

/// The normalised number of the last check on this CPU, for the event.
#[inline(always)]
pub fn last_number() -> [u64; 3] {
    match SCRATCH.get(0) {
        Some(b) => [b[TF_SCRATCH_WORD], b[TF_SCRATCH_WORD + 1], b[TF_SCRATCH_WORD + 2]],
        None => [0; 3],
    }
}
