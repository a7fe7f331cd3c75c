//! The capture reader: any bytes are frames, then at most one error naming its packet index
//! and byte offset; never a panic, and the frames' offsets grow.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(cap) = sipshield::replay::capture::Capture::new("fuzz.cap", data) else { return };
    let mut last = None;
    for (i, f) in cap.enumerate() {
        match f {
            Ok(f) => {
                assert_eq!(f.index, i);
                assert!(last.is_none_or(|o| f.offset > o) && f.offset <= data.len() as u64);
                assert!(f.wire_len as usize >= f.eth.len());
                last = Some(f.offset);
            }
            Err(e) => {
                assert_eq!(e.index, i);
                assert!(e.offset <= data.len() as u64);
            }
        }
    }
});
