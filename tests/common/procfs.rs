//! Reads `/proc` to observe processes and TCP connections from the outside, so tests can check
//! what the code under test did on the wire (how many SSH connections exist) without trusting
//! its own account of it.

use std::fs;

/// Number of ESTABLISHED TCP sockets (IPv4 and IPv6) whose *local* port is `port`.
///
/// For a server port that is one per accepted connection: the client ends of those connections
/// have `port` as their remote port and are not counted. Sockets half-way through closing
/// (FIN_WAIT, CLOSE_WAIT, TIME_WAIT) are not counted either.
pub fn established_connections(port: u16) -> usize {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(table).ok())
        .map(|table| count_established(&table, port))
        .sum()
}

/// [`established_connections`] in the network namespace of process `pid`.
pub fn established_connections_of(pid: u32, port: u16) -> usize {
    ["tcp", "tcp6"]
        .iter()
        .filter_map(|table| fs::read_to_string(format!("/proc/{pid}/net/{table}")).ok())
        .map(|table| count_established(&table, port))
        .sum()
}

/// Counts rows of a `/proc/net/tcp`-format table in state 01 (ESTABLISHED) with local port
/// `port`. A row reads `sl local_address rem_address st ...`, addresses as `HEXADDR:HEXPORT`.
pub fn count_established(table: &str, port: u16) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|row| {
            let mut fields = row.split_whitespace();
            let local = fields.nth(1);
            let state = fields.nth(1);
            let local_port = local
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            state == Some("01") && local_port == Some(port)
        })
        .count()
}

/// The parent pid and state letter of a live process, from `/proc/PID/stat`.
fn parent_and_state(pid: u32) -> Option<(u32, char)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid ...`; comm may itself contain spaces and parentheses.
    let after_comm = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_comm.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((ppid, state))
}

/// Pids of the running (not zombie) direct children of `parent`.
pub fn children(parent: u32) -> Vec<u32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut pids: Vec<u32> = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&pid| {
            matches!(parent_and_state(pid), Some((ppid, state)) if ppid == parent && state != 'Z')
        })
        .collect();
    pids.sort_unstable();
    pids
}

/// Pids of every running descendant of `ancestor` (children, their children, ...), parents
/// before their children.
pub fn descendants(ancestor: u32) -> Vec<u32> {
    let mut found = Vec::new();
    let mut frontier = vec![ancestor];
    while let Some(pid) = frontier.pop() {
        for child in children(pid) {
            found.push(child);
            frontier.push(child);
        }
    }
    found
}

/// Open file descriptors of a live process (entries of `/proc/PID/fd`).
pub fn fd_count(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap_or_else(|err| panic!("cannot list /proc/{pid}/fd: {err}"))
        .count()
}

/// A numeric field of `/proc/PID/status` such as `Threads` or `VmRSS` (in kB).
pub fn status_field(pid: u32, field: &str) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// User plus system CPU time a process has used, in clock ticks (`/proc/PID/stat`).
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|err| panic!("cannot read /proc/{pid}/stat: {err}"));
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// Whether process `pid` is ending: the kernel has begun its exit (`PF_EXITING` in the flags
/// of `/proc/PID/stat`, set before it closes the descriptors) or it is a zombie, or gone.
pub fn is_exiting(pid: u32) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return true;
    };
    // Fields after the parenthesised command name: state is field 3, flags field 9.
    let after_name = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let flags: u64 = fields
        .get(6)
        .and_then(|f| f.parse().ok())
        .unwrap_or_else(|| panic!("no flags in /proc/{pid}/stat: {stat}"));
    matches!(fields.first(), Some(&"Z") | Some(&"X")) || flags & PF_EXITING != 0
}

/// How many TCP sockets process `pid` holds open (as descriptors) whose local port is
/// `local_port` or whose remote port is `remote_port`, listeners excluded. A connection that
/// has ended on the wire but whose descriptor is still open counts, which is the point: it is
/// what tells that a process has finished with its connections.
pub fn open_tcp_sockets(pid: u32, local_port: Option<u16>, remote_port: Option<u16>) -> usize {
    let port_of = |addr: &str| {
        addr.rsplit_once(':')
            .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok())
    };
    let mut inodes = std::collections::HashSet::new();
    for table in [
        format!("/proc/{pid}/net/tcp"),
        format!("/proc/{pid}/net/tcp6"),
    ] {
        let Ok(table) = fs::read_to_string(table) else {
            continue;
        };
        for row in table.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let (Some(local), Some(remote), Some(state), Some(inode)) =
                (fields.get(1), fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            let listening = *state == "0A";
            let matches = local_port.is_some_and(|p| port_of(local) == Some(p))
                || remote_port.is_some_and(|p| port_of(remote) == Some(p));
            if matches && !listening {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|entry| fs::read_link(entry.ok()?.path()).ok())
                .filter(|link| inodes.contains(link.to_string_lossy().as_ref()))
                .count()
        })
        .unwrap_or(0)
}

/// ESTABLISHED TCP connections with local port `port` that some process of `pids` holds open
/// (each connection once, however many of them share its descriptor). Unlike
/// [`established_connections`], other processes' sockets never count, whatever their ports.
pub fn established_connections_held_by(pids: &[u32], port: u16) -> usize {
    let Some(&first) = pids.first() else { return 0 };
    let mut inodes = std::collections::HashSet::new();
    for table in ["tcp", "tcp6"] {
        let Ok(table) = fs::read_to_string(format!("/proc/{first}/net/{table}")) else {
            continue;
        };
        for row in table.lines().skip(1) {
            let fields: Vec<&str> = row.split_whitespace().collect();
            let local_port = fields
                .get(1)
                .and_then(|addr| addr.rsplit_once(':'))
                .and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port)
                && fields.get(3) == Some(&"01")
                && let Some(inode) = fields.get(9)
            {
                inodes.insert(format!("socket:[{inode}]"));
            }
        }
    }
    let mut held = std::collections::HashSet::new();
    for pid in pids {
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
            continue;
        };
        for link in entries.filter_map(|e| fs::read_link(e.ok()?.path()).ok()) {
            let link = link.to_string_lossy().into_owned();
            if inodes.contains(&link) {
                held.insert(link);
            }
        }
    }
    held.len()
}
