//! Controller state outside bpffs: the running daemon's description (`state.json`), the
//! single-controller lock, runtime edits made from the CLI (`runtime.json`), and the event log
//! that `sipshield events --follow` reads.
//!
//! Every file is written atomically (temporary file in the same directory, fsync, rename, fsync
//! of the directory): a crash or a full disk leaves either the old or the new content, never a
//! truncated file. A file that exists but cannot be parsed is an error naming it, never read
//! as "empty".
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Where state lives: `$SIPSHIELD_STATE_DIR` or `/run/sipshield`.
pub fn state_dir() -> PathBuf {
    std::env::var_os("SIPSHIELD_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/run/sipshield"))
}

/// Pin directory: `$SIPSHIELD_PIN_DIR` or `/sys/fs/bpf/sipshield`.
pub fn pin_dir() -> PathBuf {
    std::env::var_os("SIPSHIELD_PIN_DIR").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(crate::filter::PIN_DIR))
}

/// Write `bytes` to `path` atomically: a reader (or the next start after a crash or a full
/// disk) sees the old content or the new one.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().ok_or_else(|| anyhow!("{}: no parent directory", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let res = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if let Err(e) = res {
        let _ = std::fs::remove_file(&tmp);
        bail!("{}: cannot write: {e} (the previous content is unchanged)", path.display());
    }
    Ok(())
}

/// Read a JSON state file: `Ok(None)` when it does not exist, an error naming the file when it
/// cannot be read or parsed.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => bail!("{}: cannot read: {e}", path.display()),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| anyhow!("{}: corrupt ({e})", path.display()))
}

/// Move a corrupt file out of the way, keeping it for inspection; returns where it went.
pub fn move_aside(path: &Path) -> Result<PathBuf> {
    let aside = path.with_extension(format!("corrupt-{}", unix_now() as u64));
    std::fs::rename(path, &aside).with_context(|| format!("moving {} aside", path.display()))?;
    Ok(aside)
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct IfaceState {
    pub name: String,
    pub ifindex: u32,
    pub mode: String,
    pub slot: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct ListState {
    pub entries: usize,
    pub last_load_unix: f64,
    pub load_secs: f64,
    pub errors: u64,
    pub last_error: Option<String>,
}

impl ListState {
    pub fn loaded(entries: usize, load_secs: f64) -> ListState {
        ListState { entries, last_load_unix: unix_now(), load_secs, errors: 0, last_error: None }
    }
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

    /// The last state written by a controller. `state.json` only describes (it holds no operator
    /// data and is rewritten by every controller): a corrupt one is moved aside with a warning.
    pub fn load() -> Option<DaemonState> {
        let path = Self::path();
        match read_json(&path) {
            Ok(s) => s,
            Err(e) => {
                match move_aside(&path) {
                    Ok(to) => log::warn!("{e:#}; moved to {}", to.display()),
                    Err(m) => log::warn!("{e:#}; {m:#}"),
                }
                None
            }
        }
    }

    pub fn save(&self) -> Result<()> {
        write_atomic(&Self::path(), &serde_json::to_vec_pretty(self)?)
    }

    pub fn iface_of_slot(&self, slot: u32) -> Option<&IfaceState> {
        self.interfaces.iter().find(|i| i.slot == slot)
    }
}

/// Exclusive lock held by the running controller (`lock` in the state directory); released
/// when dropped or when the process dies.
pub struct Lock {
    _file: nix::fcntl::Flock<File>,
}

/// Open (creating it) the lock file `name` in the state directory, which the controller (even
/// under systemd's PrivateTmp) and the CLI share.
pub fn open_lock_file(name: &str) -> Result<(File, PathBuf)> {
    let dir = state_dir();
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open the lock file", path.display()))?;
    Ok((file, path))
}

pub fn lock() -> Result<Lock> {
    let (file, path) = open_lock_file("lock")?;
    let mut file = match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
        Ok(f) => f,
        Err(_) => {
            let other = std::fs::read_to_string(&path).unwrap_or_default();
            bail!(
                "another sipshield controller is already running on this host (pid {}); stop it first or use the CLI verbs to change it",
                other.trim()
            );
        }
    };
    // The pid is informative only (the lock is what counts): a full disk must not stop a start.
    let _ = file.set_len(0).and_then(|_| write!(file, "{}", std::process::id()));
    Ok(Lock { _file: file })
}

/// Is a controller holding the lock right now (without taking it)?
pub fn controller_lock_held() -> bool {
    let path = state_dir().join("lock");
    let Ok(file) = std::fs::OpenOptions::new().read(true).open(&path) else { return false };
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockSharedNonblock).is_err()
}

/// CLI edits that must survive config reloads and restarts.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq, Eq)]
pub struct Runtime {
    /// Allowlist entries added with `sipshield allow add`, canonical text.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Signatures added with `sipshield scanners add`: (header name, text).
    #[serde(default)]
    pub scanners_add: Vec<(String, String)>,
    /// Signatures of the configuration switched off with `sipshield scanners del`: an explicit,
    /// persistent exclusion listed by `sipshield scanners list`.
    #[serde(default)]
    pub scanners_del: Vec<(String, String)>,
    /// `sipshield dry-run on|off`: overrides the config's `dry_run` until `dry-run config`.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Source group members added with `sipshield group add NAME ADDR`: canonical text by group.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub groups: std::collections::BTreeMap<String, Vec<String>>,
}

impl Runtime {
    pub fn path() -> PathBuf {
        state_dir().join("runtime.json")
    }

    /// The operator's CLI edits. A corrupt file is an error naming it: starting without the
    /// edits would silently drop allowlist entries the operator relies on.
    pub fn load() -> Result<Runtime> {
        let path = Self::path();
        match read_json(&path) {
            Ok(r) => Ok(r.unwrap_or_default()),
            Err(e) => Err(e.context(format!(
                "the CLI edits (allowlist, scanners, dry-run) cannot be read; fix the file, or move it aside \
                 (mv {p} {p}.bad) to continue without them",
                p = path.display()
            ))),
        }
    }

    pub fn save(&self) -> Result<()> {
        write_atomic(&Self::path(), &serde_json::to_vec_pretty(self)?)
    }

    /// The CLI's members of group `name`.
    pub fn group_list(&self, name: &str) -> crate::lists::IpList {
        let mut list = crate::lists::IpList::default();
        for e in self.groups.get(name).into_iter().flatten() {
            if let Some(n) = crate::lists::parse_entry(e) {
                list.insert(n);
            }
        }
        list
    }

    /// The CLI's allowlist entries.
    pub fn allow_list(&self) -> crate::lists::IpList {
        let mut list = crate::lists::IpList::default();
        for e in &self.allow {
            if let Some(n) = crate::lists::parse_entry(e) {
                list.insert(n);
            }
        }
        list
    }
}

pub fn events_log() -> PathBuf {
    state_dir().join("events.jsonl")
}

pub fn control_socket() -> PathBuf {
    state_dir().join("control.sock")
}

pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_and_corrupt_read() {
        let dir = std::env::temp_dir().join(format!("sipshield-state-{}", std::process::id()));
        let p = dir.join("x.json");
        write_atomic(&p, b"{\"allow\":[\"198.51.100.1\"]}").unwrap();
        let r: Runtime = read_json(&p).unwrap().unwrap();
        assert_eq!(r.allow, vec!["198.51.100.1"]);
        std::fs::write(&p, b"{\"allow\":[\"198.51").unwrap();
        let e = read_json::<Runtime>(&p).unwrap_err().to_string();
        assert!(e.contains("x.json") && e.contains("corrupt"), "{e}");
        assert!(read_json::<Runtime>(&dir.join("missing.json")).unwrap().is_none());
        let aside = move_aside(&p).unwrap();
        assert!(aside.exists() && !p.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temporary() {
        let dir = std::env::temp_dir().join(format!("sipshield-state-w-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier run with the same pid
        let p = dir.join("sub").join("state.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, ["state.json"]);
        // A directory in the way: the write fails, names the file, leaves nothing behind.
        let blocked = dir.join("blocked");
        std::fs::create_dir_all(blocked.join("x")).unwrap();
        let e = write_atomic(&blocked, b"x").unwrap_err().to_string();
        assert!(e.contains("blocked: cannot write") && e.contains("unchanged"), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2, "no temporary file left");
        let e = read_json::<Runtime>(&blocked).unwrap_err().to_string();
        assert!(e.contains("blocked: cannot read"), "{e}");
        assert!(write_atomic(Path::new("/"), b"x").is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn list_state_and_interfaces() {
        let t0 = unix_now();
        assert!(t0 > 1.6e9, "{t0}");
        let l = ListState::loaded(42, 0.5);
        assert_eq!((l.entries, l.load_secs, l.errors, l.last_error), (42, 0.5, 0, None));
        assert!(l.last_load_unix >= t0 && l.last_load_unix <= unix_now());
        let iface = |name: &str, slot| IfaceState { name: name.into(), ifindex: slot + 10, mode: "skb".into(), slot };
        let st = DaemonState { interfaces: vec![iface("a", 1), iface("b", 2)], ..Default::default() };
        assert_eq!(st.iface_of_slot(2).map(|i| i.name.as_str()), Some("b"));
        assert!(st.iface_of_slot(0).is_none());
    }

    #[test]
    fn runtime_allow_list_parses_canonical_entries() {
        let rt = Runtime {
            allow: vec!["198.51.100.7".into(), "203.0.113.0/24".into(), "::ffff:192.0.2.1".into(), "bogus".into()],
            ..Default::default()
        };
        let l = rt.allow_list();
        assert_eq!((l.v4.len(), l.net4.len(), l.v6.len(), l.net6.len()), (2, 1, 0, 0));
        assert!(l.contains("192.0.2.1".parse().unwrap()) && l.contains("203.0.113.200".parse().unwrap()));
        // Missing fields of an older runtime.json take their defaults.
        let old: Runtime = serde_json::from_str("{\"allow\": [\"198.51.100.7\"]}").unwrap();
        assert_eq!(old, Runtime { allow: vec!["198.51.100.7".into()], ..Default::default() });
    }

    /// Everything that depends on `SIPSHIELD_STATE_DIR` / `SIPSHIELD_PIN_DIR`, in one test (the
    /// environment is process-wide).
    #[test]
    fn state_directory_files_and_the_controller_lock() {
        let dir = std::env::temp_dir().join(format!("sipshield-state-env-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier run with the same pid
        std::env::set_var("SIPSHIELD_STATE_DIR", &dir);
        std::env::set_var("SIPSHIELD_PIN_DIR", dir.join("pins"));
        assert_eq!(state_dir(), dir);
        assert_eq!(pin_dir(), dir.join("pins"));
        assert_eq!((events_log(), control_socket()), (dir.join("events.jsonl"), dir.join("control.sock")));
        assert_eq!((DaemonState::path(), Runtime::path()), (dir.join("state.json"), dir.join("runtime.json")));

        // runtime.json: absent = no edits; saved and read back; corrupt = an error naming it.
        assert_eq!(Runtime::load().unwrap(), Runtime::default());
        let rt = Runtime {
            allow: vec!["198.51.100.7".into()],
            scanners_add: vec![("from".into(), "x".into())],
            scanners_del: vec![("user-agent".into(), "sipcli".into())],
            dry_run: Some(false),
            groups: [("trunks".to_string(), vec!["203.0.113.0/24".to_string()])].into(),
        };
        rt.save().unwrap();
        assert_eq!(Runtime::load().unwrap(), rt);
        std::fs::write(Runtime::path(), "{").unwrap();
        let e = format!("{:#}", Runtime::load().unwrap_err());
        assert!(e.contains("runtime.json") && e.contains("move it aside"), "{e}");

        // state.json: saved and read back; a corrupt one is moved aside and reads as none.
        assert!(DaemonState::load().is_none());
        let st = DaemonState { pid: 7, program_id: Some(9), ..Default::default() };
        st.save().unwrap();
        let back = DaemonState::load().unwrap();
        assert_eq!((back.pid, back.program_id), (7, Some(9)));
        std::fs::write(DaemonState::path(), "not json").unwrap();
        assert!(DaemonState::load().is_none());
        assert!(!DaemonState::path().exists());
        let aside = std::fs::read_dir(&dir)
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("state.corrupt-"));
        assert_eq!(aside.count(), 1);

        // One controller at a time; the CLI sees the lock without taking it.
        assert!(!controller_lock_held());
        let held = lock().unwrap();
        assert!(controller_lock_held());
        assert_eq!(std::fs::read_to_string(dir.join("lock")).unwrap(), std::process::id().to_string());
        let e = lock().err().expect("a second controller is refused").to_string();
        assert!(e.contains(&format!("already running on this host (pid {})", std::process::id())), "{e}");
        // No socket and the lock held: a controller that does not answer (yet).
        let e = crate::control::call(&control_socket(), &crate::control::Request::Status).unwrap_err().to_string();
        assert!(e.contains("holds the lock but does not answer"), "{e}");
        drop(held);
        assert!(!controller_lock_held());
        assert!(crate::control::call(&control_socket(), &crate::control::Request::Status).unwrap().is_none());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
