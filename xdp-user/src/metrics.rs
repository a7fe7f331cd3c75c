//! Prometheus metrics (text exposition format), served on `[metrics] listen` (localhost by
//! default). A scrape reads the kernel's counters through map handles opened once at start,
//! and everything else from a [`Snapshot`] the controller's worker publishes: its cost does not
//! grow with the size of the lists or the number of bans, and it never waits for a reload.
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{Context, Result};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use xdp_common::*;

use crate::filter::Filter;
use crate::state::DaemonState;

/// What the worker knows and the kernel counters do not say.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub state: DaemonState,
    /// Unexpired bans at the last sweep (every 10 s) or CLI ban.
    pub active_bans: usize,
    pub signatures: usize,
    pub events_write_errors: u64,
    /// Names of the toll-fraud rule ids (`portpolicy::tollfraud_rule_names`).
    pub tollfraud_rules: Vec<String>,
    /// The CrowdSec connector (its state is read at each scrape).
    pub crowdsec: Option<Arc<crate::crowdsec::lapi::Hub>>,
    pub audit_write_errors: u64,
    /// Delivery counters per notification channel.
    pub notify: std::collections::BTreeMap<String, crate::notify::ChannelStats>,
}

type Labels = Vec<(String, String)>;

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Render all metrics.
pub fn render(filter: &Filter, snap: &Snapshot) -> Result<String> {
    let ds = Some(&snap.state);
    let st = filter.stats()?;
    let cfg = filter.config()?;
    let mut reg = Registry::default();

    let packets = Family::<Labels, Counter>::default();
    let bytes = Family::<Labels, Counter>::default();
    for (slot, row) in st.slots.iter().enumerate() {
        let iface = ds.and_then(|d| d.iface_of_slot(slot as u32)).map(|i| i.name.clone()).unwrap_or_else(|| {
            if slot == 0 {
                "other".into()
            } else {
                format!("slot{slot}")
            }
        });
        if slot != 0 && ds.and_then(|d| d.iface_of_slot(slot as u32)).is_none() && row.iter().all(|c| c.packets == 0) {
            continue;
        }
        for (r, c) in row.iter().enumerate() {
            let l = labels(&[("reason", REASON_NAMES[r]), ("iface", &iface)]);
            packets.get_or_create(&l).inc_by(c.packets);
            bytes.get_or_create(&l).inc_by(c.bytes);
        }
    }
    reg.register("sipshield_packets", "Packets seen by the XDP filter, by verdict reason and interface", packets);
    reg.register("sipshield_bytes", "Bytes seen by the XDP filter, by verdict reason and interface", bytes);

    let geo = Family::<Labels, Counter>::default();
    for (i, c) in st.countries.iter().enumerate() {
        if c.packets > 0 {
            geo.get_or_create(&labels(&[("country", crate::countries::code_of(i as u8))])).inc_by(c.packets);
        }
    }
    reg.register("sipshield_geo_dropped", "Packets dropped by the GeoIP policy, by source country", geo);

    let tf = Family::<Labels, Counter>::default();
    for (name, c) in snap.tollfraud_rules.iter().zip(filter.tollfraud_hits(snap.tollfraud_rules.len() as u32)?) {
        tf.get_or_create(&labels(&[("prefix", name)])).inc_by(c.packets);
    }
    reg.register(
        "sipshield_tollfraud_dropped",
        "INVITE/MESSAGE dropped by the toll-fraud guard, by dialled prefix rule",
        tf,
    );

    let bans: Gauge = Gauge::default();
    bans.set(snap.active_bans as i64);
    reg.register("sipshield_bans_active", "Sources currently in the timed-ban map", bans);

    let entries = Family::<Labels, Gauge>::default();
    entries.get_or_create(&labels(&[("list", "scanners")])).set(snap.signatures as i64);
    let last = Family::<Labels, Gauge<f64, AtomicU64>>::default();
    let errors = Family::<Labels, Counter>::default();
    if let Some(d) = ds {
        for (name, l) in &d.lists {
            let lb = labels(&[("list", name)]);
            last.get_or_create(&lb).set(l.last_load_unix);
            errors.get_or_create(&lb).inc_by(l.errors);
            if name != "scanners" {
                entries.get_or_create(&lb).set(l.entries as i64);
            }
        }
    }
    reg.register("sipshield_list_entries", "Entries in each loaded list", entries);
    reg.register(
        "sipshield_list_last_load_timestamp_seconds",
        "Unix time of the last successful load of each list",
        last,
    );
    reg.register(
        "sipshield_list_load_errors",
        "Failed loads/refreshes of each list (the last good list stays)",
        errors,
    );

    let events = Family::<Labels, Counter>::default();
    for (kind, idx) in [("emitted", EVSTAT_EMITTED), ("suppressed", EVSTAT_SUPPRESSED), ("ring_full", EVSTAT_RING_FULL)]
    {
        events.get_or_create(&labels(&[("kind", kind)])).inc_by(st.events[idx as usize]);
    }
    reg.register(
        "sipshield_events",
        "Drop events: emitted, suppressed by kernel-side sampling, lost to a full ring",
        events,
    );
    let auto_bans: Counter = Counter::default();
    auto_bans.inc_by(st.events[EVSTAT_BANS as usize]);
    reg.register("sipshield_auto_bans", "Bans installed by the rate limiter", auto_bans);
    let auth = Family::<Labels, Counter>::default();
    for (kind, v) in AUTHSTAT_NAMES.iter().zip(st.auth) {
        auth.get_or_create(&labels(&[("kind", *kind)])).inc_by(v);
    }
    reg.register(
        "sipshield_authfail",
        "Failed authentications and enumeration seen in the SIP server's answers (egress program): \
         requests recorded, answers, challenges, failures, bans, enumeration misses, allowlisted",
        auth,
    );
    let write_errors: Counter = Counter::default();
    write_errors.inc_by(snap.events_write_errors);
    reg.register(
        "sipshield_event_write_errors",
        "Event lines that could not be written (e.g. a full disk)",
        write_errors,
    );

    if let Some(hub) = snap.crowdsec.as_ref().filter(|h| h.active().is_some()) {
        crowdsec_metrics(&mut reg, hub);
    }
    let audit_errors: Counter = Counter::default();
    audit_errors.inc_by(snap.audit_write_errors);
    reg.register(
        "sipshield_audit_write_errors",
        "Audit records that could not be written (the change itself stayed live)",
        audit_errors,
    );
    let sent = Family::<Labels, Counter>::default();
    let failures = Family::<Labels, Counter>::default();
    let given_up = Family::<Labels, Counter>::default();
    let dropped = Family::<Labels, Counter>::default();
    for (name, c) in &snap.notify {
        let l = labels(&[("channel", name)]);
        sent.get_or_create(&l).inc_by(c.sent);
        failures.get_or_create(&l).inc_by(c.failures);
        given_up.get_or_create(&l).inc_by(c.given_up);
        dropped.get_or_create(&l).inc_by(c.dropped);
    }
    reg.register("sipshield_notify_sent", "Notification messages delivered, by channel", sent);
    reg.register("sipshield_notify_failures", "Failed notification delivery attempts, by channel", failures);
    reg.register("sipshield_notify_given_up", "Notification messages dropped after every retry failed", given_up);
    reg.register("sipshield_notify_dropped", "Alerts dropped because a channel's queue was full", dropped);

    let dry: Gauge = Gauge::default();
    dry.set((cfg.flags & CFG_DRY_RUN != 0) as i64);
    reg.register("sipshield_dry_run", "1 when the filter only counts (dry-run)", dry);

    let mut out = String::new();
    encode(&mut out, &reg).context("encoding metrics")?;
    Ok(out)
}

/// `sipshield_crowdsec_*`: decisions held, pulls, alerts.
fn crowdsec_metrics(reg: &mut Registry, hub: &crate::crowdsec::lapi::Hub) {
    let (ips, ranges, exempted) = hub.held();
    let pull = hub.pull_state();
    let push = hub.push_state();
    let decisions = Family::<Labels, Gauge>::default();
    decisions.get_or_create(&labels(&[("scope", "ip")])).set(ips as i64);
    decisions.get_or_create(&labels(&[("scope", "range")])).set(ranges as i64);
    reg.register("sipshield_crowdsec_decisions", "CrowdSec decisions enforced, by scope", decisions);
    let exempt: Gauge = Gauge::default();
    exempt.set(exempted as i64);
    reg.register(
        "sipshield_crowdsec_decisions_exempted",
        "CrowdSec decisions not enforced because the allowlist covers them",
        exempt,
    );
    let last: Gauge<f64, AtomicU64> = Gauge::default();
    last.set(pull.last_pull_unix.unwrap_or(0.0));
    reg.register(
        "sipshield_crowdsec_last_pull_timestamp_seconds",
        "Unix time of the last successful pull of the decision stream (0: none yet)",
        last,
    );
    let pulls: Counter = Counter::default();
    pulls.inc_by(pull.pulls);
    reg.register("sipshield_crowdsec_pulls", "Successful pulls of the decision stream", pulls);
    let errors: Counter = Counter::default();
    errors.inc_by(pull.errors);
    reg.register("sipshield_crowdsec_pull_errors", "Failed pulls (the decisions held stay)", errors);
    let alerts = Family::<Labels, Counter>::default();
    for (kind, n) in [("sent", push.sent), ("dropped", push.dropped)] {
        alerts.get_or_create(&labels(&[("result", kind)])).inc_by(n);
    }
    reg.register(
        "sipshield_crowdsec_alerts",
        "Alerts of sipshield's own bans: pushed to the LAPI, dropped from a full queue",
        alerts,
    );
    let push_errors: Counter = Counter::default();
    push_errors.inc_by(push.errors);
    reg.register("sipshield_crowdsec_alert_push_errors", "Failed alert pushes (the alerts stay queued)", push_errors);
    let queued: Gauge = Gauge::default();
    queued.set(hub.queued() as i64);
    reg.register("sipshield_crowdsec_alerts_queued", "Alerts waiting for the LAPI", queued);
}

/// Serve `GET /metrics` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, filter: Arc<Mutex<Filter>>, snap: Arc<RwLock<Snapshot>>) {
    use http_body_util::Full;
    use hyper::body::Bytes;
    use hyper::{server::conn::http1, service::service_fn, Request, Response, StatusCode};
    use hyper_util::rt::TokioIo;

    if let Ok(a) = listener.local_addr() {
        log::info!("metrics on http://{a}/metrics");
    }
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                log::warn!("metrics: accept: {e}");
                continue;
            }
        };
        let (filter, snap) = (filter.clone(), snap.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                let (filter, snap) = (filter.clone(), snap.clone());
                async move {
                    let resp = if req.uri().path() != "/metrics" {
                        Response::builder().status(StatusCode::NOT_FOUND).body(Full::new(Bytes::from("see /metrics\n")))
                    } else {
                        // Map reads are syscalls: off the async thread.
                        let body = tokio::task::spawn_blocking(move || {
                            let snap = snap.read().map(|s| s.clone()).unwrap_or_default();
                            let f = filter.lock().unwrap_or_else(|p| p.into_inner());
                            render(&f, &snap)
                        })
                        .await
                        .unwrap_or_else(|e| Err(anyhow::anyhow!("{e}")));
                        match body {
                            Ok(text) => Response::builder()
                                .header("Content-Type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
                                .body(Full::new(Bytes::from(text))),
                            Err(e) => Response::builder()
                                .status(StatusCode::SERVICE_UNAVAILABLE)
                                .body(Full::new(Bytes::from(format!("sipshield: {e:#}\n")))),
                        }
                    };
                    Ok::<_, std::convert::Infallible>(resp.expect("valid response"))
                }
            });
            if let Err(e) = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await {
                log::debug!("metrics connection: {e}");
            }
        });
    }
}
