//! Every map of the program. The names of these statics are the map names userspace opens,
//! pins and adopts (`xdp_common::maps`); a filter pinned by an earlier build is adopted by
//! name, so no map is ever renamed or resized and no value layout changes.
use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use xdp_common::*;

#[map]
pub static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
pub static STATS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(STATS_ENTRIES, 0);
#[map]
pub static IFACE_SLOT: Array<u32> = Array::with_max_entries(MAX_IFINDEX, 0);

/// Bitmap of protected SIP ports: bit `port % 64` of word `port / 64`, two policy generations
/// (`Config::policy_gen & 1`: 0 = `SIP_PORTS`, 1 = `SIP_PORTS_1`).
#[map]
pub static SIP_PORTS: Array<u64> = Array::with_max_entries(SIP_PORT_WORDS, 0);
#[map]
pub static SIP_PORTS_1: Array<u64> = Array::with_max_entries(SIP_PORT_WORDS, 0);
/// Words of a SIP ports bitmap (65,536 bits).

// Allowlist, two generations (the active one is `Config::allowlist_gen`).
#[map]
pub static AL_V4_0: HashMap<[u8; 4], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static AL_V4_1: HashMap<[u8; 4], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static AL_V6_0: HashMap<[u8; 16], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static AL_V6_1: HashMap<[u8; 16], u32> = HashMap::with_max_entries(AL_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static AL_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);
#[map]
pub static AL_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);
#[map]
pub static AL_NET6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);
#[map]
pub static AL_NET6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(AL_NET_CAPACITY, 0);

// Blacklist, two generations (`Config::blacklist_gen`). Exact addresses in hash maps, true
// ranges in LPM tries.
#[map]
pub static BL_V4_0: HashMap<[u8; 4], u32> = HashMap::with_max_entries(BL_V4_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static BL_V4_1: HashMap<[u8; 4], u32> = HashMap::with_max_entries(BL_V4_CAPACITY, BPF_F_NO_PREALLOC);
/// Exact IPv4 addresses: bucketized table (see `xdp_common::Bucket4`), written by userspace
/// through mmap.
#[map]
pub static BL_TAB4_0: Array<Bucket4> = Array::with_max_entries(BL4_BUCKETS, BPF_F_MMAPABLE);
#[map]
pub static BL_TAB4_1: Array<Bucket4> = Array::with_max_entries(BL4_BUCKETS, BPF_F_MMAPABLE);
/// Per-/24 bitmap of the blacklist's IPv4 entries (`PRESENT_BL_BM4`), written through mmap.
#[map]
pub static BL_BM4_0: Array<u64> = Array::with_max_entries(BL4_BITMAP_WORDS, BPF_F_MMAPABLE);
#[map]
pub static BL_BM4_1: Array<u64> = Array::with_max_entries(BL4_BITMAP_WORDS, BPF_F_MMAPABLE);
#[map]
pub static BL_V6_0: HashMap<[u8; 16], u32> = HashMap::with_max_entries(BL_V6_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static BL_V6_1: HashMap<[u8; 16], u32> = HashMap::with_max_entries(BL_V6_CAPACITY, BPF_F_NO_PREALLOC);
#[map]
pub static BL_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);
#[map]
pub static BL_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);
#[map]
pub static BL_NET6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);
#[map]
pub static BL_NET6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(BL_NET_CAPACITY, 0);

/// Timed bans: value is the expiry on the program's clock (ns).
#[map]
pub static BANS_V4: LruHashMap<[u8; 4], u64> = LruHashMap::with_max_entries(BAN_CAPACITY, 0);
#[map]
pub static BANS_V6: LruHashMap<BanKey6, u64> = LruHashMap::with_max_entries(BAN_CAPACITY, 0);
/// `BAN_PRESENT_V4`/`_V6`: non-zero when that ban map may hold entries (empty maps are skipped).
#[map]
pub static BAN_PRESENT: Array<u32> = Array::with_max_entries(2, 0);

// GeoIP, two generations (`Config::geo_gen`).
#[map]
pub static GEO_V4_0: Array<GeoRow> = Array::with_max_entries(GEO_V4_ROWS, 0);
#[map]
pub static GEO_V4_1: Array<GeoRow> = Array::with_max_entries(GEO_V4_ROWS, 0);
#[map]
pub static GEO_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(GEO_NET_V4_CAPACITY, 0);
#[map]
pub static GEO_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(GEO_NET_V4_CAPACITY, 0);
#[map]
pub static GEO_V6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(GEO_V6_CAPACITY, 0);
#[map]
pub static GEO_V6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(GEO_V6_CAPACITY, 0);
/// Policy per generation and country index (`gen * 256 + country`): 1 = drop.
#[map]
pub static GEO_POLICY: Array<u32> = Array::with_max_entries(2 * GEO_COUNTRIES, 0);
/// Drops per country index.
#[map]
pub static GEO_DROPS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(GEO_COUNTRIES, 0);

// SIP scanner signatures, two generations (`Config::sig_gen`). Value: signature id.
#[map]
pub static SIG_0: LpmTrie<SigKeyData, u32> = LpmTrie::with_max_entries(SIG_MAX, 0);
#[map]
pub static SIG_1: LpmTrie<SigKeyData, u32> = LpmTrie::with_max_entries(SIG_MAX, 0);
/// Per generation: which (header, first two bytes) can start a signature.
#[map]
pub static SIG_PREFILTER: Array<SigPrefilter> = Array::with_max_entries(2, 0);

// SIP rate limits: rules by method slot, two policy generations (`Config::policy_gen & 1`:
// 0 = `RL_RULES`, 1 = `RL_RULES_1`).
#[map]
pub static RL_RULES: Array<RateRule> = Array::with_max_entries(NUM_METHOD_SLOTS, 0);
#[map]
pub static RL_RULES_1: Array<RateRule> = Array::with_max_entries(NUM_METHOD_SLOTS, 0);
/// Rate-limit buckets: `RL_SETS` sets of `RL_WAYS` (see `xdp_common::RateSlot`).
#[map]
pub static RL_TABLE: Array<RateSet> = Array::with_max_entries(RL_SETS, 0);
/// Random seed of the bucket hash (`xdp_common::rl_set`), set once by the controller.
#[map]
pub static RL_SEED: Array<u64> = Array::with_max_entries(1, 0);

// Per-port policy, source groups and the toll-fraud guard: two policy generations
// (`Config::policy_gen & 1`), like `SIP_PORTS` and `RL_RULES`.
/// Rule ids by destination port (`xdp_common::port_rule_id`).
#[map]
pub static PORT_RULE_0: Array<u32> = Array::with_max_entries(PORT_RULE_ENTRIES, 0);
#[map]
pub static PORT_RULE_1: Array<u32> = Array::with_max_entries(PORT_RULE_ENTRIES, 0);
/// `PortRule` by rule id (0: the generation's header).
#[map]
pub static PORT_DEF_0: Array<PortRule> = Array::with_max_entries(PORT_RULES_MAX, 0);
#[map]
pub static PORT_DEF_1: Array<PortRule> = Array::with_max_entries(PORT_RULES_MAX, 0);
/// Group bits of addresses (as /32 and /128) and ranges; an entry's value includes the groups of
/// every range covering it, so one longest-prefix lookup gives them all.
#[map]
pub static GRP_NET4_0: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(GRP_NET_CAPACITY, 0);
#[map]
pub static GRP_NET4_1: LpmTrie<[u8; 4], u32> = LpmTrie::with_max_entries(GRP_NET_CAPACITY, 0);
#[map]
pub static GRP_NET6_0: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(GRP_NET_CAPACITY, 0);
#[map]
pub static GRP_NET6_1: LpmTrie<[u8; 16], u32> = LpmTrie::with_max_entries(GRP_NET_CAPACITY, 0);
/// Toll-fraud prefixes: dialled bytes (`+` and digits) → rule id, `TF_DROP` when matching drops.
#[map]
pub static TF_PREFIX_0: LpmTrie<[u8; TF_KEY_LEN], u32> = LpmTrie::with_max_entries(TF_CAPACITY, 0);
#[map]
pub static TF_PREFIX_1: LpmTrie<[u8; TF_KEY_LEN], u32> = LpmTrie::with_max_entries(TF_CAPACITY, 0);
/// Toll-fraud drops per rule id.
#[map]
pub static TF_HITS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(TF_RULES_MAX, 0);

// Events.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(EVENT_RING_BYTES, 0);
#[map]
pub static EVENT_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(EVSTAT_ENTRIES, 0);
/// Per-CPU theoretical arrival time of the event sampler.
#[map]
pub static EVENT_TAT: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Per-CPU copy of the L4 payload for SIP inspection.
#[map]
pub static SCRATCH: PerCpuArray<[u64; SCRATCH_WORDS]> = PerCpuArray::with_max_entries(1, 0);

/// The program's clock parameters (`ClockParams`); `sipshield_clock` stores its probe there.
#[map]
pub static CLOCK: Array<ClockParams> = Array::with_max_entries(1, 0);

// Failed authentications and enumeration (`auth`, `egress`).
/// `AuthConfig` (the `[authfail]` settings), one entry.
#[map]
pub static AUTH_CFG: Array<AuthConfig> = Array::with_max_entries(1, 0);
/// Credentialed requests awaiting their answer.
#[map]
pub static AUTH_REQ: LruHashMap<AuthReqKey, AuthReq> = LruHashMap::with_max_entries(AUTH_REQ_CAPACITY, 0);
/// Failed authentications per source (IPv6: per ban prefix) in the current window.
#[map]
pub static AUTH_FAIL: LruHashMap<AuthSrc, AuthCount> = LruHashMap::with_max_entries(AUTH_SRC_CAPACITY, 0);
/// Distinct users answered 404/484 per source in the current window.
#[map]
pub static AUTH_ENUM: LruHashMap<AuthSrc, EnumState> = LruHashMap::with_max_entries(AUTH_SRC_CAPACITY, 0);
/// `AUTHSTAT_*` counters, apart from the verdict counters of `STATS`.
#[map]
pub static AUTH_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(AUTHSTAT_ENTRIES, 0);
/// The fields of the SIP message being inspected (`sip::fields`).
#[map]
pub static AUTH_SCRATCH: PerCpuArray<SipFields> = PerCpuArray::with_max_entries(1, 0);
