//! Scratch directories removed on drop, also when a test panics (they are [`tempfile`]
//! directories: unique names, created private).
use std::ops::Deref;
use std::path::{Path, PathBuf};

/// A scratch directory `$TMPDIR/sipshield-<tag>-XXXXXX`, deleted with its contents on drop.
/// Dereferences to its [`Path`], so `dir.join("x")` and `&dir` work where a path is expected.
#[derive(Debug)]
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(tag: &str) -> std::io::Result<TempDir> {
        tempfile::Builder::new().prefix(&format!("sipshield-{tag}-")).tempdir().map(TempDir)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }

    /// Keep the directory (for a post-mortem); returns its path.
    pub fn keep(self) -> PathBuf {
        self.0.keep()
    }
}

impl Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        self.0.path()
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        self.0.path()
    }
}

/// A new scratch directory for a test (panics if none can be created).
pub fn dir(tag: &str) -> TempDir {
    TempDir::new(tag).unwrap_or_else(|e| panic!("creating a scratch directory for {tag}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removed_on_drop_and_on_panic() {
        let d = dir("tmp-test");
        let p = d.to_path_buf();
        std::fs::write(d.join("f"), "x").unwrap();
        assert!(p.file_name().unwrap().to_string_lossy().starts_with("sipshield-tmp-test-"));
        drop(d);
        assert!(!p.exists());

        let (tx, rx) = std::sync::mpsc::channel();
        let r = std::thread::spawn(move || {
            let d = dir("tmp-panic");
            tx.send(d.to_path_buf()).unwrap();
            panic!("a failing test");
        })
        .join();
        assert!(r.is_err());
        assert!(!rx.recv().unwrap().exists(), "removed while unwinding");
    }
}
