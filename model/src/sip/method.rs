//! The SIP method of a message, from its first bytes (case-sensitive, as RFC 3261 methods are).
use xdp_common::*;

/// Request-line prefixes of the known methods, and the status-line prefix of responses.
const KNOWN: &[(&[u8], u8)] = &[
    (b"REGISTER ", METHOD_REGISTER),
    (b"SIP/2.0 ", METHOD_RESPONSE),
    (b"INVITE ", METHOD_INVITE),
    (b"OPTIONS ", METHOD_OPTIONS),
    (b"ACK ", METHOD_ACK),
    (b"BYE ", METHOD_BYE),
    (b"CANCEL ", METHOD_CANCEL),
    (b"SUBSCRIBE ", METHOD_SUBSCRIBE),
    (b"NOTIFY ", METHOD_NOTIFY),
    (b"MESSAGE ", METHOD_MESSAGE),
    (b"INFO ", METHOD_INFO),
    (b"PRACK ", METHOD_PRACK),
    (b"UPDATE ", METHOD_UPDATE),
    (b"REFER ", METHOD_REFER),
    (b"PUBLISH ", METHOD_PUBLISH),
];

/// Method of a payload (the first `SIP_SCAN_MAX` bytes, at least 8).
pub fn method_of(payload: &[u8]) -> u8 {
    if let Some((_, m)) = KNOWN.iter().find(|(p, _)| payload.starts_with(p)) {
        return *m;
    }
    if payload.len() >= 3 && payload[..3].iter().all(|c| c.is_ascii_uppercase()) {
        METHOD_OTHER
    } else {
        METHOD_NONE
    }
}
