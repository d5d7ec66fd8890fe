//! Opening one authenticated SSH session to a host: TCP connect with our socket options,
//! russh configuration that avoids its traps, host key verification, authentication.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use russh::WindowBudget;
use russh::client::{self, Handle};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::auth::{self, AuthError};
use crate::ssh_config::HostConfig;
use quick_ack::QuickAck;

mod algorithms;
mod handler;
mod quick_ack;

pub use handler::Client;

/// The per-channel receive window we grant when nothing asks for more: OpenSSH's own.
pub const WINDOW_MIN: u32 = 2 * 1024 * 1024;
/// The largest window chosen by itself (`window_size` may set more).
pub const WINDOW_MAX: u32 = 16 * 1024 * 1024;
/// The rate a chosen window must not cap, in bytes per second of round trip: 1 Gbit/s.
const WINDOW_RATE: f64 = 125_000_000.0;
/// What one read from the server's socket takes when russh asks for less: a burst of small
/// packets, or the head of a large one.
const READ_BATCH: usize = 8 * 1024;
/// The largest packet the SSH spec lets every implementation accept.
const MAX_PACKET_SIZE: u32 = 65535;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("could not resolve {host}: {error}")]
    Resolve { host: String, error: std::io::Error },
    #[error("could not connect to {addr}: {error}")]
    Tcp { addr: String, error: std::io::Error },
    #[error("no answer from {addr} within {}", humantime::format_duration(*timeout))]
    Timeout { addr: String, timeout: Duration },
    #[error("{0}")]
    HostKey(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("ssh handshake with {addr} failed: {error}")]
    Handshake { addr: String, error: russh::Error },
    /// The attempt ended without an outcome: it panicked, or its task was cancelled.
    #[error("the connect attempt was abandoned ({0})")]
    Abandoned(&'static str),
    /// The jump host (ProxyJump) could not carry the connection.
    #[error("through jump host {jump}: {error}")]
    Jump {
        jump: String,
        error: String,
        permanent: bool,
    },
}

impl ConnectError {
    /// What kind of thing failed, in words for a person: network, host key, authentication…
    pub fn kind(&self) -> &'static str {
        match self {
            ConnectError::Resolve { .. }
            | ConnectError::Tcp { .. }
            | ConnectError::Timeout { .. } => "network",
            ConnectError::HostKey(_) => "host key",
            ConnectError::Auth(_) => "authentication",
            ConnectError::Handshake { .. } => "ssh handshake",
            ConnectError::Jump { .. } => "jump host",
            ConnectError::Abandoned(_) => "internal",
        }
    }

    /// Failures that retrying cannot fix without the user's action.
    pub fn is_permanent(&self) -> bool {
        if let ConnectError::Jump { permanent, .. } = self {
            return *permanent;
        }
        matches!(
            self,
            ConnectError::HostKey(_)
                | ConnectError::Auth(
                    AuthError::Rejected { .. }
                        | AuthError::EncryptedKey { .. }
                        | AuthError::NoIdentities { .. }
                )
        )
    }
}

/// The receive window for a path with round trip `rtt`: enough for 1 Gbit/s, between
/// [`WINDOW_MIN`] and [`WINDOW_MAX`]. russh tops the window up only once half of it is used,
/// so a window sustains about half of itself per round trip: it is twice the product.
///
/// Why not always the largest: sshd reads a channel's target as far ahead as our window lets
/// it, into one buffer that it grows 32 KiB at a time by copying it whole; past a few MiB each
/// step is a fresh mmap, page faults and a bzero of the old copy. A 16 MiB window made sshd
/// spend 20-40% more CPU per GiB on loopback, where 2 MiB already allows 20 GB/s.
pub fn window_for(rtt: Duration) -> u32 {
    let wanted = 2.0 * rtt.as_secs_f64() * WINDOW_RATE;
    wanted.clamp(f64::from(WINDOW_MIN), f64::from(WINDOW_MAX)) as u32
}

/// A live, authenticated session. Dropping it disconnects.
pub struct Connection {
    pub handle: Handle<Client>,
    pub local_addr: SocketAddr,
    pub remote_addr: SocketAddr,
    /// The round trip measured while opening the transport: the TCP connect, or for a host
    /// behind a jump host, the channel open through it.
    pub path_rtt: Duration,
    /// The per-channel receive window granted on this session.
    pub window: u32,
    /// Cancelled when russh's session task ends, for whatever reason.
    pub dead: CancellationToken,
    /// Why the session ended, once it has (set by the handler).
    pub end_reason: Arc<Mutex<Option<String>>>,
}

/// Connects, verifies the host key and authenticates, all within `host.connect_timeout`.
/// `carries` says the session will carry other hosts' sessions (it is their jump host).
/// Channels' receive windows are reserved from `budget`.
pub async fn connect(
    host: Arc<HostConfig>,
    carries: bool,
    budget: Arc<WindowBudget>,
) -> Result<Connection, ConnectError> {
    within_connect_timeout(&host.clone(), establish(host, carries, budget)).await
}

async fn within_connect_timeout(
    host: &HostConfig,
    work: impl Future<Output = Result<Connection, ConnectError>>,
) -> Result<Connection, ConnectError> {
    let timeout = host.connect_timeout;
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| {
            Err(ConnectError::Timeout {
                addr: format!("{}:{}", host.host_name, host.port),
                timeout,
            })
        })
}

async fn establish(
    host: Arc<HostConfig>,
    carries: bool,
    budget: Arc<WindowBudget>,
) -> Result<Connection, ConnectError> {
    let (stream, rtt) = connect_tcp(&host).await?;
    let local_addr = stream.local_addr().map_err(|error| ConnectError::Tcp {
        addr: host.host_name.clone(),
        error,
    })?;
    let remote_addr = stream.peer_addr().map_err(|error| ConnectError::Tcp {
        addr: host.host_name.clone(),
        error,
    })?;
    // russh reads each packet as two exact reads (its length, then the rest), each a system
    // call, plus one that finds the socket empty. Through a small buffer, one read takes a
    // burst of control packets (a channel's open confirmation, data, EOF and close) at once,
    // and a short read tells tokio the socket is drained; a packet's bulk, larger than the
    // buffer, is still read straight into russh's own buffer.
    let stream = tokio::io::BufReader::with_capacity(READ_BATCH, QuickAck::new(stream));
    let window = window(&host, rtt, carries);
    handshake(host, stream, local_addr, remote_addr, rtt, window, budget).await
}

/// Like [`connect`], over `stream`: a direct-tcpip channel of the jump host's session
/// (ProxyJump), whose TCP connection's addresses are `local_addr` and `remote_addr`, and
/// which took `rtt` to open.
pub async fn connect_over<S>(
    host: Arc<HostConfig>,
    stream: S,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    rtt: Duration,
    carries: bool,
    budget: Arc<WindowBudget>,
) -> Result<Connection, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let window = window(&host, rtt, carries);
    within_connect_timeout(
        &host.clone(),
        handshake(host, stream, local_addr, remote_addr, rtt, window, budget),
    )
    .await
}

/// The window a session grants: `window_size` when configured; for a jump host's session the
/// largest automatic one, since every byte of the sessions it carries passes through its
/// channels, over round trips (through the jump host, onwards) it cannot know when it opens;
/// else [`window_for`] its own round trip.
fn window(host: &HostConfig, rtt: Duration, carries: bool) -> u32 {
    match host.window_size {
        Some(bytes) => bytes,
        None if carries => WINDOW_MAX,
        None => window_for(rtt),
    }
}

/// The SSH handshake, host key check and authentication over an open transport.
async fn handshake<S>(
    host: Arc<HostConfig>,
    stream: S,
    local_addr: SocketAddr,
    remote_addr: SocketAddr,
    path_rtt: Duration,
    window: u32,
    budget: Arc<WindowBudget>,
) -> Result<Connection, ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let dead = CancellationToken::new();
    let end_reason = Arc::new(Mutex::new(None));
    let host_key_problem = Arc::new(Mutex::new(None));
    let handler = Client {
        host: host.clone(),
        host_key_problem: host_key_problem.clone(),
        end_reason: end_reason.clone(),
        _dead: dead.clone().drop_guard(),
    };
    let mut handle = match client::connect_stream(
        Arc::new(russh_config(&host, window, budget)),
        stream,
        handler,
    )
    .await
    {
        Ok(handle) => handle,
        Err(error) => {
            if let Some(problem) = host_key_problem.lock().ok().and_then(|mut p| p.take()) {
                return Err(ConnectError::HostKey(problem));
            }
            return Err(ConnectError::Handshake {
                addr: format!("{}:{}", host.host_name, host.port),
                error,
            });
        }
    };
    auth::authenticate(&mut handle, &host).await?;
    Ok(Connection {
        handle,
        local_addr,
        remote_addr,
        path_rtt,
        window,
        dead,
        end_reason,
    })
}

/// Tries each resolved address in turn, as OpenSSH does. Returns the stream and how long its
/// connect took: one round trip to the server.
async fn connect_tcp(host: &HostConfig) -> Result<(TcpStream, Duration), ConnectError> {
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.host_name.as_str(), host.port))
        .await
        .map_err(|error| ConnectError::Resolve {
            host: host.host_name.clone(),
            error,
        })?
        .collect();
    let mut last_error = None;
    for addr in addrs {
        let started = Instant::now();
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                let rtt = started.elapsed();
                tune_socket(&stream, host);
                return Ok((stream, rtt));
            }
            Err(e) => last_error = Some((addr, e)),
        }
    }
    Err(match last_error {
        Some((addr, error)) => ConnectError::Tcp {
            addr: addr.to_string(),
            error,
        },
        None => ConnectError::Resolve {
            host: host.host_name.clone(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        },
    })
}

fn tune_socket(stream: &TcpStream, host: &HostConfig) {
    if let Err(e) = stream.set_nodelay(true) {
        warn!("cannot set TCP_NODELAY: {e}");
    }
    // Bound how long unacknowledged data may sit in the send queue, so a write to a vanished
    // peer fails instead of hanging; keepalives alone don't see a blocked writer.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if let Err(e) = SockRef::from(stream).set_tcp_user_timeout(Some(dead_after(host))) {
        warn!("cannot set TCP_USER_TIMEOUT: {e}");
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let _ = (SockRef::from(stream), host);
}

/// How long a silent server may take before the session is declared dead. Saturating: the
/// interval and count come from configuration (up to OpenSSH's INT_MAX each, more from our
/// own TOML), and an overflow must not panic the connect task.
pub fn dead_after(host: &HostConfig) -> Duration {
    host.keepalive_interval
        .saturating_mul(host.keepalive_max.saturating_add(1))
}

fn russh_config(host: &HostConfig, window: u32, budget: Arc<WindowBudget>) -> client::Config {
    let preferred = algorithms::preferred(host);
    client::Config {
        window_size: window,
        maximum_packet_size: MAX_PACKET_SIZE,
        keepalive_interval: Some(host.keepalive_interval),
        keepalive_max: host.keepalive_max as usize,
        // A backstop that bounds a blocked socket write on every OS; keepalive replies reset it,
        // so it never fires on a healthy idle session.
        inactivity_timeout: Some(dead_after(host).saturating_add(host.keepalive_interval)),
        nodelay: true,
        window_budget: Some(budget),
        preferred,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13 item 2: the largest values ssh_config allows, and larger ones from our own
    /// table, give a deadline instead of an overflow panic.
    #[test]
    fn dead_after_saturates_instead_of_overflowing() {
        let text = "[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"srv\"\ntarget = \"x:1\"\n";
        let config =
            crate::config::Config::from_str(text, std::path::Path::new("/t.toml")).unwrap();
        let ssh = crate::ssh_config::SshConfigFile::parse(
            std::path::Path::new("/t/ssh_config"),
            "ServerAliveInterval 2147483647\nServerAliveCountMax 2147483647\n",
            "/home/u".into(),
        )
        .unwrap();
        let mut host = ssh.resolve(&config, &config.forwards[0].host).unwrap();
        assert_eq!(
            dead_after(&host),
            Duration::from_secs(2147483647 * 2147483648)
        );
        host.keepalive_interval = Duration::MAX;
        host.keepalive_max = u32::MAX;
        assert_eq!(dead_after(&host), Duration::MAX);
        let _ = russh_config(&host, WINDOW_MIN, Arc::new(WindowBudget::new(1 << 20)));
    }

    #[test]
    fn the_window_covers_a_gigabit_of_round_trip_within_its_bounds() {
        assert_eq!(window_for(Duration::ZERO), WINDOW_MIN);
        assert_eq!(window_for(Duration::from_micros(50)), WINDOW_MIN);
        // 2 MiB already carries 1 Gbit/s up to an 8.4 ms round trip.
        assert_eq!(window_for(Duration::from_millis(8)), WINDOW_MIN);
        assert_eq!(window_for(Duration::from_millis(20)), 5_000_000);
        assert_eq!(window_for(Duration::from_millis(40)), 10_000_000);
        assert_eq!(window_for(Duration::from_millis(67)), 16_750_000);
        assert_eq!(window_for(Duration::from_millis(100)), WINDOW_MAX);
        assert_eq!(window_for(Duration::from_secs(3600)), WINDOW_MAX);
    }
}
