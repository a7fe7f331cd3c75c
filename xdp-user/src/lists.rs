//! IP list files (blacklist, allowlist): parsing, merging and fetching.
//!
//! Format: one IPv4/IPv6 address or CIDR range per line; `#` and `;` start comments (whole
//! line or trailing); blank lines are ignored; families may be mixed. `/32` and `/128` ranges
//! are stored as exact addresses; host bits of a range are cleared.
use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use crate::config::ListCfg;

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
    #[error(
        "{source_name}:{line}: matches every address; set allow_match_all = true in the list's section if you mean it"
    )]
    MatchAll { source_name: String, line: usize },
    #[error("{source_name}: no valid entry ({skipped} invalid lines skipped); the last good list stays (set allow_empty = true if this source may be empty)")]
    Empty { source_name: String, skipped: usize },
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

/// Parse one entry: an address or a CIDR range. IPv4-mapped IPv6 (`::ffff:a.b.c.d`, and
/// ranges of at least /96 inside `::ffff:0:0/96`) is the IPv4 address or range: that is what
/// the kernel sees on the wire.
pub fn parse_entry(text: &str) -> Option<IpNet> {
    let net = if text.contains('/') { text.parse::<IpNet>().ok()? } else { IpNet::from(text.parse::<IpAddr>().ok()?) };
    Some(match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::V4(ipnet::Ipv4Net::new(v4, n.prefix_len() - 96).ok()?),
            None => net,
        },
        _ => net,
    })
}

/// Parse list text. `source_name` names the file or URL in errors. With `skip_invalid`,
/// invalid lines are recorded in `skipped` instead of failing. `0.0.0.0/0` and `::/0` are
/// refused unless `allow_match_all`.
pub fn parse_list(text: &str, source_name: &str, skip_invalid: bool) -> Result<IpList, ListError> {
    parse_list_with(text, source_name, skip_invalid, false)
}

pub fn parse_list_with(
    text: &str,
    source_name: &str,
    skip_invalid: bool,
    allow_match_all: bool,
) -> Result<IpList, ListError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut list = IpList::default();
    // Exact IPv4 addresses (the bulk of a blacklist) are collected in a Vec and turned into the
    // set in one sorted bulk build, instead of a million tree inserts.
    let mut v4 = Vec::new();
    // Line numbers as an editor shows them: CRLF counts once.
    let mut line_no = 0usize;
    let mut prev_cr = false;
    for piece in text.split_inclusive(['\n', '\r']) {
        if !(prev_cr && piece == "\n") {
            line_no += 1;
        }
        prev_cr = piece.ends_with('\r');
        let raw = piece.trim_end_matches(['\n', '\r']);
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
            Some(n) if n.prefix_len() == 0 && !allow_match_all => {
                return Err(ListError::MatchAll { source_name: source_name.to_string(), line: line_no })
            }
            Some(n) => list.insert(n),
            None if skip_invalid => list.skipped.push(format!("{source_name}:{line_no}: {token:?}")),
            None => {
                return Err(ListError::Invalid {
                    source_name: source_name.to_string(),
                    line: line_no,
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

/// Read a regular file of at most `max_bytes` (a FIFO, a device such as /dev/zero or a
/// directory is refused before anything is read).
pub fn read_regular_file(path: &Path, max_bytes: u64) -> std::io::Result<String> {
    check_list_file(path, max_bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let f = std::fs::File::open(path)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(f, max_bytes + 1), &mut text)?;
    if text.len() as u64 > max_bytes {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, format!("larger than {max_bytes} bytes")));
    }
    Ok(text)
}

/// A list (or config) file must be a regular file no larger than `max_bytes`.
pub fn check_list_file(path: &Path, max_bytes: u64) -> Result<(), String> {
    let md = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if !md.is_file() {
        return Err(format!("{}: not a regular file", path.display()));
    }
    if md.len() > max_bytes {
        return Err(format!(
            "{}: {} bytes, larger than the limit of {max_bytes} (max_bytes)",
            path.display(),
            md.len()
        ));
    }
    Ok(())
}

pub fn read_list_file(path: &Path, cfg: &ListCfg) -> Result<IpList, ListError> {
    let text = read_regular_file(path, cfg.max_bytes)
        .map_err(|err| ListError::Read { path: path.display().to_string(), err })?;
    parse_list_with(&text, &path.display().to_string(), cfg.skip_invalid, cfg.allow_match_all)
}

/// Fetch a list over HTTP(S) with the section's timeout and size limit.
pub fn fetch_list(url: &str, cfg: &ListCfg) -> Result<IpList, ListError> {
    let fetch_err = |err: String| ListError::Fetch { url: url.to_string(), err };
    let agent = ureq::AgentBuilder::new().timeout(cfg.timeout).build();
    let resp = agent
        .get(url)
        .set("User-Agent", concat!("sipshield/", env!("CARGO_PKG_VERSION")))
        .call()
        .map_err(|e| fetch_err(e.to_string()))?;
    let mut body = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(resp.into_reader(), cfg.max_bytes + 1), &mut body)
        .map_err(|e| fetch_err(e.to_string()))?;
    if body.len() as u64 > cfg.max_bytes {
        return Err(fetch_err(format!("body larger than the limit of {} bytes (max_bytes)", cfg.max_bytes)));
    }
    let text = String::from_utf8(body).map_err(|e| fetch_err(format!("not UTF-8 text: {e}")))?;
    parse_list_with(&text, url, cfg.skip_invalid, cfg.allow_match_all)
}

/// A source that yields nothing is a failed load unless the section allows it: an empty
/// answer from a feed must not empty the list.
fn non_empty(list: IpList, source_name: &str, cfg: &ListCfg) -> Result<IpList, ListError> {
    if list.is_empty() && !cfg.allow_empty {
        return Err(ListError::Empty { source_name: source_name.to_string(), skipped: list.skipped.len() });
    }
    Ok(list)
}

/// Load every file and URL of a list section and the inline entries, merged.
/// Any failure fails the whole load (the caller keeps the previous list).
pub fn load_sources(cfg: &ListCfg) -> Result<IpList, ListError> {
    let mut list = IpList::default();
    for (i, e) in cfg.entries.iter().enumerate() {
        match parse_entry(e.trim()) {
            Some(n) if n.prefix_len() == 0 && !cfg.allow_match_all => {
                return Err(ListError::MatchAll { source_name: "entries".into(), line: i + 1 })
            }
            Some(n) => list.insert(n),
            None => return Err(ListError::Invalid { source_name: "entries".into(), line: i + 1, text: e.clone() }),
        }
    }
    for f in &cfg.files {
        let name = f.display().to_string();
        list.merge(non_empty(read_list_file(f, cfg)?, &name, cfg)?);
    }
    for u in &cfg.urls {
        list.merge(non_empty(fetch_list(u, cfg)?, u, cfg)?);
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
    fn line_endings_bom_and_mapped_addresses() {
        for text in ["198.51.100.1\n198.51.100.2\n", "198.51.100.1\r\n198.51.100.2\r\n", "198.51.100.1\r198.51.100.2"] {
            assert_eq!(parse_list(text, "t", false).unwrap().v4.len(), 2, "{text:?}");
        }
        let l = parse_list("\u{feff}198.51.100.1\n", "t", false).unwrap();
        assert_eq!(l.v4.len(), 1);
        let l = parse_list("::ffff:198.51.100.7\n::ffff:203.0.113.0/120\n", "t", false).unwrap();
        assert!(l.v4.contains(&[198, 51, 100, 7]) && l.v6.is_empty());
        assert!(l.net4.contains(&([203, 0, 113, 0], 24)) && l.net6.is_empty());
        // CRLF counts as one line in error positions.
        let e = parse_list("198.51.100.1\r\n\r\nbogus\r\n", "bl.txt", false).unwrap_err().to_string();
        assert!(e.starts_with("bl.txt:3:"), "{e}");
    }

    #[test]
    fn match_all_and_empty_sources_are_refused() {
        let e = parse_list("0.0.0.0/0\n", "bl.txt", false).unwrap_err().to_string();
        assert!(e.contains("bl.txt:1") && e.contains("allow_match_all"), "{e}");
        assert!(parse_list("::/0\n", "bl.txt", false).is_err());
        assert_eq!(parse_list_with("::/0\n", "bl.txt", false, true).unwrap().net6.len(), 1);
        let dir = std::env::temp_dir().join(format!("sipshield-lists-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("empty.txt");
        std::fs::write(&f, "# nothing\n\n").unwrap();
        let cfg = ListCfg { files: vec![f.clone()], ..Default::default() };
        let e = load_sources(&cfg).unwrap_err().to_string();
        assert!(e.contains("empty.txt") && e.contains("no valid entry"), "{e}");
        std::fs::write(&f, "bogus\n").unwrap();
        let cfg = ListCfg { files: vec![f.clone()], skip_invalid: true, ..Default::default() };
        assert!(load_sources(&cfg).unwrap_err().to_string().contains("1 invalid lines skipped"));
        let cfg = ListCfg { files: vec![f.clone()], skip_invalid: true, allow_empty: true, ..Default::default() };
        assert!(load_sources(&cfg).unwrap().is_empty());
        let big = dir.join("big.txt");
        std::fs::write(&big, "198.51.100.1\n".repeat(200)).unwrap();
        let cfg = ListCfg { files: vec![big], max_bytes: 1024, ..Default::default() };
        assert!(load_sources(&cfg).unwrap_err().to_string().contains("larger than"));
        let cfg = ListCfg { files: vec!["/dev/zero".into()], ..Default::default() };
        assert!(load_sources(&cfg).unwrap_err().to_string().contains("not a regular file"));
        std::fs::remove_dir_all(&dir).unwrap();
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

    fn scratch(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("sipshield-lists-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier run with the same pid
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn sizes_count_every_structure() {
        let l = parse_list(
            "198.51.100.1\n198.51.100.2\n2001:db8::1\n203.0.113.0/24\n2001:db8::/32\n2001:db9::/32\n",
            "t",
            false,
        )
        .unwrap();
        assert_eq!((l.v4.len(), l.v6.len(), l.net4.len(), l.net6.len()), (2, 1, 1, 2));
        assert_eq!(l.len(), 6);
        assert!(!l.is_empty() && IpList::default().is_empty());
        let mut m = IpList::default();
        m.merge(l.clone());
        m.merge(l.clone());
        assert_eq!(m, l, "merging is a set union");
    }

    #[test]
    fn mapped_addresses_only_from_slash_96() {
        let v6 = |t: &str| matches!(parse_entry(t), Some(IpNet::V6(_)));
        assert!(v6("::ffff:0:0/95") && v6("::ffff:0:0/80"), "shorter than /96: an IPv6 range");
        assert_eq!(parse_entry("::ffff:0:0/96").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(parse_entry("::ffff:198.51.100.0/120").unwrap().to_string(), "198.51.100.0/24");
        assert!(v6("2001:db8::/96") && v6("::1"), "not mapped: IPv6");
        assert_eq!(parse_entry(" 198.51.100.1"), None, "callers trim");
        assert_eq!(parse_entry("198.51.100.1/24").unwrap().to_string(), "198.51.100.1/24", "truncated on insert");
    }

    #[test]
    fn sources_are_merged_with_the_inline_entries() {
        let dir = scratch("merge");
        let f = dir.join("bl.txt");
        std::fs::write(&f, "198.51.100.1\n203.0.113.0/24\n").unwrap();
        let cfg = ListCfg {
            entries: vec![" 198.51.100.9 ".into(), "2001:db8::/48".into(), "198.51.100.1".into()],
            files: vec![f.clone()],
            ..Default::default()
        };
        let l = load_sources(&cfg).unwrap();
        assert_eq!((l.v4.len(), l.net4.len(), l.net6.len()), (2, 1, 1));
        // Entries are numbered from 1 in errors; every address is refused only with allow_match_all off.
        let cfg = ListCfg { entries: vec!["198.51.100.9".into(), "0.0.0.0/0".into()], ..Default::default() };
        let e = load_sources(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("entries:2: matches every address"), "{e}");
        let cfg = ListCfg { allow_match_all: true, ..cfg };
        assert_eq!(load_sources(&cfg).unwrap().net4.len(), 1);
        let cfg = ListCfg {
            entries: vec!["198.51.100.9".into(), "::/0".into(), "bogus".into()],
            allow_match_all: true,
            ..Default::default()
        };
        let e = load_sources(&cfg).unwrap_err().to_string();
        assert!(e.starts_with("entries:3: invalid entry \"bogus\""), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn size_limit_is_inclusive_and_holds_for_files_without_a_size() {
        let dir = scratch("size");
        let f = dir.join("exact.txt");
        let line = "198.51.100.1\n";
        let text = line.repeat(1024 / line.len()) + &"#".repeat(1024 % line.len());
        assert_eq!(text.len(), 1024);
        std::fs::write(&f, &text).unwrap();
        assert_eq!(read_regular_file(&f, 1024).unwrap(), text, "exactly max_bytes is accepted");
        let e = read_regular_file(&f, 1023).unwrap_err().to_string();
        assert!(e.contains("1024 bytes, larger than the limit of 1023"), "{e}");
        // /proc files report size 0: the limit is enforced on what is read.
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(status.len() > 200);
        let e = read_regular_file(Path::new("/proc/self/status"), 100).unwrap_err().to_string();
        assert!(e.contains("larger than 100 bytes"), "{e}");
        assert!(read_regular_file(Path::new("/proc/self/status"), 1 << 20).unwrap().starts_with("Name:"));
        let e = read_regular_file(&dir, 1 << 20).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Serve `bodies` to one HTTP request each on loopback; returns the base URL.
    fn http_server(bodies: Vec<(&'static str, Vec<u8>)>) -> (String, std::thread::JoinHandle<()>) {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let t = std::thread::spawn(move || {
            for (status, body) in bodies {
                let (mut s, _) = l.accept().unwrap();
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req).unwrap();
                let head = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                s.write_all(head.as_bytes()).unwrap();
                s.write_all(&body).unwrap();
            }
        });
        (url, t)
    }

    #[test]
    fn fetched_lists_are_limited_and_checked() {
        let line = "198.51.100.1\n";
        let exact = (line.repeat(1024 / line.len()) + &"#".repeat(1024 % line.len())).into_bytes();
        let mut over = exact.clone();
        over.push(b'\n');
        let (url, t) = http_server(vec![
            ("200 OK", exact),
            ("200 OK", over),
            ("200 OK", vec![0xff, 0xfe, b'\n']),
            ("404 Not Found", b"no".to_vec()),
            ("200 OK", b"198.51.100.7\n2001:db8::/48\n".to_vec()),
        ]);
        let cfg = ListCfg { max_bytes: 1024, ..Default::default() };
        assert_eq!(fetch_list(&url, &cfg).unwrap().v4.len(), 1, "exactly max_bytes is accepted");
        let e = fetch_list(&url, &cfg).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{url}: fetch failed: body larger than the limit of 1024")), "{e}");
        let e = fetch_list(&url, &cfg).unwrap_err().to_string();
        assert!(e.contains("not UTF-8"), "{e}");
        let e = fetch_list(&url, &cfg).unwrap_err().to_string();
        assert!(e.contains("fetch failed") && e.contains("404"), "{e}");
        let l = load_sources(&ListCfg { urls: vec![url.clone()], ..Default::default() }).unwrap();
        assert_eq!((l.v4.len(), l.net6.len()), (1, 1));
        t.join().unwrap();
    }
}
