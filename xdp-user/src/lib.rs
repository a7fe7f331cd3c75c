//! sipshield controller library: loading the XDP program, filling its maps from the
//! configuration, editing a running filter through pinned maps, stats, replay and events.
pub mod apply;
pub mod bpfsys;
pub mod cli;
pub mod config;
pub mod countries;
pub mod daemon;
pub mod events;
pub mod filter;
pub mod geo;
pub mod lists;
pub mod metrics;
pub mod replay;
pub mod sig;
pub mod state;
pub mod sys;
