//! The SIP method of a message, from its first bytes; and, for a method we do not know, the
//! check that the first line is a request line (RFC 3261 extension methods).
use xdp_common::*;

use super::scan::{byte_at, clamp, first_flagged, load_at};
use super::{lit, mask};

/// Method from the first bytes of the payload (two words, little-endian).
#[inline(always)]
pub fn method_of(w0: u64, w1: u64) -> u8 {
    let b8 = w1 & 0xff;
    if w0 == lit(b"REGISTER") && b8 == b' ' as u64 {
        METHOD_REGISTER
    } else if w0 == lit(b"SIP/2.0 ") {
        METHOD_RESPONSE
    } else if w0 & mask(7) == lit(b"INVITE ") {
        METHOD_INVITE
    } else if w0 == lit(b"OPTIONS ") {
        METHOD_OPTIONS
    } else if w0 & mask(4) == lit(b"ACK ") {
        METHOD_ACK
    } else if w0 & mask(4) == lit(b"BYE ") {
        METHOD_BYE
    } else if w0 & mask(7) == lit(b"CANCEL ") {
        METHOD_CANCEL
    } else if w0 == lit(b"SUBSCRIB") && w1 & mask(2) == lit(b"E ") {
        METHOD_SUBSCRIBE
    } else if w0 & mask(7) == lit(b"NOTIFY ") {
        METHOD_NOTIFY
    } else if w0 == lit(b"MESSAGE ") {
        METHOD_MESSAGE
    } else if w0 & mask(5) == lit(b"INFO ") {
        METHOD_INFO
    } else if w0 & mask(6) == lit(b"PRACK ") {
        METHOD_PRACK
    } else if w0 & mask(7) == lit(b"UPDATE ") {
        METHOD_UPDATE
    } else if w0 & mask(6) == lit(b"REFER ") {
        METHOD_REFER
    } else if w0 == lit(b"PUBLISH ") {
        METHOD_PUBLISH
    } else if is_token_char(w0 as u8) {
        // Maybe an extension method: `is_request_line` decides.
        METHOD_OTHER
    } else {
        METHOD_NONE
    }
}

/// RFC 3261 `token` characters: alphanumerics and `-.!%*_+`'~`.
#[inline(always)]
fn is_token_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~')
}

/// Is the first line of the copied payload (`len` bytes in `buf`) a request line: a method
/// token, SP, a Request-URI, SP, `SIP/2.0`, then CRLF or LF (RFC 3261 section 7.1)? Any token
/// is a method: extension methods get the same inspection as the ones we know. The line must
/// end inside the copied bytes.
#[inline(always)]
pub fn is_request_line(buf: *const u64, len: usize) -> bool {
    // The end of the line: the first '\n', word by word.
    let mut eol = usize::MAX;
    let mut i = 0usize;
    while i < SIP_SCAN_MAX as usize / 8 {
        if i * 8 >= len {
            break;
        }
        let m = bytes_eq(unsafe { *buf.add(i) }, b'\n');
        if m != 0 {
            eol = i * 8 + first_flagged(m);
            break;
        }
        i += 1;
    }
    if eol >= len {
        return false;
    }
    // Laundered (see `clamp`): the line end of every exit of the search is then the same
    // bounded unknown to the verifier, which checks what follows once instead of once per
    // word the search can stop at.
    let eol = clamp(buf, eol);
    let end = clamp(buf, if eol > 0 && byte_at(buf, eol - 1) == b'\r' { eol - 1 } else { eol });
    // The shortest request line: "M u SIP/2.0".
    if end < 11 || load_at(buf, end - 8) != lit(b" SIP/2.0") {
        return false;
    }
    // The method: token characters up to the first SP.
    let mut k = 0usize;
    while k < SIP_METHOD_MAX {
        let c = byte_at(buf, k);
        if c == b' ' {
            break;
        }
        if !is_token_char(c) {
            return false;
        }
        k += 1;
    }
    if k >= SIP_METHOD_MAX {
        return false;
    }
    // A Request-URI between the two spaces.
    k >= 1 && k + 1 < end - 8 && byte_at(buf, k + 1) != b' '
}
