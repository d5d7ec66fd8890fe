//! The two ends of a forward that may be Unix-domain sockets: where it listens ([`Listen`]: a
//! TCP address or a local socket path with its mode) and where the server connects it
//! ([`Endpoint`]: `host:port` or a socket path on the server). As in OpenSSH, a value containing
//! `/` is a path.

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use super::Target;
use super::addr::is_loopback;
use super::paths::expand_tilde_with;

/// A Unix socket's path must fit `sockaddr_un.sun_path` with its terminating NUL.
#[cfg(target_os = "linux")]
pub const MAX_SOCKET_PATH: usize = 107;
#[cfg(not(target_os = "linux"))]
pub const MAX_SOCKET_PATH: usize = 103;

/// `listen_mode` when not set: only the daemon's user may connect (OpenSSH's
/// `StreamLocalBindMask` 0177 gives the same).
pub const DEFAULT_LISTEN_MODE: u32 = 0o600;

/// Where a forward accepts its clients.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Listen {
    Tcp(SocketAddr),
    /// A Unix socket this daemon creates at `path` with permissions `mode` (or inherits).
    Unix {
        path: PathBuf,
        mode: u32,
    },
}

impl Listen {
    /// Reachable from this machine only: a loopback address, or any Unix socket.
    pub fn is_local(&self) -> bool {
        match self {
            Listen::Tcp(addr) => is_loopback(addr),
            Listen::Unix { .. } => true,
        }
    }

    /// The same socket, whatever the mode: a second bind of it would fail, and a reload hands
    /// it over.
    pub fn same_place(&self, other: &Listen) -> bool {
        match (self, other) {
            (Listen::Tcp(a), Listen::Tcp(b)) => a == b,
            (Listen::Unix { path: a, .. }, Listen::Unix { path: b, .. }) => a == b,
            _ => false,
        }
    }

    pub fn tcp(&self) -> Option<SocketAddr> {
        match self {
            Listen::Tcp(addr) => Some(*addr),
            Listen::Unix { .. } => None,
        }
    }
}

/// So that a config's TCP listen compares with an address directly.
impl PartialEq<SocketAddr> for Listen {
    fn eq(&self, other: &SocketAddr) -> bool {
        self.tcp() == Some(*other)
    }
}

/// `127.0.0.1:4445`, or the socket's path.
impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Listen::Tcp(addr) => addr.fmt(f),
            Listen::Unix { path, .. } => path.display().fmt(f),
        }
    }
}

/// Where the server connects a forwarded connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `direct-tcpip`: a host (resolved on the server) and port.
    Tcp(Target),
    /// `direct-streamlocal@openssh.com`: an absolute socket path on the server.
    Unix(String),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Tcp(target) => target.fmt(f),
            Endpoint::Unix(path) => f.write_str(path),
        }
    }
}

/// `HOST:PORT`, `[IPv6]:PORT`, or an absolute path on the server.
impl std::str::FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            remote_path(s).map(Endpoint::Unix)
        } else {
            s.parse().map(Endpoint::Tcp)
        }
    }
}

/// Checks a socket path on the server. It is not expanded: `~` would mean the local home.
pub(crate) fn remote_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') {
        return Err(format!(
            "{s:?} is not an absolute path: a socket path on the server must start with `/`"
        ));
    }
    check_path_text(s)?;
    Ok(s.to_owned())
}

/// Expands `~` in a local socket path and checks it: absolute, short enough, printable.
pub(crate) fn local_path(s: &str, home: Option<&OsStr>) -> Result<PathBuf, String> {
    check_path_text(s)?;
    let path = expand_tilde_with(s, home).map_err(|e| e.to_string())?;
    if !path.is_absolute() {
        return Err(format!(
            "{s:?} is not an absolute path: a daemon has no meaningful working directory, so \
             write the socket's path from `/` or `~/`"
        ));
    }
    let len = path.as_os_str().len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "{} is {len} bytes long, more than the {MAX_SOCKET_PATH} a Unix socket path may have",
            path.display()
        ));
    }
    Ok(path)
}

/// Control characters would end a unit file's line or hide in logs.
fn check_path_text(s: &str) -> Result<(), String> {
    if s.chars().any(char::is_control) {
        return Err(format!("{s:?} contains a control character"));
    }
    let len = s.len();
    if len > MAX_SOCKET_PATH {
        return Err(format!(
            "the path is {len} bytes long, more than the {MAX_SOCKET_PATH} a Unix socket path may have"
        ));
    }
    Ok(())
}

/// Parses `listen_mode`: octal permission bits such as `"0660"` or `"600"`, which must let the
/// owner read and write (the owner is the daemon's user, whose clients need to connect).
pub(crate) fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    let mode = match digits {
        "" => None,
        d if d.bytes().all(|b| (b'0'..=b'7').contains(&b)) => u32::from_str_radix(d, 8).ok(),
        _ => None,
    }
    .filter(|m| *m <= 0o777)
    .ok_or_else(|| "expected octal permission bits such as \"0600\" or \"0660\"".to_string())?;
    if mode & 0o600 != 0o600 {
        return Err(format!(
            "{mode:04o} does not let the owner read and write the socket; use e.g. \"0600\" \
             (owner only) or \"0660\" (owner and group)"
        ));
    }
    Ok(mode)
}

/// A forward name derived from a socket path: the path without its leading `/`, with `/` as
/// `_` and any other character a name cannot have as `-` (`/tmp/docker.sock` →
/// `tmp_docker.sock`).
pub(crate) fn name_of_path(path: &Path) -> String {
    let text = path.to_string_lossy();
    let name: String = text
        .trim_start_matches('/')
        .chars()
        .map(|c| match c {
            '/' => '_',
            c if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') => c,
            _ => '-',
        })
        .collect();
    match name.as_str() {
        "" | "." | ".." => format!("unix{name}"),
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_with_a_slash_is_a_path_on_the_server() {
        let e: Endpoint = "/var/run/docker.sock".parse().unwrap();
        assert_eq!(e, Endpoint::Unix("/var/run/docker.sock".into()));
        assert_eq!(e.to_string(), "/var/run/docker.sock");
        let e: Endpoint = "db:5432".parse().unwrap();
        assert_eq!(e.to_string(), "db:5432");
        for bad in ["run/x.sock", "~/x.sock", "/a\nb"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad:?} was accepted");
        }
        let long = format!("/{}", "x".repeat(MAX_SOCKET_PATH));
        assert!(long.parse::<Endpoint>().unwrap_err().contains("bytes long"));
    }

    #[test]
    fn local_paths_expand_the_home_and_must_be_absolute() {
        let home = Some(OsStr::new("/home/vit"));
        assert_eq!(
            local_path("~/run/db.sock", home),
            Ok(PathBuf::from("/home/vit/run/db.sock"))
        );
        assert_eq!(local_path("/tmp/d.sock", None), Ok("/tmp/d.sock".into()));
        for bad in ["run/db.sock", "./db.sock", "~other/x", "/a\tb"] {
            assert!(local_path(bad, home).is_err(), "{bad:?} was accepted");
        }
        let deep = Some(OsStr::new(
            "/home/a-very-long-home-directory-name-that-goes-on-and-on",
        ));
        let err = local_path(
            "~/and-a-socket-name-that-is-also-quite-long-indeed.sock",
            deep,
        );
        assert!(err.unwrap_err().contains("bytes long"));
    }

    #[test]
    fn modes_are_octal_and_let_the_owner_in() {
        assert_eq!(parse_mode("0600"), Ok(0o600));
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o666"), Ok(0o666));
        for bad in ["", "0800", "rw", "01777", "-600", "0 600"] {
            assert!(parse_mode(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_mode("0400").unwrap_err().contains("owner"));
    }

    #[test]
    fn names_derived_from_paths_are_valid_forward_names() {
        assert_eq!(
            name_of_path(Path::new("/tmp/docker.sock")),
            "tmp_docker.sock"
        );
        assert_eq!(
            name_of_path(Path::new("/run/pg/.s.PGSQL.5432")),
            "run_pg_.s.PGSQL.5432"
        );
        assert_eq!(name_of_path(Path::new("/a b/ü")), "a-b_-");
        assert!(super::super::check_name(&name_of_path(Path::new("/"))).is_ok());
    }

    #[test]
    fn a_unix_listener_is_local_and_never_the_same_place_as_a_port() {
        let unix = Listen::Unix {
            path: "/tmp/x.sock".into(),
            mode: 0o600,
        };
        let other_mode = Listen::Unix {
            path: "/tmp/x.sock".into(),
            mode: 0o660,
        };
        let tcp = Listen::Tcp("0.0.0.0:1".parse().unwrap());
        assert!(unix.is_local() && !tcp.is_local());
        assert!(unix.same_place(&other_mode) && !unix.same_place(&tcp));
        assert_eq!(unix.to_string(), "/tmp/x.sock");
    }
}
