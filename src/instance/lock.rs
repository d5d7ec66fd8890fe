//! One daemon per control socket: an exclusive flock(2) on `control.sock.lock`, held for the
//! daemon's life. The kernel drops it when the process ends, however it ends, so a dead daemon
//! never blocks a new one.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

/// The held lock; the file holds the daemon's pid, for people and tests.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: PathBuf,
}

impl InstanceLock {
    /// Takes the lock for `control_socket`, creating its directory (0700) if needed. Fails
    /// with a message naming the running daemon's pid when another daemon holds it.
    pub fn acquire(control_socket: &Path) -> anyhow::Result<InstanceLock> {
        let path = super::paths::lock_file(control_socket);
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
        super::check_private_dir(dir)?;
        // Never through a symlink: one planted here would make us truncate and write its target.
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .with_context(|| {
                format!(
                    "cannot open lock file {} (a symlink is refused)",
                    path.display()
                )
            })?;
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let error = std::io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EWOULDBLOCK) {
                return Err(error).with_context(|| format!("cannot lock {}", path.display()));
            }
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = match pid.trim() {
                "" => String::new(),
                pid => format!(" (pid {pid})"),
            };
            bail!(
                "lazytunnel is already running{pid} for control socket {}: stop it first, or \
                 give this one another `control_socket` in its config (lock file {})",
                control_socket.display(),
                path.display()
            );
        }
        Ok(InstanceLock { file, path })
    }

    /// Records this process's pid in the lock file (after detaching, so it is the daemon's).
    pub fn write_pid(&mut self) -> anyhow::Result<()> {
        let pid = std::process::id();
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| writeln!(self.file, "{pid}"))
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

/// Whether a daemon holds the lock of `control_socket` (probed with a shared lock, released
/// at once). No lock file means no daemon.
pub fn is_held(control_socket: &Path) -> anyhow::Result<bool> {
    let path = super::paths::lock_file(control_socket);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot open {}", path.display())),
    };
    // SAFETY: flock on a descriptor we own; closing it drops our lock.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return Ok(false);
    }
    let error = std::io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
        return Ok(true);
    }
    Err(error).with_context(|| format!("cannot probe {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_pid_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("sub/control.sock");
        let mut first = InstanceLock::acquire(&socket).unwrap();
        first.write_pid().unwrap();
        let err = InstanceLock::acquire(&socket).unwrap_err().to_string();
        let pid = std::process::id().to_string();
        assert!(
            err.contains("already running") && err.contains(&pid),
            "{err}"
        );
        assert!(err.contains("control.sock"), "{err}");
        assert!(is_held(&socket).unwrap());
        drop(first);
        assert!(!is_held(&socket).unwrap());
        InstanceLock::acquire(&socket).expect("lock free again");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("sub"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700);
    }

    #[test]
    fn an_open_directory_or_a_symlinked_lock_file_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let socket = dir.path().join("control.sock");
        let err = format!("{:#}", InstanceLock::acquire(&socket).unwrap_err());
        assert!(err.contains("closed to others"), "{err}");
        assert!(
            !super::super::paths::lock_file(&socket).exists(),
            "the lock file was created before the directory was checked"
        );

        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        let target = dir.path().join("precious");
        std::fs::write(&target, "keep me").unwrap();
        std::os::unix::fs::symlink(&target, super::super::paths::lock_file(&socket)).unwrap();
        let err = format!("{:#}", InstanceLock::acquire(&socket).unwrap_err());
        assert!(err.contains("symlink"), "{err}");
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    }
}
