//! The SIP method of a message, from its first bytes.
use xdp_common::*;

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
    } else {
        // Another token of three or more upper-case letters: an unknown request method.
        let mut i = 0;
        while i < 3 {
            let c = (w0 >> (8 * i)) as u8;
            if !c.is_ascii_uppercase() {
                return METHOD_NONE;
            }
            i += 1;
        }
        METHOD_OTHER
    }
}
