//! Drop events: decoding the kernel's ring-buffer records into JSON lines.
use std::net::IpAddr;

use serde::Serialize;
use xdp_common::*;

use crate::sig::Signature;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EventLine {
    /// Wall-clock time, RFC 3339.
    pub time: String,
    pub reason: &'static str,
    pub src: String,
    pub proto: &'static str,
    pub sport: u16,
    pub dport: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<&'static str>,
    /// Set on the event of a new automatic ban: seconds the ban lasts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ban_secs: Option<f64>,
    pub dry_run: bool,
    pub ifindex: u32,
}

/// Decode a raw ring-buffer record. `clock_now` (program clock, ns) and `wall_now` convert the stamp to wall time.
pub fn decode(raw: &[u8], sigs: &[Signature], clock_now: u64, wall_now: std::time::SystemTime) -> Option<EventLine> {
    if raw.len() < std::mem::size_of::<Event>() {
        return None;
    }
    // SAFETY: Event is plain old data and the buffer is long enough; read_unaligned copes with
    // any alignment.
    let ev: Event = unsafe { std::ptr::read_unaligned(raw.as_ptr() as *const Event) };
    let src = if ev.family == FAMILY_V4 {
        IpAddr::from([ev.src[0], ev.src[1], ev.src[2], ev.src[3]])
    } else {
        IpAddr::from(ev.src)
    };
    let age = clock_now.saturating_sub(ev.ts_ns);
    let when = wall_now - std::time::Duration::from_nanos(age);
    let method = (ev.method != METHOD_NONE).then(|| METHOD_NAMES.get(ev.method as usize).copied()).flatten();
    let signature = (ev.reason as u32 == REASON_SCANNER).then(|| {
        sigs.get(ev.sig_id as usize)
            .map(|s| format!("{}: {}", s.header_name(), s.text))
            .unwrap_or_else(|| format!("#{}", ev.sig_id))
    });
    Some(EventLine {
        time: humantime::format_rfc3339_millis(when).to_string(),
        reason: REASON_NAMES.get(ev.reason as usize).copied().unwrap_or("unknown"),
        src: src.to_string(),
        proto: match ev.proto {
            6 => "tcp",
            17 => "udp",
            1 | 58 => "icmp",
            _ => "other",
        },
        sport: ev.sport,
        dport: ev.dport,
        method,
        signature,
        country: (ev.reason as u32 == REASON_GEO).then(|| crate::countries::code_of(ev.country)),
        ban_secs: (ev.flags & EVF_NEW_BAN != 0).then(|| ev.ban_until_ns.saturating_sub(ev.ts_ns) as f64 / 1e9),
        dry_run: ev.flags & EVF_DRY_RUN != 0,
        ifindex: ev.ifindex,
    })
}

/// Human-readable one-liner of an event's JSON line (as written to the event log), for
/// `sipshield events`.
pub fn human(v: &serde_json::Value) -> String {
    let mut s = format!(
        "{} {:<11} {} {}:{}->{}",
        v["time"].as_str().unwrap_or(""),
        v["reason"].as_str().unwrap_or(""),
        v["src"].as_str().unwrap_or(""),
        v["proto"].as_str().unwrap_or(""),
        v["sport"],
        v["dport"]
    );
    for k in ["method", "signature", "country"] {
        if let Some(x) = v[k].as_str() {
            s += &format!(" {k}={x}");
        }
    }
    if let Some(b) = v["ban_secs"].as_f64() {
        s += &format!(" banned for {b:.0}s");
    }
    if v["dry_run"].as_bool() == Some(true) {
        s += " (dry-run)";
    }
    s
}

/// Where decoded events go: stdout (journal), the optional configured file, and the state
/// directory's rolling log read by `sipshield events`.
pub struct EventSink {
    stdout: bool,
    files: Vec<std::fs::File>,
    log_path: std::path::PathBuf,
    log_bytes: u64,
    /// Write failures (a full disk): counted and reported once, never fatal.
    pub write_errors: u64,
}

const EVENT_LOG_MAX: u64 = 16 << 20;

impl EventSink {
    /// Open every destination of `cfg` (done before a config is committed: a file that cannot
    /// be opened rejects the config).
    pub fn open(cfg: &crate::config::Config) -> anyhow::Result<EventSink> {
        use anyhow::Context;
        let mut files = vec![];
        let log_path = crate::state::events_log();
        let open = |p: &std::path::Path| {
            if let Some(d) = p.parent() {
                let _ = std::fs::create_dir_all(d);
            }
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("{}: cannot open event file", p.display()))
        };
        files.push(open(&log_path)?);
        if let Some(f) = &cfg.events.file {
            files.push(open(f).context("events.file")?);
        }
        let log_bytes = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        Ok(EventSink { stdout: cfg.events.stdout, files, log_path, log_bytes, write_errors: 0 })
    }

    pub fn write(&mut self, ev: &EventLine) {
        use std::io::Write;
        let line = match serde_json::to_string(ev) {
            Ok(l) => l + "\n",
            Err(_) => return,
        };
        if self.stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line.as_bytes());
        }
        for f in &mut self.files {
            if let Err(e) = f.write_all(line.as_bytes()) {
                if self.write_errors == 0 {
                    log::warn!("writing events: {e} (further failures are counted, not logged)");
                }
                self.write_errors += 1;
            }
        }
        self.log_bytes += line.len() as u64;
        if self.log_bytes > EVENT_LOG_MAX {
            // Keep one previous generation of the state-dir log.
            let _ = std::fs::rename(&self.log_path, self.log_path.with_extension("jsonl.1"));
            if let Ok(f) = std::fs::OpenOptions::new().create(true).append(true).open(&self.log_path) {
                self.files[0] = f;
            }
            self.log_bytes = 0;
        }
    }
}

/// Drain the kernel's event ring on a thread of its own, so nothing the controller does
/// (reloads, refreshes, scrapes) delays it. Stops when `stop` is set.
pub fn spawn_drain(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    sigs: std::sync::Arc<std::sync::RwLock<Vec<Signature>>>,
    sink: std::sync::Arc<std::sync::Mutex<EventSink>>,
    mut on_event: Box<dyn FnMut(&EventLine) + Send>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    std::thread::Builder::new().name("events".into()).spawn(move || {
        let _ = crate::daemon::block_signals();
        let mut ring = ring;
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            {
                let mut fds = [PollFd::new(ring.as_fd(), PollFlags::POLLIN)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            let now = crate::filter::clock_ns();
            let wall = std::time::SystemTime::now();
            // Read lock while draining (the worker replaces the list rarely): no copy per wake-up.
            let sigs = sigs.read().unwrap_or_else(|p| p.into_inner());
            let mut sink = sink.lock().unwrap_or_else(|p| p.into_inner());
            while let Some(item) = ring.next() {
                if let Some(ev) = decode(&item, &sigs, now, wall) {
                    sink.write(&ev);
                    on_event(&ev);
                }
            }
        }
    })
}
