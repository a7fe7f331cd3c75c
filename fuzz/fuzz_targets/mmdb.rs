//! The GeoIP database checks: `open`'s structure checks must catch every damage before the
//! MaxMind reader indexes out of bounds. The reader's panics are caught by the guard in the
//! product, but under libFuzzer any panic aborts: a finding here is a check the guard had to
//! stand in for.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = sipshield::geo::read_db_bytes(std::path::Path::new("fuzz.mmdb"), data);
});
