//! macOS: address and link changes from a PF_ROUTE socket.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

/// A non-blocking, close-on-exec routing socket; it receives every routing message.
pub(super) fn open_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before use.
    let fd = unsafe { libc::socket(libc::PF_ROUTE, libc::SOCK_RAW, libc::AF_UNSPEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor nobody else owns.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: fcntl on a descriptor we own.
    let ok = unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        flags >= 0
            && libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) == 0
            && libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) == 0
    };
    if !ok {
        return Err(io::Error::last_os_error());
    }
    Ok(socket)
}

/// Whether a routing message reports an address or interface change. Every message starts
/// with `u16 msglen, u8 version, u8 type` (rt_msghdr, ifa_msghdr, if_msghdr alike).
pub(super) fn is_change(message: &[u8]) -> bool {
    message.get(3).is_some_and(|&kind| {
        matches!(
            i32::from(kind),
            libc::RTM_NEWADDR | libc::RTM_DELADDR | libc::RTM_IFINFO
        )
    })
}
