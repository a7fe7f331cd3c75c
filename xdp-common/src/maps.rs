//! Map names: the contract between the XDP program (its map statics carry these names) and
//! userspace (which opens, pins and adopts them by name). Double-buffered maps come as
//! `[generation 0, generation 1]`.

pub const CONFIG: &str = "CONFIG";
pub const STATS: &str = "STATS";
pub const IFACE_SLOT: &str = "IFACE_SLOT";
/// Bitmap of the SIP ports (`SIP_PORT_WORDS` words).
pub const SIP_PORTS: &str = "SIP_PORTS";
pub const AL_V4: [&str; 2] = ["AL_V4_0", "AL_V4_1"];
pub const AL_V6: [&str; 2] = ["AL_V6_0", "AL_V6_1"];
pub const AL_NET4: [&str; 2] = ["AL_NET4_0", "AL_NET4_1"];
pub const AL_NET6: [&str; 2] = ["AL_NET6_0", "AL_NET6_1"];
pub const BL_V4: [&str; 2] = ["BL_V4_0", "BL_V4_1"];
pub const BL_V6: [&str; 2] = ["BL_V6_0", "BL_V6_1"];
pub const BL_NET4: [&str; 2] = ["BL_NET4_0", "BL_NET4_1"];
pub const BL_NET6: [&str; 2] = ["BL_NET6_0", "BL_NET6_1"];
pub const BL_TAB4: [&str; 2] = ["BL_TAB4_0", "BL_TAB4_1"];
pub const BANS_V4: &str = "BANS_V4";
pub const BANS_V6: &str = "BANS_V6";
pub const BAN_PRESENT: &str = "BAN_PRESENT";
pub const GEO_V4: [&str; 2] = ["GEO_V4_0", "GEO_V4_1"];
pub const GEO_NET4: [&str; 2] = ["GEO_NET4_0", "GEO_NET4_1"];
pub const GEO_V6: [&str; 2] = ["GEO_V6_0", "GEO_V6_1"];
pub const GEO_POLICY: &str = "GEO_POLICY";
pub const GEO_DROPS: &str = "GEO_DROPS";
pub const SIG: [&str; 2] = ["SIG_0", "SIG_1"];
pub const SIG_PREFILTER: &str = "SIG_PREFILTER";
/// Rate rules, one per method slot.
pub const RL_RULES: &str = "RL_RULES";
pub const RL_TABLE: &str = "RL_TABLE";
pub const RL_SEED: &str = "RL_SEED";
pub const EVENTS: &str = "EVENTS";
pub const EVENT_STATS: &str = "EVENT_STATS";
pub const EVENT_TAT: &str = "EVENT_TAT";
pub const SCRATCH: &str = "SCRATCH";
pub const CLOCK: &str = "CLOCK";

/// Every map of the production program (pinned by `sipshield run`).
pub const ALL: &[&str] = &[
    CONFIG,
    STATS,
    IFACE_SLOT,
    SIP_PORTS,
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
    RL_TABLE,
    RL_SEED,
    EVENTS,
    EVENT_STATS,
    EVENT_TAT,
    SCRATCH,
    CLOCK,
];

/// Maps pinned by earlier versions that this one replaced: unpinned once this version's
/// program has loaded (the previous program keeps its reference until its link is swapped).
/// `RL_STATE`: the kernel LRU hash of rate-limit buckets, now `RL_TABLE`.
pub const RETIRED: &[&str] = &["RL_STATE"];
