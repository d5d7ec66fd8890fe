//! The SOCKS side of a dynamic forward (`socks = true`, `ssh -D`), between accepting a socket
//! and opening its channel: reading which destination the client wants (SOCKS5 as in RFC 1928,
//! with no authentication and CONNECT only; SOCKS4 and 4a), and answering once the channel is
//! open or has failed. Unlike `ssh -D`, which grants a request before the server has accepted
//! it and then just closes, a client learns why its connection failed.
//!
//! Every way a handshake can fail gets the protocol's reply where it has one, and a client
//! that sends nothing is dropped after [`HANDSHAKE_TIMEOUT`]. A name is passed to the server
//! unresolved and resolved there.

mod request;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::time::Duration;

use russh::ChannelOpenFailure;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

use crate::config::Target;
use crate::session::OpenError;

/// How long a client may take to send its greeting and request. Clients send them at once, so
/// 10 s covers a slow link with room to spare, and bounds how long a silent or stuck client
/// holds a connection slot.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Which SOCKS a client speaks (SOCKS4a is SOCKS4 with a name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Socks4,
    Socks5,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::Socks4 => "SOCKS4",
            Version::Socks5 => "SOCKS5",
        })
    }
}

/// A client's CONNECT request, read and not yet answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub version: Version,
    /// An IP address, or a name for the server to resolve.
    pub target: Target,
}

/// Why a requested connection was not made, as a reply says it. SOCKS4 has one code for all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 0x01: the SSH session failed, or the server gave another reason.
    General,
    /// 0x02: the server does not allow this destination (administratively prohibited).
    NotAllowed,
    /// 0x03: there is no session to the SSH server, so no destination is reachable.
    NetworkUnreachable,
    /// 0x04: the name cannot be a host's.
    HostUnreachable,
    /// 0x05: the server could not connect to the destination.
    ConnectionRefused,
    /// 0x07: BIND, UDP ASSOCIATE or another command than CONNECT.
    CommandNotSupported,
    /// 0x08: an address type other than IPv4, IPv6 or a name.
    AddressTypeNotSupported,
}

impl Failure {
    /// What to tell a client whose channel could not be opened. OpenSSH's sshd sends
    /// CONNECT_FAILED for a refused port, an unreachable host and an unknown name alike.
    pub fn of(error: &OpenError) -> Failure {
        match error {
            OpenError::Refused { failure, .. } => match failure {
                ChannelOpenFailure::ConnectFailed => Failure::ConnectionRefused,
                ChannelOpenFailure::AdministrativelyProhibited => Failure::NotAllowed,
                _ => Failure::General,
            },
            OpenError::Connect { .. } => Failure::NetworkUnreachable,
            _ => Failure::General,
        }
    }

    fn socks5_code(self) -> u8 {
        match self {
            Failure::General => 0x01,
            Failure::NotAllowed => 0x02,
            Failure::NetworkUnreachable => 0x03,
            Failure::HostUnreachable => 0x04,
            Failure::ConnectionRefused => 0x05,
            Failure::CommandNotSupported => 0x07,
            Failure::AddressTypeNotSupported => 0x08,
        }
    }
}

/// Why a handshake ended without a request to serve. Each has been answered already where the
/// protocol has an answer.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no SOCKS request within {}", humantime::format_duration(*.0))]
    TimedOut(Duration),
    #[error("local client: {0}")]
    Local(#[from] io::Error),
    #[error("not a SOCKS request (first byte {first:#04x}){}", not_socks_hint(*.first))]
    NotSocks { first: u8 },
    #[error(
        "the client offers no authentication method we accept (only 0x00, no authentication); \
         it offered {0:02x?}"
    )]
    NoAcceptableMethod(Vec<u8>),
    #[error("{version} command {command:#04x} is not supported: only CONNECT (0x01) is")]
    UnsupportedCommand { version: Version, command: u8 },
    #[error("SOCKS5 address type {0:#04x} is not supported")]
    UnsupportedAddressType(u8),
    #[error("{version} request names an impossible host {name:?}: {problem}")]
    BadName {
        version: Version,
        name: String,
        problem: String,
    },
    #[error("malformed {version} request: {problem}")]
    Malformed {
        version: Version,
        problem: &'static str,
    },
}

fn not_socks_hint(first: u8) -> &'static str {
    if first.is_ascii_uppercase() {
        "; it looks like HTTP: set this address as the client's SOCKS proxy, not its HTTP proxy"
    } else {
        ""
    }
}

/// Reads a SOCKS4, 4a or 5 CONNECT request from `stream`, answering the SOCKS5 greeting, within
/// [`HANDSHAKE_TIMEOUT`]. Reads nothing past the request, so data a client sends early stays
/// in the socket for the forward.
pub async fn accept<S>(stream: &mut S) -> Result<Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, request::read(stream)).await {
        Ok(result) => result,
        Err(_) => Err(HandshakeError::TimedOut(HANDSHAKE_TIMEOUT)),
    }
}

impl Request {
    /// Tells the client its connection is made: what follows is the destination's data.
    pub async fn grant<S: AsyncWrite + Unpin>(&self, stream: &mut S) -> io::Result<()> {
        stream.write_all(&reply(self.version, None)).await
    }

    /// Tells the client its connection failed and why; the caller then closes it.
    pub async fn refuse<S: AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        failure: Failure,
    ) -> io::Result<()> {
        stream.write_all(&reply(self.version, Some(failure))).await
    }
}

/// The reply to a request: granted (`None`) or failed. The bound address is zeros, as in
/// `ssh -D`: the real one is on the server's side and of no use to the client.
fn reply(version: Version, failure: Option<Failure>) -> Vec<u8> {
    match version {
        // VN 0, CD 0x5a granted or 0x5b rejected, DSTPORT, DSTIP.
        Version::Socks4 => {
            let code = if failure.is_some() { 0x5b } else { 0x5a };
            vec![0, code, 0, 0, 0, 0, 0, 0]
        }
        // VER 5, REP, RSV, ATYP IPv4, BND.ADDR, BND.PORT.
        Version::Socks5 => {
            let code = failure.map_or(0, Failure::socks5_code);
            vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
        }
    }
}
