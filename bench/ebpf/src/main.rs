//! Helper XDP programs of the benchmarks (`bench/`), in an object of their own so the
//! controller never loads or pins them.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_redirect,
    macros::{map, xdp},
    maps::Array,
    programs::XdpContext,
};

/// Target ifindex of `sipshield_gen`.
#[map]
static GEN_IFINDEX: Array<u32> = Array::with_max_entries(1, 0);

/// Traffic generator: run with BPF_PROG_TEST_RUN + live frames, it redirects every frame out
/// of the interface in `GEN_IFINDEX`.
#[xdp]
pub fn sipshield_gen(_ctx: XdpContext) -> u32 {
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
