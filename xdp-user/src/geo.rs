//! GeoIP country policy: read a MaxMind-format (`.mmdb`) country database, convert it to the
//! tables the XDP program looks sources up in, and swap them in atomically.
//!
//! Kernel layout (see `country_of` and `decide` in `xdp-ebpf/src/main.rs`), per generation
//! `g ∈ {0, 1}` (the live one is [`Config::geo_gen`]):
//!
//! * `GEO_V4_{g}`: 65536 [`GeoRow`]s indexed by the first two octets; one byte per /24 (third
//!   octet) holding the country index, 0 for unknown, or [`GEO_SPLIT`] when networks longer
//!   than /24 split that /24.
//! * `GEO_NET4_{g}`: LPM trie for the split /24s: every network longer than /24, plus the split
//!   /24 itself carrying the country of the shorter network that covers the rest of it.
//! * `GEO_V6_{g}`: LPM trie with every IPv6 network.
//! * `GEO_POLICY[g * 256 + country]`: 1 = drop, 0 = pass; index 0 is "unknown".
//!
//! [`load_geo`] fills the inactive generation, flips `geo_gen` with a single config write and
//! then empties the tries of the previous generation, so the program never sees a half-loaded
//! table, and any failure before the flip leaves the live generation untouched.
//!
//! Two record shapes are understood (see [`Schema`]): MaxMind GeoIP2/GeoLite2 country or city
//! records (`country.iso_code`, falling back to `registered_country.iso_code`) and the flat
//! records of ip-location-db / DB-IP lite country files (`country_code`).
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use aya::maps::{lpm_trie::Key, Array, LpmTrie, MapError};
use maxminddb::{LookupResult, MaxMindDbError, PathElement, Reader, WithinOptions};
use xdp_common::{
    maps, Config, GeoRow, CFG_GEO_UNKNOWN_DROP, GEO_COUNTRIES, GEO_NET_V4_CAPACITY, GEO_SPLIT, GEO_UNKNOWN,
    GEO_V4_ROWS, GEO_V6_CAPACITY,
};

use crate::bpfsys;
use crate::countries;
use crate::filter::{map_data, Filter};
use crate::gen::Part;

/// How the records of a database name the country.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum Schema {
    /// MaxMind GeoIP2/GeoLite2 Country/City: `country.iso_code`, falling back to
    /// `registered_country.iso_code` (e.g. for anycast or satellite networks).
    MaxMind,
    /// Flat records with a top-level `country_code` (ip-location-db, DB-IP lite country).
    Flat,
}

impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Schema::MaxMind => "maxmind (country.iso_code)",
            Schema::Flat => "flat (country_code)",
        })
    }
}

/// A country database read into memory: every network the database assigns a known country
/// to, as `(network address, prefix length, country index)`. Networks are disjoint (they are
/// the leaves of the database's search tree); addresses without a country are left out.
#[derive(Clone, Debug)]
pub struct GeoDb {
    pub v4: Vec<([u8; 4], u8, u8)>,
    pub v6: Vec<([u8; 16], u8, u8)>,
    pub schema: Schema,
    pub path: PathBuf,
    /// `database_type` from the metadata (e.g. "GeoLite2-Country").
    pub database_type: String,
}

/// The kernel tables for one generation, built from a [`GeoDb`] by [`build_tables`].
#[derive(Clone)]
pub struct GeoTables {
    /// `GEO_V4_{g}`: [`GEO_V4_ROWS`] rows (one per /16), one byte per /24.
    pub rows: Vec<GeoRow>,
    /// `GEO_NET4_{g}`: prefixes inside split /24s, `(address, prefix length, country)`.
    pub net4: Vec<([u8; 4], u8, u32)>,
    /// `GEO_V6_{g}`: every IPv6 network.
    pub v6: Vec<([u8; 16], u8, u32)>,
}

impl GeoTables {
    /// Number of /24s marked [`GEO_SPLIT`].
    pub fn split_24s(&self) -> usize {
        self.rows.iter().map(|r| r.country.iter().filter(|&&c| c == GEO_SPLIT).count()).sum()
    }
}

impl fmt::Debug for GeoTables {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoTables")
            .field("rows", &self.rows.len())
            .field("split_24s", &self.split_24s())
            .field("net4", &self.net4.len())
            .field("v6", &self.v6.len())
            .finish()
    }
}

/// Country policy: which countries are dropped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GeoPolicy {
    /// When non-empty, every country not listed here is dropped.
    pub allow: Vec<String>,
    /// Countries that are dropped (also when `allow` lists them).
    pub deny: Vec<String>,
    /// Drop sources the database does not cover (country index 0).
    pub unknown_drop: bool,
}

impl From<&crate::config::GeoCfg> for GeoPolicy {
    fn from(g: &crate::config::GeoCfg) -> Self {
        GeoPolicy {
            allow: g.allow_countries.clone(),
            deny: g.deny_countries.clone(),
            unknown_drop: g.unknown == crate::config::Unknown::Drop,
        }
    }
}

/// What [`load_geo`] did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct GeoReport {
    /// IPv4 networks with a country in the database.
    pub v4_networks: usize,
    /// IPv6 networks with a country in the database.
    pub v6_networks: usize,
    /// /24s split by longer prefixes (looked up in `GEO_NET4`).
    pub split_24s: usize,
    /// Time from the start of [`load_geo`] until the new tables were live (gen flipped).
    pub load_secs: f64,
    /// Time spent emptying the previous generation's tries afterwards.
    pub cleanup_secs: f64,
    /// The generation now live.
    pub generation: u32,
}

// ---------------------------------------------------------------------------------------------
// Reading a database.
// ---------------------------------------------------------------------------------------------

/// Distinct records examined to recognise the schema.
const SCHEMA_SAMPLE: usize = 256;

/// IPv6 networks that alias the IPv4 space in MaxMind databases (IPv4-mapped and 6to4); IPv4 is
/// read through the reader's IPv4 path instead. (`::/96` itself is reported as IPv4 by the
/// reader.)
const V6_ALIASES: [([u8; 16], u8); 2] = [
    ([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0, 0], 96),
    ([0x20, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 16),
];

/// Read every network of the country database at `path`.
///
/// Fails, naming the file, when it cannot be read, is not a valid MaxMind DB (including a
/// damaged search tree), or its records carry no country in either known [`Schema`].
pub fn read_db(path: &Path) -> Result<GeoDb> {
    read_db_bytes(path, &read_file(path)?)
}

/// [`read_db`] of a database already in memory (`path` names it in errors); the fuzz target
/// of the file checks.
pub fn read_db_bytes(path: &Path, buf: &[u8]) -> Result<GeoDb> {
    guarded(path, || read_networks(&open(path, buf)?, path))
}

/// Country index of `ip` according to the database at `path`, looked up directly in its search
/// tree (independently of [`read_db`]'s iteration); 0 when the database has no country for it.
pub fn lookup_file(path: &Path, ip: IpAddr) -> Result<u8> {
    let buf = read_file(path)?;
    guarded(path, || {
        let reader = open(path, &buf)?;
        let schema = detect_schema(&reader, path)?;
        if ip.is_ipv6() && reader.metadata.ip_version == 4 {
            return Ok(GEO_UNKNOWN);
        }
        let r = reader.lookup(ip).map_err(|e| db_err(path, e))?;
        country_of_record(&r, schema).map_err(|e| db_err(path, e))
    })
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("{}: cannot read the GeoIP database", path.display()))
}

/// Run `f` on a database, turning a panic of the reader into an error. `open` checks the file
/// so that the reader's unchecked indexing stays in bounds; this is the last line of defence
/// against damage those checks miss, so that it cannot take the controller down.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        let msg = p
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| p.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        Err(anyhow!("{}: corrupt MaxMind DB (the reader failed: {msg})", path.display()))
    })
}

fn db_err(path: &Path, e: MaxMindDbError) -> anyhow::Error {
    anyhow!("{}: corrupt MaxMind DB: {e}", path.display())
}

/// Open the database in `buf` and check that its search tree can be walked safely.
fn open<'a>(path: &Path, buf: &'a [u8]) -> Result<Reader<&'a [u8]>> {
    // The metadata is decoded by `from_source` (pointers relative to its start): check it first.
    const METADATA_MARKER: &[u8] = b"\xab\xcd\xefMaxMind.com";
    if let Some(pos) = buf.windows(METADATA_MARKER.len()).rposition(|w| w == METADATA_MARKER) {
        DataCheck::run(&buf[pos + METADATA_MARKER.len()..], &[0])
            .map_err(|e| anyhow!("{}: not a valid MaxMind DB (.mmdb) file: metadata: {e}", path.display()))?;
    }
    let reader = Reader::from_source(buf)
        .map_err(|e| anyhow!("{}: not a valid MaxMind DB (.mmdb) file: {e}", path.display()))?;
    let m = &reader.metadata;
    let depth = match m.ip_version {
        4 => 32,
        6 => 128,
        v => bail!("{}: not a valid MaxMind DB: ip_version is {v}", path.display()),
    };
    // The search tree and the 16-byte separator must fit in the file, so that reading any node
    // below node_count stays in bounds.
    let tree = m.node_count as usize * m.record_size as usize / 4;
    if tree.saturating_add(16) > buf.len() {
        bail!(
            "{}: corrupt or truncated MaxMind DB: the metadata announces a {tree}-byte search tree but the file has {} bytes",
            path.display(),
            buf.len()
        );
    }
    check_tree(buf, m.node_count as usize, m.record_size, depth)
        .and_then(|records| DataCheck::run(&buf[tree + 16..], &records))
        .map_err(|e| anyhow!("{}: corrupt MaxMind DB: {e}", path.display()))?;
    Ok(reader)
}

/// Record `side` (0 = left, 1 = right) of search tree node `n` (`n < node_count`, in bounds).
fn read_record(buf: &[u8], record_size: u16, n: usize, side: usize) -> usize {
    let b = |i: usize| buf[i] as usize;
    match record_size {
        24 => {
            let o = n * 6 + side * 3;
            b(o) << 16 | b(o + 1) << 8 | b(o + 2)
        }
        28 => {
            let base = n * 7;
            let middle = if side == 0 { b(base + 3) >> 4 } else { b(base + 3) & 0x0f };
            let o = base + side * 4;
            middle << 24 | b(o) << 16 | b(o + 1) << 8 | b(o + 2)
        }
        _ => {
            let o = n * 8 + side * 4;
            b(o) << 24 | b(o + 1) << 16 | b(o + 2) << 8 | b(o + 3)
        }
    }
}

/// Check the shape of the search tree before the reader's iterators walk it (they trust it):
/// no cycles, no path deeper than the address width, data pointers inside the file, and a
/// bounded number of root-to-node paths (nodes may be shared, as the IPv4 alias subtrees are,
/// and the iterators visit a shared node once per path). Returns the distinct data-section
/// offsets of the records the tree points to.
fn check_tree(buf: &[u8], node_count: usize, record_size: u16, depth: usize) -> Result<Vec<usize>, String> {
    if node_count == 0 {
        return Ok(Vec::new());
    }
    let data_len = buf.len() - node_count * record_size as usize / 4;
    let mut records = Vec::new();
    // Child node of record `side` of node `n`, if it is one; data pointers are collected.
    let mut child = |n: usize, side: usize, collect: bool| -> Result<Option<usize>, String> {
        let r = read_record(buf, record_size, n, side);
        if r < node_count {
            return Ok(Some(r));
        }
        if r > node_count {
            // A data pointer, offset by the 16-byte separator, must land inside the file.
            let off = r - node_count;
            if !(16..data_len).contains(&off) {
                return Err(format!("node {n} has a data pointer ({r}) outside the data section"));
            }
            if collect {
                records.push(off - 16);
            }
        }
        Ok(None)
    };
    // Iterative depth-first search: heights and cycle detection, nodes in post-order.
    const NEW: u8 = 0;
    const OPEN: u8 = 1;
    let mut state = vec![NEW; node_count];
    let mut height = vec![0u8; node_count];
    let mut order = Vec::new();
    let mut stack = vec![(0usize, 0usize)];
    state[0] = OPEN;
    while let Some(top) = stack.last_mut() {
        let (n, side) = *top;
        if side < 2 {
            top.1 += 1;
            if let Some(c) = child(n, side, false)? {
                match state[c] {
                    NEW => {
                        state[c] = OPEN;
                        stack.push((c, 0));
                    }
                    OPEN => return Err(format!("the search tree has a cycle (node {n} points back to node {c})")),
                    _ => {}
                }
            }
            continue;
        }
        stack.pop();
        let mut h = 0u8;
        for side in 0..2 {
            if let Some(c) = child(n, side, true)? {
                h = h.max(height[c]);
            }
        }
        if h as usize >= depth {
            return Err(format!("the search tree is deeper than {depth} bits"));
        }
        height[n] = h + 1;
        state[n] = 2;
        order.push(n);
    }
    // Paths from the root to each node, in topological (reverse post-) order.
    let mut paths = vec![0u64; node_count];
    paths[0] = 1;
    let mut total = 0u64;
    let limit = 16 * node_count as u64 + 1024;
    for &n in order.iter().rev() {
        total = total.saturating_add(paths[n]);
        if total > limit {
            return Err(format!("the search tree expands to more than {limit} nodes when walked"));
        }
        for side in 0..2 {
            if let Some(c) = child(n, side, false)? {
                paths[c] = paths[c].saturating_add(paths[n]);
            }
        }
    }
    records.sort_unstable();
    records.dedup();
    Ok(records)
}

/// Nesting (maps, arrays and pointer hops) accepted in a data record; real databases use < 10.
const MAX_DATA_DEPTH: u32 = 32;
/// Values a record may expand to with its pointers followed; country records have < 100.
const MAX_RECORD_VALUES: u64 = 1 << 16;

/// Structural check of the data records: the reader (0.27) follows pointers recursively and
/// without a depth limit when it skips values, so a pointer cycle in a damaged file would
/// overflow the stack. Every record the tree points to is walked here first, with pointer
/// targets checked once (memoised), cycles and excessive nesting or expansion rejected.
struct DataCheck<'a> {
    data: &'a [u8],
    /// Checked pointer targets: offset → (nesting height, values when expanded).
    done: HashMap<usize, (u32, u64)>,
    /// Pointer targets being checked (cycle detection).
    active: HashSet<usize>,
}

impl DataCheck<'_> {
    fn run(data: &[u8], records: &[usize]) -> Result<(), String> {
        let mut c = DataCheck { data, done: HashMap::new(), active: HashSet::new() };
        for &r in records {
            c.target(r, 0)?;
        }
        Ok(())
    }

    /// Check the value at `off` reached through a pointer (or from the tree) at nesting `depth`.
    fn target(&mut self, off: usize, depth: u32) -> Result<(u32, u64), String> {
        let (h, n) = match self.done.get(&off) {
            Some(&v) => v,
            None => {
                if !self.active.insert(off) {
                    return Err(format!("data pointer cycle at offset {off}"));
                }
                let (_, h, n) = self.value(off, depth)?;
                self.active.remove(&off);
                self.done.insert(off, (h, n));
                (h, n)
            }
        };
        if depth + h > MAX_DATA_DEPTH {
            return Err(format!("data nested deeper than {MAX_DATA_DEPTH} levels at offset {off}"));
        }
        Ok((h, n))
    }

    /// Check the value at `off`; returns (offset after it, nesting height, expanded values).
    fn value(&mut self, off: usize, depth: u32) -> Result<(usize, u32, u64), String> {
        if depth >= MAX_DATA_DEPTH {
            return Err(format!("data nested deeper than {MAX_DATA_DEPTH} levels at offset {off}"));
        }
        let data = self.data;
        let byte = |i: usize| {
            data.get(i)
                .map(|&b| b as usize)
                .ok_or_else(|| format!("data at offset {off} runs past the end of the file"))
        };
        let ctrl = byte(off)?;
        let mut p = off + 1;
        let mut ty = ctrl >> 5;
        if ty == 1 {
            // Pointer: 1..4 bytes after the control byte, with bias per size.
            let len = (ctrl >> 3 & 3) + 1;
            let mut v = if len == 4 { 0 } else { ctrl & 7 };
            for i in 0..len {
                v = v << 8 | byte(p + i)?;
            }
            v += [0, 0, 2048, 526_336, 0][len];
            let (h, n) = self.target(v, depth + 1)?;
            return Ok((p + len, h + 1, n + 1));
        }
        if ty == 0 {
            ty = 7 + byte(p)?;
            p += 1;
        }
        let (size, p) = match ctrl & 0x1f {
            29 => (29 + byte(p)?, p + 1),
            30 => (285 + (byte(p)? << 8 | byte(p + 1)?), p + 2),
            31 => (65_821 + (byte(p)? << 16 | byte(p + 1)? << 8 | byte(p + 2)?), p + 3),
            s => (s, p),
        };
        let scalar = |ok: bool| -> Result<(usize, u32, u64), String> {
            if !ok {
                return Err(format!("invalid value of type {ty} and size {size} at offset {off}"));
            }
            let end = p + if ty == 14 { 0 } else { size };
            if end > data.len() {
                return Err(format!("data at offset {off} runs past the end of the file"));
            }
            Ok((end, 1, 1))
        };
        match ty {
            2 | 4 => scalar(true),
            3 => scalar(size == 8),
            15 => scalar(size == 4),
            5 => scalar(size <= 2),
            6 | 8 => scalar(size <= 4),
            9 => scalar(size <= 8),
            10 => scalar(size <= 16),
            14 => scalar(size <= 1),
            7 | 11 => {
                let items = if ty == 7 { 2 * size } else { size };
                let (mut p, mut h, mut n) = (p, 0u32, 1u64);
                for _ in 0..items {
                    let (end, ch, cn) = self.value(p, depth + 1)?;
                    p = end;
                    h = h.max(ch);
                    n = n.saturating_add(cn);
                    if n > MAX_RECORD_VALUES {
                        return Err(format!(
                            "the record at offset {off} expands to more than {MAX_RECORD_VALUES} values"
                        ));
                    }
                }
                Ok((p, h + 1, n))
            }
            _ => Err(format!("unknown data type {ty} at offset {off}")),
        }
    }
}

/// The country code of a record according to `schema` (`None` when it has none).
fn code_of_record<'a, S: AsRef<[u8]>>(
    r: &LookupResult<'a, S>,
    schema: Schema,
) -> Result<Option<&'a str>, MaxMindDbError> {
    use PathElement::Key as K;
    Ok(match schema {
        Schema::MaxMind => match r.decode_path::<&str>(&[K("country"), K("iso_code")])? {
            Some(c) => Some(c),
            None => r.decode_path::<&str>(&[K("registered_country"), K("iso_code")])?,
        },
        Schema::Flat => r.decode_path::<&str>(&[K("country_code")])?,
    })
}

fn country_of_record<S: AsRef<[u8]>>(r: &LookupResult<'_, S>, schema: Schema) -> Result<u8, MaxMindDbError> {
    Ok(match code_of_record(r, schema)? {
        Some(c) if !c.trim().is_empty() => countries::index_or_other(c.trim()),
        _ => GEO_UNKNOWN,
    })
}

/// Which schema a record follows, if it tells.
fn schema_of_record<S: AsRef<[u8]>>(r: &LookupResult<'_, S>) -> Option<Schema> {
    [Schema::MaxMind, Schema::Flat].into_iter().find(|&s| matches!(code_of_record(r, s), Ok(Some(_))))
}

/// Recognise the schema from the first distinct records of the database.
fn detect_schema<S: AsRef<[u8]>>(reader: &Reader<S>, path: &Path) -> Result<Schema> {
    let mut seen = HashSet::new();
    let mut sample: Option<String> = None;
    for r in reader.networks(WithinOptions::default()).map_err(|e| db_err(path, e))? {
        let r = r.map_err(|e| db_err(path, e))?;
        let Some(off) = r.offset() else { continue };
        if !seen.insert(off) {
            continue;
        }
        if let Some(s) = schema_of_record(&r) {
            return Ok(s);
        }
        if sample.is_none() {
            let net = r.network().map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
            let keys = match r.decode::<BTreeMap<String, serde::de::IgnoredAny>>() {
                Ok(Some(m)) => format!("has top-level keys [{}]", m.into_keys().collect::<Vec<_>>().join(", ")),
                Ok(None) => "has no data".into(),
                Err(e) => format!("is not a map ({e})"),
            };
            sample = Some(format!("the record for {net} {keys}"));
        }
        if seen.len() >= SCHEMA_SAMPLE {
            break;
        }
    }
    bail!(
        "{}: not a country database: database_type is {:?} and {}; expected MaxMind records with \
         country.iso_code (or registered_country.iso_code) or flat records with country_code",
        path.display(),
        reader.metadata.database_type,
        sample.unwrap_or_else(|| "it contains no records".into()),
    )
}

fn read_networks<S: AsRef<[u8]>>(reader: &Reader<S>, path: &Path) -> Result<GeoDb> {
    let schema = detect_schema(reader, path)?;
    let mut db = GeoDb {
        v4: Vec::new(),
        v6: Vec::new(),
        schema,
        path: path.to_path_buf(),
        database_type: reader.metadata.database_type.clone(),
    };
    // Records are shared by many networks: decode each one once.
    let mut cache: HashMap<usize, u8> = HashMap::new();
    let mut country = |r: &LookupResult<'_, S>| -> Result<u8> {
        let Some(off) = r.offset() else { return Ok(GEO_UNKNOWN) };
        if let Some(&c) = cache.get(&off) {
            return Ok(c);
        }
        let c = country_of_record(r, schema).map_err(|e| db_err(path, e))?;
        cache.insert(off, c);
        Ok(c)
    };

    // IPv4 through the reader's IPv4 path (in an IPv6 database: the subtree at ::/96).
    let all4 = "0.0.0.0/0".parse().expect("valid CIDR");
    for r in reader.within(all4, WithinOptions::default()).map_err(|e| db_err(path, e))? {
        let r = r.map_err(|e| db_err(path, e))?;
        let net = r.network().map_err(|e| db_err(path, e))?;
        let IpAddr::V4(a) = net.ip() else {
            bail!("{}: corrupt MaxMind DB: IPv6 network {net} in the IPv4 tree", path.display());
        };
        let c = country(&r)?;
        if c != GEO_UNKNOWN {
            db.v4.push((a.octets(), net.prefix(), c));
        }
    }

    if reader.metadata.ip_version == 6 {
        // The reader reports every network with the top 96 bits zero as IPv4, which is right
        // for the IPv4 subtree but hides a network that contains all of ::/96 (e.g. ::/64).
        // Only the network containing `::` can be like that: ask for it directly.
        let r = reader.lookup(IpAddr::V6(Ipv6Addr::UNSPECIFIED)).map_err(|e| db_err(path, e))?;
        let net = r.network().map_err(|e| db_err(path, e))?;
        if r.has_data() && net.prefix() < 96 {
            let c = country(&r)?;
            if c != GEO_UNKNOWN {
                db.v6.push(([0; 16], net.prefix(), c));
            }
        }
        // The iterator skips the alias subtrees that point at the IPv4 tree.
        for r in reader.networks(WithinOptions::default()).map_err(|e| db_err(path, e))? {
            let r = r.map_err(|e| db_err(path, e))?;
            let net = r.network().map_err(|e| db_err(path, e))?;
            let IpAddr::V6(a) = net.ip() else { continue };
            let a = a.octets();
            if a == [0; 16] && net.prefix() < 96 {
                continue; // the network containing `::`, handled above
            }
            if V6_ALIASES.iter().any(|(alias, len)| net.prefix() >= *len && mask16(a, *len) == *alias) {
                continue;
            }
            let c = country(&r)?;
            if c != GEO_UNKNOWN {
                db.v6.push((a, net.prefix(), c));
            }
        }
    }
    Ok(db)
}

// ---------------------------------------------------------------------------------------------
// Building the kernel tables (pure).
// ---------------------------------------------------------------------------------------------

fn mask4(a: [u8; 4], len: u8) -> u32 {
    let v = u32::from_be_bytes(a);
    if len == 0 {
        0
    } else {
        v & (u32::MAX << (32 - len.min(32) as u32))
    }
}

fn mask16(a: [u8; 16], len: u8) -> [u8; 16] {
    let v = u128::from_be_bytes(a);
    let m = if len == 0 { 0 } else { v & (u128::MAX << (128 - len.min(128) as u32)) };
    m.to_be_bytes()
}

/// Convert a database to the kernel tables of one generation.
///
/// Networks of /24 or shorter fill their /24 bytes directly. A /24 that contains longer
/// networks is marked [`GEO_SPLIT`]; the trie then holds that /24 with the country of the
/// shorter network covering it (when there is one) plus every longer network inside it, so a
/// /32 lookup in the trie always yields the most specific network. Overlapping input is
/// resolved in favour of the longer prefix, as an LPM lookup would.
pub fn build_tables(db: &GeoDb) -> GeoTables {
    let mut rows = vec![GeoRow { country: [GEO_UNKNOWN; 256] }; GEO_V4_ROWS as usize];
    let mut v4: Vec<(u32, u8, u8)> = db
        .v4
        .iter()
        .filter(|(_, _, c)| *c != GEO_UNKNOWN && *c != GEO_SPLIT)
        .map(|&(a, len, c)| (mask4(a, len), len.min(32), c))
        .collect();
    // Shorter prefixes first, so more specific ones overwrite them.
    v4.sort_by_key(|&(a, len, _)| (len, a));
    let mut long = Vec::new();
    for &(a, len, c) in &v4 {
        if len > 24 {
            long.push((a, len, c));
            continue;
        }
        let first = (a >> 8) as usize;
        let count = 1usize << (24 - len);
        if len >= 16 {
            let col = first & 0xff;
            rows[first >> 8].country[col..col + count].fill(c);
        } else {
            for r in &mut rows[first >> 8..(first + count) >> 8] {
                r.country = [c; 256];
            }
        }
    }
    // Split the /24s holding longer prefixes; remember what covered the rest of each.
    let mut split: BTreeMap<u32, u8> = BTreeMap::new();
    for &(a, _, _) in &long {
        let i = (a >> 8) as usize;
        let cell = &mut rows[i >> 8].country[i & 0xff];
        if *cell != GEO_SPLIT {
            split.insert(a & 0xffff_ff00, *cell);
            *cell = GEO_SPLIT;
        }
    }
    let mut net4: Vec<([u8; 4], u8, u32)> =
        split.iter().filter(|(_, &c)| c != GEO_UNKNOWN).map(|(&a, &c)| (a.to_be_bytes(), 24, c as u32)).collect();
    net4.extend(long.iter().map(|&(a, len, c)| (a.to_be_bytes(), len, c as u32)));

    let v6 = db
        .v6
        .iter()
        .filter(|(_, _, c)| *c != GEO_UNKNOWN && *c != GEO_SPLIT)
        .map(|&(a, len, c)| (mask16(a, len), len.min(128), c as u32))
        .collect();
    GeoTables { rows, net4, v6 }
}

/// Model of the kernel lookup (`country_of` in the XDP program) on built tables: the country
/// index the program would find for a source address `ip` (0 = unknown).
pub fn lookup_tables(t: &GeoTables, ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            let c = t.rows[u16::from_be_bytes([o[0], o[1]]) as usize].country[o[2] as usize];
            if c != GEO_SPLIT {
                return c;
            }
            t.net4
                .iter()
                .filter(|(n, len, _)| mask4(o, *len) == u32::from_be_bytes(*n))
                .max_by_key(|(_, len, _)| *len)
                .map_or(GEO_UNKNOWN, |(_, _, c)| *c as u8)
        }
        IpAddr::V6(a) => {
            let o = a.octets();
            t.v6.iter()
                .filter(|(n, len, _)| mask16(o, *len) == *n)
                .max_by_key(|(_, len, _)| *len)
                .map_or(GEO_UNKNOWN, |(_, _, c)| *c as u8)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policy.
// ---------------------------------------------------------------------------------------------

/// Check that every code of the policy is in the country table.
pub fn check_policy(p: &GeoPolicy) -> Result<()> {
    for (what, list) in [("allow", &p.allow), ("deny", &p.deny)] {
        for c in list {
            if countries::index_of(c.trim()).is_none() {
                bail!("geoip {what} list: {c:?} is not an ISO 3166-1 alpha-2 country code");
            }
        }
    }
    Ok(())
}

/// The `GEO_POLICY` row of one generation: 1 = drop, per country index.
///
/// With an allow list, every country not on it is dropped; countries on the deny list are
/// dropped in any case. Index 0 (not in the database) follows `unknown_drop` only. Codes not in
/// the country table are ignored (see [`check_policy`]).
pub fn policy_row(p: &GeoPolicy) -> [u32; 256] {
    let idx = |list: &Vec<String>| -> Vec<u8> { list.iter().filter_map(|c| countries::index_of(c.trim())).collect() };
    let allow = idx(&p.allow);
    let deny = idx(&p.deny);
    let mut row = [0u32; 256];
    for (i, v) in row.iter_mut().enumerate().skip(1) {
        let i = i as u8;
        let drop = (!allow.is_empty() && !allow.contains(&i)) || deny.contains(&i);
        *v = drop as u32;
    }
    row[GEO_UNKNOWN as usize] = p.unknown_drop as u32;
    row
}

// ---------------------------------------------------------------------------------------------
// Loading into the kernel.
// ---------------------------------------------------------------------------------------------

fn names(g: u32) -> (&'static str, &'static str, &'static str) {
    let g = (g & 1) as usize;
    (maps::GEO_V4[g], maps::GEO_NET4[g], maps::GEO_V6[g])
}

fn map_err(name: &str, e: impl fmt::Display) -> anyhow::Error {
    anyhow!("map {name}: {e}")
}

/// A database and policy prepared for the kernel (tables built, capacities and policy checked
/// by [`GeoPart::new`]).
#[derive(Clone)]
pub struct GeoPart {
    tables: GeoTables,
    row: [u32; 256],
    unknown_drop: bool,
    v4_networks: usize,
    v6_networks: usize,
}

impl GeoPart {
    pub fn new(db: &GeoDb, policy: &GeoPolicy) -> Result<GeoPart> {
        check_policy(policy)?;
        let tables = build_tables(db);
        let checks = [
            ("IPv4 prefixes inside split /24s", tables.net4.len(), GEO_NET_V4_CAPACITY, "GEO_NET4"),
            ("IPv6 networks", tables.v6.len(), GEO_V6_CAPACITY, "GEO_V6"),
        ];
        for (what, n, cap, map) in checks {
            if n > cap as usize {
                bail!("{}: {n} {what} exceed the capacity of {cap} ({map})", db.path.display());
            }
        }
        Ok(GeoPart {
            row: policy_row(policy),
            tables,
            unknown_drop: policy.unknown_drop,
            v4_networks: db.v4.len(),
            v6_networks: db.v6.len(),
        })
    }

    pub fn report(&self, load_secs: f64) -> GeoReport {
        GeoReport {
            v4_networks: self.v4_networks,
            v6_networks: self.v6_networks,
            split_24s: self.tables.split_24s(),
            load_secs,
            cleanup_secs: 0.0,
            generation: 0,
        }
    }
}

impl Part for GeoPart {
    fn name(&self) -> &'static str {
        "GeoIP tables"
    }
    fn live(&self, c: &Config) -> u32 {
        c.geo_gen
    }
    fn set_live(&self, c: &mut Config, g: u32) {
        c.geo_gen = g;
    }
    fn fill(&self, f: &mut Filter, g: u32) -> Result<()> {
        let (n4, nn4, n6) = names(g);
        let t = &self.tables;
        let keys: Vec<u32> = (0..GEO_V4_ROWS).collect();
        let map = f.map_mut(n4)?;
        bpfsys::update_batch(map_data(map).fd().as_fd(), &keys, &t.rows).map_err(|e| map_err(n4, e))?;
        let net4: Vec<([u8; 4], u32, u32)> = t.net4.iter().map(|(a, l, c)| (*a, *l as u32, *c)).collect();
        crate::trie::fill(f, nn4, &net4)?;
        let v6: Vec<([u8; 16], u32, u32)> = t.v6.iter().map(|(a, l, c)| (*a, *l as u32, *c)).collect();
        crate::trie::fill(f, n6, &v6)?;
        let g = g & 1;
        let pkeys: Vec<u32> = (g * GEO_COUNTRIES..(g + 1) * GEO_COUNTRIES).collect();
        let map = f.map_mut(maps::GEO_POLICY)?;
        bpfsys::update_batch(map_data(map).fd().as_fd(), &pkeys, &self.row).map_err(|e| map_err(maps::GEO_POLICY, e))
    }
    fn clear(&self, f: &mut Filter, g: u32) -> Result<()> {
        let (_, nn4, n6) = names(g);
        crate::trie::clear::<[u8; 4], u32>(f, nn4)?;
        crate::trie::clear::<[u8; 16], u32>(f, n6)?;
        Ok(())
    }
    fn configure(&self, c: &mut Config) {
        if self.unknown_drop {
            c.flags |= CFG_GEO_UNKNOWN_DROP;
        } else {
            c.flags &= !CFG_GEO_UNKNOWN_DROP;
        }
    }
}

/// Load `db` with `policy` into the inactive generation and make it live (see [`gen::swap`]):
/// capacities and the policy are checked before any map is touched, and any failure leaves the
/// live generation as it was. The config's [`CFG_GEO_UNKNOWN_DROP`] bit changes in the same
/// write that flips the generation.
pub fn load_geo(filter: &mut Filter, db: &GeoDb, policy: &GeoPolicy) -> Result<GeoReport> {
    let part = GeoPart::new(db, policy).with_context(|| "the filter keeps its previous GeoIP tables".to_string())?;
    let r = crate::gen::swap(filter, &[&part], |_| {})?;
    let mut report = part.report(r.load_secs);
    report.cleanup_secs = r.cleanup_secs;
    report.generation = filter.config()?.geo_gen;
    Ok(report)
}

fn trie_get<K: aya::Pod>(filter: &Filter, name: &str, key: Key<K>) -> Result<u32> {
    let t: LpmTrie<_, K, u32> = LpmTrie::try_from(filter.map(name)?).map_err(|e| map_err(name, e))?;
    match t.get(&key, 0) {
        Ok(v) => Ok(v),
        Err(MapError::KeyNotFound) => Ok(GEO_UNKNOWN as u32),
        Err(e) => Err(map_err(name, e)),
    }
}

/// Country index of `ip` in the live generation of the kernel tables, and whether the live
/// policy drops it (as the program decides for a source address when GeoIP applies).
pub fn lookup_live(filter: &Filter, ip: IpAddr) -> Result<(u8, bool)> {
    let g = filter.config()?.geo_gen & 1;
    let (n4, nn4, n6) = names(g);
    let country = match ip {
        IpAddr::V4(a) => {
            let o = a.octets();
            let rows: Array<_, GeoRow> = Array::try_from(filter.map(n4)?).map_err(|e| map_err(n4, e))?;
            let row = rows.get(&(u16::from_be_bytes([o[0], o[1]]) as u32), 0).map_err(|e| map_err(n4, e))?;
            match row.country[o[2] as usize] {
                GEO_SPLIT => trie_get(filter, nn4, Key::new(32, o))?,
                c => c as u32,
            }
        }
        IpAddr::V6(a) => trie_get(filter, n6, Key::new(128, a.octets()))?,
    };
    let policy: Array<_, u32> =
        Array::try_from(filter.map(maps::GEO_POLICY)?).map_err(|e| map_err(maps::GEO_POLICY, e))?;
    let drop = policy.get(&(g * GEO_COUNTRIES + (country & 0xff)), 0).map_err(|e| map_err(maps::GEO_POLICY, e))? != 0;
    Ok((country as u8, drop))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn db(v4: &[(&str, u8)], v6: &[(&str, u8)]) -> GeoDb {
        let parse4 = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            (a.parse::<Ipv4Addr>().unwrap().octets(), l.parse().unwrap())
        };
        let parse6 = |s: &str| {
            let (a, l) = s.split_once('/').unwrap();
            (a.parse::<Ipv6Addr>().unwrap().octets(), l.parse().unwrap())
        };
        GeoDb {
            v4: v4
                .iter()
                .map(|(n, c)| {
                    let (a, l) = parse4(n);
                    (a, l, *c)
                })
                .collect(),
            v6: v6
                .iter()
                .map(|(n, c)| {
                    let (a, l) = parse6(n);
                    (a, l, *c)
                })
                .collect(),
            schema: Schema::Flat,
            path: "mem".into(),
            database_type: "test".into(),
        }
    }

    #[test]
    fn tables_model_longest_prefix() {
        let d = db(
            &[
                ("10.0.0.0/8", 1),
                ("10.1.2.0/25", 2),
                ("10.1.2.200/32", 3),
                ("192.168.0.0/23", 4),
                ("172.16.5.64/26", 5),
            ],
            &[("2001:db8::/32", 6), ("2001:db8:1::/48", 7)],
        );
        let t = build_tables(&d);
        assert_eq!(t.split_24s(), 2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        for (a, want) in [
            ("10.9.9.9", 1),
            ("10.1.2.1", 2),
            ("10.1.2.130", 1),
            ("10.1.2.200", 3),
            ("10.1.3.1", 1),
            ("192.168.1.255", 4),
            ("192.168.2.0", 0),
            ("172.16.5.64", 5),
            ("172.16.5.63", 0),
            ("172.16.5.128", 0),
            ("11.0.0.0", 0),
            ("2001:db8:1::5", 7),
            ("2001:db8:2::5", 6),
            ("2001:db9::", 0),
        ] {
            assert_eq!(lookup_tables(&t, ip(a)), want, "{a}");
        }
        // The split /24 inside 10/8 carries 10/8's country; the one in unknown space does not.
        assert!(t.net4.contains(&([10, 1, 2, 0], 24, 1)));
        assert!(!t.net4.iter().any(|(a, l, _)| *a == [172, 16, 5, 0] && *l == 24));
    }

    #[test]
    fn policy_rows() {
        let fr = countries::index_of("FR").unwrap() as usize;
        let cn = countries::index_of("CN").unwrap() as usize;
        let p = GeoPolicy { allow: vec!["fr".into()], deny: vec![], unknown_drop: false };
        let r = policy_row(&p);
        assert_eq!((r[0], r[fr], r[cn]), (0, 0, 1));
        let p = GeoPolicy { allow: vec![], deny: vec!["CN".into()], unknown_drop: true };
        let r = policy_row(&p);
        assert_eq!((r[0], r[fr], r[cn]), (1, 0, 1));
        assert!(check_policy(&GeoPolicy { allow: vec!["XX".into()], ..Default::default() }).is_err());
    }

    /// Found by the `mmdb` fuzz target: a damaged database that passes `open`'s checks but
    /// makes the MaxMind reader index out of bounds. The guard turns the panic into an error
    /// naming the file (the controller keeps its last good tables).
    #[test]
    fn fuzz_reader_out_of_bounds_is_an_error() {
        let buf = include_bytes!("../testdata/fuzz-mmdb-reader-oob.mmdb");
        let e = read_db_bytes(Path::new("bad.mmdb"), buf).unwrap_err().to_string();
        assert!(e.starts_with("bad.mmdb: corrupt MaxMind DB"), "{e}");
    }
}
