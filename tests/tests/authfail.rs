//! Bans from the SIP server's own answers, through the real programs with
//! `BPF_PROG_TEST_RUN`: the XDP program records credentialed requests (ingress), the egress TC
//! program reads the answers (401/407/403 to a credentialed request: a failed authentication;
//! 404/484 to distinct users: enumeration) and bans through the shared ban map, which the XDP
//! side then enforces as `banned`.
//!
//! Each scenario is a table of steps: a request into the XDP program (expected verdict and
//! reason counter, `check`), an answer through the egress program, a clock change; then the
//! `AUTHSTAT_*` counters and the bans are checked.
use sipshield::filter::{clock_ns, Filter, TC_ACT_OK};
use sipshield_tests::frames::PacketBuilder;
use sipshield_tests::sip::SipMessage;
use sipshield_tests::*;
use xdp_common::*;

const SERVER4: &str = "198.51.100.2";
const SERVER6: &str = "2001:db8::2";
const SEC: u64 = 1_000_000_000;

/// `[authfail]` with small thresholds: 3 failures in 60 s, 4 distinct users in 30 s.
fn config(extra: &str) -> String {
    format!(
        "[sip]\nports = [5060]\n[authfail]\nenabled = true\nban_after = 3\nwindow = \"60s\"\nban_ttl = \"120s\"\n\
         enum_distinct = 4\nenum_window = \"30s\"\n{extra}"
    )
}

/// How the packets travel.
#[derive(Clone, Copy)]
struct Wire {
    tcp: bool,
    vlan: Option<u16>,
}

const UDP: Wire = Wire { tcp: false, vlan: None };

fn server_of(client: &str) -> &'static str {
    if client.contains(':') {
        SERVER6
    } else {
        SERVER4
    }
}

fn frame(w: Wire, src: &str, dst: &str, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = if w.tcp {
        PacketBuilder::tcp(ip(src), ip(dst), sport, dport)
    } else {
        PacketBuilder::udp(ip(src), ip(dst), sport, dport)
    };
    let b = b.payload(payload);
    match w.vlan {
        Some(v) => b.vlan(v).build(),
        None => b.build(),
    }
}

/// A REGISTER for `user` from `client` (with an `Authorization` header when `cred`).
fn register(w: Wire, client: &str, user: &str, call: &str, cseq: u32, cred: bool) -> Vec<u8> {
    let mut m = SipMessage::request("REGISTER", user, "example.com").call_id(call).cseq(cseq);
    if cred {
        m = m.header(
            "Authorization",
            &format!("Digest username=\"{user}\", realm=\"example.com\", nonce=\"abc\", uri=\"sip:example.com\", response=\"0123456789abcdef0123456789abcdef\""),
        );
    }
    frame(w, client, server_of(client), 5070, 5060, &m.build())
}

/// A request of `method` to `user` (enumeration probes).
fn probe(w: Wire, client: &str, method: &str, user: &str, call: &str) -> Vec<u8> {
    let m = SipMessage::request(method, user, "example.com").call_id(call);
    frame(w, client, server_of(client), 5070, 5060, &m.build())
}

/// The server's answer `code` to (`call`, `cseq`, `method`) for `user`, sent to `client`.
fn answer(w: Wire, client: &str, code: u16, method: &str, user: &str, call: &str, cseq: u32) -> Vec<u8> {
    let m = SipMessage::response(code, "Reason", method)
        .to(&format!("sip:{user}@example.com"))
        .from(&format!("sip:{user}@example.com"))
        .call_id(call)
        .cseq(cseq);
    frame(w, server_of(client), client, 5060, 5070, &m.build())
}

enum Step {
    /// A request into the XDP program, its expected verdict.
    In(String, Vec<u8>, Want),
    /// An answer through the egress program.
    Out(Vec<u8>),
    /// Set the programs' clock to t0 + this many seconds.
    At(u64),
}

use Step::*;

/// One credentialed attempt refused with `code`: REGISTER (passes), answer.
fn failed(w: Wire, client: &str, user: &str, n: u32, code: u16) -> Vec<Step> {
    let call = format!("brute-{client}-{n}");
    vec![
        In(format!("{client} attempt {n}"), register(w, client, user, &call, 2, true), Want::Pass(REASON_PASS)),
        Out(answer(w, client, code, "REGISTER", user, &call, 2)),
    ]
}

/// A phone's normal registration: REGISTER, 401 challenge, REGISTER with credentials, 200.
fn good_registration(w: Wire, client: &str, user: &str, n: u32) -> Vec<Step> {
    let call = format!("phone-{client}-{n}");
    vec![
        In(format!("{client} register {n}"), register(w, client, user, &call, 1, false), Want::Pass(REASON_PASS)),
        Out(answer(w, client, 401, "REGISTER", user, &call, 1)),
        In(format!("{client} register {n} auth"), register(w, client, user, &call, 2, true), Want::Pass(REASON_PASS)),
        Out(answer(w, client, 200, "REGISTER", user, &call, 2)),
    ]
}

fn request_from(w: Wire, client: &str, name: &str, want: Want) -> Step {
    In(name.to_string(), register(w, client, "1001", &format!("after-{name}"), 1, false), want)
}

fn run(f: &mut Filter, t0: u64, steps: Vec<Step>) {
    for s in steps {
        match s {
            In(name, frame, want) => check(f, &name, &frame, want),
            Out(frame) => {
                let before = f.stats().expect("stats");
                let act = f.test_run_egress(&frame).expect("egress test_run");
                assert_eq!(act, TC_ACT_OK, "the egress program never drops");
                let after = f.stats().expect("stats");
                for r in 0..NUM_REASONS {
                    assert_eq!(
                        before.reason_total(r).packets,
                        after.reason_total(r).packets,
                        "egress packets are not counted with the ingress verdicts"
                    );
                }
            }
            At(secs) => {
                f.update_config(|c| c.clock_ns = t0 + secs * SEC).unwrap();
            }
        }
    }
}

fn stat(f: &Filter, idx: u32) -> u64 {
    f.auth_stats().expect("auth stats")[idx as usize]
}

/// A private filter with `toml`, its clock pinned at t0.
fn setup(toml: &str) -> (Filter, u64) {
    let mut f = filter_with(toml);
    let t0 = clock_ns();
    f.update_config(|c| c.clock_ns = t0).unwrap();
    (f, t0)
}

fn bans(f: &Filter) -> Vec<String> {
    sipshield::bans::list(f).expect("bans").into_iter().map(|b| format!("{}/{}", b.address, b.prefix)).collect()
}

#[test]
fn challenges_without_credentials_are_never_counted() {
    if !require_root("challenges_without_credentials_are_never_counted") {
        return;
    }
    let (mut f, t0) = setup(&config(""));
    // 200 normal registrations from one address (a NAT'ed office): each costs one challenge.
    let mut steps = vec![];
    for n in 0..200 {
        steps.extend(good_registration(UDP, "203.0.113.10", &format!("{}", 1000 + n % 20), n));
    }
    // A challenge to a request without credentials, repeated (phones re-register).
    for n in 0..20 {
        let call = format!("plain-{n}");
        steps.push(In(format!("plain {n}"), register(UDP, "203.0.113.10", "1001", &call, 1, false), Want::Pass(0)));
        steps.push(Out(answer(UDP, "203.0.113.10", 401, "REGISTER", "1001", &call, 1)));
        steps.push(Out(answer(UDP, "203.0.113.10", 407, "REGISTER", "1001", &call, 1)));
    }
    steps.push(request_from(UDP, "203.0.113.10", "office still served", Want::Pass(REASON_PASS)));
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_FAILURES), 0);
    assert_eq!(stat(&f, AUTHSTAT_CHALLENGES), 240);
    assert_eq!(stat(&f, AUTHSTAT_REQ_RECORDED), 200);
    assert_eq!(bans(&f), Vec::<String>::new(), "0 bans for correct phones");
}

#[test]
fn failed_authentications_ban_after_exactly_ban_after() {
    if !require_root("failed_authentications_ban_after_exactly_ban_after") {
        return;
    }
    for (code, client, w) in [
        (401, "203.0.113.20", UDP),
        (407, "203.0.113.21", UDP),
        (403, "203.0.113.22", UDP),
        (401, "203.0.113.23", Wire { tcp: true, vlan: None }),
        (401, "203.0.113.24", Wire { tcp: false, vlan: Some(42) }),
        (401, "2001:db8:5::20", UDP),
        (403, "2001:db8:6::20", Wire { tcp: true, vlan: Some(7) }),
    ] {
        let (mut f, t0) = setup(&config("").replace("[sip]\nports = [5060]", "[sip]\nports = [5060]\ntcp = true"));
        let mut steps = vec![];
        steps.extend(failed(w, client, "1001", 1, code));
        // The same answer retransmitted, the same request retransmitted: counted once.
        steps.push(Out(answer(w, client, code, "REGISTER", "1001", &format!("brute-{client}-1"), 2)));
        steps.push(In(
            "retransmission".into(),
            register(w, client, "1001", &format!("brute-{client}-1"), 2, true),
            Want::Pass(0),
        ));
        steps.push(Out(answer(w, client, code, "REGISTER", "1001", &format!("brute-{client}-1"), 2)));
        steps.extend(failed(w, client, "1001", 2, code));
        steps.push(request_from(w, client, "after 2 failures", Want::Pass(REASON_PASS)));
        run(&mut f, t0, steps);
        assert_eq!(stat(&f, AUTHSTAT_FAILURES), 2, "{client} {code}: retransmissions counted once");
        assert!(bans(&f).is_empty(), "{client}: banned before ban_after");
        run(&mut f, t0, failed(w, client, "1001", 3, code));
        assert_eq!(stat(&f, AUTHSTAT_FAIL_BANS), 1, "{client} {code}");
        let prefix = if client.contains(':') { 64 } else { 32 };
        assert_eq!(bans(&f).len(), 1, "{client}: {:?}", bans(&f));
        assert!(bans(&f)[0].ends_with(&format!("/{prefix}")), "{:?}", bans(&f));
        run(
            &mut f,
            t0,
            vec![
                request_from(w, client, "banned", Want::Drop(REASON_BANNED)),
                At(119),
                request_from(w, client, "still banned", Want::Drop(REASON_BANNED)),
                At(121),
                request_from(w, client, "ban expired", Want::Pass(REASON_PASS)),
            ],
        );
    }
}

#[test]
fn answers_that_are_not_failures_are_not_counted() {
    if !require_root("answers_that_are_not_failures_are_not_counted") {
        return;
    }
    let (mut f, t0) = setup(&config("statuses = [401]\n"));
    let c = "203.0.113.30";
    let mut steps = vec![];
    for (n, code) in [200u16, 403, 407, 404, 500, 100].into_iter().enumerate() {
        steps.extend(failed(UDP, c, "1001", n as u32, code));
    }
    // A 401 whose Call-ID or CSeq does not match a credentialed request.
    steps.push(In("cred".into(), register(UDP, c, "1001", "x-1", 5, true), Want::Pass(0)));
    steps.push(Out(answer(UDP, c, 401, "REGISTER", "1001", "x-1", 6)));
    steps.push(Out(answer(UDP, c, 401, "REGISTER", "1001", "x-2", 5)));
    // An answer to another client.
    steps.push(Out(answer(UDP, "203.0.113.31", 401, "REGISTER", "1001", "x-1", 5)));
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_FAILURES), 0);
    assert!(bans(&f).is_empty());
}

#[test]
fn failures_outside_the_window_start_a_new_count() {
    if !require_root("failures_outside_the_window_start_a_new_count") {
        return;
    }
    let (mut f, t0) = setup(&config(""));
    let c = "203.0.113.40";
    let mut steps = vec![];
    steps.extend(failed(UDP, c, "1001", 1, 401));
    steps.extend(failed(UDP, c, "1001", 2, 401));
    steps.push(At(61));
    steps.extend(failed(UDP, c, "1001", 3, 401));
    steps.extend(failed(UDP, c, "1001", 4, 401));
    steps.push(request_from(UDP, c, "2 + 2 failures in two windows", Want::Pass(REASON_PASS)));
    steps.extend(failed(UDP, c, "1001", 5, 401));
    steps.push(request_from(UDP, c, "3 in the second window", Want::Drop(REASON_BANNED)));
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_FAILURES), 5);
    assert_eq!(stat(&f, AUTHSTAT_FAIL_BANS), 1);
}

#[test]
fn ipv6_failures_are_counted_per_prefix() {
    if !require_root("ipv6_failures_are_counted_per_prefix") {
        return;
    }
    let (mut f, t0) = setup(&config("[ratelimit]\nipv6_prefix = 56\n"));
    let mut steps = vec![];
    steps.extend(failed(UDP, "2001:db8:1:100::1", "1001", 1, 401));
    steps.extend(failed(UDP, "2001:db8:1:1ff::2", "1002", 2, 401));
    steps.extend(failed(UDP, "2001:db8:2::1", "1001", 3, 401)); // another /56
    steps.push(request_from(UDP, "2001:db8:1:100::1", "2 failures in the /56", Want::Pass(REASON_PASS)));
    steps.extend(failed(UDP, "2001:db8:1:1aa::3", "1003", 4, 401));
    steps.push(request_from(UDP, "2001:db8:1:1bb::99", "the /56 is banned", Want::Drop(REASON_BANNED)));
    steps.push(request_from(UDP, "2001:db8:1:200::1", "the next /56 is not", Want::Pass(REASON_PASS)));
    steps.push(request_from(UDP, "2001:db8:2::1", "another prefix", Want::Pass(REASON_PASS)));
    run(&mut f, t0, steps);
    assert_eq!(bans(&f), vec!["2001:db8:1:100::/56".to_string()]);
}

#[test]
fn enumeration_bans_at_enum_distinct_users() {
    if !require_root("enumeration_bans_at_enum_distinct_users") {
        return;
    }
    for (method, code, client) in
        [("REGISTER", 404u16, "203.0.113.50"), ("INVITE", 484, "203.0.113.51"), ("OPTIONS", 404, "2001:db8:7::5")]
    {
        let (mut f, t0) = setup(&config(""));
        let mut steps = vec![];
        for (n, user) in ["100", "101", "101", "100", "102"].iter().enumerate() {
            let call = format!("svwar-{n}");
            steps.push(In(format!("probe {user}"), probe(UDP, client, method, user, &call), Want::Pass(0)));
            steps.push(Out(answer(UDP, client, code, method, user, &call, 1)));
        }
        steps.push(request_from(UDP, client, "3 distinct users", Want::Pass(REASON_PASS)));
        steps.push(Out(answer(UDP, client, code, method, "103", "svwar-9", 1)));
        steps.push(request_from(UDP, client, "4 distinct users", Want::Drop(REASON_BANNED)));
        run(&mut f, t0, steps);
        assert_eq!(stat(&f, AUTHSTAT_ENUM_MISSES), 4, "{method} {code}");
        assert_eq!(stat(&f, AUTHSTAT_ENUM_BANS), 1);
        assert_eq!(stat(&f, AUTHSTAT_FAILURES), 0);
    }
}

#[test]
fn enumeration_window_and_methods() {
    if !require_root("enumeration_window_and_methods") {
        return;
    }
    let (mut f, t0) = setup(&config(""));
    let c = "203.0.113.60";
    let mut steps = vec![];
    // 404 to BYE/MESSAGE, 403 without credentials (enum_403 off), 401 challenges: not enumeration.
    for (n, (m, code)) in [("BYE", 404u16), ("MESSAGE", 404), ("REGISTER", 403), ("REGISTER", 401)].iter().enumerate() {
        for u in 0..5 {
            steps.push(Out(answer(UDP, c, *code, m, &format!("{}", 200 + u), &format!("o-{n}-{u}"), 1)));
        }
    }
    // 3 users, the window passes, 3 more: never 4 in one window.
    for u in 0..3 {
        steps.push(Out(answer(UDP, c, 404, "INVITE", &format!("{}", 300 + u), &format!("w-{u}"), 1)));
    }
    steps.push(At(31));
    for u in 3..6 {
        steps.push(Out(answer(UDP, c, 404, "INVITE", &format!("{}", 300 + u), &format!("w-{u}"), 1)));
    }
    steps.push(request_from(UDP, c, "3 + 3 users in two windows", Want::Pass(REASON_PASS)));
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_ENUM_MISSES), 6);
    assert_eq!(stat(&f, AUTHSTAT_ENUM_BANS), 0);

    // enum_403 = true: a 403 to a request without credentials is a miss.
    let (mut f, t0) = setup(&config("enum_403 = true\n"));
    let mut steps = vec![];
    for u in 0..4 {
        steps.push(Out(answer(UDP, c, 403, "REGISTER", &format!("{}", 400 + u), &format!("f-{u}"), 1)));
    }
    steps.push(request_from(UDP, c, "403 x 4 users", Want::Drop(REASON_BANNED)));
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_ENUM_BANS), 1);

    // enum_distinct = 0: enumeration off.
    let (mut f, t0) = setup(&config("").replace("enum_distinct = 4", "enum_distinct = 0"));
    let steps = (0..10).map(|u| Out(answer(UDP, c, 404, "REGISTER", &format!("{u}"), &format!("z-{u}"), 1))).collect();
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_ENUM_MISSES), 0);
}

#[test]
fn dry_run_counts_but_bans_nothing() {
    if !require_root("dry_run_counts_but_bans_nothing") {
        return;
    }
    let (mut f, t0) = setup(&format!("dry_run = true\n{}", config("")));
    let c = "203.0.113.70";
    let mut steps = vec![];
    for n in 0..6 {
        steps.extend(failed(UDP, c, "1001", n, 401));
    }
    for u in 0..4 {
        steps.push(Out(answer(UDP, "203.0.113.71", 404, "REGISTER", &format!("{u}"), &format!("d-{u}"), 1)));
    }
    steps.push(request_from(UDP, c, "dry-run", Want::Pass(REASON_PASS)));
    steps.push(request_from(UDP, "203.0.113.71", "dry-run enum", Want::Pass(REASON_PASS)));
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_FAILURES), 6);
    assert_eq!(stat(&f, AUTHSTAT_FAIL_BANS), 2, "would-be bans are counted");
    assert_eq!(stat(&f, AUTHSTAT_ENUM_BANS), 1);
    assert!(bans(&f).is_empty(), "dry-run installs nothing: {:?}", bans(&f));
}

#[test]
fn allowlisted_sources_are_never_banned() {
    if !require_root("allowlisted_sources_are_never_banned") {
        return;
    }
    let (mut f, t0) = setup(&format!("[allowlist]\nentries = [\"203.0.113.80\", \"2001:db8:9::/48\"]\n{}", config("")));
    let mut steps = vec![];
    for n in 0..5 {
        steps.extend(failed(UDP, "203.0.113.80", "1001", n, 401).into_iter().map(|s| match s {
            In(name, fr, _) => In(name, fr, Want::Pass(REASON_ALLOWLISTED)),
            o => o,
        }));
        steps.extend(failed(UDP, "2001:db8:9::1", "1001", n, 401).into_iter().map(|s| match s {
            In(name, fr, _) => In(name, fr, Want::Pass(REASON_ALLOWLISTED)),
            o => o,
        }));
        steps.push(Out(answer(UDP, "203.0.113.80", 404, "REGISTER", &format!("{n}"), &format!("a-{n}"), 1)));
    }
    run(&mut f, t0, steps);
    assert_eq!(stat(&f, AUTHSTAT_FAIL_BANS) + stat(&f, AUTHSTAT_ENUM_BANS), 0);
    // Requests of allowlisted sources are not even recorded (the XDP side passes them first);
    // their enumeration misses are seen and skipped.
    assert_eq!(stat(&f, AUTHSTAT_REQ_RECORDED) + stat(&f, AUTHSTAT_FAILURES), 0);
    assert_eq!(stat(&f, AUTHSTAT_ALLOWLISTED), 5);
    assert!(bans(&f).is_empty());
}

#[test]
fn disabled_and_non_sip_egress_do_nothing() {
    if !require_root("disabled_and_non_sip_egress_do_nothing") {
        return;
    }
    // [authfail] off (the default): nothing is recorded or counted.
    let (mut f, t0) = setup("[sip]\nports = [5060]\n");
    let mut steps = vec![];
    for n in 0..5 {
        steps.extend(failed(UDP, "203.0.113.90", "1001", n, 401));
    }
    run(&mut f, t0, steps);
    assert_eq!(f.auth_stats().unwrap().iter().sum::<u64>(), 0);
    // Enabled: packets that are not SIP answers from a SIP port.
    let (mut f, t0) = setup(&config(""));
    let other_port =
        frame(UDP, SERVER4, "203.0.113.91", 5080, 5070, &SipMessage::response(401, "U", "REGISTER").build());
    let not_sip = frame(UDP, SERVER4, "203.0.113.91", 5060, 5070, b"hello world, this is not SIP");
    let request =
        frame(UDP, SERVER4, "203.0.113.91", 5060, 5070, &probe(UDP, "203.0.113.91", "OPTIONS", "1", "q")[42..]);
    let arp = vec![0xffu8; 60];
    run(&mut f, t0, vec![Out(other_port), Out(not_sip), Out(request), Out(arp)]);
    assert_eq!(f.auth_stats().unwrap().iter().sum::<u64>(), 0);
}

#[test]
fn a_two_way_capture_replayed_with_local_reproduces_the_ban() {
    if !require_root("a_two_way_capture_replayed_with_local_reproduces_the_ban") {
        return;
    }
    let c = "203.0.113.100";
    let mut frames = vec![];
    let mut t = 5_000 * SEC;
    for s in (1..=3).flat_map(|n| failed(UDP, c, "1001", n, 401)).chain([request_from(UDP, c, "after", Want::Pass(0))])
    {
        t += SEC / 10;
        match s {
            In(_, fr, _) | Out(fr) => frames.push((t, fr)),
            At(_) => unreachable!(),
        }
    }
    let replay = |local: &[std::net::IpAddr]| {
        let f = filter_with(&config(""));
        let mut r = sipshield::replay::Replayer::from_filter(f).expect("replayer").with_local(local);
        let frames = frames.iter().enumerate().map(|(index, (ts_ns, fr))| {
            Ok(sipshield::replay::capture::Frame {
                index,
                offset: 0,
                ts_ns: *ts_ns,
                linktype: 1,
                wire_len: fr.len() as u32,
                outgoing: false,
                eth: bytes::Bytes::from(fr.clone()),
            })
        });
        let mut out = vec![];
        let failed = sipshield::replay::replay_frames(&mut r, frames, |_, v| {
            out.push((v.verdict, v.reason));
            Ok(())
        })
        .expect("replay");
        assert!(failed.is_none());
        out
    };
    let with_local = replay(&[ip(SERVER4)]);
    assert_eq!(with_local.iter().filter(|v| v.0 == "egress").count(), 3);
    assert_eq!(with_local.last(), Some(&("drop", "banned")), "{with_local:?}");
    // Without --local the answers are just inbound packets: no ban.
    let without = replay(&[]);
    assert_eq!(without.last(), Some(&("pass", "pass")), "{without:?}");
}
