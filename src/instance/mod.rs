//! One daemon instance per control socket: where its files live ([`paths`]: the control socket,
//! its lock file, the log), the lock that makes it the only one ([`lock`]), and the check that
//! the directory holding them is private.

pub mod lock;
pub mod paths;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{Context, bail};

/// The control socket's directory (which also holds the lock file) must be ours and closed
/// to others: whoever can write there can command the daemon or take its lock.
pub fn check_private_dir(dir: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(dir)
        .with_context(|| format!("control socket directory {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    if meta.uid() != uid || meta.mode() & 0o077 != 0 {
        bail!(
            "control socket directory {} must belong to you and be closed to others (mode 0700; \
             it is {:o}, owner uid {}): choose another `control_socket`",
            dir.display(),
            meta.mode() & 0o7777,
            meta.uid()
        );
    }
    Ok(())
}
