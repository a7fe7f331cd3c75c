//! The config loader: any text is a config or an error naming the file, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let path = std::path::Path::new("fuzz.toml");
    if let Err(e) = sipshield::config::Config::parse(text, path) {
        assert!(format!("{e:#}").contains("fuzz.toml"), "error without the file name: {e:#}");
    }
});
