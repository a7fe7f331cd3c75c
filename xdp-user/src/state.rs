//! Controller state outside bpffs: the running daemon's description (`state.json`), the
//! single-controller lock, runtime edits made from the CLI (`runtime.json`), and the event log
//! that `sipshield events --follow` reads.
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Where state lives: `$SIPSHIELD_STATE_DIR` or `/run/sipshield`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("SIPSHIELD_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/sipshield"))
}

/// Pin directory: `$SIPSHIELD_PIN_DIR` or `/sys/fs/bpf/sipshield`.
pub fn pin_dir() -> PathBuf {
    std::env::var_os("SIPSHIELD_PIN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(crate::filter::PIN_DIR))
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct IfaceState {
    pub name: String,
    pub ifindex: u32,
    pub mode: String,
    pub slot: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ListState {
    pub entries: usize,
    pub last_load_unix: f64,
    pub load_secs: f64,
    pub errors: u64,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct DaemonState {
    pub pid: u32,
    pub config: PathBuf,
    pub started_unix: f64,
    pub interfaces: Vec<IfaceState>,
    pub lists: BTreeMap<String, ListState>,
    pub program_id: Option<u32>,
}

impl DaemonState {
    pub fn path() -> PathBuf {
        state_dir().join("state.json")
    }
    pub fn load() -> Option<DaemonState> {
        let text = std::fs::read_to_string(Self::path()).ok()?;
        serde_json::from_str(&text).ok()
    }
    pub fn save(&self) -> Result<()> {
        let dir = state_dir();
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path())?;
        Ok(())
    }
    /// Is the controller that wrote this state still alive?
    pub fn running(&self) -> bool {
        // SAFETY: signal 0 only checks for existence.
        self.pid != 0 && unsafe { libc::kill(self.pid as i32, 0) } == 0
    }
    pub fn iface_of_slot(&self, slot: u32) -> Option<&IfaceState> {
        self.interfaces.iter().find(|i| i.slot == slot)
    }
}

/// Exclusive lock held by the running controller.
pub struct Lock {
    _file: File,
}

pub fn lock() -> Result<Lock> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("lock");
    let mut file = std::fs::OpenOptions::new().create(true).truncate(false).read(true).write(true).open(&path)?;
    // SAFETY: valid fd.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let other = std::fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another sipshield controller is already running on this host (pid {}); stop it first or use the CLI verbs to change it",
            other.trim()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(Lock { _file: file })
}

/// CLI edits that must survive config reloads and restarts.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct Runtime {
    #[serde(default)]
    pub allow: Vec<String>,
    /// (header name, text)
    #[serde(default)]
    pub scanners_add: Vec<(String, String)>,
    #[serde(default)]
    pub scanners_del: Vec<(String, String)>,
}

impl Runtime {
    fn path() -> PathBuf {
        state_dir().join("runtime.json")
    }
    pub fn load() -> Runtime {
        std::fs::read_to_string(Self::path()).ok().and_then(|t| serde_json::from_str(&t).ok()).unwrap_or_default()
    }
    pub fn save(&self) -> Result<()> {
        std::fs::create_dir_all(state_dir())?;
        std::fs::write(Self::path(), serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }

    /// Add the CLI's allowlist entries (`sipshield allow add`) to `list`.
    pub fn add_allow(&self, list: &mut crate::lists::IpList) {
        for e in &self.allow {
            if let Some(n) = crate::lists::parse_entry(e) {
                list.insert(n);
            }
        }
    }
}

pub fn events_log() -> PathBuf {
    state_dir().join("events.jsonl")
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

pub fn exists(p: &Path) -> bool {
    p.exists()
}
