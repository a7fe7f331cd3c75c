//! Reference model of the sipshield XDP program: the whole classification in plain Rust, written
//! independently of the kernel code and mirroring its modules file by file, so the differential
//! test (`tests/tests/difftest.rs`) can run every generated packet through both and compare the
//! action and the reason.
//!
//! | model module | kernel module (`xdp-ebpf/src`) | concern |
//! | --- | --- | --- |
//! | [`parse`] | `parse.rs` | Ethernet, VLAN/QinQ, IPv4/IPv6 (+ extension headers, fragments), UDP/TCP |
//! | [`reputation`] | `reputation.rs` | allowlist, timed bans, blacklist |
//! | [`geo`] | `geo.rs` | GeoIP country and policy |
//! | [`sip`] | `sip/{mod,method,scan}.rs` | SIP ports, request method, header scan for signatures |
//! | [`ratelimit`] | `ratelimit.rs` | GCRA per (source, method) and `any`, ban after excess |
//! | [`verdict`] | `verdict.rs` + `main.rs` | the decision order, dry-run, drop_malformed, the exit |
//!
//! Inputs are semantic ([`Policy`]: port sets, address ranges, signature texts, rates in ns),
//! never the kernel's map layouts; only the pure helpers of `xdp-common` (`lower8`,
//! `mask_prefix6`, `rl_*` hashing, the signature prefilter bit) are shared. State ([`State`]:
//! bans and rate-limit buckets) lives on the same clock as the program's (`Config::clock_ns`).
//!
//! A later kernel check plugs in as one more module here and one more step in
//! [`verdict::decide`], at the same place as in the kernel's `decide`.
pub mod geo;
pub mod parse;
pub mod ratelimit;
pub mod reputation;
pub mod sip;
pub mod verdict;

use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;
use xdp_common::Reason;

pub use verdict::{Action, Outcome};

/// A set of addresses and ranges (an allowlist or a blacklist), as the operator wrote it:
/// an address is a /32 or /128 range. IPv4 ranges match IPv4 sources only, IPv6 ranges IPv6
/// sources only (an IPv4-mapped entry is already the IPv4 range when lists are parsed).
#[derive(Clone, Debug, Default)]
pub struct AddrSet {
    pub nets: Vec<IpNet>,
}

impl AddrSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> AddrSet {
        AddrSet { nets: nets.into_iter().map(|n| n.trunc()).collect() }
    }
}

/// A rate rule in the program's units (ns on the program clock).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    /// ns per request at the sustained rate.
    pub interval_ns: u64,
    /// Requests allowed at once (>= 1).
    pub burst: u64,
    pub ban_after: u32,
    pub ban_ttl_ns: u64,
    pub window_ns: u64,
}

/// GeoIP: the country of each network (longest prefix wins) and the countries dropped.
#[derive(Clone, Debug, Default)]
pub struct GeoPolicy {
    /// (network, country index; 0 = unknown).
    pub nets: Vec<(IpNet, u8)>,
    /// Country indexes dropped (0: sources the database does not cover).
    pub drop: BTreeSet<u8>,
    /// Every packet (`scope = "all"`), not only packets to a SIP port.
    pub scope_all: bool,
}

/// Everything the model needs to classify, in semantic form.
#[derive(Clone, Debug)]
pub struct Policy {
    pub dry_run: bool,
    pub drop_malformed: bool,
    pub sip_ports: BTreeSet<u16>,
    /// Inspect TCP segments to the SIP ports too.
    pub sip_tcp: bool,
    pub allowlist: AddrSet,
    pub blacklist: AddrSet,
    pub geo: Option<GeoPolicy>,
    /// `[scanners] enabled` (even with no signature: the method is still read for rate limits).
    pub scanners_enabled: bool,
    /// (`HDR_*` id, lowercase text) in signature-id order.
    pub signatures: Vec<(u32, Vec<u8>)>,
    /// Rules by method slot (`METHOD_*`, `METHOD_ANY`).
    pub rules: BTreeMap<u8, Rule>,
    /// IPv6 prefix of the rate-limit and ban key.
    pub rl_v6_prefix: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            dry_run: false,
            drop_malformed: false,
            sip_ports: [5060, 5061].into_iter().collect(),
            sip_tcp: true,
            allowlist: AddrSet::default(),
            blacklist: AddrSet::default(),
            geo: None,
            scanners_enabled: true,
            signatures: vec![],
            rules: BTreeMap::new(),
            rl_v6_prefix: 64,
        }
    }
}

/// What the program remembers between packets.
#[derive(Clone, Debug, Default)]
pub struct State {
    pub bans: reputation::Bans,
    pub rate: ratelimit::Table,
    /// Bans installed (the kernel's `EVSTAT_BANS`).
    pub bans_installed: u64,
}

/// The model: a policy, the state and per-reason counters.
#[derive(Clone, Debug)]
pub struct Model {
    pub policy: Policy,
    pub state: State,
    /// Packets per reason (the kernel's `STATS`, summed over interface slots).
    pub counts: [u64; Reason::COUNT],
}

impl Model {
    /// A model with empty state; `rl_seed` is the rate-limit table's hash seed (`RL_SEED`).
    pub fn new(policy: Policy, rl_seed: u64) -> Model {
        Model {
            policy,
            state: State { rate: ratelimit::Table::new(rl_seed), ..Default::default() },
            counts: [0; Reason::COUNT],
        }
    }

    /// Replace the policy (a reload): the state stays, as in the kernel.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Classify one frame at `now` (program clock, ns) and update the state and counters.
    pub fn classify(&mut self, frame: &[u8], now: u64) -> Outcome {
        let out = verdict::run(&self.policy, &mut self.state, frame, now);
        self.counts[out.reason as usize] += 1;
        out
    }
}
