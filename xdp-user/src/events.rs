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
    /// authfail/enumeration: failures / distinct users counted in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// authfail/enumeration: the user of the `To` of the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The NUL-padded text of `Event::detail` (lossy UTF-8; empty: none).
fn detail_text(d: &[u8; EVENT_DETAIL_LEN]) -> Option<String> {
    let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
    (end > 0).then(|| String::from_utf8_lossy(&d[..end]).into_owned())
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
        count: (ev.count != 0).then_some(ev.count),
        user: detail_text(&ev.detail),
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
    if let Some(n) = v["count"].as_u64() {
        s += &format!(" count={n}");
    }
    for k in ["method", "user", "signature", "country"] {
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
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ev: &Event) -> Vec<u8> {
        // SAFETY: Event is plain old data without padding (size-asserted in xdp-common).
        unsafe { std::slice::from_raw_parts(ev as *const Event as *const u8, std::mem::size_of::<Event>()) }.to_vec()
    }

    #[test]
    fn authfail_events_carry_the_user_and_the_count() {
        let mut detail = [0u8; EVENT_DETAIL_LEN];
        detail[..4].copy_from_slice(b"1001");
        let ev = Event {
            ts_ns: 5_000_000_000,
            ban_until_ns: 65_000_000_000,
            src: [203, 0, 113, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ifindex: 3,
            sig_id: 0,
            sport: 5070,
            dport: 5060,
            reason: REASON_AUTHFAIL as u8,
            family: FAMILY_V4,
            method: METHOD_REGISTER,
            flags: EVF_NEW_BAN,
            country: 0,
            proto: 17,
            _pad: 0,
            _pad2: 0,
            count: 5,
            detail,
        };
        let now = std::time::SystemTime::now();
        let line = decode(&raw(&ev), &[], 5_000_000_000, now).unwrap();
        assert_eq!(
            (line.reason, line.src.as_str(), line.count, line.user.as_deref()),
            ("authfail", "203.0.113.7", Some(5), Some("1001"))
        );
        assert_eq!(line.ban_secs, Some(60.0));
        let h = human(&serde_json::to_value(&line).unwrap());
        assert!(h.contains("count=5") && h.contains("user=1001") && h.contains("banned for 60s"), "{h}");
        // A full 28-byte user has no NUL; other reasons carry none.
        let ev = Event { detail: [b'x'; EVENT_DETAIL_LEN], count: 0, reason: REASON_BANNED as u8, ..ev };
        let line = decode(&raw(&ev), &[], 5_000_000_000, now).unwrap();
        assert_eq!((line.count, line.user.map(|u| u.len())), (None, Some(EVENT_DETAIL_LEN)));
        // A short record (an older build's 56 bytes) is not decoded.
        assert!(decode(&raw(&ev)[..56], &[], 0, now).is_none());
    }
}
