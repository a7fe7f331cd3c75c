//! SIP inspection, as the kernel's `sip/` does it: packets to a protected port get their
//! request method read from the first bytes (`method`) and, for requests, their header lines
//! scanned for scanner signatures (`scan`), over at most the first `SIP_SCAN_MAX` bytes of the
//! L4 payload.
pub mod method;
pub mod scan;

use xdp_common::{METHOD_NONE, METHOD_RESPONSE, SIP_SCAN_MAX};

use crate::parse::Pkt;
use crate::Policy;

/// Bytes a payload needs before it is inspected at all (one word).
const MIN_PAYLOAD: usize = 8;

pub fn is_sip_port(p: &Policy, port: u16) -> bool {
    p.sip_ports.contains(&port)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipResult {
    /// `METHOD_*`.
    pub method: u8,
    /// Index (signature id) of the matched signature.
    pub sig: Option<usize>,
}

/// Inspect the L4 payload of `pkt` in `frame`.
pub fn inspect(p: &Policy, frame: &[u8], pkt: &Pkt) -> SipResult {
    let mut r = SipResult { method: METHOD_NONE, sig: None };
    if pkt.payload_off + MIN_PAYLOAD > frame.len() {
        return r;
    }
    let end = frame.len().min(pkt.payload_off + SIP_SCAN_MAX as usize);
    let payload = &frame[pkt.payload_off..end];
    r.method = method::method_of(payload);
    if r.method == METHOD_NONE || r.method == METHOD_RESPONSE || !p.scanners_enabled || p.signatures.is_empty() {
        return r;
    }
    r.sig = scan::scan(payload, &p.signatures);
    r
}
