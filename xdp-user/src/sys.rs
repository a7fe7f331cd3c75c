//! Host plumbing: bpffs, interface names, privileges (through `nix`, no raw libc calls).
use std::path::Path;

use anyhow::{bail, Context, Result};
use nix::sys::statfs::{statfs, BPF_FS_MAGIC};

/// Is `path` on a bpf filesystem?
pub fn is_bpffs(path: &Path) -> bool {
    statfs(path).map(|s| s.filesystem_type() == BPF_FS_MAGIC).unwrap_or(false)
}

/// Make sure `/sys/fs/bpf` is a bpffs (mounting it if needed) and `dir` exists on it.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if !is_bpffs(root) {
        std::fs::create_dir_all(root).ok();
        nix::mount::mount(Some("bpf"), root, Some("bpf"), nix::mount::MsFlags::empty(), None::<&str>)
            .map_err(|e| anyhow::anyhow!("mounting bpffs on /sys/fs/bpf failed: {e}"))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !is_bpffs(dir) {
        bail!("{} is not on a bpf filesystem", dir.display());
    }
    Ok(())
}

pub fn ifindex(name: &str) -> Option<u32> {
    nix::net::if_::if_nametoindex(name).ok().filter(|i| *i != 0)
}

pub fn ifname(index: u32) -> Option<String> {
    nix::net::if_::if_indextoname(index).ok().map(|c| c.to_string_lossy().into_owned())
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}
