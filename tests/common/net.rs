//! Loopback target servers for forwarded connections ([`DataServer`]) and the byte-exact
//! helpers tests check transfers with.

use std::io;
use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// A loopback port that was free when this returned. Another process may take it before the
/// caller binds it, so use it only for a port another program binds itself, retrying with a
/// new one when told the address is in use (`ssh -L`, sshd). A daemon's listen ports are bound
/// by the test and handed over instead ([`super::inherit`]); a port nothing may listen on is a
/// [`refusing_port`].
pub fn free_port() -> u16 {
    StdTcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("could not bind 127.0.0.1:0")
        .port()
}

/// A loopback port that refuses connections: bound, not listening, and so held from another
/// process for as long as the returned socket lives. For a port nothing may listen on.
pub fn refusing_port() -> (socket2::Socket, u16) {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        .expect("could not create a socket");
    socket
        .bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .expect("could not bind 127.0.0.1:0");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|addr| addr.as_socket())
        .expect("local_addr")
        .port();
    (socket, port)
}

/// `len` pseudo-random bytes, the same for the same `seed` on every run and machine
/// (xorshift64, little-endian words). Equal to what [`ByteGenerator`] produces for `seed`.
pub fn deterministic_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0; len];
    ByteGenerator::new(seed).fill(&mut bytes);
    bytes
}

/// The stream behind [`deterministic_bytes`], for sending more data than should be held in
/// memory. Filling in pieces gives the same bytes as one fill as long as every piece but the
/// last is a multiple of 8 bytes long.
#[derive(Debug, Clone)]
pub struct ByteGenerator {
    state: u64,
}

impl ByteGenerator {
    pub fn new(seed: u64) -> Self {
        // xorshift never leaves the all-zero state, so keep out of it.
        let state = seed ^ 0x9E37_79B9_7F4A_7C15;
        ByteGenerator {
            state: if state == 0 { 1 } else { state },
        }
    }

    fn next_word(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state = x;
        x
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let word = self.next_word().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// Whether `err` is the peer resetting or aborting the connection (as opposed to a clean EOF,
/// which is not an error at all).
pub fn is_reset(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    )
}

/// Reads until EOF or an error. Returns the bytes read and how the stream ended: `Ok(())` for
/// a clean EOF, the error otherwise (see [`is_reset`]).
pub async fn read_until_closed<R: AsyncRead + Unpin>(reader: &mut R) -> (Vec<u8>, io::Result<()>) {
    let mut received = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return (received, Ok(())),
            Ok(n) => received.extend_from_slice(&buf[..n]),
            Err(err) => return (received, Err(err)),
        }
    }
}

/// What a [`DataServer`] does with each connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Echo every byte back; at the client's EOF shut down the write side, then close. So a
    /// half-closed client still receives everything it sent, followed by EOF.
    Echo,
    /// Read until EOF, then reply with the 32-byte SHA-256 of everything read, then close:
    /// checks uploads without holding them.
    HashUpload,
    /// Send `len` bytes of `deterministic_bytes(seed, len)`, shut down the write side, then
    /// read until the client's EOF before closing: checks downloads.
    Download { seed: u64, len: u64 },
}

/// How one connection to a [`DataServer`] went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnReport {
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// `None` if the connection ended cleanly.
    pub error: Option<io::ErrorKind>,
}

/// Counters of a [`DataServer`].
#[derive(Debug, Clone, Default)]
pub struct ServerStats {
    pub accepted: usize,
    /// Connections accepted and not yet finished.
    pub active: usize,
    /// Finished connections, in the order they finished.
    pub finished: Vec<ConnReport>,
}

/// A TCP server on 127.0.0.1 with an ephemeral port, serving every connection in one
/// [`Mode`] on the current tokio runtime. Stops, dropping its connections, on drop.
pub struct DataServer {
    addr: SocketAddr,
    stats: watch::Receiver<ServerStats>,
    task: JoinHandle<()>,
}

impl DataServer {
    pub async fn start(mode: Mode) -> DataServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("could not bind a DataServer on 127.0.0.1:0");
        let addr = listener.local_addr().expect("DataServer local address");
        let (sender, stats) = watch::channel(ServerStats::default());
        let task = tokio::spawn(accept_loop(listener, mode, Arc::new(sender)));
        DataServer { addr, stats, task }
    }

    /// A server in [`Mode::Echo`].
    pub async fn echo() -> DataServer {
        DataServer::start(Mode::Echo).await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn stats(&self) -> ServerStats {
        self.stats.borrow().clone()
    }

    pub fn accepted(&self) -> usize {
        self.stats.borrow().accepted
    }

    pub fn active(&self) -> usize {
        self.stats.borrow().active
    }

    /// Waits until `accepted == n` or `timeout` passes; returns the last count.
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |stats| stats.accepted == n)
            .await
            .accepted
    }

    /// Waits until `active == n` or `timeout` passes; returns the last count.
    pub async fn wait_for_active(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |stats| stats.active == n)
            .await
            .active
    }

    /// Waits until at least `n` connections have finished or `timeout` passes; returns the
    /// reports of all finished connections.
    pub async fn wait_for_finished(&self, n: usize, timeout: Duration) -> Vec<ConnReport> {
        self.wait_until(timeout, |stats| stats.finished.len() >= n)
            .await
            .finished
    }

    /// Waits for a change of counters rather than polling: the server publishes each one.
    async fn wait_until(
        &self,
        timeout: Duration,
        done: impl FnMut(&ServerStats) -> bool,
    ) -> ServerStats {
        let mut stats = self.stats.clone();
        let _ = tokio::time::timeout(timeout, stats.wait_for(done)).await;
        stats.borrow().clone()
    }
}

impl Drop for DataServer {
    fn drop(&mut self) {
        // Dropping the accept loop drops its JoinSet, which aborts every connection task.
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, mode: Mode, stats: Arc<watch::Sender<ServerStats>>) {
    let mut connections = JoinSet::new();
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(_) => {
                // Typically fd exhaustion during a stress test: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        stats.send_modify(|stats| {
            stats.accepted += 1;
            stats.active += 1;
        });
        let stats = Arc::clone(&stats);
        connections.spawn(async move {
            let report = serve(stream, mode).await;
            stats.send_modify(|stats| {
                stats.active -= 1;
                stats.finished.push(report);
            });
        });
        while connections.try_join_next().is_some() {}
    }
}

async fn serve(mut stream: TcpStream, mode: Mode) -> ConnReport {
    let mut report = ConnReport::default();
    let result = match mode {
        Mode::Echo => echo(&mut stream, &mut report).await,
        Mode::HashUpload => hash_upload(&mut stream, &mut report).await,
        Mode::Download { seed, len } => download(&mut stream, seed, len, &mut report).await,
    };
    report.error = result.err().map(|err| err.kind());
    report
}

async fn echo(stream: &mut TcpStream, report: &mut ConnReport) -> io::Result<()> {
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return stream.shutdown().await;
        }
        report.bytes_read += n as u64;
        stream.write_all(&buf[..n]).await?;
        report.bytes_written += n as u64;
    }
}

async fn hash_upload(stream: &mut TcpStream, report: &mut ConnReport) -> io::Result<()> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        report.bytes_read += n as u64;
        hasher.update(&buf[..n]);
    }
    let digest: [u8; 32] = hasher.finalize().into();
    stream.write_all(&digest).await?;
    report.bytes_written += digest.len() as u64;
    stream.shutdown().await
}

async fn download(
    stream: &mut TcpStream,
    seed: u64,
    len: u64,
    report: &mut ConnReport,
) -> io::Result<()> {
    // A multiple of 8, so the pieces match `deterministic_bytes` (see `ByteGenerator`).
    const PIECE: u64 = 64 * 1024;
    let mut generator = ByteGenerator::new(seed);
    let mut buf = vec![0; PIECE as usize];
    while report.bytes_written < len {
        let piece = &mut buf[..PIECE.min(len - report.bytes_written) as usize];
        generator.fill(piece);
        stream.write_all(piece).await?;
        report.bytes_written += piece.len() as u64;
    }
    stream.shutdown().await?;
    let (rest, ended) = read_until_closed(stream).await;
    report.bytes_read += rest.len() as u64;
    ended
}
