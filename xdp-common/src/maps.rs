//! Names of the XDP program's maps: the contract between `xdp-ebpf` (whose `#[map]` statics
//! carry exactly these names) and userspace, which opens, pins and adopts maps by name.
//!
//! Names (and the types and sizes behind them) never change: a filter pinned by an earlier
//! build is adopted by name. Maps with two generations are listed as pairs indexed by the
//! generation (`Config::*_gen`): `BL_V4[gen]`.

/// `Config`, one entry.
pub const CONFIG: &str = "CONFIG";
/// Per-CPU `Counter` per (interface slot, reason).
pub const STATS: &str = "STATS";
/// ifindex → interface slot of the counters.
pub const IFACE_SLOT: &str = "IFACE_SLOT";
/// Bitmap of the SIP ports, policy generation 0 (`Config::policy_gen` even).
pub const SIP_PORTS: &str = "SIP_PORTS";
/// Bitmap of the SIP ports, policy generation 1 (`Config::policy_gen` odd).
pub const SIP_PORTS_1: &str = "SIP_PORTS_1";
/// The SIP ports bitmap of policy generation `policy_gen & 1`.
pub const SIP_PORTS_GEN: [&str; 2] = [SIP_PORTS, SIP_PORTS_1];

/// Allowlist, exact IPv4 addresses (`Config::allowlist_gen`).
pub const AL_V4: [&str; 2] = ["AL_V4_0", "AL_V4_1"];
/// Allowlist, exact IPv6 addresses.
pub const AL_V6: [&str; 2] = ["AL_V6_0", "AL_V6_1"];
/// Allowlist, IPv4 ranges (LPM trie).
pub const AL_NET4: [&str; 2] = ["AL_NET4_0", "AL_NET4_1"];
/// Allowlist, IPv6 ranges (LPM trie).
pub const AL_NET6: [&str; 2] = ["AL_NET6_0", "AL_NET6_1"];

/// Blacklist, overflow hash of the IPv4 table (`Config::blacklist_gen`).
pub const BL_V4: [&str; 2] = ["BL_V4_0", "BL_V4_1"];
/// Blacklist, exact IPv6 addresses.
pub const BL_V6: [&str; 2] = ["BL_V6_0", "BL_V6_1"];
/// Blacklist, IPv4 ranges (LPM trie).
pub const BL_NET4: [&str; 2] = ["BL_NET4_0", "BL_NET4_1"];
/// Blacklist, IPv6 ranges (LPM trie).
pub const BL_NET6: [&str; 2] = ["BL_NET6_0", "BL_NET6_1"];
/// Blacklist, exact IPv4 addresses: the bucketized table (`Bucket4`, mmap-able array).
pub const BL_TAB4: [&str; 2] = ["BL_TAB4_0", "BL_TAB4_1"];
/// Blacklist, the per-/24 bitmap of every IPv4 entry of the generation (its /32s, and the
/// /24s its ranges cover or touch): a source whose bit is clear is on no IPv4 part of the list,
/// so a miss costs one array read (`PRESENT_BL_BM4`, mmap-able array of `u64` words).
pub const BL_BM4: [&str; 2] = ["BL_BM4_0", "BL_BM4_1"];

/// Timed bans, IPv4 (LRU hash of expiry times).
pub const BANS_V4: &str = "BANS_V4";
/// Timed bans, IPv6 (`BanKey6`).
pub const BANS_V6: &str = "BANS_V6";
/// `BAN_PRESENT_V4`/`_V6` flags: the ban map of a family may hold entries.
pub const BAN_PRESENT: &str = "BAN_PRESENT";

/// GeoIP, flat IPv4 table (`GeoRow` per /16) (`Config::geo_gen`).
pub const GEO_V4: [&str; 2] = ["GEO_V4_0", "GEO_V4_1"];
/// GeoIP, IPv4 exceptions for split /24s (LPM trie).
pub const GEO_NET4: [&str; 2] = ["GEO_NET4_0", "GEO_NET4_1"];
/// GeoIP, IPv6 (LPM trie).
pub const GEO_V6: [&str; 2] = ["GEO_V6_0", "GEO_V6_1"];
/// GeoIP policy per (generation, country).
pub const GEO_POLICY: &str = "GEO_POLICY";
/// Per-CPU drops per country.
pub const GEO_DROPS: &str = "GEO_DROPS";

/// Scanner signatures (LPM trie of `SigKeyData`) (`Config::sig_gen`).
pub const SIG: [&str; 2] = ["SIG_0", "SIG_1"];
/// `SigPrefilter` per signature generation.
pub const SIG_PREFILTER: &str = "SIG_PREFILTER";

/// Rate-limit rules by method slot, policy generation 0 (`Config::policy_gen` even).
pub const RL_RULES: &str = "RL_RULES";
/// Rate-limit rules by method slot, policy generation 1 (`Config::policy_gen` odd).
pub const RL_RULES_1: &str = "RL_RULES_1";
/// The rate-limit rules of policy generation `policy_gen & 1`.
pub const RL_RULES_GEN: [&str; 2] = [RL_RULES, RL_RULES_1];
/// Rate-limit buckets (`RateSet` per set).
pub const RL_TABLE: &str = "RL_TABLE";
/// Seed of the bucket hash.
pub const RL_SEED: &str = "RL_SEED";

/// Per-port rule id by destination port (`u32`: UDP id, TCP id << 8), per policy generation.
pub const PORT_RULE_GEN: [&str; 2] = ["PORT_RULE_0", "PORT_RULE_1"];
/// `PortRule` by rule id (0: the generation's header), per policy generation.
pub const PORT_DEF_GEN: [&str; 2] = ["PORT_DEF_0", "PORT_DEF_1"];
/// Source groups, IPv4 addresses (as /32) and ranges (LPM trie) → group bits of the entry and
/// every range covering it, per policy generation.
pub const GRP_NET4_GEN: [&str; 2] = ["GRP_NET4_0", "GRP_NET4_1"];
/// Source groups, IPv6 ranges (LPM trie).
pub const GRP_NET6_GEN: [&str; 2] = ["GRP_NET6_0", "GRP_NET6_1"];
/// Toll-fraud prefixes (LPM trie of dialled bytes → rule id | `TF_DROP`), per policy generation.
pub const TF_PREFIX_GEN: [&str; 2] = ["TF_PREFIX_0", "TF_PREFIX_1"];
/// Per-CPU toll-fraud drops per rule id.
pub const TF_HITS: &str = "TF_HITS";

/// Event ring buffer (`Event`).
pub const EVENTS: &str = "EVENTS";
/// Per-CPU event counters (`EVSTAT_*`).
pub const EVENT_STATS: &str = "EVENT_STATS";
/// Per-CPU state of the event sampler.
pub const EVENT_TAT: &str = "EVENT_TAT";
/// Per-CPU copy of the payload for SIP inspection.
pub const SCRATCH: &str = "SCRATCH";
/// The program's clock parameters (`ClockParams`), written at load.
pub const CLOCK: &str = "CLOCK";

/// `AuthConfig`, one entry (the `[authfail]` settings).
pub const AUTH_CFG: &str = "AUTH_CFG";
/// Credentialed requests awaiting their answer (LRU hash `AuthReqKey` → `AuthReq`).
pub const AUTH_REQ: &str = "AUTH_REQ";
/// Failed authentications per source (LRU hash `AuthSrc` → `AuthCount`).
pub const AUTH_FAIL: &str = "AUTH_FAIL";
/// Enumeration state per source (LRU hash `AuthSrc` → `EnumState`).
pub const AUTH_ENUM: &str = "AUTH_ENUM";
/// Per-CPU `AUTHSTAT_*` counters (egress and bookkeeping).
pub const AUTH_STATS: &str = "AUTH_STATS";
/// Per-CPU `SipFields` of the message being inspected.
pub const AUTH_SCRATCH: &str = "AUTH_SCRATCH";

/// Every map of the production object (the XDP program `sipshield` and the clock calibration
/// program `sipshield_clock`), i.e. everything the controller pins and adopts.
pub const ALL: &[&str] = &[
    CONFIG,
    STATS,
    IFACE_SLOT,
    SIP_PORTS,
    SIP_PORTS_1,
    AL_V4[0],
    AL_V4[1],
    AL_V6[0],
    AL_V6[1],
    AL_NET4[0],
    AL_NET4[1],
    AL_NET6[0],
    AL_NET6[1],
    BL_V4[0],
    BL_V4[1],
    BL_V6[0],
    BL_V6[1],
    BL_NET4[0],
    BL_NET4[1],
    BL_NET6[0],
    BL_NET6[1],
    BL_TAB4[0],
    BL_TAB4[1],
    BL_BM4[0],
    BL_BM4[1],
    BANS_V4,
    BANS_V6,
    BAN_PRESENT,
    GEO_V4[0],
    GEO_V4[1],
    GEO_NET4[0],
    GEO_NET4[1],
    GEO_V6[0],
    GEO_V6[1],
    GEO_POLICY,
    GEO_DROPS,
    SIG[0],
    SIG[1],
    SIG_PREFILTER,
    RL_RULES,
    RL_RULES_1,
    RL_TABLE,
    RL_SEED,
    EVENTS,
    EVENT_STATS,
    EVENT_TAT,
    SCRATCH,
    CLOCK,
    PORT_RULE_GEN[0],
    PORT_RULE_GEN[1],
    PORT_DEF_GEN[0],
    PORT_DEF_GEN[1],
    GRP_NET4_GEN[0],
    GRP_NET4_GEN[1],
    GRP_NET6_GEN[0],
    GRP_NET6_GEN[1],
    TF_PREFIX_GEN[0],
    TF_PREFIX_GEN[1],
    TF_HITS,
    AUTH_CFG,
    AUTH_REQ,
    AUTH_FAIL,
    AUTH_ENUM,
    AUTH_STATS,
    AUTH_SCRATCH,
];

/// Maps pinned by earlier versions that this one replaced: unpinned once this version's
/// program has loaded (the previous program keeps its own reference until its link is
/// swapped). `RL_STATE`: the kernel LRU hash of rate-limit buckets, now `RL_TABLE`;
/// `GEN_IFINDEX`: a benchmark helper's map, now in the benchmark's own object.
pub const RETIRED: &[&str] = &["RL_STATE", "GEN_IFINDEX"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_fit_the_kernel() {
        for (i, a) in ALL.iter().enumerate() {
            // BPF_OBJ_NAME_LEN is 16 including the terminating NUL.
            assert!(a.len() < 16, "{a} is too long for a BPF object name");
            assert!(ALL[i + 1..].iter().all(|b| a != b), "{a} is listed twice");
        }
    }

    #[test]
    fn generation_pairs_are_listed() {
        for pair in [
            SIP_PORTS_GEN,
            AL_V4,
            AL_V6,
            AL_NET4,
            AL_NET6,
            BL_V4,
            BL_V6,
            BL_NET4,
            BL_NET6,
            BL_TAB4,
            BL_BM4,
            GEO_V4,
            GEO_NET4,
            GEO_V6,
            SIG,
            RL_RULES_GEN,
            PORT_RULE_GEN,
            PORT_DEF_GEN,
            GRP_NET4_GEN,
            GRP_NET6_GEN,
            TF_PREFIX_GEN,
        ] {
            for name in pair {
                assert!(ALL.contains(&name), "{name} is not in ALL");
            }
        }
    }
}
