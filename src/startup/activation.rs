//! A forward's listening sockets: those a socket manager handed over (systemd, launchd), matched
//! to forwards by name, else by address or socket path; every forward left without one is
//! bound here.
//!
//! All of it runs before the async runtime starts and before detaching, so that a port in use
//! or a bad environment reaches the user's terminal.

use std::io;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use tracing::{info, warn};

use super::InheritedSocket;
use crate::config::{DEFAULT_LISTEN_MODE, Forward, Listen};
use crate::listener;
use crate::local::StdListener;

/// The listening sockets to serve, each with its forward; a forward may have several (launchd
/// returns one per address a name resolves to).
#[derive(Debug)]
pub struct Listeners {
    pub sockets: Vec<(Forward, StdListener)>,
    /// How many came from a socket manager.
    pub inherited: usize,
}

/// The index of the forward an inherited socket belongs to: the one named like it, else the
/// one listening on its address or socket path.
pub fn match_forward(
    forwards: &[Forward],
    name: Option<&str>,
    place: Option<&Listen>,
) -> Option<usize> {
    name.and_then(|name| forwards.iter().position(|f| f.name == name))
        .or_else(|| place.and_then(|p| forwards.iter().position(|f| f.listen.same_place(p))))
}

/// Where an adopted socket listens; a Unix socket without a path (unnamed or abstract) has no
/// place a forward can name.
fn place_of(listener: &StdListener) -> Option<Listen> {
    match listener {
        StdListener::Tcp(l) => l.local_addr().ok().map(Listen::Tcp),
        StdListener::Unix(l, _) => {
            let addr = l.local_addr().ok()?;
            let path = addr.as_pathname()?.to_path_buf();
            Some(Listen::Unix {
                path,
                mode: DEFAULT_LISTEN_MODE,
            })
        }
    }
}

/// Checks that `fd` is a listening TCP or Unix stream socket, then makes it close-on-exec and
/// non-blocking (systemd-socket-activate passes it blocking and inheritable; tokio needs
/// non-blocking).
pub fn adopt(fd: OwnedFd) -> io::Result<StdListener> {
    let raw = fd.as_raw_fd();
    if sockopt(raw, libc::SO_TYPE)? != libc::SOCK_STREAM {
        return Err(io::Error::other("not a stream socket"));
    }
    if sockopt(raw, libc::SO_ACCEPTCONN)? == 0 {
        return Err(io::Error::other("not listening"));
    }
    // SAFETY: F_GETFD/F_SETFD on a descriptor we own.
    unsafe {
        let flags = libc::fcntl(raw, libc::F_GETFD);
        if flags < 0 || libc::fcntl(raw, libc::F_SETFD, flags | libc::FD_CLOEXEC) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let family = socket2::SockRef::from(&fd).local_addr()?.family();
    match libc::c_int::from(family) {
        libc::AF_INET | libc::AF_INET6 => {
            let listener = TcpListener::from(fd);
            listener.set_nonblocking(true)?;
            Ok(StdListener::Tcp(listener))
        }
        libc::AF_UNIX => {
            let listener = UnixListener::from(fd);
            listener.set_nonblocking(true)?;
            // Its file is the socket manager's, which keeps it for the next activation.
            Ok(StdListener::Unix(listener, None))
        }
        _ => Err(io::Error::other("neither a TCP nor a Unix socket")),
    }
}

fn sockopt(fd: libc::c_int, option: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of an int.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            option,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// Sorts inherited sockets into forwards; those matching none, or unusable, are logged and
/// closed. Returns `(forward index, listener)` pairs.
///
/// An inherited socket obeys the loopback rule of a bound one: a socket manager told to listen
/// on every interface (a bare port in a `.socket` unit, a plist without `SockNodeName`) would
/// otherwise expose the forward to the network behind the config's back.
pub fn assign(
    forwards: &[Forward],
    inherited: Vec<InheritedSocket>,
) -> anyhow::Result<Vec<(usize, StdListener)>> {
    let mut assigned = Vec::new();
    for InheritedSocket { fd, name, source } in inherited {
        let raw = fd.as_raw_fd();
        let shown = name.as_deref().unwrap_or("");
        let listener = match adopt(fd) {
            Ok(listener) => listener,
            Err(e) => {
                warn!(
                    fd = raw,
                    name = %shown,
                    %source,
                    "inherited descriptor is not a listening TCP or Unix socket ({e}); closing it"
                );
                continue;
            }
        };
        let place = place_of(&listener);
        let shown_addr = place.as_ref().map(|a| a.to_string()).unwrap_or_default();
        match match_forward(forwards, name.as_deref(), place.as_ref()) {
            Some(i) => {
                let forward = &forwards[i];
                if let Some(addr) = place.filter(|a| !a.is_local() && !forward.allow_non_loopback) {
                    anyhow::bail!(
                        "forward {:?}: the socket {source} passed (fd {raw}) listens on {addr}, \
                         which is not a loopback address: serving it would expose the forward to \
                         the network. Make the socket manager listen on a loopback address (the \
                         forward's listen = \"{}\"), or set `allow_non_loopback = true` in this \
                         [[forward]] if that is intended",
                        forward.name,
                        forward.listen
                    );
                }
                info!(forward = %forwards[i].name, listen = %shown_addr, fd = raw, %source, "inherited socket");
                assigned.push((i, listener));
            }
            None => {
                warn!(fd = raw, name = %shown, listen = %shown_addr, %source, "inherited socket matches no forward by name or address; closing it");
            }
        }
    }
    Ok(assigned)
}

/// Every forward's listeners: inherited from systemd (`inherited`, taken first thing by
/// [`crate::startup`]) or launchd where they were passed, bound here otherwise.
pub(crate) fn open_listeners(
    forwards: &[Forward],
    inherited: Vec<InheritedSocket>,
) -> anyhow::Result<Listeners> {
    // launchd is asked only when systemd passed nothing (never, on a Mac).
    #[cfg(target_os = "macos")]
    let inherited = if inherited.is_empty() {
        let names = forwards.iter().map(|f| f.name.as_str());
        super::launchd::collect(names, super::launchd::activate)?
    } else {
        inherited
    };
    let mut by_forward: Vec<Vec<StdListener>> = forwards.iter().map(|_| Vec::new()).collect();
    let mut count = 0;
    for (i, listener) in assign(forwards, inherited)? {
        if let Some(own) = by_forward.get_mut(i) {
            own.push(listener);
            count += 1;
        }
    }
    let mut sockets = Vec::with_capacity(forwards.len());
    for (forward, mut own) in forwards.iter().zip(by_forward) {
        if own.is_empty() {
            own.push(listener::bind_std(forward)?);
        }
        sockets.extend(own.into_iter().map(|l| (forward.clone(), l)));
    }
    Ok(Listeners {
        sockets,
        inherited: count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(name: &str, listen: &str) -> Forward {
        Forward {
            name: name.into(),
            listen: Listen::Tcp(listen.parse().unwrap()),
            host: "srv".parse().unwrap(),
            target: "localhost:445".parse().unwrap(),
            allow_non_loopback: false,
        }
    }

    fn addr(s: &str) -> Option<&'static Listen> {
        Some(Box::leak(Box::new(Listen::Tcp(s.parse().unwrap()))))
    }

    #[test]
    fn a_name_wins_over_an_address() {
        let forwards = [
            forward("smb", "127.0.0.1:4445"),
            forward("db", "127.0.0.1:5432"),
        ];
        assert_eq!(
            match_forward(&forwards, Some("db"), addr("127.0.0.1:4445")),
            Some(1)
        );
        assert_eq!(match_forward(&forwards, Some("smb"), None), Some(0));
    }

    #[test]
    fn an_unknown_name_falls_back_to_the_exact_address() {
        let forwards = [
            forward("smb", "127.0.0.1:4445"),
            forward("db", "[::1]:5432"),
        ];
        let unit_name = Some("lazytunnel.socket");
        assert_eq!(
            match_forward(&forwards, unit_name, addr("[::1]:5432")),
            Some(1)
        );
        assert_eq!(
            match_forward(&forwards, None, addr("127.0.0.1:4445")),
            Some(0)
        );
        assert_eq!(match_forward(&forwards, None, addr("0.0.0.0:4445")), None);
        assert_eq!(
            match_forward(&forwards, unit_name, addr("127.0.0.1:1")),
            None
        );
        assert_eq!(match_forward(&forwards, None, None), None);
    }

    fn inherited(fd: impl Into<OwnedFd>, name: Option<&str>) -> InheritedSocket {
        InheritedSocket {
            fd: fd.into(),
            name: name.map(str::to_string),
            source: "test",
        }
    }

    #[test]
    fn sockets_are_assigned_and_the_unusable_or_unmatched_dropped() {
        let by_name = TcpListener::bind("127.0.0.1:0").unwrap();
        let by_addr = TcpListener::bind("127.0.0.1:0").unwrap();
        let stray = TcpListener::bind("127.0.0.1:0").unwrap();
        let by_addr_port = by_addr.local_addr().unwrap();
        let forwards = [
            forward("smb", "127.0.0.1:4445"),
            forward("db", &by_addr_port.to_string()),
        ];
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let not_listening = socket2_unbound_tcp();
        let given = vec![
            inherited(by_name, Some("smb")),
            inherited(udp, Some("smb")),
            inherited(by_addr, None),
            inherited(not_listening, Some("smb")),
            inherited(stray, Some("other")),
        ];
        let assigned = assign(&forwards, given).unwrap();
        let got: Vec<(usize, Option<Listen>)> =
            assigned.iter().map(|(i, l)| (*i, place_of(l))).collect();
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].0, 0);
        assert_eq!(got[1], (1, Some(Listen::Tcp(by_addr_port))));
    }

    #[test]
    fn an_inherited_unix_socket_is_matched_by_its_path_and_its_file_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.sock");
        let mut docker = forward("docker", "127.0.0.1:1");
        docker.listen = Listen::Unix {
            path: path.clone(),
            mode: 0o600,
        };
        let forwards = [forward("smb", "127.0.0.1:4445"), docker];
        let given = UnixListener::bind(&path).unwrap();
        let assigned = assign(&forwards, vec![inherited(given, Some("lazytunnel.socket"))]);
        let assigned: [(usize, StdListener); 1] = assigned.unwrap().try_into().unwrap();
        let [(1, listener)] = assigned else {
            panic!("not assigned to the forward with its path")
        };
        assert!(matches!(listener, StdListener::Unix(_, None)));
        drop(listener);
        assert!(path.exists(), "the socket manager's file was removed");
    }

    #[test]
    fn an_inherited_socket_on_every_interface_is_refused_unless_the_forward_allows_it() {
        // Bound to the wildcard address but never connected to: no traffic leaves loopback.
        let wildcard = || TcpListener::bind("0.0.0.0:0").unwrap();
        let forwards = [forward("smb", "127.0.0.1:4445")];
        let err = assign(&forwards, vec![inherited(wildcard(), Some("smb"))]).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("\"smb\"")
                && err.contains("0.0.0.0:")
                && err.contains("allow_non_loopback"),
            "{err}"
        );
        let mut allowed = forwards.clone();
        allowed[0].allow_non_loopback = true;
        let assigned = assign(&allowed, vec![inherited(wildcard(), Some("smb"))]).unwrap();
        assert_eq!(assigned.len(), 1);
    }

    #[test]
    fn adopted_sockets_are_non_blocking_and_close_on_exec() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let raw = listener.as_raw_fd();
        // What systemd-socket-activate passes: blocking and inheritable.
        unsafe { libc::fcntl(raw, libc::F_SETFD, 0) };
        let listener = adopt(listener.into()).unwrap();
        let (fd_flags, fl_flags) = unsafe {
            (
                libc::fcntl(raw, libc::F_GETFD),
                libc::fcntl(raw, libc::F_GETFL),
            )
        };
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0);
        assert_ne!(fl_flags & libc::O_NONBLOCK, 0);
        let StdListener::Tcp(listener) = listener else {
            panic!("a TCP socket adopted as {listener:?}")
        };
        assert_eq!(listener.as_raw_fd(), raw);
    }

    /// A TCP socket that was never put in listening state.
    fn socket2_unbound_tcp() -> OwnedFd {
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .unwrap()
            .into()
    }
}
