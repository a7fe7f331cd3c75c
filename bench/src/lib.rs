//! `sipshield-bench`: the benchmarks' library, shared by the three binaries
//! (`sipshield-bench`, `sip_bench`, `geo_bench`).
//!
//! * [`harness`]: namespaces and the veth testbed (through the test kit), the helper XDP
//!   programs, the live-frames blast, the harness floor and receiver-side figures, per-packet
//!   cost, statistics;
//! * [`peers`]: ipset, nftables and iptables, set up and torn down in a namespace;
//! * [`report`]: environment, targets, the JSON of live comparisons, printing;
//! * [`blacklist`]: the stages and the report of `sipshield-bench blacklist` and `hash-fill`;
//! * [`suite`]: `sipshield-bench suite` (`cargo xtask bench`): every benchmark, one validated
//!   table, the scaling table, JSON and plots in `bench/results/`.
pub mod blacklist;
pub mod harness;
pub mod peers;
pub mod report;
pub mod suite;
