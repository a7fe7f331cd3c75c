//! The userspace model of the kernel's SIP scan on any payload, with the default signatures:
//! no panic, and a match only on a request, naming a signature of the set.
#![no_main]
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sipshield::sig::Signature;
use xdp_common::{METHOD_NONE, METHOD_RESPONSE};

fn sigs() -> &'static [Signature] {
    static SIGS: OnceLock<Vec<Signature>> = OnceLock::new();
    SIGS.get_or_init(|| sipshield::sig::from_config(&Default::default()).expect("default signatures"))
}

fuzz_target!(|data: &[u8]| {
    let (method, sig) = sipshield_tests::model::model_scan(data, sigs());
    if let Some(i) = sig {
        assert!(i < sigs().len());
        assert!(method != METHOD_NONE && method != METHOD_RESPONSE);
    }
});
