//! sipshield controller library: loading the XDP program, filling its maps from the
//! configuration, editing a running filter through pinned maps, stats, replay and events.
pub mod bpfsys;
pub mod config;
pub mod countries;
pub mod lists;
pub mod packet;
pub mod filter;
pub mod sys;
