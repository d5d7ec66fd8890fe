//! systemd's side of the service protocol: sockets passed with `LISTEN_PID`/`LISTEN_FDS`/
//! `LISTEN_FDNAMES` (sd_listen_fds(3)), and readiness and status through `NOTIFY_SOCKET`.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use tracing::{debug, warn};

use super::InheritedSocket;

/// The first passed descriptor; the others follow without gaps.
const LISTEN_FDS_START: RawFd = 3;
/// More than any config has forwards; a larger count is a corrupt environment, not sockets.
const MAX_LISTEN_FDS: u32 = 4096;

/// What the `LISTEN_*` variables say, before any descriptor is touched.
#[derive(Debug, PartialEq, Eq)]
pub struct ListenEnv {
    /// `(fd, name)` in order; a name is `None` when systemd gave none (or an empty one).
    pub fds: Vec<(RawFd, Option<String>)>,
    /// `LISTEN_FDNAMES` was present but did not have one name per descriptor.
    pub names_ignored: bool,
}

/// Interprets the variables for the process `pid`. Sockets meant for another process (a
/// `LISTEN_PID` that is not ours, e.g. left in the environment of a parent) are not ours to take.
pub fn parse_listen_env(
    listen_pid: Option<&str>,
    listen_fds: Option<&str>,
    listen_fdnames: Option<&str>,
    pid: u32,
) -> Result<ListenEnv, String> {
    let none = ListenEnv {
        fds: Vec::new(),
        names_ignored: false,
    };
    let (Some(listen_pid), Some(listen_fds)) = (listen_pid, listen_fds) else {
        return Ok(none);
    };
    let listen_pid: u32 = listen_pid
        .trim()
        .parse()
        .map_err(|_| format!("LISTEN_PID={listen_pid:?} is not a process id"))?;
    if listen_pid != pid {
        return Ok(none);
    }
    let count: u32 = listen_fds
        .trim()
        .parse()
        .ok()
        .filter(|n| *n <= MAX_LISTEN_FDS)
        .ok_or_else(|| {
            format!("LISTEN_FDS={listen_fds:?} is not a count of descriptors (0-{MAX_LISTEN_FDS})")
        })?;
    let names: Option<Vec<&str>> = listen_fdnames.map(|names| names.split(':').collect());
    let names_ignored = names.as_ref().is_some_and(|n| n.len() != count as usize);
    let names = names.filter(|_| !names_ignored).unwrap_or_default();
    let fds = (0..count)
        .map(|i| {
            let name = names.get(i as usize).filter(|n| !n.is_empty());
            (LISTEN_FDS_START + i as RawFd, name.map(|n| n.to_string()))
        })
        .collect();
    Ok(ListenEnv { fds, names_ignored })
}

/// Takes the sockets systemd passed to this process and removes the `LISTEN_*` variables, so
/// that no child process believes they are meant for it. A count naming a descriptor that is
/// not open, or not a socket, is refused: adopting it would take a descriptor this process
/// opened for something else (or will open, such as the lock file).
///
/// Must run before any other thread exists (it changes the environment), and before this
/// process opens any descriptor: [`crate::startup`] calls it first.
pub(crate) fn take_listen_fds() -> anyhow::Result<Vec<InheritedSocket>> {
    let var = |name| std::env::var(name).ok();
    let count = var("LISTEN_FDS");
    let parsed = parse_listen_env(
        var("LISTEN_PID").as_deref(),
        count.as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    // SAFETY: called from `main` before the runtime (or any other thread) starts.
    unsafe {
        for name in ["LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"] {
            std::env::remove_var(name);
        }
    }
    let parsed = parsed.map_err(|e| anyhow::anyhow!("bad socket activation environment: {e}"))?;
    if parsed.names_ignored {
        warn!("LISTEN_FDNAMES does not name every passed socket; matching them by address only");
    }
    let count = count.unwrap_or_default();
    for (fd, _) in &parsed.fds {
        if let Err(problem) = check_passed(*fd) {
            anyhow::bail!(
                "bad socket activation environment: LISTEN_FDS={count} names descriptor {fd}, \
                 which {problem}; the service manager's socket count is wrong, so none of the \
                 passed sockets is used"
            );
        }
    }
    let taken = parsed
        .fds
        .into_iter()
        .map(|(fd, name)| InheritedSocket {
            // SAFETY: checked open above; the service manager handed it to us and nothing
            // else in this process refers to it.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            name,
            source: "systemd",
        })
        .collect();
    Ok(taken)
}

/// Why `fd` cannot be a passed socket, if it cannot.
fn check_passed(fd: RawFd) -> Result<(), &'static str> {
    // SAFETY: fstat only writes into `stat`; it fails on a closed descriptor.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstat(fd, &mut stat) } < 0 {
        return Err("is not open");
    }
    if stat.st_mode & libc::S_IFMT != libc::S_IFSOCK {
        return Err("is not a socket");
    }
    Ok(())
}

/// Tells systemd (when it is watching, i.e. `NOTIFY_SOCKET` is set) that we are ready, with a
/// one-line status.
pub fn notify_ready(status: &str) {
    notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(status),
    ]);
}

fn notify(states: &[sd_notify::NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    match sd_notify::notify(states) {
        Ok(()) => debug!("notified systemd"),
        Err(e) => warn!("cannot notify systemd: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pid: &str, fds: &str, names: Option<&str>) -> Result<ListenEnv, String> {
        parse_listen_env(Some(pid), Some(fds), names, 42)
    }

    #[test]
    fn sockets_start_at_fd_3_and_take_their_names_in_order() {
        let env = parse("42", "3", Some("smb:db:")).unwrap();
        assert_eq!(
            env.fds,
            vec![
                (3, Some("smb".to_string())),
                (4, Some("db".to_string())),
                (5, None)
            ]
        );
        assert!(!env.names_ignored);
    }

    #[test]
    fn without_names_every_socket_is_unnamed() {
        let env = parse("42", "2", None).unwrap();
        assert_eq!(env.fds, vec![(3, None), (4, None)]);
    }

    #[test]
    fn names_that_do_not_fit_the_count_are_ignored() {
        let env = parse("42", "2", Some("only-one")).unwrap();
        assert_eq!(env.fds, vec![(3, None), (4, None)]);
        assert!(env.names_ignored);
    }

    #[test]
    fn sockets_for_another_process_or_without_variables_are_not_ours() {
        assert!(parse("41", "2", None).unwrap().fds.is_empty());
        let unset = parse_listen_env(None, Some("2"), None, 42).unwrap();
        assert!(unset.fds.is_empty());
        let no_count = parse_listen_env(Some("42"), None, None, 42).unwrap();
        assert!(no_count.fds.is_empty());
    }

    #[test]
    fn malformed_variables_are_errors_naming_them() {
        let err = parse("x", "1", None).unwrap_err();
        assert!(err.contains("LISTEN_PID=\"x\""), "{err}");
        let err = parse("42", "-1", None).unwrap_err();
        assert!(err.contains("LISTEN_FDS=\"-1\""), "{err}");
        let err = parse("42", "100000", None).unwrap_err();
        assert!(err.contains("LISTEN_FDS"), "{err}");
    }
}
