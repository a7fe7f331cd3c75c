//! The GeoIP database loader on any bytes: a database or an error naming the file, never a
//! panic that escapes. `open`'s structure checks are the first line; the guard around the
//! MaxMind reader (which indexes without bounds checks of its own) turns what they miss into an
//! error. libFuzzer's panic hook aborts on any panic, caught or not, so the target installs a
//! quiet one: the property checked is the loader's contract. (A run with the hook left in place
//! finds the damage the checks miss: `fuzz-mmdb-reader-oob.mmdb` in xdp-user/testdata.)
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    if let Err(e) = sipshield::geo::read_db_bytes(std::path::Path::new("fuzz.mmdb"), data) {
        assert!(e.to_string().starts_with("fuzz.mmdb: "), "error without the file name: {e}");
    }
});
