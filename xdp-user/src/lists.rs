//! IP list files (blacklist, allowlist): parsing, merging and fetching.
//!
//! Format: one IPv4/IPv6 address or CIDR range per line; `#` and `;` start comments (whole
//! line or trailing); blank lines are ignored; families may be mixed. `/32` and `/128` ranges
//! are stored as exact addresses; host bits of a range are cleared.
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use ipnet::IpNet;

/// A parsed, de-duplicated list, split the way the kernel stores it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpList {
    pub v4: BTreeSet<[u8; 4]>,
    pub v6: BTreeSet<[u8; 16]>,
    pub net4: BTreeSet<([u8; 4], u8)>,
    pub net6: BTreeSet<([u8; 16], u8)>,
    /// Lines skipped with `skip_invalid` (source:line: problem).
    pub skipped: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ListError {
    #[error("{source_name}:{line}: invalid entry {text:?}: expected an IPv4/IPv6 address or CIDR range")]
    Invalid { source_name: String, line: usize, text: String },
    #[error("{path}: cannot read list: {err}")]
    Read { path: String, err: std::io::Error },
    #[error("{url}: fetch failed: {err}")]
    Fetch { url: String, err: String },
}

impl IpList {
    pub fn len(&self) -> usize {
        self.v4.len() + self.v6.len() + self.net4.len() + self.net6.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add one address or range.
    pub fn insert(&mut self, net: IpNet) {
        let net = net.trunc();
        match net {
            IpNet::V4(n) if n.prefix_len() == 32 => {
                self.v4.insert(n.addr().octets());
            }
            IpNet::V4(n) => {
                self.net4.insert((n.addr().octets(), n.prefix_len()));
            }
            IpNet::V6(n) if n.prefix_len() == 128 => {
                self.v6.insert(n.addr().octets());
            }
            IpNet::V6(n) => {
                self.net6.insert((n.addr().octets(), n.prefix_len()));
            }
        }
    }

    pub fn merge(&mut self, mut other: IpList) {
        self.v4.append(&mut other.v4);
        self.v6.append(&mut other.v6);
        self.net4.append(&mut other.net4);
        self.net6.append(&mut other.net6);
        self.skipped.extend(other.skipped);
    }

    /// Does the list cover `ip` (exact or inside a range)? Userspace model of the kernel lookup.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(a) => {
                let o = a.octets();
                self.v4.contains(&o)
                    || self
                        .net4
                        .iter()
                        .any(|(n, p)| IpNet::new(IpAddr::from(*n), *p).map(|n| n.contains(&ip)).unwrap_or(false))
            }
            IpAddr::V6(a) => {
                let o = a.octets();
                self.v6.contains(&o)
                    || self
                        .net6
                        .iter()
                        .any(|(n, p)| IpNet::new(IpAddr::from(*n), *p).map(|n| n.contains(&ip)).unwrap_or(false))
            }
        }
    }
}

/// Parse one entry: an address or a CIDR range.
pub fn parse_entry(text: &str) -> Option<IpNet> {
    if text.contains('/') {
        text.parse::<IpNet>().ok()
    } else {
        text.parse::<IpAddr>().ok().map(IpNet::from)
    }
}

/// Parse list text. `source_name` names the file or URL in errors. With `skip_invalid`,
/// invalid lines are recorded in `skipped` instead of failing.
pub fn parse_list(text: &str, source_name: &str, skip_invalid: bool) -> Result<IpList, ListError> {
    let mut list = IpList::default();
    // Exact IPv4 addresses (the bulk of a blacklist) are collected in a Vec and turned into the
    // set in one sorted bulk build, instead of a million tree inserts.
    let mut v4 = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split(['#', ';']).next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        // Some feeds put extra columns after the address (e.g. "1.2.3.4 tab-separated info").
        let token = line.split_whitespace().next().unwrap_or("");
        if !token.contains('/') {
            if let Ok(a) = token.parse::<std::net::Ipv4Addr>() {
                v4.push(a.octets());
                continue;
            }
        }
        match parse_entry(token) {
            Some(n) => list.insert(n),
            None if skip_invalid => list.skipped.push(format!("{source_name}:{}: {token:?}", i + 1)),
            None => {
                return Err(ListError::Invalid {
                    source_name: source_name.to_string(),
                    line: i + 1,
                    text: token.to_string(),
                })
            }
        }
    }
    v4.sort_unstable();
    v4.dedup();
    let mut bulk: BTreeSet<[u8; 4]> = v4.into_iter().collect();
    list.v4.append(&mut bulk);
    Ok(list)
}

pub fn read_list_file(path: &Path, skip_invalid: bool) -> Result<IpList, ListError> {
    let text =
        std::fs::read_to_string(path).map_err(|err| ListError::Read { path: path.display().to_string(), err })?;
    parse_list(&text, &path.display().to_string(), skip_invalid)
}

/// Fetch a list over HTTP(S) with a timeout.
pub fn fetch_list(url: &str, timeout: Duration, skip_invalid: bool) -> Result<IpList, ListError> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).build();
    let resp = agent
        .get(url)
        .set("User-Agent", concat!("sipshield/", env!("CARGO_PKG_VERSION")))
        .call()
        .map_err(|e| ListError::Fetch { url: url.to_string(), err: e.to_string() })?;
    let text = resp.into_string().map_err(|e| ListError::Fetch { url: url.to_string(), err: e.to_string() })?;
    parse_list(&text, url, skip_invalid)
}

/// Load every file and URL of a list section and the inline entries, merged.
/// Any failure fails the whole load (the caller keeps the previous list).
pub fn load_sources(
    files: &[std::path::PathBuf],
    urls: &[String],
    entries: &[String],
    skip_invalid: bool,
    timeout: Duration,
) -> Result<IpList, ListError> {
    let mut list = IpList::default();
    for (i, e) in entries.iter().enumerate() {
        match parse_entry(e.trim()) {
            Some(n) => list.insert(n),
            None => return Err(ListError::Invalid { source_name: "entries".into(), line: i + 1, text: e.clone() }),
        }
    }
    for f in files {
        list.merge(read_list_file(f, skip_invalid)?);
    }
    for u in urls {
        list.merge(fetch_list(u, timeout, skip_invalid)?);
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mixed_list_with_comments() {
        let text = "# 3CX style list\n198.51.100.7\n203.0.113.0/24 ; office range\n\n2001:db8::1\n2001:db8:1::/48 # v6 range\n198.51.100.8/32\n198.51.100.9\t extra column\n203.0.113.77/24\n";
        let l = parse_list(text, "t.txt", false).unwrap();
        assert_eq!(l.v4.len(), 3);
        assert_eq!(l.net4.len(), 1, "203.0.113.77/24 is truncated to the same /24");
        assert_eq!(l.v6.len(), 1);
        assert_eq!(l.net6.len(), 1);
        assert!(l.contains("203.0.113.200".parse().unwrap()));
        assert!(l.contains("2001:db8:1:ffff::1".parse().unwrap()));
        assert!(!l.contains("198.51.100.10".parse().unwrap()));
    }

    #[test]
    fn invalid_line_names_file_and_line() {
        let err = parse_list("198.51.100.1\n\n300.1.2.3\n", "bl.txt", false).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bl.txt:3: invalid entry \"300.1.2.3\": expected an IPv4/IPv6 address or CIDR range"
        );
        let l = parse_list("198.51.100.1\nbogus\n198.51.100.0/33\n", "bl.txt", true).unwrap();
        assert_eq!(l.v4.len(), 1);
        assert_eq!(l.skipped, vec!["bl.txt:2: \"bogus\"".to_string(), "bl.txt:3: \"198.51.100.0/33\"".to_string()]);
    }
}
