//! Open-file descriptors: the limit raised at start, the share of it clients may take, and
//! how running out of them (EMFILE, ENFILE) is told apart from a failing host.
//!
//! Each client holds one descriptor for its life; sessions, the control socket and file reads
//! need a few more. Clients beyond their share wait in the listen backlog (the accept loop
//! takes a permit before accepting), so that a burst of clients cannot starve the session
//! they all wait for.

use std::io;

/// Descriptors kept back from clients: the runtime's own (epoll, wakers, signals), stdio, the
/// lock and control sockets and their clients, listeners, sessions (two for a jump) and files
/// being read. Generous, since running short of them fails whole hosts.
const RESERVE_MIN: u64 = 128;

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (as most servers do; the default soft
/// limit of 1024 is a relic of select(2)) and returns the limit now in force.
pub fn raise_open_files() -> u64 {
    let Some((soft, hard)) = open_files_limit() else {
        return u64::MAX;
    };
    // macOS refuses RLIM_INFINITY and anything above OPEN_MAX for the soft limit.
    #[cfg(target_os = "macos")]
    let hard = hard.min(libc::OPEN_MAX as u64);
    if soft >= hard {
        return soft;
    }
    let wanted = libc::rlimit {
        rlim_cur: hard,
        rlim_max: hard,
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) } == 0 {
        hard
    } else {
        soft
    }
}

/// The soft and hard `RLIMIT_NOFILE`, `u64::MAX` standing for unlimited.
fn open_files_limit() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    // rlim_t is u64 on Linux and macOS.
    let value = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            u64::MAX
        } else {
            v
        }
    };
    Some((value(limit.rlim_cur), value(limit.rlim_max)))
}

/// How many clients may be open at once: `max_connections`, but never so many that the
/// descriptors left under the open-file limit fall below the reserve.
pub fn client_capacity(max_connections: usize) -> usize {
    let soft = open_files_limit().map_or(u64::MAX, |(soft, _)| soft);
    capacity_within(max_connections, soft)
}

fn capacity_within(max_connections: usize, open_files: u64) -> usize {
    // An eighth of a large limit is kept back too (each reserved descriptor is cheap), and
    // half of a tiny one.
    let reserve = RESERVE_MIN.max(open_files / 8).min(open_files / 2);
    let share = open_files.saturating_sub(reserve).max(1);
    usize::try_from(share).map_or(max_connections, |share| share.min(max_connections))
}

/// Whether `error` says this process (EMFILE) or the system (ENFILE) has no descriptor left: a
/// local condition that says nothing about the host being contacted or the file being read.
pub fn is_out_of_descriptors(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_get_what_the_limit_leaves_after_the_reserve() {
        assert_eq!(capacity_within(4096, 256), 128);
        assert_eq!(capacity_within(4096, 1024), 1024 - 128);
        assert_eq!(capacity_within(4096, 1 << 20), 4096);
        assert_eq!(capacity_within(100_000, 80_000), 70_000);
        assert_eq!(capacity_within(4096, u64::MAX), 4096);
        // A tiny limit is shared half and half.
        assert_eq!(capacity_within(4096, 48), 24);
        assert_eq!(capacity_within(4096, 1), 1);
    }

    #[test]
    fn only_descriptor_exhaustion_is_local() {
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            libc::EMFILE
        )));
        assert!(is_out_of_descriptors(&io::Error::from_raw_os_error(
            libc::ENFILE
        )));
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert!(!is_out_of_descriptors(&refused));
        assert!(!is_out_of_descriptors(&io::Error::other("x")));
    }
}
