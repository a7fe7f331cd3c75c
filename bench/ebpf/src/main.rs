//! Helper XDP programs of the benchmarks (`bench/`), in an object of their own so the
//! controller never loads or pins them.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::{Array, PerCpuArray},
    programs::XdpContext,
};

/// Target ifindex of `sipshield_gen`.
#[map]
static GEN_IFINDEX: Array<u32> = Array::with_max_entries(1, 0);

/// Most source addresses `sipshield_gen` can cycle through.
const GEN_SRC_MAX: u32 = 1 << 20;

/// Source addresses (IPv4, network byte order as read from the frame) that `sipshield_gen`
/// writes into its frames in turn; `GEN_SRC_N[0]` of them are used (0: frames unchanged).
#[map]
static GEN_SRC: Array<u32> = Array::with_max_entries(GEN_SRC_MAX, 0);
#[map]
static GEN_SRC_N: Array<u32> = Array::with_max_entries(1, 0);
/// Per-CPU position in `GEN_SRC`.
#[map]
static GEN_SEQ: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// Ethernet + IPv4 (no options) + UDP: the frames the benchmarks build.
const IP_OFF: usize = 14;
const UDP_OFF: usize = IP_OFF + 20;

/// One's-complement update of a 16-bit checksum for a 32-bit field changed from `old` to
/// `new` (RFC 1624, eqn. 3), all in network byte order as stored.
#[inline(always)]
fn csum_replace4(check: u16, old: u32, new: u32) -> u16 {
    let mut sum = (!check as u32) & 0xffff;
    sum += (!old & 0xffff) + (!old >> 16);
    sum += (new & 0xffff) + (new >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Give the frame the next source of `GEN_SRC` (IPv4 header and UDP checksums updated), so
/// one live-frames syscall sends from many sources.
#[inline(always)]
fn next_source(ctx: &XdpContext) {
    let n = match GEN_SRC_N.get(0) {
        Some(n) if *n > 0 => *n,
        _ => return,
    };
    let (data, end) = (ctx.data(), ctx.data_end());
    if data + UDP_OFF + 8 > end {
        return;
    }
    let Some(seq) = GEN_SEQ.get_ptr_mut(0) else { return };
    // SAFETY: a per-CPU value of this program, valid for the whole run.
    let i = unsafe { *seq };
    unsafe { *seq = if i + 1 >= n { 0 } else { i + 1 } };
    let Some(new) = GEN_SRC.get(i) else { return };
    let new = *new;
    // SAFETY: every offset below is inside [data, data + UDP_OFF + 8), checked above.
    unsafe {
        let saddr = (data + IP_OFF + 12) as *mut u32;
        let old = saddr.read_unaligned();
        saddr.write_unaligned(new);
        let ip_check = (data + IP_OFF + 10) as *mut u16;
        ip_check.write_unaligned(csum_replace4(ip_check.read_unaligned(), old, new));
        let udp_check = (data + UDP_OFF + 6) as *mut u16;
        let c = udp_check.read_unaligned();
        if c != 0 {
            udp_check.write_unaligned(csum_replace4(c, old, new));
        }
    }
}

/// Traffic generator: run with BPF_PROG_TEST_RUN + live frames, it redirects every frame out
/// of the interface in `GEN_IFINDEX` (after giving it the next source of `GEN_SRC`, if any).
#[xdp]
pub fn sipshield_gen(ctx: XdpContext) -> u32 {
    next_source(&ctx);
    let ifindex = GEN_IFINDEX.get(0).copied().unwrap_or(0);
    unsafe { bpf_redirect(ifindex, 0) as u32 }
}

/// The empty program: the baseline of per-packet cost ratios, and the XDP program that gives
/// a veth NAPI for redirected frames when a peer (nftables, iptables) is measured instead.
#[xdp]
pub fn sipshield_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The harness floor's receiver: every frame dropped at once (2 instructions), so the
/// measured time per frame is the generator and the veth alone.
#[xdp]
pub fn sipshield_drop(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_DROP
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
