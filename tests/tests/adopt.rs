//! Upgrades: maps pinned by the previous release (0.1.0, its compiled object is the fixture
//! `tests/fixtures/sipshield-xdp-0.1.0.o`) are adopted by this build: same names, same
//! definitions, entries and config kept, and the new program uses them.
use std::path::{Path, PathBuf};

use aya::maps::{lpm_trie::Key, Array, LpmTrie, Map, PerCpuArray, PerCpuValues};
use aya::EbpfLoader;
use sipshield::filter::{map_data, Filter, EBPF_OBJECT};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::*;
use xdp_common::*;

/// The object of release 0.1.0.
static OLD_OBJECT: &[u8] = aya::include_bytes_aligned!("../fixtures/sipshield-xdp-0.1.0.o");

/// The maps release 0.1.0 pinned (its `MAP_NAMES`).
const OLD_MAP_NAMES: &[&str] = &[
    "CONFIG",
    "STATS",
    "IFACE_SLOT",
    "SIP_PORTS",
    "AL_V4_0",
    "AL_V4_1",
    "AL_V6_0",
    "AL_V6_1",
    "AL_NET4_0",
    "AL_NET4_1",
    "AL_NET6_0",
    "AL_NET6_1",
    "BL_V4_0",
    "BL_V4_1",
    "BL_V6_0",
    "BL_V6_1",
    "BL_NET4_0",
    "BL_NET4_1",
    "BL_NET6_0",
    "BL_NET6_1",
    "BL_TAB4_0",
    "BL_TAB4_1",
    "BANS_V4",
    "BANS_V6",
    "BAN_PRESENT",
    "GEO_V4_0",
    "GEO_V4_1",
    "GEO_NET4_0",
    "GEO_NET4_1",
    "GEO_V6_0",
    "GEO_V6_1",
    "GEO_POLICY",
    "GEO_DROPS",
    "SIG_0",
    "SIG_1",
    "SIG_PREFILTER",
    "RL_RULES",
    "RL_TABLE",
    "RL_SEED",
    "EVENTS",
    "EVENT_STATS",
    "EVENT_TAT",
    "SCRATCH",
    "GEN_IFINDEX",
    "CLOCK",
];

/// A pin directory on bpffs, removed (with every pin in it) on drop, also when the test fails.
struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// (type, key size, value size, max entries, flags) of a map.
fn shape(m: &Map) -> String {
    let i = map_data(m).info().expect("map info");
    format!(
        "{:?} key {} value {} max {} flags {:#x}",
        i.map_type(),
        i.key_size(),
        i.value_size(),
        i.max_entries(),
        i.map_flags()
    )
}

/// Pin the maps of the 0.1.0 object under `maps_dir` and fill them like a running 0.1.0
/// controller would have: the blacklist in generation 1 with one range, SIP on 5060, some
/// counted packets.
fn pin_release_0_1_0(maps_dir: &Path) -> u64 {
    let mut loader = EbpfLoader::new();
    for name in OLD_MAP_NAMES {
        loader.map_pin_path(name, maps_dir.join(name));
    }
    let mut old = loader.load(OLD_OBJECT).expect("the 0.1.0 object creates and pins its maps");
    let mut cfg: Array<_, Config> = Array::try_from(old.map_mut("CONFIG").unwrap()).unwrap();
    let c = Config {
        flags: CFG_SIP_TCP,
        blacklist_gen: 1,
        rl_v6_prefix: 56,
        present: PRESENT_BL_NET4,
        event_reasons: 1 << REASON_BLACKLISTED,
        ..Default::default()
    };
    cfg.set(0, c, 0).unwrap();
    let mut bl: LpmTrie<_, [u8; 4], u32> = LpmTrie::try_from(old.map_mut("BL_NET4_1").unwrap()).unwrap();
    bl.insert(&Key::new(24, [203, 0, 113, 0]), 1, 0).unwrap();
    let mut ports: Array<_, u64> = Array::try_from(old.map_mut("SIP_PORTS").unwrap()).unwrap();
    ports.set(5060 >> 6, 1u64 << (5060 & 63), 0).unwrap();
    let mut stats: PerCpuArray<_, Counter> = PerCpuArray::try_from(old.map_mut("STATS").unwrap()).unwrap();
    let ncpu = aya::util::nr_cpus().unwrap();
    let per_cpu = Counter { packets: 5, bytes: 500 };
    stats.set(REASON_BLACKLISTED, PerCpuValues::try_from(vec![per_cpu; ncpu]).unwrap(), 0).unwrap();
    5 * ncpu as u64
    // `old` is dropped here: its maps stay pinned, as when the 0.1.0 controller exited.
}

#[test]
fn maps_pinned_by_release_0_1_0_are_adopted() {
    if !require_root("maps_pinned_by_release_0_1_0_are_adopted") {
        return;
    }
    let pin = PinDir(PathBuf::from(format!("/sys/fs/bpf/sipshield-test-adopt-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&pin.0);
    sipshield::sys::ensure_bpffs(&pin.0).unwrap();
    let maps_dir = pin.0.join("maps");
    std::fs::create_dir_all(&maps_dir).unwrap();
    let old_counted = pin_release_0_1_0(&maps_dir);

    // This build adopts the pins.
    let mut f = Filter::load_pinned(&pin.0).unwrap_or_else(|e| panic!("adopting the 0.1.0 pins: {e:#}"));

    // Every map 0.1.0 pinned and this build uses has this build's definition (nothing renamed,
    // resized or retyped); the maps this build added are pinned next to them; the retired
    // benchmark map is unpinned.
    let fresh = EbpfLoader::new().load(EBPF_OBJECT).unwrap();
    for name in maps::ALL {
        let want = shape(fresh.map(name).unwrap_or_else(|| panic!("this build has no map {name}")));
        assert_eq!(shape(f.map(name).unwrap()), want, "map {name}");
        assert!(maps_dir.join(name).exists(), "{name} is not pinned");
        if !OLD_MAP_NAMES.contains(name) {
            let new_in_port_policy =
                [maps::PORT_RULE_GEN, maps::PORT_DEF_GEN, maps::GRP_NET4_GEN, maps::GRP_NET6_GEN, maps::TF_PREFIX_GEN]
                    .concat();
            let new_in_authfail = [
                maps::AUTH_CFG,
                maps::AUTH_REQ,
                maps::AUTH_FAIL,
                maps::AUTH_ENUM,
                maps::AUTH_STATS,
                maps::AUTH_SCRATCH,
            ];
            assert!(
                [maps::SIP_PORTS_1, maps::RL_RULES_1, maps::TF_HITS, maps::BL_BM4[0], maps::BL_BM4[1]].contains(name)
                    || new_in_port_policy.contains(name)
                    || new_in_authfail.contains(name),
                "{name} is new: list it here"
            );
        }
    }
    assert!(!maps_dir.join("GEN_IFINDEX").exists(), "the retired GEN_IFINDEX pin is still there");

    // The config survives (the 0.1.0 padding reads as policy generation 0), so do the list,
    // the SIP ports and the counters.
    let c = f.config().unwrap();
    assert_eq!((c.blacklist_gen, c.rl_v6_prefix, c.present, c.flags), (1, 56, PRESENT_BL_NET4, CFG_SIP_TCP));
    assert_eq!(c.policy_gen, 0);
    assert_eq!(c.present & PRESENT_BL_BM4, 0, "the adopted generation has no /24 bitmap: full lookup");
    assert_eq!(f.sip_ports().unwrap(), vec![5060]);
    assert_eq!(f.stats().unwrap().reason_total(REASON_BLACKLISTED).packets, old_counted);

    // The new program uses the adopted entries.
    let from = |src: &str| PacketBuilder::udp(ip(src), ip("198.51.100.2"), 5070, 5060).payload(b"x").build();
    check(&mut f, "source in the adopted blacklist range", &from("203.0.113.77"), Want::Drop(REASON_BLACKLISTED));
    check(&mut f, "source outside it", &from("192.0.2.77"), Want::Pass(REASON_PASS));
    assert_eq!(f.stats().unwrap().reason_total(REASON_BLACKLISTED).packets, old_counted + 1);
}
