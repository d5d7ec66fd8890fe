//! The local end of a forward: its listening socket (a TCP port, or a Unix socket and the file
//! it owns) and the connections it accepts, so that the accept loop, the SOCKS handshake and the
//! copy are written once for both kinds.

mod socket_file;
mod stream;

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use tokio::net::{TcpListener, UnixListener};

use crate::config::Listen;
pub use socket_file::{SocketFile, bind_unix};
pub use stream::{LocalStream, ReadHalf, WriteHalf};

/// A listening socket before the runtime exists (bound or inherited at start-up).
#[derive(Debug)]
pub enum StdListener {
    Tcp(std::net::TcpListener),
    /// With the socket file it created, if this process bound it; an inherited socket's file
    /// belongs to the socket manager.
    Unix(std::os::unix::net::UnixListener, Option<SocketFile>),
}

/// A listening socket registered with the runtime.
#[derive(Debug)]
pub enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, Option<SocketFile>),
}

impl Listener {
    /// Registers a non-blocking listener; call inside the runtime.
    pub fn from_std(listener: StdListener) -> io::Result<Listener> {
        Ok(match listener {
            StdListener::Tcp(l) => Listener::Tcp(TcpListener::from_std(l)?),
            StdListener::Unix(l, file) => Listener::Unix(UnixListener::from_std(l)?, file),
        })
    }

    pub async fn accept(&self) -> io::Result<(LocalStream, Peer)> {
        match self {
            Listener::Tcp(l) => {
                let (stream, peer) = l.accept().await?;
                Ok((LocalStream::Tcp(stream), Peer::Tcp(peer)))
            }
            Listener::Unix(l, _) => {
                let (stream, _) = l.accept().await?;
                let uid = stream.peer_cred().ok().map(|c| c.uid());
                Ok((LocalStream::Unix(stream), Peer::Unix { uid }))
            }
        }
    }

    /// Where it listens, for status: the bound address for TCP (which an inherited socket
    /// decides), the configured `listen` for a Unix socket.
    pub fn listen(&self, configured: &Listen) -> Listen {
        match (self, configured) {
            (Listener::Tcp(l), _) => l
                .local_addr()
                .map(Listen::Tcp)
                .unwrap_or_else(|_| configured.clone()),
            (Listener::Unix(..), _) => configured.clone(),
        }
    }

    /// Gives a handed-over Unix socket a changed forward's `listen_mode`.
    pub fn apply_mode(&self, listen: &Listen) -> io::Result<()> {
        match (self, listen) {
            (Listener::Unix(_, Some(file)), Listen::Unix { mode, .. }) => file.set_mode(*mode),
            _ => Ok(()),
        }
    }
}

/// Who connected: a TCP peer's address, or a Unix peer's user id.
#[derive(Debug, Clone, Copy)]
pub enum Peer {
    Tcp(SocketAddr),
    Unix { uid: Option<u32> },
}

/// What OpenSSH reports as the originator of a connection with no address (a Unix socket):
/// some servers validate it.
const NO_ADDRESS: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 65535);

impl Peer {
    /// The originator a direct-tcpip channel reports to the server.
    pub fn originator(&self) -> SocketAddr {
        match self {
            Peer::Tcp(addr) => *addr,
            Peer::Unix { .. } => NO_ADDRESS,
        }
    }
}

/// `127.0.0.1:50312`, or `unix uid 1000`.
impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Peer::Tcp(addr) => addr.fmt(f),
            Peer::Unix { uid: Some(uid) } => write!(f, "unix uid {uid}"),
            Peer::Unix { uid: None } => f.write_str("unix"),
        }
    }
}
