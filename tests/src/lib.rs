//! sipshield's test kit, shared by the integration tests, the benchmarks and the demo; none of it
//! ships in the product.
//!
//! * [`captures`]: pcap and pcapng files of every link type replay reads;
//! * [`frames`]: Ethernet frames built and decoded with etherparse, plus the malformations,
//!   fragments and IPv6 extension-header chains (with the Authentication Header) it cannot write;
//! * [`sip`]: the one SIP message generator;
//! * [`model`]: a userspace model of the kernel's SIP scan (feature `filter`);
//! * [`netns`]: the one network-namespace fixture (namespaces, veth pairs, the tests' pair);
//! * [`tmp`]: scratch directories removed on drop;
//! * [`crowdsec`]: a real CrowdSec Local API in a namespace, and `cscli` against it;
//! * here: the privilege gate and the `BPF_PROG_TEST_RUN` harness that checks verdict *and*
//!   reason counter of each packet (feature `filter`), and the controller-process harness.
//!
//! The feature `filter` (on by default) brings in the sipshield library, whose build compiles the
//! eBPF program; `xtask` uses the kit without it, so `cargo xtask setup` can run before
//! bpf-linker is installed.
use std::net::IpAddr;

use xdp_common::*;

pub mod captures;
pub mod controller;
pub mod crowdsec;
pub mod frames;
#[cfg(feature = "filter")]
pub mod model;
pub mod netns;
pub mod sip;
pub mod tmp;

pub use controller::*;
pub use netns::NetnsPair;

/// Privileged tests run when root. Outside CI a non-root run is skipped loudly; under CI=true
/// it fails, so CI can never silently skip them.
pub fn require_root(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var_os("CI").is_some() {
        panic!("{test}: needs root (CAP_BPF, CAP_NET_ADMIN) and CI=true: privileged tests must run in CI");
    }
    eprintln!("\n!!!!! SKIPPED {test}: needs root (CAP_BPF, CAP_NET_ADMIN) !!!!!\n");
    false
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
}

/// Expected outcome of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    Pass(u32),
    Drop(u32),
}

pub fn reason_name(r: u32) -> &'static str {
    REASON_NAMES.get(r as usize).copied().unwrap_or("?")
}

#[cfg(feature = "filter")]
pub use harness::*;

#[cfg(feature = "filter")]
mod harness {
    use std::path::Path;

    use sipshield::config::Config;
    use sipshield::filter::{Filter, XDP_DROP, XDP_PASS};
    use xdp_common::*;

    use super::{reason_name, Want};

    /// A private filter (loaded, nothing attached) filled from a TOML config.
    pub fn filter_with(toml: &str) -> Filter {
        let cfg = Config::parse(toml, Path::new("test.toml")).unwrap_or_else(|e| panic!("test config: {e:#}"));
        let mut f = Filter::load_private().unwrap_or_else(|e| panic!("load: {e:#}"));
        sipshield::policy::apply_config(&mut f, &cfg).unwrap_or_else(|e| panic!("apply: {e:#}"));
        f
    }

    /// Run `frame` and check the action and that exactly the expected reason counter grew by one
    /// packet and `frame.len()` bytes.
    pub fn check(f: &mut Filter, name: &str, frame: &[u8], want: Want) {
        let before = f.stats().expect("stats");
        let action = f.test_run(frame).unwrap_or_else(|e| panic!("{name}: test_run: {e:#}"));
        let after = f.stats().expect("stats");
        let (want_action, want_reason) = match want {
            Want::Pass(r) => (XDP_PASS, r),
            Want::Drop(r) => (XDP_DROP, r),
        };
        let grown: Vec<u32> =
            (0..NUM_REASONS).filter(|r| after.reason_total(*r).packets != before.reason_total(*r).packets).collect();
        assert_eq!(
            grown,
            vec![want_reason],
            "{name}: expected the {} counter to grow, got {:?}",
            reason_name(want_reason),
            grown.iter().map(|r| reason_name(*r)).collect::<Vec<_>>()
        );
        let db = after.reason_total(want_reason).bytes - before.reason_total(want_reason).bytes;
        assert_eq!(db, frame.len() as u64, "{name}: byte counter");
        assert_eq!(
            action,
            want_action,
            "{name}: expected {} ({}) got action {action}",
            if want_action == XDP_DROP { "drop" } else { "pass" },
            reason_name(want_reason)
        );
    }

    /// Run a whole table.
    pub fn check_table(f: &mut Filter, table: &[(&str, Vec<u8>, Want)]) {
        for (name, frame, want) in table {
            check(f, name, frame, *want);
        }
    }
}
