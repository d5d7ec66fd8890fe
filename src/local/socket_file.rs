//! A Unix listener's socket file: created with its mode before anyone can connect, a dead
//! daemon's stale file replaced, anything else at the path left alone, and the file removed
//! again when the listener that created it goes away.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use socket2::{Domain, SockAddr, Socket, Type};

/// Pending connections the kernel queues (it caps this at its own `somaxconn`).
const BACKLOG: i32 = 1024;

/// The file a bound listener created; dropping it removes the file, if it is still that one
/// (not a socket another daemon has since put at the path).
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    fn of(path: &Path) -> io::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)?;
        Ok(SocketFile {
            path: path.to_path_buf(),
            id: (meta.dev(), meta.ino()),
        })
    }

    /// Sets the file's permission bits (a reload may change `listen_mode`).
    pub fn set_mode(&self, mode: u32) -> io::Result<()> {
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode))
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let ours = std::fs::symlink_metadata(&self.path)
            .is_ok_and(|meta| (meta.dev(), meta.ino()) == self.id);
        if ours {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Listens on a Unix socket at `path` with permissions `mode`, non-blocking. The mode is set
/// between bind and listen, so no client can connect while the file has the umask's mode.
/// Errors say what is at the path when it is not ours to replace.
pub fn bind_unix(path: &Path, mode: u32) -> io::Result<(UnixListener, SocketFile)> {
    clear_stale(path)?;
    let socket = Socket::new(Domain::UNIX, Type::STREAM, None)?;
    socket.bind(&SockAddr::unix(path)?)?;
    // From here on the file is ours: dropping `file` on an error removes it again.
    let file = SocketFile::of(path)?;
    file.set_mode(mode)?;
    socket.listen(BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok((UnixListener::from(std::os::fd::OwnedFd::from(socket)), file))
}

/// Removes a socket file no process listens on (a dead daemon's); refuses a live socket and
/// anything that is not a socket.
fn clear_stale(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if !meta.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a socket ({}): lazytunnel replaces only a stale socket; \
                 move it away or choose another path",
                path.display(),
                kind(&meta.file_type())
            ),
        ));
    }
    match UnixStream::connect(path) {
        Ok(_) => Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!(
                "{} is in use: another process (another lazytunnel?) accepts connections on \
                 it; stop it or choose another path",
                path.display()
            ),
        )),
        // Nobody listens: a dead daemon's file.
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => std::fs::remove_file(path),
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!(
                "{} exists and cannot be checked for a live listener ({e}); remove it if \
                 nothing uses it",
                path.display()
            ),
        )),
    }
}

fn kind(file_type: &std::fs::FileType) -> &'static str {
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_file() {
        "a regular file"
    } else {
        "a device"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> tempfile::TempDir {
        tempfile::tempdir().unwrap()
    }

    #[test]
    fn the_socket_gets_its_mode_and_goes_with_its_file_guard() {
        let dir = dir();
        let path = dir.path().join("a.sock");
        let (listener, file) = bind_unix(&path, 0o660).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o660);
        UnixStream::connect(&path).unwrap();
        drop(listener);
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn a_stale_socket_is_replaced_and_a_live_one_refused() {
        let dir = dir();
        let path = dir.path().join("a.sock");
        drop(UnixListener::bind(&path).unwrap());
        let (live, _file) = bind_unix(&path, 0o600).unwrap();
        let err = bind_unix(&path, 0o600).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        drop(live);
    }

    #[test]
    fn what_is_not_a_socket_is_left_alone() {
        let dir = dir();
        let path = dir.path().join("a.sock");
        std::fs::write(&path, "keep me").unwrap();
        let err = bind_unix(&path, 0o600).unwrap_err().to_string();
        assert!(
            err.contains("a regular file") && err.contains("a.sock"),
            "{err}"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "keep me");
    }

    #[test]
    fn a_file_replaced_by_someone_else_is_not_removed() {
        let dir = dir();
        let path = dir.path().join("a.sock");
        let (listener, file) = bind_unix(&path, 0o600).unwrap();
        drop(listener);
        // Moved away (not deleted, so that the new file cannot reuse its inode number).
        std::fs::rename(&path, dir.path().join("moved.sock")).unwrap();
        let other = UnixListener::bind(&path).unwrap();
        drop(file);
        assert!(path.exists());
        drop(other);
    }
}
