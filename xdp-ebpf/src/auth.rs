//! Ingress bookkeeping for the egress program: a SIP request that carries `Authorization` or
//! `Proxy-Authorization` is recorded (client address, Call-ID hash, CSeq) in the LRU hash
//! `AUTH_REQ`, so the egress program can tell a refused credential (401/407/403 to it) from the
//! normal digest challenge (401/407 to a request without credentials, never recorded).
// Map keys and values are passed by reference on purpose (see `reputation`).
#![allow(clippy::needless_borrows_for_generic_args)]
use aya_ebpf::bindings::BPF_NOEXIST;
use xdp_common::*;

use crate::maps::{AUTH_REQ, AUTH_SCRATCH, AUTH_STATS};
use crate::parse::Pkt;
use crate::sip::fields::sip_fields;

/// Count one `AUTHSTAT_*` event.
#[inline(always)]
pub fn authstat(idx: u32) {
    if let Some(c) = AUTH_STATS.get_ptr_mut(idx) {
        unsafe { *c += 1 };
    }
}

/// Record the request of `method` (its `len` payload bytes are in `SCRATCH`) when it carries
/// credentials. A retransmission (same key) keeps the first record (`BPF_NOEXIST`), so an
/// answer already counted is not counted again.
#[inline(always)]
pub fn record(pkt: &Pkt, method: u8, len: u32, now: u64) {
    if method == METHOD_NONE || method == METHOD_RESPONSE || method == METHOD_ACK || len == 0 {
        return;
    }
    if sip_fields(len) == 0 {
        return;
    }
    let f = match AUTH_SCRATCH.get(0) {
        Some(f) => f,
        None => return,
    };
    if f.flags & SF_CREDENTIALS == 0 || f.callid == 0 || f.cseq == 0 {
        return;
    }
    let key = AuthReqKey { addr: pkt.src, callid: f.callid, cseq: f.cseq, family: pkt.family as u32 };
    let val = AuthReq { seen_ns: now, state: AUTH_REQ_OPEN, method: method as u32 };
    if AUTH_REQ.insert(&key, &val, BPF_NOEXIST as u64).is_ok() {
        authstat(AUTHSTAT_REQ_RECORDED);
    }
}
