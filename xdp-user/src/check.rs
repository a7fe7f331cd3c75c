//! `sipshield check --config FILE`: everything `run` and `reload` would check, without
//! touching the kernel — the schema, every key's bounds, the interfaces, every list file and
//! URL, the signatures, the GeoIP database and every map capacity — reporting **every** error
//! (each naming its file, line or key), plus a summary of what the policy would hold.
//!
//! It reuses the controller's own code ([`Config::problems`], [`Sources::read_all`],
//! [`Policy::new`]), so a config that passes here is one `run` accepts.
use std::path::Path;

use serde_json::json;

use crate::addrlist::ListCounts;
use crate::config::Config;
use crate::policy::{Policy, Sources};

#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<String>,
    /// What the policy would hold (when the sources could be read).
    pub summary: serde_json::Value,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }

    /// Human-readable summary lines.
    pub fn summary_lines(&self) -> Vec<String> {
        let s = &self.summary;
        let mut out = vec![];
        for list in ["blacklist", "allowlist"] {
            if let Some(l) = s.get(list) {
                out.push(format!(
                    "{list}: {} entries ({} IPv4, {} IPv6, {} IPv4 ranges, {} IPv6 ranges)",
                    l["total"], l["v4"], l["v6"], l["net4"], l["net6"]
                ));
            }
        }
        if let Some(n) = s.get("signatures") {
            out.push(format!("scanner signatures: {n}"));
        }
        if let Some(g) = s.get("geoip") {
            out.push(format!(
                "GeoIP: {} networks; {} {}",
                g["networks"],
                g["policy"].as_str().unwrap_or(""),
                g["countries"]
            ));
        }
        if let Some(r) = s.get("rate_rules").and_then(|r| r.as_object()) {
            let rules: Vec<String> = r
                .iter()
                .map(|(m, v)| format!("{m} {}/s burst {} ban_after {}", v["rate"], v["burst"], v["ban_after"]))
                .collect();
            out.push(format!("rate rules: {}", if rules.is_empty() { "none".into() } else { rules.join("; ") }));
        }
        if let Some(p) = s.get("sip_ports") {
            out.push(format!("SIP ports: {p}"));
        }
        if let Some(n) = s.get("notify") {
            out.push(format!("notifications: {}", n.as_str().unwrap_or("")));
        }
        if let Some(a) = s.get("audit") {
            out.push(format!("audit log: {}", a.as_str().unwrap_or("")));
        }
        out
    }
}

/// Check the config at `path` and every source it names.
pub fn check(path: &Path) -> Report {
    let mut r = Report::default();
    let p = path.display().to_string();
    let cfg = match Config::load_schema(path) {
        Ok(c) => c,
        Err(e) => {
            // A syntax or schema error: the rest of the file cannot be read reliably.
            r.errors.push(format!("{e:#}"));
            return r;
        }
    };
    let problems = cfg.problems();
    r.errors.extend(problems.iter().map(|e| format!("{p}: {e}")));
    if let Err(e) = cfg.check_interfaces() {
        r.errors.push(format!("{p}: {e:#}"));
    }
    // Sources of sections whose keys are already wrong would only repeat those errors.
    let broken = |section: &str| {
        problems.iter().any(|e| e.starts_with(&format!("{section}.")) || e.starts_with(&format!("{section}:")))
    };
    let mut readable = cfg.clone();
    for (section, list) in [("blacklist", &mut readable.blacklist), ("allowlist", &mut readable.allowlist)] {
        if broken(section) {
            *list = Default::default();
        }
    }
    if broken("geoip") {
        readable.geoip = None;
    }
    let (sources, errors) = Sources::read_all(&readable);
    r.errors.extend(errors.iter().map(|e| format!("{p}: {e:#}")));
    r.summary = summary(&cfg, sources.as_ref());
    if let (Some(src), true) = (&sources, r.errors.is_empty()) {
        // Capacities, with the operator's runtime edits (what a reload would commit).
        let rt = crate::state::Runtime::load();
        if let Err(e) = rt.and_then(|rt| Policy::new(&cfg, src, &rt)) {
            r.errors.push(format!("{p}: {e:#}"));
        }
    }
    r
}

fn summary(cfg: &Config, src: Option<&Sources>) -> serde_json::Value {
    let mut s = json!({
        "sip_ports": cfg.sip.ports,
        "rate_rules": cfg.ratelimit.rules.iter().map(|(m, r)| (m.clone(), json!({"rate": r.rate, "burst": r.burst, "ban_after": r.ban_after}))).collect::<serde_json::Map<_, _>>(),
        "audit": if cfg.audit.enabled { cfg.audit.path.display().to_string() } else { "off".into() },
    });
    let mut channels = vec![];
    if let Some(m) = &cfg.notify.smtp {
        channels.push(format!("smtp {}:{} to {} recipients", m.server, m.port(), m.to.len()));
    }
    if !cfg.notify.webhooks.is_empty() {
        channels.push(format!("{} webhooks", cfg.notify.webhooks.len()));
    }
    s["notify"] = json!(if channels.is_empty() { "off".to_string() } else { channels.join(", ") });
    if let Some(src) = src {
        let counts = |l: &crate::lists::IpList| {
            let c = ListCounts::of(l);
            json!({"total": c.total(), "v4": c.v4, "v6": c.v6, "net4": c.net4, "net6": c.net6})
        };
        s["blacklist"] = counts(&src.blacklist);
        s["allowlist"] = counts(&src.allowlist);
        s["signatures"] = json!(src.signatures.len());
        if let (Some(g), Some(db)) = (&cfg.geoip, &src.geo) {
            let allow = !g.allow_countries.is_empty();
            s["geoip"] = json!({
                "networks": db.v4.len() + db.v6.len(),
                "policy": if allow { "allow" } else { "deny" },
                "countries": if allow { &g.allow_countries } else { &g.deny_countries },
            });
        }
    }
    s
}
