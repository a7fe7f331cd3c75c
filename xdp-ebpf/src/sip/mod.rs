//! SIP inspection of packets to the SIP ports: the payload is copied into a per-CPU buffer
//! (`copy`), the request method read from its first bytes (`method`), and the header lines
//! scanned for scanner signatures in a `bpf_loop` callback (`scan`).
mod copy;
pub mod fields;
mod method;
mod scan;

use core::ffi::c_void;

use aya_ebpf::{
    helpers::bpf_loop,
    programs::{TcContext, XdpContext},
};
use xdp_common::*;

use crate::maps::{CONFIG, SCRATCH, SIP_PORTS, SIP_PORTS_1};
use crate::parse::{Frame, Pkt};
use scan::{header_letters, scan_lines, ScanState, SCAN_STEPS};

/// Is `port` one of the protected SIP ports (bitmap of policy generation `policy_gen & 1`)?
#[inline(always)]
pub fn is_sip_port(cfg: &Config, port: u16) -> bool {
    let word = (port >> 6) as u32;
    let w = if cfg.policy_gen & 1 == 0 { SIP_PORTS.get(word) } else { SIP_PORTS_1.get(word) };
    match w {
        Some(w) => (*w >> (port & 63)) & 1 == 1,
        None => false,
    }
}

/// Little-endian u64 of up to 8 ASCII bytes (compile-time).
const fn lit(s: &[u8]) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < s.len() {
        v |= (s[i] as u64) << (8 * i);
        i += 1;
    }
    v
}

/// Mask of the low `n` bytes of a u64.
const fn mask(n: u32) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

pub struct SipResult {
    /// `METHOD_*`.
    pub method: u8,
    /// 1 + the id of the matched signature, or 0.
    pub sig: u32,
    /// Payload bytes copied into `SCRATCH` (0: nothing copied).
    pub len: u32,
}

/// Inspect the SIP message in the payload of `pkt`.
#[inline(always)]
pub fn inspect(ctx: &XdpContext, pkt: &Pkt) -> SipResult {
    let r = sip_scan(ctx.ctx, pkt.payload_off as u32);
    SipResult { method: (r & 0xff) as u8, sig: ((r >> 8) & 0xffff_ffff) as u32, len: ((r >> 48) & 0xfff) as u32 }
}

/// Copy the first `SIP_SCAN_MAX` bytes of the payload at `payload_off` into `SCRATCH`;
/// returns (scratch buffer, bytes copied), or `None` when the payload is shorter than 8 bytes
/// or the packet shorter than claimed.
#[inline(always)]
fn copy_to_scratch<C: Frame>(ctx: &C, payload_off: usize) -> Option<(*mut u64, usize)> {
    let total = ctx.data_end() - ctx.data();
    if payload_off + 8 > total {
        return None;
    }
    let avail = total - payload_off;
    let capped = if avail > SIP_SCAN_MAX as usize { SIP_SCAN_MAX as usize } else { avail };
    // Bounds the verifier can follow: (len - 8) masked and checked, then + 8 => [8, SIP_SCAN_MAX].
    let extra = core::hint::black_box((capped - 8) as u32) & 0x7ff;
    if extra > SIP_SCAN_MAX - 8 {
        return None;
    }
    let len = (extra + 8) as usize;
    let buf = SCRATCH.get_ptr_mut(0)? as *mut u64;
    if !copy::copy_payload(ctx, payload_off, len, buf) {
        return None;
    }
    Some((buf, len))
}

/// Egress: copy the payload of the packet in `skb` at `payload_off` into `SCRATCH`; returns the
/// bytes copied (0: none). A global function, verified once (see `sip_scan`).
#[no_mangle]
#[inline(never)]
pub extern "C" fn sip_copy_skb(skb: *mut aya_ebpf::bindings::__sk_buff, payload_off: u32) -> u32 {
    let ctx = TcContext::new(skb);
    match copy_to_scratch(&ctx, payload_off as usize) {
        Some((_, len)) => len as u32,
        None => 0,
    }
}

/// Copy the payload into the scratch buffer, read the method and look for scanner signatures.
/// Returns `method | (1 + signature id) << 8 | bytes copied << 48` (signature 0: no match).
///
/// A global (non-inlined, exported) function: the verifier checks it once, on its own, instead
/// of once per path of the header parser that reaches it.
#[no_mangle]
#[inline(never)]
pub extern "C" fn sip_scan(ctx: *mut aya_ebpf::bindings::xdp_md, payload_off: u32) -> u64 {
    let ctx = XdpContext::new(ctx);
    let mut res = SipResult { method: METHOD_NONE, sig: 0, len: 0 };
    let out = |r: &SipResult| r.method as u64 | (r.sig as u64) << 8 | (r.len as u64) << 48;
    let (buf, len) = match copy_to_scratch(&ctx, payload_off as usize) {
        Some(x) => x,
        None => return out(&res),
    };
    res.len = len as u32;
    let buf = buf as *const u64;
    res.method = method::method_of(unsafe { *buf }, unsafe { *buf.add(1) });
    if res.method == METHOD_OTHER && !method::is_request_line(buf, len) {
        res.method = METHOD_NONE;
    }
    if res.method == METHOD_NONE || res.method == METHOD_RESPONSE {
        return out(&res);
    }
    // The scan settings are read here rather than passed in: fewer values live across the copy.
    let (sig_headers, sig_gen) = match CONFIG.get(0) {
        Some(c) if c.flags & CFG_SCANNERS_ENABLED != 0 && c.sig_headers != 0 => (c.sig_headers, c.sig_gen),
        _ => return out(&res),
    };
    // The request line is not a header: the scan starts with the line after the first '\n'.
    //
    // `pos`, `rp` and `found` start at 0, read from the scratch buffer's last word (never
    // written, always 0; see `scan::clamp`) rather than as constants. The verifier checks the
    // `bpf_loop` callback once per distinct state of these fields at its entry, comparing them
    // by range: starting from "unknown" instead of the constant 0, the first check covers every
    // later state and the callback is verified once, not once per shape of (pos, rp, found)
    // (the kernel 6.18 verifier otherwise goes past its 1M-instruction limit).
    let zero = unsafe { *buf.add(SCRATCH_WORDS - 1) };
    let mut st = ScanState {
        pos: zero,
        len: len as u64,
        sig_headers,
        sig_gen,
        found: zero as u32,
        letters: header_letters(sig_headers),
        rp: zero as u32,
        _pad: 0,
    };
    unsafe {
        bpf_loop(SCAN_STEPS, scan_lines as *mut c_void, &mut st as *mut ScanState as *mut c_void, 0);
    }
    res.sig = st.found;
    out(&res)
}
