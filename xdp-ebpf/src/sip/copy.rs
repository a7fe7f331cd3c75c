//! Copy of the L4 payload into the per-CPU scratch buffer, with direct packet reads.
use crate::parse::Frame;
use xdp_common::SIP_SCAN_MAX;

/// One 8-byte load from packet memory at any alignment (x86-64, arm64 and the verifier accept
/// unaligned packet loads; `read_unaligned` would be split into eight byte loads).
///
/// # Safety
/// `p..p + 8` must have been checked against `data_end`.
#[inline(always)]
unsafe fn load_u64(p: usize) -> u64 {
    unsafe { core::ptr::read_volatile(p as *const u64) }
}

/// Copy `len` (8..=SIP_SCAN_MAX) payload bytes at `off` into the scratch buffer, 32 bytes per
/// round with direct packet reads (no helper call: a call and its return cost more than the
/// copy on CPUs with return-stack mitigations), then zero the bytes after them (up to 40) so
/// value reads past the end see zeros. False if the packet is shorter than claimed.
#[inline(always)]
pub fn copy_payload<C: Frame>(ctx: &C, off: usize, len: usize, buf: *mut u64) -> bool {
    // Header offsets are below 16 KiB in any XDP frame (the parser checked them against the
    // frame); the mask only bounds the pointer for the verifier.
    let src = ctx.data() + (off & 0x3fff);
    let end = ctx.data_end();
    let words = len >> 3;
    let mut i = 0usize;
    // Whole 32-byte blocks (at most SIP_SCAN_MAX / 32 rounds).
    while i < SIP_SCAN_MAX as usize / 8 {
        if i + 4 > words {
            break;
        }
        let p = src + i * 8;
        if p + 32 > end {
            return false;
        }
        unsafe {
            *buf.add(i) = load_u64(p);
            *buf.add(i + 1) = load_u64(p + 8);
            *buf.add(i + 2) = load_u64(p + 16);
            *buf.add(i + 3) = load_u64(p + 24);
        }
        i += 4;
    }
    // Up to three more whole words.
    let mut k = 0;
    while k < 3 {
        if i >= words {
            break;
        }
        let p = src + (i & 0xff) * 8;
        if p + 8 > end {
            return false;
        }
        unsafe { *buf.add(i & 0xff) = load_u64(p) };
        i += 1;
        k += 1;
    }
    let wl = words & 0xff;
    let rest = len & 7;
    // The last 1..7 bytes: the word ending at the payload's end, shifted down (len >= 8).
    let last = if rest != 0 {
        // (black_box: LLVM would address the load as (src + len) - 8, the verifier needs the
        // checked pointer itself.)
        let p = src + core::hint::black_box(len - 8);
        if p + 8 > end {
            return false;
        }
        let w = unsafe { load_u64(p) };
        w >> (8 * (8 - rest))
    } else {
        0
    };
    // Volatile stores: LLVM would otherwise merge them into a call to a BPF `memset`.
    unsafe {
        core::ptr::write_volatile(buf.add(wl), last);
        let mut j = 1;
        while j <= 5 {
            core::ptr::write_volatile(buf.add(wl + j), 0);
            j += 1;
        }
    }
    true
}
