//! Raw `bpf(2)` batch operations, which aya does not wrap: `BPF_MAP_UPDATE_BATCH` and
//! `BPF_MAP_DELETE_BATCH` on a map fd. Used for bulk list loading (1M entries in well under a
//! second instead of one syscall per entry).
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;
const BPF_MAP_DELETE_BATCH: libc::c_long = 27;

/// `union bpf_attr` as used by the batch commands (`struct { ... } batch`).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

fn batch_call(cmd: libc::c_long, attr: &mut BatchAttr) -> io::Result<()> {
    // SAFETY: attr is a valid, fully initialised bpf_attr prefix of the size we pass.
    let rc =
        unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut BatchAttr, std::mem::size_of::<BatchAttr>() as u32) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Number of elements sent per syscall.
const CHUNK: usize = 65536;

/// Insert or update `keys[i] → values[i]` for all i, in chunks. `K` and `V` must be the map's
/// exact key and value types (plain-old-data without padding).
pub fn update_batch<K: Copy, V: Copy>(map: BorrowedFd<'_>, keys: &[K], values: &[V]) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "update_batch: keys and values differ in length");
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            values: values[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        batch_call(BPF_MAP_UPDATE_BATCH, &mut attr).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("BPF_MAP_UPDATE_BATCH after {} of {} entries: {e}", done + attr.count as usize, keys.len()),
            )
        })?;
        done += n;
    }
    Ok(())
}

/// Delete `keys` (all must exist, as the kernel stops at the first missing key).
pub fn delete_batch<K: Copy>(map: BorrowedFd<'_>, keys: &[K]) -> io::Result<()> {
    let mut done = 0;
    while done < keys.len() {
        let n = (keys.len() - done).min(CHUNK);
        let mut attr = BatchAttr {
            keys: keys[done..].as_ptr() as u64,
            count: n as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        batch_call(BPF_MAP_DELETE_BATCH, &mut attr)?;
        done += n;
    }
    Ok(())
}

/// Convenience: the fd of anything that has one.
pub fn fd_of<T: AsFd>(t: &T) -> BorrowedFd<'_> {
    t.as_fd()
}

const BPF_MAP_LOOKUP_AND_DELETE_BATCH: libc::c_long = 25;

/// Remove every element of a hash map with `BPF_MAP_LOOKUP_AND_DELETE_BATCH` (bucket-token
/// batches). Returns how many were removed.
pub fn drain_hash(map: BorrowedFd<'_>, key_size: usize, value_size: usize) -> io::Result<usize> {
    let chunk = 16384usize;
    let mut keys = vec![0u8; chunk * key_size];
    let mut values = vec![0u8; chunk * value_size];
    let mut removed = 0usize;
    let mut token_in = 0u32;
    let mut token_out = 0u32;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &mut token_in as *mut u32 as u64 },
            out_batch: &mut token_out as *mut u32 as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk as u32,
            map_fd: map.as_raw_fd() as u32,
            ..Default::default()
        };
        let r = batch_call(BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr);
        removed += attr.count as usize;
        match r {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(removed),
            Err(e) => return Err(e),
        }
        first = false;
        token_in = token_out;
    }
}

/// A shared mapping of a `BPF_F_MMAPABLE` array map: userspace reads and writes the map's
/// memory directly (whole tables are copied in at memory speed).
pub struct MmapRegion {
    ptr: *mut libc::c_void,
    len: usize,
}

impl MmapRegion {
    pub fn map(fd: BorrowedFd<'_>, len: usize, writable: bool) -> io::Result<MmapRegion> {
        let prot = if writable { libc::PROT_READ | libc::PROT_WRITE } else { libc::PROT_READ };
        // SAFETY: mapping a map fd as the kernel documents for BPF_F_MMAPABLE arrays.
        let ptr = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(MmapRegion { ptr, len })
    }

    /// View as a slice of `T` (plain old data).
    pub fn slice<T: Copy>(&self) -> &[T] {
        // SAFETY: the mapping is len bytes, page aligned, and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const T, self.len / std::mem::size_of::<T>()) }
    }

    pub fn slice_mut<T: Copy>(&mut self) -> &mut [T] {
        // SAFETY: as above; mapped writable by the caller's choice.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut T, self.len / std::mem::size_of::<T>()) }
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what was mapped.
        unsafe { libc::munmap(self.ptr, self.len) };
    }
}
