//! `sipshield-bench suite [--quick]` (run by `cargo xtask bench`): every benchmark in one run,
//! one validated table ([`rows::ROWS`]), the scaling table, JSON and SVG plots in
//! `bench/results/`.
//!
//! The benchmarks run as child processes of the existing binaries with `--json` (each in its
//! own namespaces, under a time limit): `sipshield-bench blacklist` at 1M entries + 10k ranges
//! and at smaller sizes for the scaling, `bl_live`, `sip_bench`, `geo_bench`. Their JSON is kept whole in
//! the results; the rows read it, check it and print INVALID rather than a figure when a check
//! fails.
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use serde_json::{json, Value};

pub mod plots;
pub mod rows;
pub mod scaling;

use rows::{Outcome, Row, ROWS};

#[derive(Args, Clone)]
pub struct SuiteArgs {
    /// Smaller runs (fewer rounds, frames and sources, two scaling sizes): under 3 minutes.
    #[arg(long)]
    pub quick: bool,
    /// Where the JSON, the table and the plots go (created if missing).
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Seed of the generated lists (the blacklist bench).
    #[arg(long, default_value_t = 0x5195_B1E1)]
    pub seed: u64,
}

/// One benchmark run: a key, the binary (next to this one) and its arguments.
struct Job {
    key: String,
    bin: &'static str,
    args: Vec<String>,
    timeout: Duration,
}

/// The JSON of every benchmark that ran, by key; the error of those that did not.
pub struct Sources {
    pub ok: serde_json::Map<String, Value>,
    pub failed: serde_json::Map<String, Value>,
}

impl Sources {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.ok.get(key)
    }

    /// Why a source is missing (for a NOT RUN row).
    pub fn missing(&self, key: &str) -> String {
        match self.failed.get(key) {
            Some(e) => format!("{key} failed: {}", e.as_str().unwrap_or("?")),
            None => format!("{key} did not run"),
        }
    }
}

/// The list sizes of the scaling runs (the 1M run is the main blacklist job).
fn scaling_sizes(quick: bool) -> &'static [usize] {
    if quick {
        &[10_000, 100_000]
    } else {
        &[1_000, 10_000, 100_000]
    }
}

fn jobs(a: &SuiteArgs) -> Vec<Job> {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let seed = a.seed.to_string();
    let min = |m: u64| Duration::from_secs(m * 60);
    let mut v = vec![];
    // The 1M + 10k ranges list: the load, memory and miss-path rows.
    let mut bl = s(&["blacklist", "--json", "--seed", &seed]);
    if a.quick {
        // The default settle time stays: the memory row reads system-wide meminfo deltas.
        bl.extend(s(&["--skip-lpm-full", "--cold", "16384", "--repeat", "200000", "--diverse", "8"]));
    }
    v.push(Job { key: "blacklist".into(), bin: "sipshield-bench", args: bl, timeout: min(10) });
    for n in scaling_sizes(a.quick) {
        let mut args = s(&["blacklist", "--json", "--seed", &seed, "--entries", &n.to_string(), "--skip-lpm-full"]);
        args.extend(s(&["--cold", "8192", "--repeat", "100000", "--settle-ms", "300", "--diverse", "8"]));
        v.push(Job { key: format!("blacklist-{n}"), bin: "sipshield-bench", args, timeout: min(5) });
    }
    let (sip, geo) = if a.quick {
        (
            s(&[
                "--json",
                "--sources",
                "32",
                "--runs",
                "1",
                "--frames",
                "500000",
                "--rounds",
                "5",
                "--repeat",
                "20000",
            ]),
            s(&[
                "--json",
                "--cost-frames",
                "8",
                "--rounds",
                "3",
                "--sources",
                "32",
                "--runs",
                "1",
                "--frames",
                "500000",
                "--repeat",
                "20000",
            ]),
        )
    } else {
        (s(&["--json"]), s(&["--json"]))
    };
    // The live blacklist rows: 400k list, 1k sources and every listed address as a source.
    let mut bl_live = s(&["--json", "--seed", &seed]);
    if a.quick {
        bl_live.extend(s(&["--runs", "1", "--frames", "1000000"]));
    }
    v.push(Job { key: "bl_live".into(), bin: "bl_live", args: bl_live, timeout: min(8) });
    v.push(Job { key: "sip".into(), bin: "sip_bench", args: sip, timeout: min(8) });
    v.push(Job { key: "geo".into(), bin: "geo_bench", args: geo, timeout: min(8) });
    v
}

/// Run one job: stdout is its JSON, stderr (its table) goes to `log`.
fn run_job(j: &Job, log: &Path) -> Result<Value> {
    let exe = std::env::current_exe()?;
    let bin = exe.with_file_name(j.bin);
    let err = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let mut child = Command::new(&bin)
        .args(&j.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let mut out = child.stdout.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait()? {
            break st;
        }
        if t.elapsed() > j.timeout {
            // SIGTERM first: the benchmarks stop between syscalls and remove their namespaces.
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_secs(5));
            let _ = child.kill();
            let _ = child.wait();
            bail!("no result after {} s (stopped); see {}", j.timeout.as_secs(), log.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = reader.join().unwrap_or_default();
    if !status.success() {
        let tail: Vec<String> =
            fs::read_to_string(log).unwrap_or_default().lines().rev().take(3).map(String::from).collect();
        bail!("{status}: {}", tail.into_iter().rev().collect::<Vec<_>>().join(" | "));
    }
    serde_json::from_str(&stdout).with_context(|| format!("{}: output is not JSON", j.bin))
}

/// The machine: kernel, CPU, every `/sys/devices/system/cpu/vulnerabilities` entry and the
/// `mitigations=` boot option, plus the benchmarks' BPF facts.
fn environment(a: &SuiteArgs) -> Value {
    let mut env = crate::report::env_json();
    let mut vulns = serde_json::Map::new();
    if let Ok(dir) = fs::read_dir("/sys/devices/system/cpu/vulnerabilities") {
        for e in dir.flatten() {
            let v = fs::read_to_string(e.path()).unwrap_or_default();
            vulns.insert(e.file_name().to_string_lossy().into_owned(), json!(v.trim()));
        }
    }
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let boot = cmdline.split_whitespace().find(|w| w.starts_with("mitigations=")).unwrap_or("(default)");
    env["mitigations"] = Value::Object(vulns);
    env["mitigations_boot_option"] = json!(boot);
    env["seed"] = json!(a.seed);
    env["mode"] = json!(if a.quick { "quick" } else { "full" });
    env["date_utc"] = json!(utc_now());
    env
}

fn utc_now() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"]).output();
    out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default()
}

/// Apply every row definition.
pub fn measure_rows(s: &Sources) -> Vec<Row> {
    ROWS.iter()
        .map(|d| {
            let mut r = match (d.measure)(s) {
                Outcome::Measured(r) => *r,
                Outcome::Invalid(why) => Row { status: "INVALID", reason: Some(why), ..Default::default() },
                Outcome::NotRun(why) => Row { status: "NOT RUN", reason: Some(why), ..Default::default() },
            };
            (r.id, r.title, r.peer, r.target) = (d.id, d.title, d.peer, d.target);
            r
        })
        .collect()
}

fn fmt_value(r: &Row) -> String {
    match (r.unit, r.value) {
        ("pps", Some(v)) => format!("{:.3} Mpps", v / 1e6),
        ("ns/packet", Some(v)) => format!("{v:.1} ns"),
        ("+ns", Some(v)) => format!("{v:+.1} ns"),
        ("s", Some(v)) => format!("{v:.3} s"),
        (_, Some(v)) => format!("{v:.3}"),
        _ => "-".into(),
    }
}

fn fmt_peer(r: &Row) -> String {
    match (r.unit, r.peer_value) {
        ("pps", Some(v)) => format!("{:.3} Mpps", v / 1e6),
        ("ns/packet" | "+ns", Some(v)) => format!("{v:.1} ns"),
        ("s", Some(v)) => format!("{v:.3} s"),
        _ => "-".into(),
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map(f).unwrap_or_else(|| "-".into())
}

/// The table: one line per row (a row that is not valid shows its status and reason, never a
/// figure), its notes indented under it.
pub fn table(rows: &[Row], env: &Value) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "sipshield benchmark suite ({}) — kernel {}, {} CPUs, {}, seed {:#x}",
        env["mode"].as_str().unwrap_or("?"),
        env["kernel"].as_str().unwrap_or("?"),
        env["cpus"],
        env["cpu"].as_str().unwrap_or("?"),
        env["seed"].as_u64().unwrap_or(0)
    );
    let _ = writeln!(s, "spectre_v2: {}", env["spectre_v2"].as_str().unwrap_or("?"));
    let _ = writeln!(
        s,
        "\n{:<72} {:>13} {:>13} {:>8} {:>8} {:>9} {:>7}  {:<28} result",
        "row", "sipshield", "peer", "ratio", "rx ratio", "ns/pkt", "% 10G", "target"
    );
    for r in rows {
        if r.status != "valid" {
            let _ = writeln!(s, "{:<72} {:<9} {}", r.title, r.status, r.reason.as_deref().unwrap_or(""));
            let _ = writeln!(s, "{:<72} peer: {}", "", r.peer);
            continue;
        }
        let verdict = match r.met {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "",
        };
        let _ = writeln!(
            s,
            "{:<72} {:>13} {:>13} {:>8} {:>8} {:>9} {:>7}  {:<28} {verdict}",
            r.title,
            fmt_value(r),
            fmt_peer(r),
            opt(r.ratio, |x| format!("{x:.2}x")),
            opt(r.receiver_ratio, |x| format!("{x:.2}x")),
            opt(r.ns_per_packet, |x| format!("{x:.1}")),
            opt(r.line_rate_share, |x| format!("{:.0}%", x * 100.0)),
            r.target
        );
        let _ = writeln!(s, "{:<72} peer: {}", "", r.peer);
        for n in &r.notes {
            let _ = writeln!(s, "{:<72} {n}", "");
        }
    }
    s
}

pub fn suite(a: SuiteArgs) -> Result<()> {
    crate::harness::require_root()?;
    let t0 = Instant::now();
    let logs = a.out.join("logs");
    fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let env = environment(&a);
    let mut sources = Sources { ok: Default::default(), failed: Default::default() };
    let mut timings = serde_json::Map::new();
    for j in jobs(&a) {
        eprintln!("suite: {} {} ...", j.bin, j.args.join(" "));
        let t = Instant::now();
        let log = logs.join(format!("{}.txt", j.key));
        match run_job(&j, &log) {
            Ok(v) => {
                sources.ok.insert(j.key.clone(), v);
            }
            Err(e) => {
                eprintln!("suite: {} FAILED: {e:#}", j.key);
                sources.failed.insert(j.key.clone(), json!(format!("{e:#}")));
            }
        }
        timings.insert(j.key, json!(t.elapsed().as_secs_f64()));
    }
    let rows = measure_rows(&sources);
    let scale = scaling::scaling(&sources);
    let mut text = table(&rows, &env);
    text.push_str(&scaling::table(&scale));
    let plots = plots::draw(&a.out, &sources, &scale);
    let _ = writeln!(text, "\nplots: {}", plots.iter().map(|p| p.as_str()).collect::<Vec<_>>().join(", "));
    let _ = writeln!(text, "total time {:.0} s", t0.elapsed().as_secs_f64());
    print!("{text}");
    let out = json!({
        "environment": env,
        "rows": rows,
        "scaling": scale,
        "plots": plots,
        "job_secs": timings,
        "total_secs": t0.elapsed().as_secs_f64(),
        "sources": sources.ok,
        "failed_sources": sources.failed,
    });
    let name = if a.quick { "latest-quick" } else { "latest" };
    fs::write(a.out.join(format!("{name}.json")), serde_json::to_string_pretty(&out)? + "\n")?;
    fs::write(a.out.join(format!("{name}.txt")), &text)?;
    eprintln!("suite: wrote {}/{name}.json and {name}.txt", a.out.display());
    Ok(())
}
