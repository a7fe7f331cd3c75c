//! Types shared by the sipshield XDP program (`xdp-ebpf`) and its controller (`xdp-user`).
//!
//! Everything here is `#[repr(C)]` and free of implicit padding (checked by the size asserts at
//! the bottom), so the kernel and userspace agree byte for byte. With the `user` feature the
//! types implement `aya::Pod` so they can be stored in maps.
#![no_std]

pub mod maps;

/// A `#[repr($repr)]` enum of consecutive codes from 0 with a name per code, plus `ALL` (every
/// variant in code order), `COUNT`, `name()`, `from_code()` and `NAMES` (names by code).
macro_rules! named_codes {
    (
        $(#[$meta:meta])*
        pub enum $name:ident: $repr:ty, names $names:ident {
            $($(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr($repr)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $code,)*
        }

        impl $name {
            /// Every variant, in code order (`ALL[i] as usize == i`).
            pub const ALL: [$name; [$($code),*].len()] = [$($name::$variant),*];
            /// Number of codes.
            pub const COUNT: usize = Self::ALL.len();
            /// Names indexed by code.
            pub const NAMES: [&'static str; Self::COUNT] = [$($text),*];

            /// The name used by the CLI, events, metrics and the config.
            pub const fn name(self) -> &'static str {
                Self::NAMES[self as usize]
            }

            /// The variant of a code, if there is one.
            pub const fn from_code(code: $repr) -> Option<Self> {
                if (code as usize) < Self::COUNT {
                    Some(Self::ALL[code as usize])
                } else {
                    None
                }
            }
        }

        const _: () = {
            // Codes are 0, 1, 2, ... in declaration order, so `ALL` and `NAMES` are indexed by code.
            let mut i = 0;
            while i < $name::COUNT {
                assert!($name::ALL[i] as usize == i);
                i += 1;
            }
        };

        #[doc = concat!("Names indexed by code (`", stringify!($name), "::NAMES`).")]
        pub const $names: [&str; $name::COUNT] = $name::NAMES;
    };
}

// ---------------------------------------------------------------------------------------------
// Verdict reasons. Every packet is counted exactly once, under one reason.
// ---------------------------------------------------------------------------------------------

named_codes! {
    /// Why a packet got its verdict (the index of its counter in `STATS`).
    pub enum Reason: u32, names REASON_NAMES {
        /// Passed: no rule matched.
        Pass = 0 => "pass",
        /// Passed: the source is on the allowlist (skips every other check).
        Allowlisted = 1 => "allowlisted",
        /// Dropped: the source is on the blacklist (exact address or range).
        Blacklisted = 2 => "blacklisted",
        /// Dropped: the source has an active timed ban.
        Banned = 3 => "banned",
        /// Dropped: GeoIP country policy.
        Geo = 4 => "geo",
        /// Dropped: SIP request matched a scanner signature.
        Scanner = 5 => "scanner",
        /// Dropped: per-source SIP method rate limit exceeded.
        RateLimit = 6 => "ratelimit",
        /// Malformed or truncated headers (passed unless `drop_malformed`).
        Malformed = 7 => "malformed",
        /// Dropped: the destination port has a `[[port]]` rule whose groups the source is not in.
        Port = 8 => "port",
        /// Dropped: a SIP request whose method the port's rule does not allow (or an OPTIONS
        /// from outside the rule's known groups with `unknown_options = "drop"`).
        Method = 9 => "method",
        /// Dropped: an INVITE or MESSAGE to a denied (or not allowed) international prefix.
        TollFraud = 10 => "tollfraud",
        /// Dropped (ban) / counted on egress: the PBX refused `ban_after` credentialed requests
        /// of the source (401/407/403 to a request carrying `Authorization`).
        AuthFail = 11 => "authfail",
        /// Dropped (ban) / counted on egress: 404/484 for `enum_distinct` distinct users (the
        /// svwar extension-enumeration pattern).
        Enumeration = 12 => "enumeration",
    }
}

pub const REASON_PASS: u32 = Reason::Pass as u32;
pub const REASON_ALLOWLISTED: u32 = Reason::Allowlisted as u32;
pub const REASON_BLACKLISTED: u32 = Reason::Blacklisted as u32;
pub const REASON_BANNED: u32 = Reason::Banned as u32;
pub const REASON_GEO: u32 = Reason::Geo as u32;
pub const REASON_SCANNER: u32 = Reason::Scanner as u32;
pub const REASON_RATELIMIT: u32 = Reason::RateLimit as u32;
pub const REASON_MALFORMED: u32 = Reason::Malformed as u32;
pub const REASON_PORT: u32 = Reason::Port as u32;
pub const REASON_METHOD: u32 = Reason::Method as u32;
pub const REASON_TOLLFRAUD: u32 = Reason::TollFraud as u32;
pub const REASON_AUTHFAIL: u32 = Reason::AuthFail as u32;
pub const REASON_ENUMERATION: u32 = Reason::Enumeration as u32;
/// Number of reasons in use.
pub const NUM_REASONS: u32 = Reason::COUNT as u32;
/// Slots reserved per interface in the stats array (room for future reasons).
pub const REASON_SLOTS: u32 = 16;
const _: () = assert!(NUM_REASONS <= REASON_SLOTS);

/// Interface slots for per-interface counters. Slot 0 collects interfaces without a slot
/// (and `BPF_PROG_TEST_RUN`).
pub const MAX_IFACE_SLOTS: u32 = 16;
/// `IFACE_SLOT` is indexed directly by ifindex; larger ifindexes use slot 0.
pub const MAX_IFINDEX: u32 = 4096;
/// Size of the per-CPU stats array.
pub const STATS_ENTRIES: u32 = MAX_IFACE_SLOTS * REASON_SLOTS;

/// Packet and byte counter (per CPU in the kernel, summed by userspace).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// ---------------------------------------------------------------------------------------------
// Global configuration (array map `CONFIG`, index 0).
// ---------------------------------------------------------------------------------------------

/// Count what would be dropped but pass everything.
pub const CFG_DRY_RUN: u32 = 1 << 0;
/// Drop malformed packets instead of passing them.
pub const CFG_DROP_MALFORMED: u32 = 1 << 1;
/// GeoIP policy is active.
pub const CFG_GEO_ENABLED: u32 = 1 << 2;
/// GeoIP applies to all traffic, not only to the SIP ports.
pub const CFG_GEO_SCOPE_ALL: u32 = 1 << 3;
/// Sources the GeoIP database does not cover are dropped.
pub const CFG_GEO_UNKNOWN_DROP: u32 = 1 << 4;
/// Scanner signatures are active.
pub const CFG_SCANNERS_ENABLED: u32 = 1 << 5;
/// At least one rate-limit rule is active.
pub const CFG_RATELIMIT_ENABLED: u32 = 1 << 6;
/// Inspect TCP segments on SIP ports too (best effort, per segment).
pub const CFG_SIP_TCP: u32 = 1 << 7;
/// `[[port]]` rules are active: `PORT_RULE_*`/`PORT_DEF_*` of the policy generation apply.
pub const CFG_PORT_RULES: u32 = 1 << 12;
/// The toll-fraud guard is active: INVITE/MESSAGE Request-URIs are matched against `TF_*`.
pub const CFG_TOLLFRAUD: u32 = 1 << 13;
/// Credentialed SIP requests are recorded for the egress program (`[authfail]`, settings in
/// `AUTH_CFG`). A high bit, clear of the bits other checks take next.
pub const CFG_AUTH_RECORD: u32 = 1 << 14;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// `CFG_*` bits.
    pub flags: u32,
    /// Active generation (0 or 1) of the blacklist maps.
    pub blacklist_gen: u32,
    /// Active generation (0 or 1) of the allowlist maps.
    pub allowlist_gen: u32,
    /// Active generation (0 or 1) of the GeoIP maps and policy.
    pub geo_gen: u32,
    /// Active generation (0 or 1) of the scanner signature trie.
    pub sig_gen: u32,
    /// IPv6 prefix length used as the rate-limit (and auto-ban) key (default 64).
    pub rl_v6_prefix: u32,
    /// Bitmask of `HDR_*` ids that have at least one signature (in the active generation).
    pub sig_headers: u32,
    /// Which reasons produce events (bit per reason).
    pub event_reasons: u32,
    /// Minimum spacing between events per CPU, in ns (kernel-side sampling), 0 = no limit.
    pub event_interval_ns: u64,
    /// Burst tolerance of the event sampler, in ns.
    pub event_burst_ns: u64,
    /// When non-zero, the program uses this as "now" instead of its clock (CLOCK_MONOTONIC)
    /// (deterministic `sipshield replay` with capture timestamps and tests).
    pub clock_ns: u64,
    /// Non-zero when some blacklisted IPv4 addresses did not fit their two table buckets and
    /// live in the `BL_V4_{gen}` overflow hash map (rare; checked only then).
    pub bl4_overflow: u32,
    /// Non-zero when the live IPv4 table holds addresses (an empty table is not probed).
    pub bl4_table: u32,
    /// `PRESENT_*` bits: which list structures of the live generations hold entries (empty
    /// ones are not looked up).
    pub present: u32,
    /// Active generation (`& 1`) of the SIP ports bitmap and the rate-limit rules: `SIP_PORTS`
    /// and `RL_RULES` when even, `SIP_PORTS_1` and `RL_RULES_1` when odd (`maps::SIP_PORTS_GEN`,
    /// `maps::RL_RULES_GEN`). Was padding before: a `CONFIG` pinned by an older build reads 0.
    pub policy_gen: u32,
}

pub const PRESENT_AL_V4: u32 = 1 << 0;
pub const PRESENT_AL_NET4: u32 = 1 << 1;
pub const PRESENT_AL_V6: u32 = 1 << 2;
pub const PRESENT_AL_NET6: u32 = 1 << 3;
pub const PRESENT_BL_V6: u32 = 1 << 4;
pub const PRESENT_BL_NET4: u32 = 1 << 5;
pub const PRESENT_BL_NET6: u32 = 1 << 6;
/// The live blacklist generation's `BL_BM4` bitmap covers its IPv4 entries: a source whose /24
/// bit is clear skips the table, the overflow hash and the range trie. Not a "look here" bit
/// like the others: it must hold for the old and the new generation during a swap, so the
/// swap only sets it after the flip (`addrlist`), and a `CONFIG` pinned by a build without
/// the bitmap reads 0 (the full lookup).
pub const PRESENT_BL_BM4: u32 = 1 << 7;
pub const PRESENT_AL_ALL: u32 = PRESENT_AL_V4 | PRESENT_AL_NET4 | PRESENT_AL_V6 | PRESENT_AL_NET6;
pub const PRESENT_BL_ALL: u32 = PRESENT_BL_V6 | PRESENT_BL_NET4 | PRESENT_BL_NET6;

// ---------------------------------------------------------------------------------------------
// SIP.
// ---------------------------------------------------------------------------------------------

named_codes! {
    /// SIP methods recognised in the request line, and the rate-limit rule slots (`RL_RULES`
    /// is indexed by this code).
    pub enum Method: u8, names METHOD_NAMES {
        /// Not a request (or no SIP message at all).
        None = 0 => "",
        Register = 1 => "REGISTER",
        Invite = 2 => "INVITE",
        Options = 3 => "OPTIONS",
        Ack = 4 => "ACK",
        Bye = 5 => "BYE",
        Cancel = 6 => "CANCEL",
        Subscribe = 7 => "SUBSCRIBE",
        Notify = 8 => "NOTIFY",
        Message = 9 => "MESSAGE",
        Info = 10 => "INFO",
        Prack = 11 => "PRACK",
        Update = 12 => "UPDATE",
        Refer = 13 => "REFER",
        Publish = 14 => "PUBLISH",
        /// Request with a method token we do not know (still a request).
        Other = 15 => "OTHER",
        /// A SIP response (`SIP/2.0 ...`).
        Response = 16 => "RESPONSE",
        /// Rate-limit rule slot that applies to every request method.
        Any = 17 => "ANY",
    }
}

/// SIP methods recognised in the request line. 0 = not a request (or unknown method).
pub const METHOD_NONE: u8 = Method::None as u8;
pub const METHOD_REGISTER: u8 = Method::Register as u8;
pub const METHOD_INVITE: u8 = Method::Invite as u8;
pub const METHOD_OPTIONS: u8 = Method::Options as u8;
pub const METHOD_ACK: u8 = Method::Ack as u8;
pub const METHOD_BYE: u8 = Method::Bye as u8;
pub const METHOD_CANCEL: u8 = Method::Cancel as u8;
pub const METHOD_SUBSCRIBE: u8 = Method::Subscribe as u8;
pub const METHOD_NOTIFY: u8 = Method::Notify as u8;
pub const METHOD_MESSAGE: u8 = Method::Message as u8;
pub const METHOD_INFO: u8 = Method::Info as u8;
pub const METHOD_PRACK: u8 = Method::Prack as u8;
pub const METHOD_UPDATE: u8 = Method::Update as u8;
pub const METHOD_REFER: u8 = Method::Refer as u8;
pub const METHOD_PUBLISH: u8 = Method::Publish as u8;
/// Request with a method token we do not know (still a request).
pub const METHOD_OTHER: u8 = Method::Other as u8;
/// A SIP response (`SIP/2.0 ...`).
pub const METHOD_RESPONSE: u8 = Method::Response as u8;
/// Rate-limit rule slot that applies to every request method.
pub const METHOD_ANY: u8 = Method::Any as u8;
pub const NUM_METHOD_SLOTS: u32 = Method::COUNT as u32;

named_codes! {
    /// Header ids for signatures (`SigKeyData::header`, bits of `Config::sig_headers`).
    pub enum Header: u32, names HEADER_NAMES {
        /// No header (id 0 is never used by a signature).
        None = 0 => "",
        UserAgent = 1 => "user-agent",
        From = 2 => "from",
        To = 3 => "to",
        Contact = 4 => "contact",
        Via = 5 => "via",
        CallId = 6 => "call-id",
        Subject = 7 => "subject",
        Server = 8 => "server",
    }
}

/// Header ids for signatures.
pub const HDR_USER_AGENT: u32 = Header::UserAgent as u32;
pub const HDR_FROM: u32 = Header::From as u32;
pub const HDR_TO: u32 = Header::To as u32;
pub const HDR_CONTACT: u32 = Header::Contact as u32;
pub const HDR_VIA: u32 = Header::Via as u32;
pub const HDR_CALL_ID: u32 = Header::CallId as u32;
pub const HDR_SUBJECT: u32 = Header::Subject as u32;
pub const HDR_SERVER: u32 = Header::Server as u32;
pub const NUM_HEADERS: u32 = Header::COUNT as u32;

/// Longest signature (bytes of header value matched as a prefix).
pub const SIG_MAX_LEN: usize = 32;
/// Number of signature slots (ids) in `SIG_NAMES`.
pub const SIG_MAX: u32 = 1024;

/// Words (u64) of a SIP ports bitmap: one bit per port.
pub const SIP_PORT_WORDS: u32 = 1024;
/// Bytes of UDP/TCP payload copied for SIP inspection (the whole first packet of a message).
pub const SIP_SCAN_MAX: u32 = 1536;
/// A request line's method token is shorter than this (the longest registered SIP method has
/// 9 characters). A longer first word makes the payload "not a request": it is passed
/// uninspected, never dropped for it. The bound keeps the kernel's byte walk short: a walk to
/// `SIP_SCAN_MAX` cost the verifier more than its one million instructions in the full program.
pub const SIP_METHOD_MAX: usize = 32;
/// Size of the per-CPU scratch buffer (power of two, plus slack for word reads).
pub const SCRATCH_SIZE: usize = 2048;
pub const SCRATCH_WORDS: usize = SCRATCH_SIZE / 8 + 8;

// ---------------------------------------------------------------------------------------------
// Per-port policy and the toll-fraud guard (policy generation, `Config::policy_gen`).
// ---------------------------------------------------------------------------------------------

/// Entries of a `PORT_RULE_*` array: one `u32` per destination port, the UDP rule id in the
/// low byte and the TCP rule id in the next byte (0 = no rule): one array read per packet.
pub const PORT_RULE_ENTRIES: u32 = 65536;
/// Rules per generation (`PORT_DEF_*`); id 0 is the generation's header, not a rule.
pub const PORT_RULES_MAX: u32 = 64;
/// Source groups (`[groups.NAME]`): a bit each in `PortRule::allow`/`known` and in the values
/// of the group maps.
pub const GROUPS_MAX: u32 = 32;
/// Capacity of each group trie, per generation: exact addresses (as /32 and /128) and ranges.
/// One trie per family, not a hash beside it: a program may use at most 64 maps.
pub const GRP_NET_CAPACITY: u32 = 1 << 16;

/// `PortRule::flags`: OPTIONS from sources outside `known` are dropped (reason `method`).
pub const PR_UNKNOWN_OPTIONS_DROP: u32 = 1 << 0;
/// `PortRule::flags`: `countries` applies (per-port GeoIP).
pub const PR_COUNTRIES: u32 = 1 << 1;

/// `PortRule::present` of the header (id 0): which group structures hold entries.
pub const GRP_PRESENT_NET4: u32 = 1 << 1;
pub const GRP_PRESENT_NET6: u32 = 1 << 3;

/// One `[[port]]` rule (array `PORT_DEF_*`, indexed by rule id). Entry 0 is the generation's
/// header: only its `present` field is used.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortRule {
    /// Groups whose members may reach the port (bit per group); 0 = every source.
    pub allow: u32,
    /// Groups whose OPTIONS pass with `PR_UNKNOWN_OPTIONS_DROP`.
    pub known: u32,
    /// Bit per `Method` code allowed on the port; 0 = every method.
    pub methods: u32,
    /// `PR_*` bits.
    pub flags: u32,
    /// Header only: `GRP_PRESENT_*` bits of the generation.
    pub present: u32,
    pub _pad: u32,
    /// Bit per country index dropped at this port (`PR_COUNTRIES`).
    pub countries: [u64; 4],
}

impl PortRule {
    /// Is country index `c` dropped by this rule?
    #[inline(always)]
    pub fn country_denied(&self, c: u32) -> bool {
        self.flags & PR_COUNTRIES != 0 && (self.countries[((c >> 6) & 3) as usize] >> (c & 63)) & 1 != 0
    }
}

/// The rule id of a destination port's `PORT_RULE_*` value for an IP protocol (6 = TCP).
#[inline(always)]
pub const fn port_rule_id(v: u32, tcp: bool) -> u32 {
    if tcp {
        (v >> 8) & 0xff
    } else {
        v & 0xff
    }
}

/// Bytes of a dialled number kept for the toll-fraud lookup (E.164 has 15 digits, plus an
/// international prefix).
pub const TF_KEY_LEN: usize = 24;
/// Toll-fraud prefixes per generation (each expanded once per international prefix).
pub const TF_CAPACITY: u32 = 1 << 14;
/// Rules (deny or allow prefixes) counted in `TF_HITS`; id 0 counts international numbers that
/// no allow prefix matched.
pub const TF_RULES_MAX: u32 = 1024;
/// `TF_*` trie value bit: a number matching this entry is dropped.
pub const TF_DROP: u32 = 1 << 31;
/// Where the kernel leaves the normalised number of the last toll-fraud check in the per-CPU
/// scratch buffer (word index; past the copied payload and its zero padding), for the event.
pub const TF_SCRATCH_WORD: usize = 200;

/// Normalise a Request-URI user part as the kernel does: a leading `+`, then digits; the
/// visual separators `-`, `.`, ` `, `(`, `)` are skipped; anything else ends the number.
/// Returns the bytes (zero-padded) and their count.
pub fn tf_normalise(user: &[u8]) -> ([u8; TF_KEY_LEN], usize) {
    let mut out = [0u8; TF_KEY_LEN];
    let mut n = 0;
    for &c in user.iter().take(TF_SCAN_BYTES) {
        if c.is_ascii_digit() || (c == b'+' && n == 0) {
            out[n] = c;
            n += 1;
            if n == TF_KEY_LEN {
                break;
            }
        } else if !tf_is_separator(c) {
            break;
        }
    }
    (out, n)
}

/// Bytes of the Request-URI user part the kernel walks at most.
pub const TF_SCAN_BYTES: usize = 40;

/// Visual separators skipped in dialled numbers.
#[inline(always)]
pub const fn tf_is_separator(c: u8) -> bool {
    matches!(c, b'-' | b'.' | b' ' | b'(' | b')')
}

/// Key of the signature LPM trie: `prefix_len` bits of (`header` as u32 LE, lowercased value).
/// A signature of N bytes is stored with prefix length `32 + 8 * N`; a lookup uses the full key.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigKeyData {
    pub header: u32,
    pub value: [u8; SIG_MAX_LEN],
}

/// Cheap pre-filter in front of the signature trie (array `SIG_PREFILTER`, one entry per
/// generation): a header value is looked up only when the bit `sig_prefilter_bit(header, b0,
/// b1)` of its first two (lowercased) bytes is set, or when its header has a one-byte
/// signature (`short_headers`). Exact: a signature of two or more bytes can only match a value
/// that starts with the same two bytes, so legitimate User-Agents skip the trie lookup.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigPrefilter {
    pub bits: [u64; 4],
    /// Bit per `HDR_*` id with a one-byte signature (always looked up).
    pub short_headers: u32,
    /// Non-zero once written by the controller; an unwritten entry (e.g. maps adopted from an
    /// older version) lets every value through to the trie.
    pub ready: u32,
}

/// Bit index (0..256) of a header id and the first two lowercased bytes of a value.
#[inline(always)]
pub const fn sig_prefilter_bit(header: u32, b0: u8, b1: u8) -> u32 {
    ((header << 16) | ((b0 as u32) << 8) | b1 as u32).wrapping_mul(0x9E37_79B1) >> 24
}

impl SigPrefilter {
    /// Add a signature (lowercased bytes) of `header`.
    pub fn add(&mut self, header: u32, sig: &[u8]) {
        self.ready = 1;
        if sig.len() < 2 {
            self.short_headers |= 1 << header;
        } else {
            let b = sig_prefilter_bit(header, sig[0], sig[1]);
            self.bits[(b >> 6) as usize] |= 1 << (b & 63);
        }
    }

    /// May a value of `header` starting with `b0`, `b1` (lowercased) match?
    #[inline(always)]
    pub fn may_match(&self, header: u32, b0: u8, b1: u8) -> bool {
        let b = sig_prefilter_bit(header, b0, b1);
        self.ready == 0
            || self.short_headers & (1 << header) != 0
            || (self.bits[((b >> 6) & 3) as usize] >> (b & 63)) & 1 != 0
    }
}

/// The program's clock (array `CLOCK`, index 0): `jiffies * jiffy_ns + base_ns` approximates
/// CLOCK_MONOTONIC ns at tick resolution (`bpf_jiffies64` is inlined by the verifier: no helper
/// call). Calibrated by the controller at load; `jiffy_ns == 0` = not calibrated, the program
/// then reads `bpf_ktime_get_coarse_ns` (the same clock, at the price of a helper call). A map
/// of its own, so the `CONFIG` layout (and maps pinned by earlier builds) stays as it was.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockParams {
    pub jiffy_ns: u64,
    pub base_ns: u64,
    /// Written by the calibration program `sipshield_clock`: the jiffies it read.
    pub probe: u64,
}

/// `BAN_PRESENT` index per family: non-zero when the ban map of that family may hold entries.
/// The program sets it after each ban it installs; the controller clears it only after seeing
/// the map empty (then checks again), so an empty map is never looked up.
pub const BAN_PRESENT_V4: u32 = 0;
pub const BAN_PRESENT_V6: u32 = 1;

/// Name of a signature (for events and `scanners list`), indexed by signature id.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigName {
    pub header: u32,
    pub len: u32,
    pub text: [u8; SIG_MAX_LEN],
}

/// A rate-limit rule (array `RL_RULES` indexed by method slot). GCRA / virtual scheduling:
/// a packet conforms when `now >= tat - tolerance_ns`; then `tat = max(tat, now) + interval_ns`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateRule {
    /// ns per token (1e9 / rate); 0 = rule disabled.
    pub interval_ns: u64,
    /// Burst tolerance: `(burst - 1) * interval_ns`.
    pub tolerance_ns: u64,
    /// Ban duration (ns) once `ban_after` excess packets were seen within `window_ns`.
    pub ban_ttl_ns: u64,
    /// Window over which excess packets are counted towards a ban.
    pub window_ns: u64,
    /// Excess packets within the window that trigger a ban (0 = never ban).
    pub ban_after: u32,
    pub _pad: u32,
}

/// Rate-limit state: a set-associative table (`RL_TABLE`, an array of `RL_SETS` sets of
/// `RL_WAYS` buckets), LRU within each set. The program finds a (source, method) bucket with
/// inline array reads (no map-helper call); a new bucket replaces, in its set, an unused one,
/// else one that holds nothing worth keeping (full again and no excess counted), else one
/// without excess, else one counting excess towards a ban in its current window (least
/// recently seen first within each class), so a spray of spoofed one-packet sources cannot
/// wipe a flooder's history.
pub const RL_WAYS: usize = 4;
pub const RL_SETS: u32 = RL_CAPACITY / RL_WAYS as u32;
/// `RateSlot::tag` bit of a bucket in use (the low bytes hold family and method slot).
pub const RL_TAG_USED: u32 = 1 << 16;

/// One rate-limit bucket. Key: `addr` (`rl_addr`) and `tag` (`rl_tag`; 0 = unused).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateSlot {
    pub addr: [u64; 2],
    pub tag: u32,
    /// Excess packets in the current window.
    pub excess: u32,
    /// Theoretical arrival time (program clock, CLOCK_MONOTONIC ns).
    pub tat: u64,
    /// Start of the current excess-counting window.
    pub window_start: u64,
    /// Last packet (program clock): the LRU order within the set.
    pub seen: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RateSet {
    pub slots: [RateSlot; RL_WAYS],
}

/// `RateSlot::tag` of a (family, method slot) bucket.
#[inline(always)]
pub const fn rl_tag(family: u8, method_slot: u8) -> u32 {
    family as u32 | (method_slot as u32) << 8 | RL_TAG_USED
}

/// `RateSlot::addr` of a source: IPv4 (`src[..4]`) in the low 4 bytes of the first word, IPv6
/// masked to `v6_prefix`. Built from whole words (a zero-initialised byte array would become a
/// call to a byte-wise BPF `memset`).
#[inline(always)]
pub const fn rl_addr(family: u8, src: [u8; 16], v6_prefix: u32) -> [u64; 2] {
    if family == FAMILY_V4 {
        [u32::from_ne_bytes([src[0], src[1], src[2], src[3]]) as u64, 0]
    } else {
        // SAFETY: [u8; 16] and [u64; 2] have the same size; every bit pattern is valid.
        unsafe { core::mem::transmute::<[u8; 16], [u64; 2]>(mask_prefix6(src, v6_prefix)) }
    }
}

/// The set of a rate-limit key: a multiply-xorshift hash keyed with the table's random seed
/// (`RL_SEED`), so sources cannot be chosen to collide without knowing it.
#[inline(always)]
pub const fn rl_set(addr: [u64; 2], tag: u32, seed: u64) -> u32 {
    let a = (addr[0] ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let b = (addr[1] ^ ((tag as u64) << 32) ^ seed.rotate_left(32)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    let h = (a ^ (b >> 29) ^ b.rotate_left(17)).wrapping_mul(0x94D0_49BB_1331_11EB);
    ((h >> 40) as u32) & (RL_SETS - 1)
}

// ---------------------------------------------------------------------------------------------
// Addresses, lists and bans.
// ---------------------------------------------------------------------------------------------

pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// Capacities (max entries) of the list maps, per generation.
/// Overflow hash of the IPv4 table (addresses whose two buckets are full).
pub const BL_V4_CAPACITY: u32 = 1 << 16;
pub const BL_V6_CAPACITY: u32 = 1 << 18;
pub const BL_NET_CAPACITY: u32 = 1 << 16;
pub const AL_CAPACITY: u32 = 1 << 16;
pub const AL_NET_CAPACITY: u32 = 1 << 14;
pub const BAN_CAPACITY: u32 = 1 << 18;
pub const RL_CAPACITY: u32 = 1 << 18;

/// The blacklist's exact IPv4 addresses live in a bucketized hash table inside an mmap-able
/// array (per generation): `BL4_BUCKETS` buckets of `BL4_SLOTS` addresses, each address in one
/// of its two candidate buckets (`bl4_hash1`, `bl4_hash2`). Userspace builds the whole table and
/// copies it in at memory speed; the program scans at most two 64-byte buckets. Slot value 0 is
/// empty (0.0.0.0 is stored as a /32 range instead).
pub const BL4_BUCKET_BITS: u32 = 17;
pub const BL4_BUCKETS: u32 = 1 << BL4_BUCKET_BITS;
pub const BL4_SLOTS: usize = 16;
/// Capacity of the table (at most half full, so two-choice placement practically never overflows).
pub const BL4_TABLE_CAPACITY: u32 = BL4_BUCKETS * BL4_SLOTS as u32 / 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bucket4 {
    pub keys: [u32; BL4_SLOTS],
}

/// The blacklist's per-/24 bitmap (`maps::BL_BM4`): one bit per IPv4 /24, in `u64` words.
pub const BL4_BITMAP_WORDS: u32 = 1 << 18;

/// (word, bit mask) of the /24 of `a` in the per-/24 bitmap.
#[inline(always)]
pub const fn bl4_bitmap_pos(a: [u8; 4]) -> (u32, u64) {
    let slash24 = (a[0] as u32) << 16 | (a[1] as u32) << 8 | a[2] as u32;
    (slash24 >> 6, 1u64 << (slash24 & 63))
}

/// First candidate bucket of an IPv4 key (`u32::from_ne_bytes(octets)`).
#[inline(always)]
pub const fn bl4_hash1(k: u32) -> u32 {
    k.wrapping_mul(0x9E37_79B1) >> (32 - BL4_BUCKET_BITS)
}

/// Second candidate bucket (an independent multiply-shift of a mixed key).
#[inline(always)]
pub const fn bl4_hash2(k: u32) -> u32 {
    let x = (k ^ (k >> 16)).wrapping_mul(0x7FEB_352D);
    let x = (x ^ (x >> 15)).wrapping_mul(0x846C_A68B);
    x >> (32 - BL4_BUCKET_BITS)
}

/// Value stored for an IPv6 ban: expiry plus the prefix it covers (128, or the rate-limit
/// prefix for bans made by the rate limiter). Keys are the address masked to that prefix.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BanKey6 {
    pub addr: [u8; 16],
    pub prefix: u32,
}

// ---------------------------------------------------------------------------------------------
// GeoIP.
// ---------------------------------------------------------------------------------------------

/// Country index 0 = unknown (not in the database).
pub const GEO_UNKNOWN: u8 = 0;
/// Marker in the flat /24 table: this /24 is split, consult the exception trie.
pub const GEO_SPLIT: u8 = 255;
pub const GEO_COUNTRIES: u32 = 256;
/// IPv4 flat table: one entry per /16, one byte per /24.
pub const GEO_V4_ROWS: u32 = 65536;
pub const GEO_NET_V4_CAPACITY: u32 = 1 << 18;
pub const GEO_V6_CAPACITY: u32 = 1 << 20;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeoRow {
    pub country: [u8; 256],
}

// ---------------------------------------------------------------------------------------------
// Events (ring buffer).
// ---------------------------------------------------------------------------------------------

pub const EVENT_RING_BYTES: u32 = 1 << 18;

/// Event counters (per-CPU array `EVENT_STATS`).
pub const EVSTAT_EMITTED: u32 = 0;
pub const EVSTAT_SUPPRESSED: u32 = 1;
pub const EVSTAT_RING_FULL: u32 = 2;
pub const EVSTAT_BANS: u32 = 3;
pub const EVSTAT_BAN_FAILED: u32 = 4;
pub const EVSTAT_ENTRIES: u32 = 8;

/// Event flags.
pub const EVF_NEW_BAN: u8 = 1;
pub const EVF_DRY_RUN: u8 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// Program clock (CLOCK_MONOTONIC) ns.
    pub ts_ns: u64,
    /// For new bans: ban expiry (program clock, CLOCK_MONOTONIC ns); otherwise 0.
    pub ban_until_ns: u64,
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    pub ifindex: u32,
    /// Signature id for scanner drops.
    pub sig_id: u32,
    pub sport: u16,
    pub dport: u16,
    pub reason: u8,
    pub family: u8,
    pub method: u8,
    pub flags: u8,
    /// Country index (GeoIP drops).
    pub country: u8,
    pub proto: u8,
    pub _pad: u16,
    pub _pad2: u32,
    /// A count that belongs to the event's reason (toll fraud: the rule; authfail/enumeration: the failures or distinct users counted).
    pub count: u32,
    /// NUL-padded text that belongs to the event's reason (toll fraud: the dialled number; authfail/enumeration: the user of the `To`/`From`).
    pub detail: [u8; EVENT_DETAIL_LEN],
    /// Length of the dropped frame (saturated at 65535).
    pub pkt_len: u16,
    /// How many of its first bytes `snap` holds (at most `EVENT_SNAP`); the rest of `snap` is
    /// not written.
    pub snap_len: u16,
    pub _pad3: u32,
    /// The frame's first bytes, from its Ethernet header on (`sipshield events --pcap`).
    pub snap: [u8; EVENT_SNAP],
}

/// Bytes of a dropped frame an event carries: the headers and the start of a SIP request
/// (request line, Via, From, To, often the User-Agent).
pub const EVENT_SNAP: usize = 256;

/// Size of an event from a filter built before `snap` was appended: such records (an adopted
/// older filter's) decode without a snapshot.
pub const EVENT_V1_SIZE: usize = 56;

/// Bytes of `Event::detail`.
pub const EVENT_DETAIL_LEN: usize = 28;

// ---------------------------------------------------------------------------------------------
// Authentication failures and enumeration (ingress bookkeeping + egress program).
// ---------------------------------------------------------------------------------------------

/// `AuthConfig::flags`: failed authentications are counted and banned.
pub const AUTH_ENABLED: u32 = 1 << 0;
/// `AuthConfig::flags`: enumeration (404/484 to distinct users) is counted and banned.
pub const AUTH_ENUM_ENABLED: u32 = 1 << 1;
/// `AuthConfig::flags`: a 403 to a request *without* credentials counts as enumeration.
pub const AUTH_ENUM_403: u32 = 1 << 2;
/// Statuses in `AuthConfig::statuses` at most.
pub const AUTH_MAX_STATUSES: usize = 8;

/// The `[authfail]` settings (array map `AUTH_CFG`, one entry). A map of its own: `Config`
/// never grows (a pinned `CONFIG` keeps its value size).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthConfig {
    /// `AUTH_*` bits; 0 = the egress program and the ingress bookkeeping do nothing.
    pub flags: u32,
    /// Failures in `window_ns` that ban the source.
    pub ban_after: u32,
    pub window_ns: u64,
    pub ban_ttl_ns: u64,
    /// Distinct users answered 404/484 in `enum_window_ns` that ban the source.
    pub enum_distinct: u32,
    /// Number of codes used in `statuses`.
    pub n_statuses: u32,
    pub enum_window_ns: u64,
    /// Statuses that mean "wrong credentials" for a credentialed request (default 401, 403, 407).
    pub statuses: [u16; AUTH_MAX_STATUSES],
}

impl AuthConfig {
    /// Is `status` one of the failure statuses?
    #[inline(always)]
    pub fn is_failure(&self, status: u16) -> bool {
        let mut i = 0;
        while i < AUTH_MAX_STATUSES {
            if (i as u32) < self.n_statuses && self.statuses[i] == status {
                return true;
            }
            i += 1;
        }
        false
    }
}

/// A credentialed request waiting for its answer (LRU hash `AUTH_REQ`): the client (address),
/// the Call-ID hash and the CSeq number.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthReqKey {
    pub addr: [u8; 16],
    pub callid: u64,
    pub cseq: u32,
    pub family: u32,
}

/// `AuthReq::state`: the request was seen, no final answer counted yet.
pub const AUTH_REQ_OPEN: u32 = 1;
/// `AuthReq::state`: a failure answer was counted (a retransmitted answer is not counted again).
pub const AUTH_REQ_COUNTED: u32 = 2;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthReq {
    /// When the request was recorded (program clock).
    pub seen_ns: u64,
    pub state: u32,
    /// `METHOD_*` of the request.
    pub method: u32,
}

/// Counting key of a source (LRU hashes `AUTH_FAIL`, `AUTH_ENUM`): `rl_addr` of the address
/// (IPv6 masked to `Config::rl_v6_prefix`, the prefix bans use too).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthSrc {
    pub addr: [u64; 2],
}

/// Failures of a source in its current window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AuthCount {
    pub window_start: u64,
    pub count: u32,
    pub _pad: u32,
}

/// Bloom words (64 bits each) of the distinct users of an enumeration window.
pub const ENUM_BLOOM_WORDS: usize = 8;
/// Largest `enum_distinct`: with 512 bits, a set of 64 users still has few collisions (a
/// collision only undercounts: it can delay a ban, never cause one).
pub const ENUM_DISTINCT_MAX: u32 = 64;

/// Distinct users answered 404/484 for a source in its current window.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EnumState {
    pub window_start: u64,
    pub distinct: u32,
    pub _pad: u32,
    pub bloom: [u64; ENUM_BLOOM_WORDS],
}

/// `EnumState::bloom` bit of a user hash.
#[inline(always)]
pub const fn enum_bit(user_hash: u64) -> (usize, u64) {
    let h = user_hash.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 55; // 9 bits
    (((h >> 6) as usize) & (ENUM_BLOOM_WORDS - 1), 1u64 << (h & 63))
}

/// Words of a header value hashed (Call-ID: the first 64 bytes).
pub const SIP_HASH_WORDS: usize = 8;

/// Hash of up to `SIP_HASH_WORDS` words of a header value (cut at the line end, zeros after):
/// the Call-ID key and the enumeration user key. Computed identically by the kernel and
/// userspace.
#[inline(always)]
pub const fn sip_hash(words: &[u64; SIP_HASH_WORDS]) -> u64 {
    let mut h: u64 = 0xCBF2_9CE4_8422_2325;
    let mut i = 0;
    while i < SIP_HASH_WORDS {
        h = (h ^ words[i]).wrapping_mul(0x0100_0000_01B3).rotate_left(29);
        i += 1;
    }
    h ^ (h >> 31)
}

/// What the header scan for authentication found in a SIP message (per-CPU `AUTH_SCRATCH`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SipFields {
    /// `sip_hash` of the Call-ID value (0: none seen).
    pub callid: u64,
    /// `sip_hash` of the user of the `To` URI (0: none).
    pub to_hash: u64,
    /// CSeq number (0: none seen).
    pub cseq: u32,
    /// `SF_*` bits.
    pub flags: u32,
    /// `METHOD_*` of the CSeq (responses: the method answered).
    pub cseq_method: u32,
    pub _pad: u32,
    /// The user of the `To` URI, NUL-padded (cut to `EVENT_DETAIL_LEN`).
    pub user: [u8; EVENT_DETAIL_LEN],
    pub _pad2: u32,
}

/// `SipFields::flags`: an `Authorization` or `Proxy-Authorization` header is present.
pub const SF_CREDENTIALS: u32 = 1 << 0;

/// Egress and bookkeeping counters (per-CPU array `AUTH_STATS`, kept apart from the ingress
/// verdict counters).
pub const AUTHSTAT_REQ_RECORDED: u32 = 0;
pub const AUTHSTAT_RESPONSES: u32 = 1;
pub const AUTHSTAT_CHALLENGES: u32 = 2;
pub const AUTHSTAT_FAILURES: u32 = 3;
pub const AUTHSTAT_FAIL_BANS: u32 = 4;
pub const AUTHSTAT_ENUM_MISSES: u32 = 5;
pub const AUTHSTAT_ENUM_BANS: u32 = 6;
pub const AUTHSTAT_ALLOWLISTED: u32 = 7;
pub const AUTHSTAT_BAN_FAILED: u32 = 8;
pub const AUTHSTAT_ENTRIES: u32 = 16;
/// Names of the `AUTHSTAT_*` counters (stats, metrics).
pub const AUTHSTAT_NAMES: [&str; 9] = [
    "requests_recorded",
    "responses",
    "challenges",
    "failures",
    "authfail_bans",
    "enum_misses",
    "enumeration_bans",
    "allowlisted",
    "ban_failed",
];
/// Capacity of `AUTH_REQ` (credentialed requests awaiting an answer).
pub const AUTH_REQ_CAPACITY: u32 = 1 << 16;
/// Capacity of `AUTH_FAIL` and `AUTH_ENUM` (sources counted).
pub const AUTH_SRC_CAPACITY: u32 = 1 << 16;

// ---------------------------------------------------------------------------------------------
// Layout checks: these types cross the kernel/user boundary and must have no padding.
// ---------------------------------------------------------------------------------------------
const _: () = {
    assert!(core::mem::size_of::<Counter>() == 16);
    assert!(core::mem::size_of::<Config>() == 72);
    assert!(core::mem::size_of::<SigKeyData>() == 36);
    assert!(core::mem::size_of::<SigName>() == 40);
    assert!(core::mem::size_of::<SigPrefilter>() == 40);
    assert!(core::mem::size_of::<ClockParams>() == 24);
    assert!(core::mem::size_of::<RateRule>() == 40);
    assert!(core::mem::size_of::<RateSlot>() == 48);
    assert!(core::mem::size_of::<RateSet>() == 48 * RL_WAYS);
    assert!(RL_SETS.is_power_of_two());
    assert!(core::mem::size_of::<BanKey6>() == 20);
    assert!(core::mem::size_of::<GeoRow>() == 256);
    assert!(core::mem::size_of::<Bucket4>() == 64);
    assert!(core::mem::size_of::<PortRule>() == 56);
    assert!(core::mem::size_of::<Event>() == EVENT_V1_SIZE + 32 + 8 + EVENT_SNAP);
    assert!(core::mem::offset_of!(Event, count) == EVENT_V1_SIZE);
    // The kernel masks the snapshot length with EVENT_SNAP - 1.
    assert!(EVENT_SNAP.is_power_of_two());
    assert!(core::mem::size_of::<AuthConfig>() == 56);
    assert!(core::mem::size_of::<AuthReqKey>() == 32);
    assert!(core::mem::size_of::<AuthReq>() == 16);
    assert!(core::mem::size_of::<AuthSrc>() == 16);
    assert!(core::mem::size_of::<AuthCount>() == 16);
    assert!(core::mem::size_of::<EnumState>() == 16 + 8 * ENUM_BLOOM_WORDS);
    assert!(core::mem::size_of::<SipFields>() == 64);
};

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), contain only integers/byte arrays and have no padding
    // (see the size asserts above).
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for SigKeyData {}
    unsafe impl aya::Pod for SigName {}
    unsafe impl aya::Pod for SigPrefilter {}
    unsafe impl aya::Pod for ClockParams {}
    unsafe impl aya::Pod for RateRule {}
    unsafe impl aya::Pod for RateSlot {}
    unsafe impl aya::Pod for RateSet {}
    unsafe impl aya::Pod for BanKey6 {}
    unsafe impl aya::Pod for GeoRow {}
    unsafe impl aya::Pod for Bucket4 {}
    unsafe impl aya::Pod for Event {}
    unsafe impl aya::Pod for PortRule {}
    unsafe impl aya::Pod for AuthConfig {}
    unsafe impl aya::Pod for AuthReqKey {}
    unsafe impl aya::Pod for AuthReq {}
    unsafe impl aya::Pod for AuthSrc {}
    unsafe impl aya::Pod for AuthCount {}
    unsafe impl aya::Pod for EnumState {}
}

/// `addr` with the bits past `prefix` cleared (the IPv6 rate-limit and auto-ban key).
/// Used identically by the kernel and userspace.
#[inline(always)]
pub const fn mask_prefix6(addr: [u8; 16], prefix: u32) -> [u8; 16] {
    let mut out = addr;
    let mut i = 0usize;
    while i < 16 {
        let bit = (i as u32) * 8;
        if bit >= prefix {
            out[i] = 0;
        } else if bit + 8 > prefix {
            out[i] &= 0xffu8 << (8 - (prefix - bit));
        }
        i += 1;
    }
    out
}

/// Lowercase ASCII letters in 8 bytes at once (SWAR); other bytes are unchanged.
/// Used identically by the kernel parser and the userspace model.
#[inline(always)]
pub const fn lower8(x: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let heptets = x & !HIGH;
    let ge_a = heptets.wrapping_add((0x80 - b'A' as u64) * ONES);
    let gt_z = heptets.wrapping_add((0x7f - b'Z' as u64) * ONES);
    let is_upper = !x & (ge_a ^ gt_z) & HIGH;
    x | (is_upper >> 2)
}

/// High bit set in every byte of `x` that equals `b` (exact, no false positives).
#[inline(always)]
pub const fn bytes_eq(x: u64, b: u8) -> u64 {
    const LOW7: u64 = 0x7f7f_7f7f_7f7f_7f7f;
    let v = x ^ (b as u64 * 0x0101_0101_0101_0101);
    let t = (v & LOW7).wrapping_add(LOW7);
    !(t | v | LOW7)
}

/// Keep the bytes of `x` (little-endian) before the first byte flagged in `mask`
/// (a `bytes_eq`-style mask), zeroing it and everything after. Returns `(kept, found)`.
#[inline(always)]
pub const fn cut_at(x: u64, mask: u64) -> (u64, bool) {
    if mask == 0 {
        return (x, false);
    }
    let low = mask & mask.wrapping_neg(); // bit 8k+7 of the first flagged byte k
    let keep = (low >> 7).wrapping_sub(1); // bytes 0..k
    (x & keep, true)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;

    #[test]
    fn lower8_only_touches_letters() {
        for b in 0u8..=255 {
            let w = u64::from_le_bytes([b; 8]);
            let want = if b.is_ascii_uppercase() { b + 32 } else { b };
            assert_eq!(lower8(w), u64::from_le_bytes([want; 8]), "byte {b:#x}");
        }
    }

    #[test]
    fn bytes_eq_is_exact() {
        let w = u64::from_le_bytes(*b"a\n\x00\x8a\nzz\x0b");
        let m = bytes_eq(w, b'\n');
        assert_eq!(m, 0x80 << 8 | 0x80 << 32);
        for b in 0..=255u8 {
            for x in 0..=255u8 {
                let want = if x == b { 0x80 << 16 } else { 0 };
                assert_eq!(
                    bytes_eq(u64::from_le_bytes([b ^ 1, 0, x, 0, 0, 0, 0, 0]), b) & 0xff_0000,
                    want,
                    "{x:#x} vs {b:#x}"
                );
            }
        }
    }

    #[test]
    fn code_names_and_aliases() {
        // The arrays and constants userspace used before the enums, unchanged.
        assert_eq!(
            REASON_NAMES,
            [
                "pass",
                "allowlisted",
                "blacklisted",
                "banned",
                "geo",
                "scanner",
                "ratelimit",
                "malformed",
                "port",
                "method",
                "tollfraud",
                "authfail",
                "enumeration"
            ]
        );
        assert_eq!((REASON_PASS, REASON_RATELIMIT, REASON_MALFORMED, NUM_REASONS), (0, 6, 7, 13));
        assert_eq!((REASON_PORT, REASON_METHOD, REASON_TOLLFRAUD), (8, 9, 10));
        assert_eq!(
            METHOD_NAMES,
            [
                "",
                "REGISTER",
                "INVITE",
                "OPTIONS",
                "ACK",
                "BYE",
                "CANCEL",
                "SUBSCRIBE",
                "NOTIFY",
                "MESSAGE",
                "INFO",
                "PRACK",
                "UPDATE",
                "REFER",
                "PUBLISH",
                "OTHER",
                "RESPONSE",
                "ANY"
            ]
        );
        assert_eq!((METHOD_REGISTER, METHOD_OTHER, METHOD_RESPONSE, METHOD_ANY, NUM_METHOD_SLOTS), (1, 15, 16, 17, 18));
        assert_eq!(HEADER_NAMES, ["", "user-agent", "from", "to", "contact", "via", "call-id", "subject", "server"]);
        assert_eq!((HDR_USER_AGENT, HDR_CALL_ID, HDR_SERVER, NUM_HEADERS), (1, 6, 8, 9));
        for r in Reason::ALL {
            assert_eq!(Reason::from_code(r as u32), Some(r));
            assert_eq!(REASON_NAMES[r as usize], r.name());
        }
        assert_eq!(Reason::from_code(NUM_REASONS), None);
        assert_eq!(Method::from_code(METHOD_INVITE), Some(Method::Invite));
        assert_eq!(Method::Invite.name(), "INVITE");
        assert_eq!(Header::from_code(HDR_CALL_ID).map(Header::name), Some("call-id"));
        assert_eq!(Header::from_code(NUM_HEADERS), None);
    }

    #[test]
    fn flags_are_bits_in_order() {
        // The layout of `CONFIG` pinned by earlier builds: each flag keeps its bit.
        let cfg = [
            CFG_DRY_RUN,
            CFG_DROP_MALFORMED,
            CFG_GEO_ENABLED,
            CFG_GEO_SCOPE_ALL,
            CFG_GEO_UNKNOWN_DROP,
            CFG_SCANNERS_ENABLED,
            CFG_RATELIMIT_ENABLED,
            CFG_SIP_TCP,
        ];
        let present = [
            PRESENT_AL_V4,
            PRESENT_AL_NET4,
            PRESENT_AL_V6,
            PRESENT_AL_NET6,
            PRESENT_BL_V6,
            PRESENT_BL_NET4,
            PRESENT_BL_NET6,
            PRESENT_BL_BM4,
        ];
        for set in [&cfg[..], &present[..]] {
            for (i, f) in set.iter().enumerate() {
                assert_eq!(*f, 1 << i, "flag {i}");
            }
        }
        assert_eq!((PRESENT_AL_ALL, PRESENT_BL_ALL), (0b000_1111, 0b111_0000));
        assert_eq!(RL_TAG_USED, 1 << 16, "above the family and method bytes of a tag");
    }

    #[test]
    fn capacities_are_the_documented_ones() {
        // README, "IP list format" and "Known limits".
        assert_eq!(BL4_TABLE_CAPACITY, 1_048_576);
        assert_eq!(BL4_BUCKETS as usize * core::mem::size_of::<Bucket4>(), 8 << 20, "8 MiB IPv4 table");
        assert_eq!(core::mem::size_of::<Bucket4>(), 64, "one cache line per bucket");
        assert_eq!(BL4_BITMAP_WORDS as usize * 8, 2 << 20, "2 MiB per-/24 bitmap: one bit per /24");
        assert_eq!((BL_V4_CAPACITY, BL_V6_CAPACITY, BL_NET_CAPACITY), (65_536, 262_144, 65_536));
        assert_eq!((AL_CAPACITY, AL_NET_CAPACITY), (65_536, 16_384));
        assert_eq!((BAN_CAPACITY, RL_CAPACITY), (262_144, 262_144));
        assert_eq!((RL_SETS, RL_WAYS), (65_536, 4));
        assert_eq!(RL_SETS as usize * core::mem::size_of::<RateSet>(), 12 << 20, "12 MiB rate-limit table");
        assert_eq!(GEO_V4_ROWS as usize * core::mem::size_of::<GeoRow>(), 16 << 20, "16 MiB flat GeoIP table");
        assert_eq!((GEO_NET_V4_CAPACITY, GEO_V6_CAPACITY), (1 << 18, 1 << 20));
        assert_eq!(STATS_ENTRIES, 256);
        assert_eq!(SCRATCH_WORDS * 8, SCRATCH_SIZE + 64, "scratch buffer plus 64 bytes of slack for word reads");
        assert!(SCRATCH_SIZE.is_power_of_two() && SCRATCH_SIZE >= SIP_SCAN_MAX as usize);
        assert_eq!(EVENT_RING_BYTES, 256 << 10, "a ring buffer is a power-of-two number of pages");
    }

    #[test]
    fn mask_prefix6_matches_a_u128_mask() {
        let addr = [0xffu8; 16];
        let mixed: [u8; 16] = core::array::from_fn(|i| (i as u8).wrapping_mul(37) | 0x81);
        for prefix in 0..=130u32 {
            let keep = if prefix >= 128 { u128::MAX } else { !(u128::MAX >> prefix) };
            for a in [addr, mixed] {
                let want = (u128::from_be_bytes(a) & keep).to_be_bytes();
                assert_eq!(mask_prefix6(a, prefix), want, "/{prefix} of {a:02x?}");
            }
        }
    }

    #[test]
    fn rate_limit_keys() {
        assert_eq!(rl_tag(FAMILY_V6, 3), 6 | 3 << 8 | RL_TAG_USED);
        assert_ne!(rl_tag(FAMILY_V4, 0), 0, "0 is an unused slot");
        let mut src = [0u8; 16];
        src[..4].copy_from_slice(&[198, 51, 100, 7]);
        src[4] = 9; // ignored for IPv4
        assert_eq!(rl_addr(FAMILY_V4, src, 64), [u32::from_ne_bytes([198, 51, 100, 7]) as u64, 0]);
        let v6: [u8; 16] = core::array::from_fn(|i| 0x20 + i as u8);
        let key = rl_addr(FAMILY_V6, v6, 64);
        assert_eq!(key[0].to_ne_bytes(), v6[..8], "the /64 is kept");
        assert_eq!(key[1], 0, "the interface identifier is cleared");
        assert_eq!(rl_addr(FAMILY_V6, v6, 128)[1].to_ne_bytes(), v6[8..]);
    }

    /// Distinct sets a hash gives to `n` keys; a well-mixed hash into `buckets` sets puts `n`
    /// keys into about `buckets * (1 - e^(-n/buckets))` of them.
    fn spread(n: u32, buckets: u32, h: impl Fn(u32) -> u32) -> usize {
        let mut seen = std::collections::BTreeSet::new();
        for i in 0..n {
            let b = h(i);
            assert!(b < buckets, "{b} out of range");
            seen.insert(b);
        }
        seen.len()
    }

    #[test]
    fn rl_set_is_in_range_and_uses_every_input() {
        let seed = 0x0123_4567_89ab_cdef;
        let tag = rl_tag(FAMILY_V4, 1);
        // 4096 keys over 65,536 sets: ~3970 distinct for a good hash.
        for h in [
            &(|i: u32| rl_set([i as u64, 0], tag, seed)) as &dyn Fn(u32) -> u32,
            &|i: u32| rl_set([0, (i as u64) << 40], tag, seed),
            &|i: u32| rl_set([7, 0], rl_tag(FAMILY_V6, i as u8) ^ (i >> 8), seed),
            &|i: u32| rl_set([7, 9], tag, seed ^ ((i as u64) << 20)),
            &|i: u32| rl_set([7, 9], tag, (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        ] {
            assert!(spread(4096, RL_SETS, h) > 3800);
        }
        // The seed changes the set of the same key.
        let key = [u32::from_ne_bytes([198, 51, 100, 7]) as u64, 0];
        assert_eq!(spread(64, RL_SETS, |s| rl_set(key, tag, s as u64 | (s as u64) << 33)), 64);
    }

    #[test]
    fn bl4_bitmap_pos_is_one_bit_per_slash24() {
        assert_eq!(bl4_bitmap_pos([0, 0, 0, 0]), (0, 1));
        assert_eq!(bl4_bitmap_pos([0, 0, 63, 255]), (0, 1 << 63));
        assert_eq!(bl4_bitmap_pos([0, 0, 64, 0]), (1, 1));
        assert_eq!(bl4_bitmap_pos([255, 255, 255, 255]), (BL4_BITMAP_WORDS - 1, 1 << 63));
        // The host byte never matters; every octet of the /24 does.
        assert_eq!(bl4_bitmap_pos([198, 51, 100, 1]), bl4_bitmap_pos([198, 51, 100, 254]));
        assert_ne!(bl4_bitmap_pos([198, 51, 100, 1]), bl4_bitmap_pos([198, 51, 101, 1]));
        assert_ne!(bl4_bitmap_pos([198, 51, 100, 1]), bl4_bitmap_pos([198, 52, 100, 1]));
        assert_ne!(bl4_bitmap_pos([198, 51, 100, 1]), bl4_bitmap_pos([199, 51, 100, 1]));
    }

    #[test]
    fn bl4_hashes_are_in_range_spread_and_independent() {
        let buckets = BL4_BUCKETS;
        for keys in [&(|i: u32| i) as &dyn Fn(u32) -> u32, &|i: u32| i << 16, &|i: u32| i.wrapping_mul(0x0101_0101)] {
            assert!(spread(8192, buckets, |i| bl4_hash1(keys(i))) > 7500);
            assert!(spread(8192, buckets, |i| bl4_hash2(keys(i))) > 7500);
            // The second choice is not a function of the first (two-choice placement needs both).
            let same = (0..8192).filter(|&i| bl4_hash1(keys(i)) == bl4_hash2(keys(i))).count();
            assert!(same < 8, "{same} keys have one bucket twice");
        }
        // Keys sharing their first bucket are spread by the second one.
        let k0 = 0x0a00_0001u32;
        let twins: std::vec::Vec<u32> =
            (1..u32::MAX).map(|i| k0.wrapping_add(i)).filter(|&k| bl4_hash1(k) == bl4_hash1(k0)).take(64).collect();
        let seconds: std::collections::BTreeSet<u32> = twins.iter().map(|&k| bl4_hash2(k)).collect();
        assert!(twins.len() == 64 && seconds.len() > 56, "{} twins, {} second buckets", twins.len(), seconds.len());
    }

    #[test]
    fn sig_prefilter_is_exact_for_its_signatures() {
        assert!(sig_prefilter_bit(HDR_SUBJECT, 0xff, 0xff) < 256);
        // The bit depends on the header and on both bytes.
        let distinct = |f: &dyn Fn(u8) -> u32| (0..=255u8).map(f).collect::<std::collections::BTreeSet<u32>>().len();
        assert!(distinct(&|a| sig_prefilter_bit(HDR_USER_AGENT, a, b'x')) > 140);
        assert!(distinct(&|a| sig_prefilter_bit(HDR_USER_AGENT, b'x', a)) > 140);
        assert!(distinct(&|h| sig_prefilter_bit(h as u32 % NUM_HEADERS, b's', b'i')) == NUM_HEADERS as usize);

        let unset = SigPrefilter::default();
        assert!(unset.may_match(HDR_USER_AGENT, b'z', b'z'), "an unwritten prefilter lets everything through");

        let mut p = SigPrefilter::default();
        p.add(HDR_USER_AGENT, b"sipvicious");
        p.add(HDR_FROM, b"friendly-scanner");
        assert_eq!(p.ready, 1);
        assert!(p.may_match(HDR_USER_AGENT, b's', b'i') && p.may_match(HDR_FROM, b'f', b'r'));
        // Every other first pair of the same headers, and the same pair under another header,
        // is filtered out unless it hashes to one of the two bits.
        let set = [sig_prefilter_bit(HDR_USER_AGENT, b's', b'i'), sig_prefilter_bit(HDR_FROM, b'f', b'r')];
        for h in [HDR_USER_AGENT, HDR_FROM, HDR_TO, HDR_CALL_ID] {
            for a in 0..=255u8 {
                for b in [b'a', b'i', b'r', 0, 0xff] {
                    let expect = set.contains(&sig_prefilter_bit(h, a, b));
                    assert_eq!(p.may_match(h, a, b), expect, "header {h} {a:#x} {b:#x}");
                }
            }
        }
        assert_eq!(p.bits.iter().map(|w| w.count_ones()).sum::<u32>(), 2);
        assert_eq!(p.short_headers, 0);

        // Two bytes are enough for the bitmap.
        p.add(HDR_SUBJECT, b"ab");
        assert_eq!(p.short_headers, 0);
        assert!(p.may_match(HDR_SUBJECT, b'a', b'b'));
        p.add(HDR_SUBJECT, b"ab"); // (the same bit again)
        let bits = 2 + u32::from(!set.contains(&sig_prefilter_bit(HDR_SUBJECT, b'a', b'b')));
        assert_eq!(p.bits.iter().map(|w| w.count_ones()).sum::<u32>(), bits);
        // A one-byte signature makes its header always looked up, and only its header.
        p.add(HDR_CONTACT, b"x");
        assert_eq!(p.short_headers, 1 << HDR_CONTACT);
        assert!(p.may_match(HDR_CONTACT, b'q', b'q'));
        let set = [set[0], set[1], sig_prefilter_bit(HDR_SUBJECT, b'a', b'b')];
        assert_eq!(p.may_match(HDR_VIA, b'q', b'q'), set.contains(&sig_prefilter_bit(HDR_VIA, b'q', b'q')));
        assert_eq!(p.bits.iter().map(|w| w.count_ones()).sum::<u32>(), bits);
    }

    #[test]
    fn port_rule_ids_and_countries() {
        let v = 3 | 7 << 8;
        assert_eq!((port_rule_id(v, false), port_rule_id(v, true)), (3, 7));
        let mut r = PortRule { flags: PR_COUNTRIES, ..Default::default() };
        r.countries[1] |= 1 << 2; // country 66
        r.countries[3] |= 1 << 63; // country 255
        for c in 0..256 {
            assert_eq!(r.country_denied(c), c == 66 || c == 255, "{c}");
        }
        r.flags = 0;
        assert!(!r.country_denied(66), "without PR_COUNTRIES nothing is denied");
    }

    #[test]
    fn tollfraud_numbers_are_normalised() {
        let n = |s: &str| {
            let (k, len) = tf_normalise(s.as_bytes());
            std::string::String::from_utf8(k[..len].to_vec()).unwrap()
        };
        assert_eq!(n("+44 (20) 7946-0000@example.com"), "+442079460000");
        assert_eq!(n("0044.20.7946"), "0044207946");
        assert_eq!(n("alice@example.com"), "");
        assert_eq!(n("12+34"), "12", "a '+' after the first byte ends the number");
        assert_eq!(n("123;phone-context=x"), "123");
        assert_eq!(n("1234567890123456789012345678"), "123456789012345678901234", "cut at TF_KEY_LEN");
        assert_eq!(n(&("-".repeat(TF_SCAN_BYTES) + "1")), "", "only TF_SCAN_BYTES bytes are walked");
        for c in 0..=255u8 {
            assert_eq!(tf_is_separator(c), b"-. ()".contains(&c));
        }
    }

    #[test]
    fn cut_at_first_flag() {
        let w = u64::from_le_bytes(*b"abc\r\nxyz");
        let (k, found) = cut_at(w, bytes_eq(w, b'\r') | bytes_eq(w, b'\n'));
        assert!(found);
        assert_eq!(k.to_le_bytes(), *b"abc\0\0\0\0\0");
        assert_eq!(cut_at(w, 0), (w, false));
    }
}
