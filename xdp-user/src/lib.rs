//! sipshield controller library: loading the XDP program, committing a configuration to its
//! maps in one generation swap, editing a running filter, stats, replay and events.
//!
//! Layout: [`filter`] (load/adopt, clock, writer lock, counters), [`gen`] (the one generation
//! swap) with its parts in [`addrlist`], [`sig`], [`geo`] and [`policy`] (SIP ports and rate
//! rules, and the all-or-nothing commit of a whole configuration); [`daemon`] (the controller
//! process), [`control`] (its socket), [`edits`] (runtime edits), [`state`] (durable files).
pub mod addrlist;
pub mod audit;
pub mod bans;
pub mod bpfsys;
pub mod check;
pub mod config;
pub mod control;
pub mod countries;
pub mod crowdsec;
pub mod daemon;
pub mod edits;
pub mod events;
pub mod filter;
pub mod gen;
pub mod geo;
pub mod lists;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod portpolicy;
pub mod replay;
pub mod sig;
pub mod state;
pub mod sys;
pub mod trie;
