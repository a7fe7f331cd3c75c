//! The SIP method of a message, from its first bytes (case-sensitive, as RFC 3261 methods are):
//! the methods we know by their prefix, a response by its status line, and any other request
//! line (`token SP Request-URI SP SIP/2.0`, ending inside the inspected bytes) as an extension
//! method (`METHOD_OTHER`).
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
    if is_request_line(payload) {
        METHOD_OTHER
    } else {
        METHOD_NONE
    }
}

/// RFC 3261 `token` characters.
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&c)
}

/// Is the first line `token SP Request-URI SP "SIP/2.0"` (CRLF or LF), with a Request-URI
/// that does not start with a space?
pub fn is_request_line(payload: &[u8]) -> bool {
    let Some(eol) = payload.iter().position(|c| *c == b'\n') else { return false };
    let line = payload[..eol].strip_suffix(b"\r").unwrap_or(&payload[..eol]);
    let Some(rest) = line.strip_suffix(b" SIP/2.0") else { return false };
    let Some(sp) = rest.iter().position(|c| *c == b' ') else { return false };
    let (method, uri) = (&rest[..sp], &rest[sp + 1..]);
    !method.is_empty()
        && method.len() < xdp_common::SIP_METHOD_MAX
        && method.iter().all(|c| is_token_char(*c))
        && uri.first().is_some_and(|c| *c != b' ')
}
