//! Reading a SOCKS4/4a or SOCKS5 request field by field, with exact reads only, and answering
//! a bad one with the protocol's error reply before returning the error.

use std::net::{Ipv4Addr, Ipv6Addr};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{Failure, HandshakeError, Request, Version, reply};
use crate::config::Target;

const CONNECT: u8 = 0x01;
/// SOCKS5 method "no authentication required", the only one we accept.
const NO_AUTH: u8 = 0x00;
const NO_ACCEPTABLE_METHODS: u8 = 0xff;
const ATYP_IPV4: u8 = 0x01;
const ATYP_NAME: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;
/// Longest SOCKS4 user id or 4a name read before giving up; SOCKS5 names have a length byte.
const MAX_NUL_TERMINATED: usize = 255;

pub(super) async fn read<S>(stream: &mut S) -> Result<Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    match stream.read_u8().await? {
        4 => socks4(stream).await,
        5 => socks5(stream).await,
        first => Err(HandshakeError::NotSocks { first }),
    }
}

/// After the version byte: the methods offered, our choice, then the request.
async fn socks5<S>(stream: &mut S) -> Result<Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let count = stream.read_u8().await?;
    let mut methods = vec![0; usize::from(count)];
    stream.read_exact(&mut methods).await?;
    if !methods.contains(&NO_AUTH) {
        stream.write_all(&[5, NO_ACCEPTABLE_METHODS]).await?;
        return Err(HandshakeError::NoAcceptableMethod(methods));
    }
    stream.write_all(&[5, NO_AUTH]).await?;

    // VER CMD RSV ATYP; RSV is not checked, as no client sets it.
    let mut head = [0; 4];
    stream.read_exact(&mut head).await?;
    let [version, command, _, address_type] = head;
    if version != 5 {
        return fail(
            stream,
            Version::Socks5,
            Failure::General,
            HandshakeError::Malformed {
                version: Version::Socks5,
                problem: "the request's version byte is not 5",
            },
        )
        .await;
    }
    let host = match address_type {
        ATYP_IPV4 => {
            let mut ip = [0; 4];
            stream.read_exact(&mut ip).await?;
            Ok(Ipv4Addr::from(ip).to_string())
        }
        ATYP_IPV6 => {
            let mut ip = [0; 16];
            stream.read_exact(&mut ip).await?;
            Ok(Ipv6Addr::from(ip).to_string())
        }
        ATYP_NAME => {
            let len = stream.read_u8().await?;
            let mut name = vec![0; usize::from(len)];
            stream.read_exact(&mut name).await?;
            Err(name)
        }
        other => {
            let error = HandshakeError::UnsupportedAddressType(other);
            let failure = Failure::AddressTypeNotSupported;
            return fail(stream, Version::Socks5, failure, error).await;
        }
    };
    let port = stream.read_u16().await?;
    finish(stream, Version::Socks5, command, host, port).await
}

/// After the version byte: CD DSTPORT DSTIP USERID NUL, and for 4a (DSTIP 0.0.0.x, x ≠ 0) a
/// name and NUL.
async fn socks4<S>(stream: &mut S) -> Result<Request, HandshakeError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let command = stream.read_u8().await?;
    let port = stream.read_u16().await?;
    let mut ip = [0; 4];
    stream.read_exact(&mut ip).await?;
    // The user id names nobody we know: read past it.
    if read_nul_terminated(stream).await?.is_none() {
        return fail(
            stream,
            Version::Socks4,
            Failure::General,
            too_long("the user id is longer than 255 bytes"),
        )
        .await;
    }
    let host = match ip {
        [0, 0, 0, x] if x != 0 => match read_nul_terminated(stream).await? {
            Some(name) => Err(name),
            None => {
                let error = too_long("the host name is longer than 255 bytes");
                return fail(stream, Version::Socks4, Failure::General, error).await;
            }
        },
        ip => Ok(Ipv4Addr::from(ip).to_string()),
    };
    finish(stream, Version::Socks4, command, host, port).await
}

/// The request's last checks, once all of it is read: the command, then a name's form. `host`
/// is an address, or a name still to check.
async fn finish<S>(
    stream: &mut S,
    version: Version,
    command: u8,
    host: Result<String, Vec<u8>>,
    port: u16,
) -> Result<Request, HandshakeError>
where
    S: AsyncWrite + Unpin,
{
    if command != CONNECT {
        let error = HandshakeError::UnsupportedCommand { version, command };
        return fail(stream, version, Failure::CommandNotSupported, error).await;
    }
    let host = match host {
        Ok(ip) => ip,
        Err(name) => match check_name(&name) {
            Ok(name) => name,
            Err(problem) => {
                let name = crate::printable::printable(&String::from_utf8_lossy(&name)).into();
                let error = HandshakeError::BadName {
                    version,
                    name,
                    problem,
                };
                return fail(stream, version, Failure::HostUnreachable, error).await;
            }
        },
    };
    Ok(Request {
        version,
        target: Target { host, port },
    })
}

/// A name must be one a server could resolve: the host name rules of the config's targets.
fn check_name(name: &[u8]) -> Result<String, String> {
    let name = std::str::from_utf8(name).map_err(|_| "not ASCII text".to_string())?;
    crate::config::check_host_name(name)
}

/// Reads up to and including a NUL; `None` when none comes within [`MAX_NUL_TERMINATED`].
async fn read_nul_terminated<S: AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<Vec<u8>>, HandshakeError> {
    let mut bytes = Vec::new();
    // One byte per read: the request is short, and nothing after it may be consumed.
    while bytes.len() <= MAX_NUL_TERMINATED {
        match stream.read_u8().await? {
            0 => return Ok(Some(bytes)),
            byte => bytes.push(byte),
        }
    }
    Ok(None)
}

fn too_long(problem: &'static str) -> HandshakeError {
    HandshakeError::Malformed {
        version: Version::Socks4,
        problem,
    }
}

/// Sends the error reply for `failure`, then returns `error`.
async fn fail<S: AsyncWrite + Unpin>(
    stream: &mut S,
    version: Version,
    failure: Failure,
    error: HandshakeError,
) -> Result<Request, HandshakeError> {
    stream.write_all(&reply(version, Some(failure))).await?;
    Err(error)
}
