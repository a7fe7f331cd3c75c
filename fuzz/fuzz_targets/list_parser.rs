//! The blacklist/allowlist parser: any text is parsed or refused with an error, never a panic;
//! what it accepts, every entry of, is contained.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for skip_invalid in [false, true] {
        if let Ok(list) = sipshield::lists::parse_list(text, "fuzz", skip_invalid) {
            for line in text.lines() {
                if let Some(net) = sipshield::lists::parse_entry(line) {
                    assert!(list.contains(net.network()), "{line:?} parsed but not in the list");
                }
            }
        }
    }
    let _ = sipshield::lists::parse_entry(text);
});
