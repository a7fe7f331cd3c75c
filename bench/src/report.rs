//! Output shared by the benchmarks: the environment, pass/fail targets, the JSON and text of a
//! live comparison, and printing the report (table on stdout, or JSON on stdout and the table
//! on stderr).
use std::fmt::Write as _;
use std::fs;

use anyhow::Result;
use serde_json::{json, Value};

use crate::harness::live::{Comparison, Floor, Run, Side};

pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_default()
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_default()
}

pub fn ncpus() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Kernel facts that change BPF per-packet costs (JIT, hardening, Spectre v2 mitigation).
pub fn env_json() -> Value {
    let rd = |p: &str| fs::read_to_string(p).map(|s| s.trim().to_string()).unwrap_or_else(|_| "?".into());
    json!({
        "kernel": kernel_release(), "cpus": ncpus(), "cpu": cpu_model(),
        "bpf_jit_enable": rd("/proc/sys/net/core/bpf_jit_enable"),
        "bpf_jit_harden": rd("/proc/sys/net/core/bpf_jit_harden"),
        "bpf_stats_enabled": rd("/proc/sys/kernel/bpf_stats_enabled"),
        "spectre_v2": rd("/sys/devices/system/cpu/vulnerabilities/spectre_v2"),
        "virtualized": fs::read_to_string("/proc/cpuinfo").map(|s| s.contains(" hypervisor")).unwrap_or(false),
    })
}

/// The live benchmarks' heading: `== <name> (kernel …, N CPUs, model) ==` and a newline.
pub fn heading(name: &str) -> String {
    format!("\n== {name} (kernel {}, {} CPUs, {}) ==\n", kernel_release(), ncpus(), cpu_model())
}

/// The table's last line: the time since `t0`.
pub fn total_time(t: &mut String, t0: std::time::Instant) {
    let _ = writeln!(t, "\ntotal time {:.1} s", t0.elapsed().as_secs_f64());
}

pub fn pass_fail(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
}

/// One entry of a report's `targets` list.
pub fn target(name: impl Into<String>, value: f64, target: String, pass: bool) -> Value {
    json!({"name": name.into(), "value": value, "target": target, "pass": pass})
}

/// Do all `targets` pass?
pub fn all_pass(targets: &[Value]) -> bool {
    targets.iter().all(|t| t["pass"].as_bool() == Some(true))
}

pub fn action_name(a: u32) -> &'static str {
    match a {
        0 => "ABORTED",
        1 => "DROP",
        2 => "PASS",
        3 => "TX",
        4 => "REDIRECT",
        _ => "?",
    }
}

/// Human pps.
pub fn mpps(pps: f64) -> String {
    format!("{:.3} Mpps", pps / 1e6)
}

/// Print the report: with `as_json` the table on stderr and the JSON on stdout, else the table
/// on stdout.
pub fn emit(table: &str, out: &Value, as_json: bool) -> Result<()> {
    if as_json {
        eprint!("{table}");
        println!("{}", serde_json::to_string_pretty(out)?);
    } else {
        print!("{table}");
    }
    Ok(())
}

/// Add the fields of the object `extra` to the object `base`.
pub fn merged(mut base: Value, extra: Value) -> Value {
    if let (Some(b), Value::Object(e)) = (base.as_object_mut(), extra) {
        b.extend(e);
    }
    base
}

// ------------------------------------------------------------------------------ live runs

pub fn run_json(r: &Run) -> Value {
    json!({
        "sent": r.sent, "dropped": r.dropped, "calls": r.calls,
        "kernel_secs": r.kernel_secs, "wall_secs": r.wall_secs,
        "pps": r.pps(), "pps_wall": r.pps_wall(),
        "dropped_fraction": r.dropped_fraction(),
    })
}

/// The pps of every run, `a/b/c` in Mpps.
pub fn runs_mpps(s: &Side) -> String {
    s.runs.iter().map(|x| format!("{:.3}", x.pps() / 1e6)).collect::<Vec<_>>().join("/")
}

pub fn floor_json(f: &Floor) -> Value {
    json!({
        "what": "the same frames into a 2-instruction XDP_DROP program on the receiver (generator + veth cost)",
        "run": run_json(&f.0), "ns_per_frame": f.ns(),
    })
}

pub fn floor_line(f: &Floor) -> String {
    format!(
        "harness floor (generator + veth into an empty XDP_DROP): {} = {:.0} ns/frame, shared by both sides",
        mpps(f.0.pps()),
        f.ns()
    )
}

/// `receiver-side ns/frame …: sipshield S, <peer> P -> R x (informative)`.
pub fn receiver_line(c: &Comparison, floor: &Floor, peer: &str) -> String {
    format!(
        "receiver-side ns/frame (per-frame time minus the floor): sipshield {:.0}, {peer} {:.0} -> {:.2}x (informative)",
        floor.receiver_ns(&c.sip.median),
        floor.receiver_ns(&c.peer.median),
        c.receiver_ratio(floor)
    )
}

/// The JSON of a comparison with the peer `peer` (its key prefix): median and every run of
/// both sides, the ratios and, with a floor, the receiver-side figures.
pub fn comparison_json(c: &Comparison, peer: &str, floor: Option<&Floor>) -> Value {
    let runs = |s: &Side| s.runs.iter().map(run_json).collect::<Vec<_>>();
    let mut v = json!({
        "sipshield": run_json(&c.sip.median), peer: run_json(&c.peer.median),
        "sipshield_runs": runs(&c.sip), format!("{peer}_runs"): runs(&c.peer),
        "ratio": c.ratio(), "ratio_wall": c.ratio_wall(),
    });
    if let Some(f) = floor {
        v = merged(
            v,
            json!({
                "receiver_ns_sipshield": f.receiver_ns(&c.sip.median),
                format!("receiver_ns_{peer}"): f.receiver_ns(&c.peer.median),
                "receiver_ratio_informative": c.receiver_ratio(f),
            }),
        );
    }
    v
}
