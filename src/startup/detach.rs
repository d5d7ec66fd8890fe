//! Becoming a background daemon: fork, setsid, fork again, with stdin on /dev/null and
//! stdout/stderr appended to the log file. Runs before the async runtime exists (forking a
//! multi-threaded process is unsound).
//!
//! The user's terminal waits for the daemon: the original process blocks on a pipe until the
//! daemon reports that it serves ([`Ready::signal`]), then exits 0 naming its pid; if the
//! daemon dies first, it exits non-zero pointing at the log.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::Context;

/// The daemon's end of the pipe to the waiting terminal.
#[derive(Debug)]
pub struct Ready(File);

impl Ready {
    /// Releases the waiting terminal with success.
    pub fn signal(mut self) {
        let _ = writeln!(self.0, "{}", std::process::id());
    }
}

/// Detaches from the terminal. Returns only in the daemon; the original process exits.
pub(crate) fn detach(log: &Path) -> anyhow::Result<Ready> {
    if let Some(dir) = log.parent() {
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o700)
            .create(dir)
            .with_context(|| format!("cannot create log directory {}", dir.display()))?;
    }
    let log_file = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(log)
        .with_context(|| format!("cannot open log file {}", log.display()))?;
    let null = File::open("/dev/null").context("cannot open /dev/null")?;
    let (read_end, write_end) = pipe().context("cannot create a pipe")?;

    // SAFETY: no other thread exists yet (see the module doc).
    match unsafe { libc::fork() } {
        -1 => return Err(std::io::Error::last_os_error()).context("cannot fork"),
        0 => {}
        child => {
            drop(write_end);
            wait_for_daemon(child, read_end, log);
        }
    }
    drop(read_end);
    // The first child leads a new session, without a controlling terminal, and forks the
    // daemon, which is no session leader and so can never acquire a terminal again.
    // SAFETY: still single-threaded; `_exit` skips destructors that belong to the parent.
    unsafe {
        if libc::setsid() < 0 {
            libc::_exit(1);
        }
        match libc::fork() {
            -1 => libc::_exit(1),
            0 => {}
            _ => libc::_exit(0),
        }
    }
    redirect(&null, 0).context("cannot redirect stdin")?;
    redirect(&log_file, 1).context("cannot redirect stdout to the log")?;
    redirect(&log_file, 2).context("cannot redirect stderr to the log")?;
    Ok(Ready(File::from(write_end)))
}

/// The original process: waits for the daemon's pid on the pipe, then exits.
fn wait_for_daemon(child: libc::pid_t, read_end: OwnedFd, log: &Path) -> ! {
    let mut said = String::new();
    let _ = File::from(read_end).read_to_string(&mut said);
    // Reap the first child, which exits as soon as it has forked the daemon.
    // SAFETY: waiting for our own child.
    unsafe { libc::waitpid(child, std::ptr::null_mut(), 0) };
    match said.trim() {
        "" => {
            eprintln!(
                "lazytunnel: the background daemon stopped while starting; see {}",
                log.display()
            );
            std::process::exit(1)
        }
        pid => {
            eprintln!(
                "lazytunnel: running in the background (pid {pid}); log: {}",
                log.display()
            );
            std::process::exit(0)
        }
    }
}

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe(2) just opened both; no one else owns them.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    for fd in [&read_end, &write_end] {
        // Keep the pipe out of any program the daemon might run.
        // SAFETY: F_SETFD on a descriptor we own.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok((read_end, write_end))
}

fn redirect(from: &File, to: libc::c_int) -> std::io::Result<()> {
    // SAFETY: dup2 onto a standard descriptor; both are open.
    if unsafe { libc::dup2(from.as_raw_fd(), to) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
