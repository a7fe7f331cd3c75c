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
