//! Adding a host key to a known_hosts file in the form OpenSSH writes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use russh::keys::ssh_key::PublicKey;

use super::lookup_name;
use super::pattern::{SALT_LEN, hash_name};

/// Appends `name keytype base64` for `host`/`port` (named as [`lookup_name`] names it; with
/// `hash`, as `|1|salt|hash` with a fresh random salt, like `HashKnownHosts yes`).
///
/// A missing file is created with mode 0600 and missing directories with 0700; an existing
/// file keeps its mode. If the file does not end with a newline, one is added first so the
/// entry does not run into the previous line. The entry is written with a single `write`
/// on an `O_APPEND` descriptor, so concurrent appenders do not interleave.
pub fn append(path: &Path, host: &str, port: u16, key: &PublicKey, hash: bool) -> io::Result<()> {
    let name = lookup_name(host, port);
    let host_field = if hash {
        let mut salt = [0u8; SALT_LEN];
        getrandom::fill(&mut salt).map_err(io::Error::other)?;
        hash_name(&salt, &name)
    } else {
        name
    };
    // OpenSSH writes no comment.
    let key_text = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .map_err(io::Error::other)?;

    if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty())
        && !dir.exists()
    {
        create_private_dir(dir)?;
    }
    let mut file = open_private(path)?;
    let mut entry = String::new();
    if !ends_with_newline(&mut file)? {
        entry.push('\n');
    }
    entry.push_str(&format!("{host_field} {key_text}\n"));
    file.write_all(entry.as_bytes())
}

/// True for an empty file too.
fn ends_with_newline(file: &mut File) -> io::Result<bool> {
    if file.metadata()?.len() == 0 {
        return Ok(true);
    }
    file.seek(SeekFrom::End(-1))?;
    let mut last = [0u8];
    file.read_exact(&mut last)?;
    Ok(last[0] == b'\n')
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
}

fn open_private(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).append(true).create(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file: refusing to write to it",
        ));
    }
    Ok(file)
}
