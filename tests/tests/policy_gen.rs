//! Policy generations (`Config::policy_gen`): the program reads the SIP ports bitmap and the
//! rate-limit rules of the generation the config names (`SIP_PORTS`/`RL_RULES` when even,
//! `SIP_PORTS_1`/`RL_RULES_1` when odd), so the controller fills the idle generation and makes
//! ports and rules live together with the rest of the policy, in one config write.
use aya::maps::Array;
use sipshield::filter::{clock_ns, Filter};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::{maps, RateRule, METHOD_NONE, METHOD_REGISTER, NUM_METHOD_SLOTS, REASON_RATELIMIT, REASON_SCANNER};

/// The policy the config commits (into whichever generation was idle): SIP on 5060, OPTIONS limited to a burst of 1, no
/// REGISTER rule. `ban_after = 0`: excess is only dropped, never banned.
const GEN0: &str = "[sip]\nports = [5060]\n[ratelimit.options]\nrate = 1\nburst = 1\nban_after = 0\n";

/// The port and the REGISTER rule written directly into the other generation's maps.
const GEN1_PORT: u16 = 5080;

fn request(src: &str, port: u16, method: &str, ua: &str) -> Vec<u8> {
    let msg = SipMessage::request(method, "100", "example.com").user_agent(ua).build();
    PacketBuilder::udp(ip(src), ip("198.51.100.2"), 5070, port).payload(&msg).build()
}

fn scanner(port: u16) -> Vec<u8> {
    request("203.0.113.9", port, "OPTIONS", "friendly-scanner")
}

/// Fill generation `g`: the ports bitmap holds only `GEN1_PORT`, the rules only a REGISTER
/// limit with a burst of 1.
fn fill_generation(f: &mut Filter, g: u32) {
    let mut ports: Array<_, u64> = Array::try_from(f.map_mut(maps::SIP_PORTS_GEN[g as usize]).unwrap()).unwrap();
    for w in 0..xdp_common::SIP_PORT_WORDS {
        ports.set(w, 0, 0).unwrap();
    }
    ports.set((GEN1_PORT >> 6) as u32, 1u64 << (GEN1_PORT & 63), 0).unwrap();
    let mut rules: Array<_, RateRule> = Array::try_from(f.map_mut(maps::RL_RULES_GEN[g as usize]).unwrap()).unwrap();
    let interval = 1_000_000_000;
    let register =
        RateRule { interval_ns: interval, tolerance_ns: 0, ban_ttl_ns: 0, window_ns: interval, ban_after: 0, _pad: 0 };
    for slot in METHOD_NONE as u32..NUM_METHOD_SLOTS {
        let r = if slot == METHOD_REGISTER as u32 { register } else { RateRule::default() };
        rules.set(slot, r, 0).unwrap();
    }
}

/// Three requests of `method` from `src` to `port`: the first passes, then `want_after`.
fn burst(f: &mut Filter, name: &str, src: &str, port: u16, method: &str, want_after: Want) {
    let frame = request(src, port, method, "Linphone/5.2");
    check(f, &format!("{name}: first"), &frame, Want::Pass(xdp_common::REASON_PASS));
    check(f, &format!("{name}: second"), &frame, want_after);
    check(f, &format!("{name}: third"), &frame, want_after);
}

#[test]
fn verdicts_follow_the_policy_generation() {
    if !require_root("verdicts_follow_the_policy_generation") {
        return;
    }
    use Want::*;
    let pass = xdp_common::REASON_PASS;
    let mut f = filter_with(GEN0);
    // Scanners are detected on SIP ports only: they show which ports are live. A fixed clock
    // makes the bursts exact.
    f.update_config(|c| c.clock_ns = clock_ns()).unwrap();
    // The commit made the config's policy live in one generation; the other one gets GEN1.
    let live = f.config().unwrap().policy_gen & 1;
    let idle = 1 - live;
    fill_generation(&mut f, idle);

    // Generation 0: 5060 is SIP, 5080 is not; OPTIONS limited, REGISTER not.
    check(&mut f, "gen 0: scanner to 5060", &scanner(5060), Drop(REASON_SCANNER));
    check(&mut f, "gen 0: scanner to 5080", &scanner(GEN1_PORT), Pass(pass));
    burst(&mut f, "gen 0: OPTIONS to 5060", "203.0.113.10", 5060, "OPTIONS", Drop(REASON_RATELIMIT));
    burst(&mut f, "gen 0: REGISTER to 5060", "203.0.113.11", 5060, "REGISTER", Pass(pass));
    burst(&mut f, "gen 0: REGISTER to 5080", "203.0.113.12", GEN1_PORT, "REGISTER", Pass(pass));

    // One config write switches ports and rules together.
    assert_eq!(f.update_config(|c| c.policy_gen = idle).unwrap().policy_gen, idle);
    check(&mut f, "gen 1: scanner to 5080", &scanner(GEN1_PORT), Drop(REASON_SCANNER));
    check(&mut f, "gen 1: scanner to 5060", &scanner(5060), Pass(pass));
    burst(&mut f, "gen 1: REGISTER to 5080", "203.0.113.20", GEN1_PORT, "REGISTER", Drop(REASON_RATELIMIT));
    burst(&mut f, "gen 1: OPTIONS to 5080", "203.0.113.21", GEN1_PORT, "OPTIONS", Pass(pass));
    burst(&mut f, "gen 1: REGISTER to 5060", "203.0.113.22", 5060, "REGISTER", Pass(pass));

    // Only the low bit names the generation.
    f.update_config(|c| c.policy_gen = idle + 2).unwrap();
    check(&mut f, "gen 3 = 1: scanner to 5080", &scanner(GEN1_PORT), Drop(REASON_SCANNER));

    // And back: the config's generation is live again, untouched.
    f.update_config(|c| c.policy_gen = live).unwrap();
    check(&mut f, "back to 0: scanner to 5060", &scanner(5060), Drop(REASON_SCANNER));
    check(&mut f, "back to 0: scanner to 5080", &scanner(GEN1_PORT), Pass(pass));
    burst(&mut f, "back to 0: REGISTER to 5060", "203.0.113.30", 5060, "REGISTER", Pass(pass));
    burst(&mut f, "back to 0: OPTIONS to 5060", "203.0.113.31", 5060, "OPTIONS", Drop(REASON_RATELIMIT));
}

#[test]
fn a_commit_switches_ports_and_rules_together() {
    if !require_root("a_commit_switches_ports_and_rules_together") {
        return;
    }
    use Want::*;
    let mut f = filter_with(GEN0);
    f.update_config(|c| c.clock_ns = clock_ns()).unwrap();
    let before = f.config().unwrap().policy_gen & 1;
    let next = "[sip]\nports = [5080]\n[ratelimit.register]\nrate = 1\nburst = 1\nban_after = 0\n";
    let cfg = sipshield::config::Config::parse(next, std::path::Path::new("t.toml")).unwrap();
    sipshield::policy::apply_config(&mut f, &cfg).unwrap();
    assert_eq!(f.config().unwrap().policy_gen & 1, 1 - before, "a commit flips the policy generation");
    check(&mut f, "new: scanner to 5080", &scanner(GEN1_PORT), Drop(REASON_SCANNER));
    check(&mut f, "new: scanner to 5060", &scanner(5060), Pass(xdp_common::REASON_PASS));
    burst(&mut f, "new: REGISTER to 5080", "203.0.113.40", GEN1_PORT, "REGISTER", Drop(REASON_RATELIMIT));
    burst(&mut f, "new: OPTIONS to 5080", "203.0.113.41", GEN1_PORT, "OPTIONS", Pass(xdp_common::REASON_PASS));
}
