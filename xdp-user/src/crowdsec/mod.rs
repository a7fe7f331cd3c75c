//! CrowdSec, both ways: sipshield as a **bouncer** (decisions of a CrowdSec Local API become
//! timed bans and blacklisted ranges) and as a **watcher** (every ban the filter makes itself is
//! pushed to the LAPI as an alert, so every other bouncer enforces it too).
//!
//! - [`config`]: the `[crowdsec]` section and its secrets (never logged, never in `status`);
//! - [`decisions`]: the decision stream parsed and the set of decisions held, turned into
//!   changes of the filter (applied by the worker, the filter's one writer);
//! - [`lapi`]: the HTTP client, the puller thread and the alert reporter thread.
pub mod config;
pub mod decisions;
pub mod lapi;

pub use config::{CrowdsecCfg, Secret};
