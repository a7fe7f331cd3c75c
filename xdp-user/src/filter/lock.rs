//! The writer lock: every writer of a pinned filter (the controller, the CLI without a
//! controller) holds it across a whole change, so two generation swaps never interleave.
use anyhow::{bail, Result};

use super::Filter;

#[derive(Default)]
struct LockState {
    depth: u32,
    file: Option<nix::fcntl::Flock<std::fs::File>>,
}

thread_local! {
    static WRITE_LOCK: std::cell::RefCell<LockState> = std::cell::RefCell::new(LockState::default());
}

/// Guard of `Filter::write_lock`.
pub struct WriteLock {
    held: bool,
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if self.held {
            WRITE_LOCK.with(|l| {
                let mut l = l.borrow_mut();
                l.depth -= 1;
                if l.depth == 0 {
                    l.file = None; // closing the file releases the flock
                }
            });
        }
    }
}

impl Filter {
    /// Exclusive lock for writers of a pinned filter (daemon, CLI verbs), held across a whole
    /// generation swap. Re-entrant within a thread; a no-op for private filters.
    pub fn write_lock(&self) -> Result<WriteLock> {
        if self.pin_dir.is_none() {
            return Ok(WriteLock { held: false });
        }
        WRITE_LOCK.with(|l| {
            let mut l = l.borrow_mut();
            if l.depth == 0 {
                let (file, path) = crate::state::open_lock_file("writer.lock")?;
                // Blocks until other writers finish.
                match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive) {
                    Ok(f) => l.file = Some(f),
                    Err((_, e)) => bail!("{}: flock: {e}", path.display()),
                }
            }
            l.depth += 1;
            Ok(WriteLock { held: true })
        })
    }
}
