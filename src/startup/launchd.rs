//! launchd's side of socket activation: `launch_activate_socket(3)` per forward name, for a
//! job whose plist has a `Sockets` entry named after the forward.
//!
//! The FFI call is macOS-only and a few lines; what it returns is interpreted by plain
//! functions ([`outcome_of`], [`collect`]) that are tested on every platform.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

use super::InheritedSocket;

/// What launchd said about one socket name.
#[derive(Debug)]
pub enum Activation {
    /// The job's sockets of that name (one per address the name resolved to).
    Sockets(Vec<OwnedFd>),
    /// The job has no socket of that name: bind it ourselves.
    NoSuchSocket,
    /// We were not started by launchd: bind everything ourselves.
    NotManaged,
}

/// The kind of outcome for `launch_activate_socket`'s return value, which is the errno itself
/// (it does not set `errno`).
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Activated,
    NoSuchSocket,
    NotManaged,
}

pub fn outcome_of(code: libc::c_int) -> io::Result<Outcome> {
    match code {
        0 => Ok(Outcome::Activated),
        libc::ENOENT => Ok(Outcome::NoSuchSocket),
        libc::ESRCH => Ok(Outcome::NotManaged),
        // EALREADY: activated earlier in this process, which we never do twice.
        code => Err(io::Error::from_raw_os_error(code)),
    }
}

/// Takes ownership of the descriptors launchd returned.
///
/// # Safety
/// Every entry must be an open descriptor that nothing else in the process owns.
pub unsafe fn own_fds(raw: &[libc::c_int]) -> Vec<OwnedFd> {
    raw.iter()
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect()
}

/// Asks for the sockets of each name in turn, through `activate`, until launchd says it did not
/// start us. Names without sockets are left out: their forwards get bound.
pub fn collect<'a>(
    names: impl IntoIterator<Item = &'a str>,
    mut activate: impl FnMut(&str) -> io::Result<Activation>,
) -> anyhow::Result<Vec<InheritedSocket>> {
    let mut inherited = Vec::new();
    for name in names {
        let fds = match activate(name) {
            Ok(Activation::Sockets(fds)) => fds,
            Ok(Activation::NoSuchSocket) => continue,
            Ok(Activation::NotManaged) => break,
            Err(e) => anyhow::bail!("launchd could not hand over socket {name:?}: {e}"),
        };
        inherited.extend(fds.into_iter().map(|fd| InheritedSocket {
            fd,
            name: Some(name.to_string()),
            source: "launchd",
        }));
    }
    Ok(inherited)
}

/// `launch_activate_socket(name)`.
#[cfg(target_os = "macos")]
pub fn activate(name: &str) -> io::Result<Activation> {
    use std::ffi::CString;

    unsafe extern "C" {
        fn launch_activate_socket(
            name: *const libc::c_char,
            fds: *mut *mut libc::c_int,
            cnt: *mut libc::size_t,
        ) -> libc::c_int;
    }
    let name = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let mut fds: *mut libc::c_int = std::ptr::null_mut();
    let mut count: libc::size_t = 0;
    // SAFETY: valid C string and out-pointers; on success launchd allocates `count` ints,
    // which we copy and free(3) as launch.h says.
    let owned = unsafe {
        let code = launch_activate_socket(name.as_ptr(), &mut fds, &mut count);
        let owned = match outcome_of(code)? {
            Outcome::Activated if !fds.is_null() => own_fds(std::slice::from_raw_parts(fds, count)),
            Outcome::Activated => Vec::new(),
            Outcome::NoSuchSocket => return Ok(Activation::NoSuchSocket),
            Outcome::NotManaged => return Ok(Activation::NotManaged),
        };
        libc::free(fds.cast());
        owned
    };
    Ok(Activation::Sockets(owned))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    #[test]
    fn return_codes_are_errno_values() {
        assert_eq!(outcome_of(0).unwrap(), Outcome::Activated);
        assert_eq!(outcome_of(libc::ENOENT).unwrap(), Outcome::NoSuchSocket);
        assert_eq!(outcome_of(libc::ESRCH).unwrap(), Outcome::NotManaged);
        let err = outcome_of(libc::EALREADY).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EALREADY));
    }

    fn listener_fds(n: usize) -> Vec<OwnedFd> {
        (0..n)
            .map(|_| {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                OwnedFd::from(l)
            })
            .collect()
    }

    #[test]
    fn every_socket_of_a_name_is_kept_under_that_name() {
        let mut asked = Vec::new();
        let inherited = collect(["smb", "web", "db"], |name| {
            asked.push(name.to_string());
            Ok(match name {
                "smb" => Activation::Sockets(listener_fds(2)),
                "web" => Activation::NoSuchSocket,
                _ => Activation::Sockets(listener_fds(1)),
            })
        })
        .unwrap();
        assert_eq!(asked, ["smb", "web", "db"]);
        let names: Vec<_> = inherited.iter().map(|i| i.name.as_deref()).collect();
        assert_eq!(names, [Some("smb"), Some("smb"), Some("db")]);
    }

    #[test]
    fn not_started_by_launchd_stops_asking() {
        let mut asked = 0;
        let inherited = collect(["smb", "db"], |_| {
            asked += 1;
            Ok(Activation::NotManaged)
        })
        .unwrap();
        assert!(inherited.is_empty());
        assert_eq!(asked, 1);
    }

    #[test]
    fn other_errors_name_the_socket() {
        let err = collect(["smb"], |_| {
            Err(io::Error::from_raw_os_error(libc::EALREADY))
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"smb\""), "{err}");
    }

    #[test]
    fn owned_descriptors_are_the_ones_returned() {
        let fds = listener_fds(2);
        let raw: Vec<libc::c_int> = fds.iter().map(|f| f.as_raw_fd()).collect();
        std::mem::forget(fds);
        // SAFETY: the descriptors were just released by `forget`.
        let owned = unsafe { own_fds(&raw) };
        let back: Vec<_> = owned.iter().map(|f| f.as_raw_fd()).collect();
        assert_eq!(back, raw);
    }
}
