//! Host plumbing: bpffs, interface names, privileges.
use std::path::Path;

use anyhow::{bail, Context, Result};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

/// Is `path` on a bpf filesystem?
pub fn is_bpffs(path: &Path) -> bool {
    let c = match std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) {
        Ok(c) => c,
        Err(_) => return false,
    };
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C string and out-pointer.
    let rc = unsafe { libc::statfs(c.as_ptr(), &mut st) };
    rc == 0 && st.f_type as i64 == BPF_FS_MAGIC
}

/// Make sure `/sys/fs/bpf` is a bpffs (mounting it if needed) and `dir` exists on it.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let root = Path::new("/sys/fs/bpf");
    if !is_bpffs(root) {
        std::fs::create_dir_all(root).ok();
        let src = std::ffi::CString::new("bpf").unwrap();
        let tgt = std::ffi::CString::new("/sys/fs/bpf").unwrap();
        // SAFETY: valid C strings.
        let rc = unsafe { libc::mount(src.as_ptr(), tgt.as_ptr(), src.as_ptr(), 0, std::ptr::null()) };
        if rc != 0 {
            bail!("mounting bpffs on /sys/fs/bpf failed: {}", std::io::Error::last_os_error());
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    if !is_bpffs(dir) {
        bail!("{} is not on a bpf filesystem", dir.display());
    }
    Ok(())
}

pub fn ifindex(name: &str) -> Option<u32> {
    let c = std::ffi::CString::new(name).ok()?;
    // SAFETY: valid C string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}

pub fn ifname(index: u32) -> Option<String> {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: buffer of IF_NAMESIZE bytes.
    let p = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if p.is_null() {
        return None;
    }
    let s = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(s.to_string_lossy().into_owned())
}

pub fn is_root() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() == 0 }
}
