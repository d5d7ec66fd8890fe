//! Reading the small files the daemon trusts (its config, ssh_config, known_hosts, keys,
//! certificates): whole, with a size cap, and only from regular files.
//!
//! A FIFO or a device under such a path would block the read forever, or never end it; opening
//! without blocking and checking the type first turns both into an error naming the file. The
//! daemon still calls these only off its async worker (`spawn_blocking`, or before the runtime
//! starts): a hung network file system blocks even a regular file's read.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// Cap for configuration files and keys: far above any real one.
pub const MAX_SMALL_FILE: u64 = 1024 * 1024;
/// Cap for known_hosts files, which can list many thousands of hosts.
pub const MAX_KNOWN_HOSTS: u64 = 64 * 1024 * 1024;

/// The whole contents of the regular file at `path`, refused beyond `cap` bytes. A missing
/// file keeps [`io::ErrorKind::NotFound`], so callers can treat it as empty.
pub fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    read_opened(open_regular(path)?, cap)
}

/// Like [`read_capped_string`], for a file that decides how hosts are checked: refused, as
/// OpenSSH refuses such an ssh_config, when someone else could have written it (owned by
/// another user than us or root, or writable by group or others).
pub fn read_private_string(path: &Path, cap: u64) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let file = open_regular(path)?;
    let meta = file.metadata()?;
    // SAFETY: getuid has no preconditions.
    let me = unsafe { libc::getuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("bad owner: uid {}, neither you nor root", meta.uid()),
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "bad permissions: writable by group or others (mode {:o}), so someone else could \
                 turn host key checking off; `chmod go-w` it",
                meta.mode() & 0o777
            ),
        ));
    }
    String::from_utf8(read_opened(file, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn read_opened(file: File, cap: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.take(cap.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("larger than {cap} bytes: not a file this could be"),
        ));
    }
    Ok(bytes)
}

/// Like [`read_capped`], as UTF-8 text.
pub fn read_capped_string(path: &Path, cap: u64) -> io::Result<String> {
    String::from_utf8(read_capped(path, cap)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

/// Opens `path` for reading without blocking on a FIFO, and refuses anything but a regular file.
fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        // A FIFO's open blocks until a writer appears; O_NOCTTY keeps a terminal from
        // becoming ours. Neither matters for a regular file.
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let kind = file.metadata()?.file_type();
    // `/dev/null` is the usual way to say "no such file" (`ssh -F /dev/null`): it reads empty.
    if kind.is_file() || (kind.is_char_device() && path == Path::new("/dev/null")) {
        return Ok(file);
    }
    let what = if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() || kind.is_block_device() {
        "a device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file: refusing to read it"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regular_files_are_read_whole_up_to_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        assert_eq!(read_capped(&path, 5).unwrap(), b"12345");
        let err = read_capped(&path, 4).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("larger than 4 bytes"), "{err}");
        assert_eq!(read_capped(Path::new("/dev/null"), 5).unwrap(), b"");
        let missing = read_capped(&dir.path().join("none"), 5).unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_fifo_a_device_or_a_directory_is_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo reads the NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (Path::new("/dev/zero"), "a device"),
            (dir.path(), "a directory"),
        ] {
            let err = read_capped(path, MAX_SMALL_FILE).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{path:?}");
            assert!(err.to_string().contains(what), "{path:?}: {err}");
        }
    }

    #[test]
    fn a_file_others_could_write_is_refused_as_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "x = 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_private_string(&path, 100).unwrap(), "x = 1\n");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o664)).unwrap();
        let err = read_private_string(&path, 100).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("mode 664"), "{err}");
    }
}
