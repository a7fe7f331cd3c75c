//! The one implementation of filling and emptying LPM tries (lists, GeoIP, signatures): batched
//! where the kernel allows it, one syscall per key where it does not.
use std::os::fd::AsFd;

use anyhow::{anyhow, Result};
use aya::maps::lpm_trie::Key;
use aya::maps::{LpmTrie, MapError};

use crate::bpfsys;
use crate::filter::{map_data, Filter};

fn map_err(name: &str, e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("map {name}: {e}")
}

/// Is this the kernel saying "no batch operation for this map type"?
fn unsupported(e: &std::io::Error) -> bool {
    // EINVAL / EOPNOTSUPP / the kernel-internal ENOTSUPP (524).
    matches!(e.raw_os_error(), Some(libc::EINVAL | libc::EOPNOTSUPP | 524))
}

/// Remove every entry of the LPM trie `name` (key data `K`, values `V`); returns how many.
pub fn clear<K: aya::Pod, V: aya::Pod>(filter: &mut Filter, name: &str) -> Result<usize> {
    let map = filter.map_mut(name)?;
    let keys: Vec<Key<K>> = {
        let t: LpmTrie<_, K, V> = LpmTrie::try_from(&*map).map_err(|e| map_err(name, e))?;
        t.keys().collect::<Result<_, _>>().map_err(|e| map_err(name, e))?
    };
    if keys.is_empty() {
        return Ok(0);
    }
    if let Err(e) = bpfsys::delete_batch(map_data(map).fd().as_fd(), &keys) {
        if !unsupported(&e) && e.raw_os_error() != Some(libc::ENOENT) {
            return Err(map_err(name, e));
        }
        // No batch deletion for tries here (or a key vanished meanwhile): one by one.
        let mut t: LpmTrie<_, K, V> = LpmTrie::try_from(map).map_err(|e| map_err(name, e))?;
        for k in &keys {
            match t.remove(k) {
                Ok(()) | Err(MapError::KeyNotFound) => {}
                Err(e) => return Err(map_err(name, e)),
            }
        }
    }
    Ok(keys.len())
}

/// Insert `entries` (address or key data, prefix length in bits, value) into the trie `name`.
pub fn fill<K: aya::Pod, V: aya::Pod>(filter: &mut Filter, name: &str, entries: &[(K, u32, V)]) -> Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let keys: Vec<Key<K>> = entries.iter().map(|(a, len, _)| Key::new(*len, *a)).collect();
    let values: Vec<V> = entries.iter().map(|e| e.2).collect();
    let map = filter.map_mut(name)?;
    if let Err(e) = bpfsys::update_batch(map_data(map).fd().as_fd(), &keys, &values) {
        if !unsupported(&e) {
            return Err(map_err(name, e));
        }
        let mut t: LpmTrie<_, K, V> = LpmTrie::try_from(map).map_err(|e| map_err(name, e))?;
        for (k, v) in keys.iter().zip(&values) {
            t.insert(k, v, 0).map_err(|e| map_err(name, e))?;
        }
    }
    Ok(())
}

/// Number of entries of the trie `name`.
pub fn len<K: aya::Pod, V: aya::Pod>(filter: &Filter, name: &str) -> Result<usize> {
    let t: LpmTrie<_, K, V> = LpmTrie::try_from(filter.map(name)?).map_err(|e| map_err(name, e))?;
    Ok(t.keys().count())
}
