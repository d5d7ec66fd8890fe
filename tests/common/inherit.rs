//! Listening sockets handed to a child as systemd hands them: on descriptors 3.., with
//! `LISTEN_FDS`, and `LISTEN_PID` naming the child itself. Tests give the daemon its listen
//! ports this way, bound beforehand, so no other process can take a port between choosing it
//! and the daemon binding it.

use std::net::{Ipv4Addr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// `sh -c SCRIPT PROGRAM ARGS…` sets `LISTEN_PID` to the shell's pid and execs the program, so
/// the variable names the program's own pid, which only the child knows.
pub const EXEC_WITH_LISTEN_PID: [&str; 2] = ["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#];

/// A listening socket on a free loopback port, held from now on.
pub fn bind_loopback() -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("could not bind 127.0.0.1:0")
}

pub fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("local_addr").port()
}

/// Makes `command` start with `listeners` on descriptors 3.. (in order). `command` should run
/// its program through [`EXEC_WITH_LISTEN_PID`] and set `LISTEN_FDS`. Returns the copies the
/// child's descriptors are made from: drop them once the child is spawned.
pub fn pass_listeners(command: &mut Command, listeners: &[&TcpListener]) -> Vec<OwnedFd> {
    // Copies far above 3.., so that no dup2 below overwrites a source it still needs.
    let high: Vec<OwnedFd> = listeners
        .iter()
        .map(|listener| {
            // SAFETY: duplicating a descriptor we own; the copy is owned by `OwnedFd`.
            let fd = unsafe { libc::fcntl(listener.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
            assert!(
                fd >= 0,
                "F_DUPFD failed: {}",
                std::io::Error::last_os_error()
            );
            unsafe { OwnedFd::from_raw_fd(fd) }
        })
        .collect();
    let sources: Vec<libc::c_int> = high.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: only dup2, which is async-signal-safe, between fork and exec. dup2 leaves the
    // new descriptor without close-on-exec, so it survives into the child.
    unsafe {
        command.pre_exec(move || {
            for (i, &fd) in sources.iter().enumerate() {
                if libc::dup2(fd, 3 + i as libc::c_int) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    high
}
