//! sipshield XDP program.
//!
//! Pipeline: parse (Ethernet, up to two VLAN tags, IPv4/IPv6 with options, extension headers and
//! fragments, UDP/TCP) → decide (allowlist, ban, blacklist, port rules, GeoIP, SIP scanner
//! signatures, methods per port, toll fraud, SIP rate limits) → one exit that counts the verdict per interface and reason and emits a sampled
//! event for drops.
//!
//! | module | concern |
//! | --- | --- |
//! | `maps` | every map (names are the contract with userspace, `xdp_common::maps`) |
//! | `clock` | the program's clock |
//! | `parse` | header parsing, one function per layer |
//! | `reputation` | allowlist, timed bans, blacklist |
//! | `geo` | GeoIP country and policy |
//! | `port` | per-port rules: source groups, countries, methods |
//! | `tollfraud` | dialled-prefix check of INVITE/MESSAGE Request-URIs |
//! | `sip` | SIP inspection: payload copy, method, header scan |
//! | `ratelimit` | per-source, per-method token buckets |
//! | `verdict` | the decision and the single counting exit |
//! | `events` | sampled drop events |
//! | `auth` | ingress bookkeeping of credentialed SIP requests for `egress` |
//! | `egress` | the egress program: failed authentications and enumeration from the answers |
#![no_std]
#![no_main]

mod auth;
mod clock;
mod egress;
mod events;
mod geo;
mod maps;
mod parse;
mod port;
mod ratelimit;
mod reputation;
mod sip;
mod tollfraud;
mod verdict;

use aya_ebpf::{
    bindings::{xdp_action, TC_ACT_OK},
    macros::{classifier, xdp},
    programs::{TcContext, XdpContext},
};
use xdp_common::{Reason, CFG_DROP_MALFORMED};

use parse::Parsed;

/// The filter, attached to the protected interfaces.
#[xdp]
pub fn sipshield(ctx: XdpContext) -> u32 {
    let cfg = match maps::CONFIG.get(0) {
        Some(c) => c,
        None => return xdp_action::XDP_PASS,
    };
    let now = clock::now(cfg);
    let (reason, drop) = match parse::parse::<XdpContext, { parse::PEER_IS_SRC }>(&ctx) {
        Parsed::NotIp => (Reason::Pass, false),
        Parsed::Malformed => (Reason::Malformed, cfg.flags & CFG_DROP_MALFORMED != 0),
        Parsed::Ip(pkt) => verdict::judge(&ctx, cfg, &pkt, now),
    };
    verdict::exit(&ctx, cfg, reason, drop)
}

/// The egress program (TC, attached on the same interfaces): reads the SIP server's answers
/// for failed authentications and enumeration; never drops.
#[classifier]
pub fn sipshield_egress(ctx: TcContext) -> i32 {
    egress::inspect(&ctx);
    TC_ACT_OK
}

/// Clock calibration (run by the controller with BPF_PROG_TEST_RUN at load, never attached):
/// stores `bpf_jiffies64()` so the controller can relate jiffies to CLOCK_MONOTONIC.
#[xdp]
pub fn sipshield_clock(ctx: XdpContext) -> u32 {
    let jiffies = clock::probe();
    // aya-log's one use: a rare diagnostic (two runs per load, never per packet), logged by the
    // controller at debug level.
    aya_log_ebpf::debug!(&ctx, "clock probe: jiffies {}", jiffies);
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}
