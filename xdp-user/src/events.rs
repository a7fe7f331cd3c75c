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
    /// Text the kernel attached to the event (toll fraud: the dialled number, normalised).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Toll fraud: the rule id (position in `deny_prefixes`/`allow_prefixes` from 1; 0: an
    /// international number no allow prefix covers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<u32>,
    pub dry_run: bool,
    pub ifindex: u32,
    /// Length of the dropped frame (events of a filter with snapshots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkt_len: Option<u32>,
    /// Its first bytes (up to `EVENT_SNAP`), base64: `sipshield events --pcap` writes them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snap: Option<String>,
    /// authfail/enumeration: failures / distinct users counted in the window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
    /// authfail/enumeration: the user of the `To` of the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// The record as an `Event`: a full one, or one of an adopted older filter (`EVENT_V1_SIZE`
/// bytes, no snapshot), whose missing fields read as zero.
pub fn parse(raw: &[u8]) -> Option<Event> {
    if raw.len() < EVENT_V1_SIZE {
        return None;
    }
    let mut buf = [0u8; std::mem::size_of::<Event>()];
    let n = raw.len().min(buf.len());
    buf[..n].copy_from_slice(&raw[..n]);
    // SAFETY: Event is plain old data (every byte pattern is valid) and the buffer is its size;
    // read_unaligned copes with any alignment.
    let mut ev: Event = unsafe { std::ptr::read_unaligned(buf.as_ptr() as *const Event) };
    ev.snap_len = ev.snap_len.min(EVENT_SNAP as u16);
    Some(ev)
}

/// The NUL-padded text of `Event::detail` (`None` when empty).
pub fn detail_text(d: &[u8]) -> Option<String> {
    let end = d.iter().position(|b| *b == 0).unwrap_or(d.len());
    (end > 0).then(|| String::from_utf8_lossy(&d[..end]).into_owned())
}

/// Decode a raw ring-buffer record. `clock_now` (program clock, ns) and `wall_now` convert the stamp to wall time.
pub fn decode(raw: &[u8], sigs: &[Signature], clock_now: u64, wall_now: std::time::SystemTime) -> Option<EventLine> {
    use base64::Engine;
    let ev = parse(raw)?;
    let auth_reason = ev.reason as u32 == REASON_AUTHFAIL || ev.reason as u32 == REASON_ENUMERATION;
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
        detail: (ev.reason as u32 == REASON_TOLLFRAUD).then(|| detail_text(&ev.detail)).flatten(),
        rule: (ev.reason as u32 == REASON_TOLLFRAUD).then_some(ev.count),
        dry_run: ev.flags & EVF_DRY_RUN != 0,
        ifindex: ev.ifindex,
        pkt_len: (ev.snap_len > 0).then_some(ev.pkt_len as u32),
        snap: (ev.snap_len > 0)
            .then(|| base64::engine::general_purpose::STANDARD.encode(&ev.snap[..ev.snap_len as usize])),
        count: auth_reason.then_some(ev.count),
        user: auth_reason.then(|| detail_text(&ev.detail)).flatten(),
    })
}

/// One event line's snapshot as a pcap record: (capture time, frame's first bytes, its length).
pub fn snapshot(v: &serde_json::Value) -> Option<(std::time::SystemTime, Vec<u8>, u32)> {
    use base64::Engine;
    let snap = base64::engine::general_purpose::STANDARD.decode(v["snap"].as_str()?).ok()?;
    let when = humantime::parse_rfc3339(v["time"].as_str()?).ok()?;
    let len = v["pkt_len"].as_u64().unwrap_or(snap.len() as u64).max(snap.len() as u64);
    Some((when, snap, len.min(u32::MAX as u64) as u32))
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
    for k in ["method", "user", "signature", "country", "detail"] {
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

/// The report of a ban the filter made itself (a new-ban event, not in dry-run), for the
/// CrowdSec reporter.
pub fn ban_report(ev: &EventLine, wall: std::time::SystemTime) -> Option<crate::crowdsec::lapi::BanReport> {
    let secs = ev.ban_secs.filter(|_| !ev.dry_run)?;
    Some(crate::crowdsec::lapi::BanReport {
        ip: ev.src.parse().ok()?,
        reason: ev.reason,
        method: ev.method,
        ban_secs: secs,
        dport: ev.dport,
        at: wall,
    })
}

/// Drain the kernel's event ring on a thread of its own, so nothing the controller does
/// (reloads, refreshes, scrapes) delays it. Stops when `stop` is set.
pub fn spawn_drain(
    ring: aya::maps::RingBuf<aya::maps::MapData>,
    sigs: std::sync::Arc<std::sync::RwLock<Vec<Signature>>>,
    sink: std::sync::Arc<std::sync::Mutex<EventSink>>,
    mut on_event: Box<dyn FnMut(&EventLine) + Send>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    crowdsec: std::sync::Arc<crate::crowdsec::lapi::Hub>,
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
                    if let Some(r) = ban_report(&ev, wall) {
                        crowdsec.offer(r);
                    }
                    on_event(&ev);
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(ev: &Event) -> Vec<u8> {
        // SAFETY: Event is repr(C) plain old data without padding (size-asserted in xdp-common).
        unsafe { std::slice::from_raw_parts(ev as *const Event as *const u8, std::mem::size_of::<Event>()) }.to_vec()
    }

    #[test]
    fn tollfraud_events_carry_the_number_and_the_rule() {
        let mut detail = [0u8; 28];
        detail[..9].copy_from_slice(b"+88212345");
        let ev = Event {
            ts_ns: 1_000,
            ban_until_ns: 0,
            src: [198, 51, 100, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ifindex: 3,
            sig_id: 0,
            sport: 5060,
            dport: 5060,
            reason: REASON_TOLLFRAUD as u8,
            family: FAMILY_V4,
            method: METHOD_INVITE,
            flags: 0,
            country: 0,
            proto: 17,
            _pad: 0,
            _pad2: 0,
            count: 2,
            detail,
            // SAFETY: Event is plain old data; all-zero is a valid value.
            ..unsafe { std::mem::zeroed() }
        };
        let now = std::time::SystemTime::now();
        let line = decode(&raw(&ev), &[], 1_000, now).unwrap();
        assert_eq!((line.reason, line.detail.as_deref(), line.rule), ("tollfraud", Some("+88212345"), Some(2)));
        let json = serde_json::to_value(&line).unwrap();
        assert_eq!(json["detail"], "+88212345");
        assert!(human(&json).contains("detail=+88212345"), "{}", human(&json));
        // Other reasons: no detail, no rule; a record shorter than an Event is refused.
        let port = Event { reason: REASON_PORT as u8, count: 0, detail: [0; 28], ..ev };
        let line = decode(&raw(&port), &[], 1_000, now).unwrap();
        assert_eq!((line.reason, line.detail, line.rule), ("port", None, None));
    }

    fn record(snap_len: u16) -> Vec<u8> {
        let mut ev: Event = unsafe { std::mem::zeroed() };
        ev.ts_ns = 5_000_000_000;
        ev.src[..4].copy_from_slice(&[203, 0, 113, 9]);
        ev.family = FAMILY_V4;
        ev.reason = REASON_BLACKLISTED as u8;
        ev.proto = 17;
        ev.pkt_len = 1200;
        ev.snap_len = snap_len;
        for (i, b) in ev.snap.iter_mut().enumerate() {
            *b = i as u8;
        }
        // SAFETY: Event is plain old data.
        unsafe { std::slice::from_raw_parts(&ev as *const Event as *const u8, std::mem::size_of::<Event>()) }.to_vec()
    }

    /// A record with a snapshot carries its bytes; one of an adopted older filter (the first
    /// `EVENT_V1_SIZE` bytes only) decodes without; a shorter one is refused.
    #[test]
    fn snapshots_and_old_records() {
        let wall = std::time::SystemTime::now();
        let now = 6_000_000_000;
        let full = decode(&record(EVENT_SNAP as u16), &[], now, wall).unwrap();
        assert_eq!((full.src.as_str(), full.reason, full.pkt_len), ("203.0.113.9", "blacklisted", Some(1200)));
        let v = serde_json::to_value(&full).unwrap();
        let (_, bytes, len) = snapshot(&v).unwrap();
        assert_eq!((bytes.len(), len), (EVENT_SNAP, 1200));
        assert_eq!(bytes[..4], [0, 1, 2, 3]);

        let short = decode(&record(60), &[], now, wall).unwrap();
        assert_eq!(snapshot(&serde_json::to_value(&short).unwrap()).unwrap().1.len(), 60);

        // The kernel never writes more than EVENT_SNAP; a larger length is clamped.
        let over = parse(&record(u16::MAX)).unwrap();
        assert_eq!(over.snap_len as usize, EVENT_SNAP);

        let old = &record(EVENT_SNAP as u16)[..EVENT_V1_SIZE];
        let ev = decode(old, &[], now, wall).unwrap();
        assert_eq!((ev.src.as_str(), ev.pkt_len, ev.snap.as_deref()), ("203.0.113.9", None, None));
        assert!(snapshot(&serde_json::to_value(&ev).unwrap()).is_none());
        assert!(decode(&old[..EVENT_V1_SIZE - 1], &[], now, wall).is_none());
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
            // SAFETY: Event is plain old data; all-zero is a valid value.
            ..unsafe { std::mem::zeroed() }
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
        // A full 28-byte user has no NUL.
        let full = Event { detail: [b'x'; EVENT_DETAIL_LEN], ..ev };
        let line = decode(&raw(&full), &[], 5_000_000_000, now).unwrap();
        assert_eq!(line.user.map(|u| u.len()), Some(EVENT_DETAIL_LEN));
        // Other reasons carry neither count nor user.
        let other = Event { reason: REASON_BANNED as u8, ..full };
        let line = decode(&raw(&other), &[], 5_000_000_000, now).unwrap();
        assert_eq!((line.count, line.user), (None, None));
    }
}
