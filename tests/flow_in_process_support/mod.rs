//! In-process pieces for the receive-flow specs (`tests/flow_in_process.rs`): a russh server that
//! hands every `direct-tcpip` channel to the test ([`ChannelServer`]), a russh client that
//! trusts it ([`connect`]), a capture of what russh logs ([`RusshLog`]), and a proxy that
//! rewrites the window a plaintext (`none` cipher) client advertises ([`WindowInflater`]).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use russh::keys::{Algorithm, PrivateKey, PublicKeyOrCertificate};
use russh::server::{self, Auth, ChannelOpenHandle, Session};
use russh::{Channel, ChannelMsg, Preferred, client};
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

use crate::common::{POLL_INTERVAL, TIMEOUT};

/// A russh server on 127.0.0.1 that lets anyone in (`none` authentication), accepts every
/// `direct-tcpip` channel and gives it to the test, which decides what the server sends.
pub struct ChannelServer {
    addr: SocketAddr,
    channels: mpsc::UnboundedReceiver<Channel<server::Msg>>,
    task: JoinHandle<()>,
}

impl ChannelServer {
    /// Starts serving with the given algorithm preferences on the current runtime.
    pub async fn start(preferred: Preferred) -> ChannelServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("could not bind 127.0.0.1:0 for the russh server");
        let addr = listener.local_addr().expect("russh server address");
        let host_key = PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
            .expect("could not generate a host key");
        let config = Arc::new(server::Config {
            keys: vec![host_key],
            preferred,
            auth_rejection_time: Duration::ZERO,
            auth_rejection_time_initial: Some(Duration::ZERO),
            ..Default::default()
        });
        let (opened, channels) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(listener, config, opened));
        ChannelServer {
            addr,
            channels,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The server's end of the next `direct-tcpip` channel a client opens.
    pub async fn next_channel(&mut self) -> Channel<server::Msg> {
        tokio::time::timeout(TIMEOUT, self.channels.recv())
            .await
            .unwrap_or_else(|_| panic!("no direct-tcpip channel within {TIMEOUT:?}"))
            .expect("the russh server stopped")
    }
}

impl Drop for ChannelServer {
    fn drop(&mut self) {
        // The sessions live in the task's JoinSet and go with it.
        self.task.abort();
    }
}

async fn serve(
    listener: TcpListener,
    config: Arc<server::Config>,
    opened: mpsc::UnboundedSender<Channel<server::Msg>>,
) {
    let mut sessions = JoinSet::new();
    while let Ok((stream, _)) = listener.accept().await {
        let handler = Opener {
            opened: opened.clone(),
        };
        let config = config.clone();
        sessions.spawn(async move {
            let ended = match server::run_stream(config, stream, handler).await {
                Ok(session) => session.await,
                Err(err) => Err(err),
            };
            if let Err(err) = ended {
                eprintln!("russh server: session ended: {err}");
            }
        });
    }
}

struct Opener {
    opened: mpsc::UnboundedSender<Channel<server::Msg>>,
}

impl server::Handler for Opener {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<server::Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        let _ = self.opened.send(channel);
        Ok(())
    }
}

/// Serves `channel` as an echo until the client's EOF.
pub fn spawn_echo(channel: Channel<server::Msg>) {
    tokio::spawn(async move {
        let (mut reader, mut writer) = tokio::io::split(channel.into_stream());
        if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
            let _ = writer.shutdown().await;
        }
    });
}

/// A client handler that trusts any server: the server is the test's own.
pub struct Trusting;

impl client::Handler for Trusting {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// An authenticated russh client session to `addr`.
pub async fn connect(addr: SocketAddr, config: client::Config) -> client::Handle<Trusting> {
    let stream = TcpStream::connect(addr)
        .await
        .unwrap_or_else(|err| panic!("could not connect to {addr}: {err}"));
    let mut handle = client::connect_stream(Arc::new(config), stream, Trusting)
        .await
        .unwrap_or_else(|err| panic!("ssh handshake with {addr} failed: {err}"));
    let auth = handle
        .authenticate_none("tunnel")
        .await
        .expect("none authentication failed");
    assert!(auth.success(), "the server refused none authentication");
    handle
}

/// Opens a `direct-tcpip` channel (the target is only a label: the server decides).
pub async fn open(client: &client::Handle<Trusting>) -> Channel<client::Msg> {
    tokio::time::timeout(
        TIMEOUT,
        client.channel_open_direct_tcpip("127.0.0.1", 9, "127.0.0.1", 40000),
    )
    .await
    .unwrap_or_else(|_| panic!("channel open not answered within {TIMEOUT:?}"))
    .expect("the server refused the channel")
}

/// Sends `payload` on an echo channel and reads it back, byte for byte.
pub async fn echo_round_trip(channel: &mut Channel<client::Msg>, payload: &[u8]) {
    channel
        .data_bytes(payload.to_vec())
        .await
        .expect("could not send on the echo channel");
    let back = read_data(channel, payload.len(), false).await;
    assert_eq!(back, payload, "the echo came back different");
}

/// Reads data messages until `len` bytes arrived or, with `until_eof`, until the server's EOF.
pub async fn read_data(channel: &mut Channel<client::Msg>, len: usize, until_eof: bool) -> Vec<u8> {
    let mut got = Vec::with_capacity(len);
    let read = async {
        while until_eof || got.len() < len {
            match channel.wait().await {
                Some(ChannelMsg::Data { data }) => got.extend_from_slice(&data),
                Some(ChannelMsg::Eof) if until_eof => return,
                Some(ChannelMsg::WindowAdjusted { .. }) => {}
                other => panic!("unexpected {other:?} after {} bytes", got.len()),
            }
        }
    };
    tokio::time::timeout(TIMEOUT, read)
        .await
        .unwrap_or_else(|_| panic!("read stalled at {} bytes after {TIMEOUT:?}", got.len()));
    got
}

/// What russh logs at warn level and above in this test binary (through the `log` bridge of
/// tracing-subscriber), shared by every test in it.
pub struct RusshLog;

static LOG: OnceLock<Arc<Mutex<String>>> = OnceLock::new();

struct Sink(Arc<Mutex<String>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut log = self.0.lock().unwrap_or_else(|e| e.into_inner());
        log.push_str(&String::from_utf8_lossy(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl RusshLog {
    /// Starts capturing (once per binary).
    pub fn capture() -> RusshLog {
        LOG.get_or_init(|| {
            let log = Arc::new(Mutex::new(String::new()));
            let sink = log.clone();
            tracing_subscriber::fmt()
                .with_max_level(tracing::Level::WARN)
                .with_ansi(false)
                .with_writer(move || Sink(sink.clone()))
                .try_init()
                .expect("could not install the log capture");
            log
        });
        RusshLog
    }

    /// How many captured lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        let log = LOG.get().expect("capture() installs the log");
        let log = log.lock().unwrap_or_else(|e| e.into_inner());
        log.lines().filter(|line| line.contains(needle)).count()
    }

    /// Waits until `count` lines contain `needle`; panics after [`TIMEOUT`].
    pub async fn wait_for_count(&self, needle: &str, count: usize) {
        let waited = tokio::time::timeout(TIMEOUT, async {
            while self.count(needle) < count {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "{} of {count} lines containing {needle:?} within {TIMEOUT:?}",
            self.count(needle)
        );
    }
}

/// The SSH message that opens a channel (RFC 4254 §5.1).
const MSG_CHANNEL_OPEN: u8 = 90;
/// No plaintext packet of the tests comes near this; a larger length means encrypted traffic.
const MAX_PLAIN_PACKET: usize = 256 * 1024;

/// A proxy for one SSH connection whose cipher and MAC are `none`: it passes everything on,
/// but rewrites the initial window of every CHANNEL_OPEN the client sends to `claimed`, so the
/// server believes it may send that much.
pub struct WindowInflater {
    addr: SocketAddr,
    rewritten: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl WindowInflater {
    pub async fn start(upstream: SocketAddr, claimed: u32) -> WindowInflater {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("could not bind 127.0.0.1:0 for the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let rewritten = Arc::new(AtomicUsize::new(0));
        let counter = rewritten.clone();
        let task = tokio::spawn(async move {
            let (client, _) = listener.accept().await.expect("proxy accept");
            let server = TcpStream::connect(upstream)
                .await
                .expect("proxy could not reach the server");
            let (client_read, client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let down = tokio::spawn(async move {
                let mut client_write = client_write;
                let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
            });
            rewrite_up(
                BufReader::new(client_read),
                &mut server_write,
                claimed,
                &counter,
            )
            .await;
            down.abort();
        });
        WindowInflater {
            addr,
            rewritten,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// CHANNEL_OPEN messages rewritten so far. Finding one at all proves the packets were
    /// readable: the `none` cipher and MAC were negotiated.
    pub fn rewritten(&self) -> usize {
        self.rewritten.load(Ordering::SeqCst)
    }
}

impl Drop for WindowInflater {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Client → server: the version line as it is, then binary packets (RFC 4253 §6: uint32
/// packet_length, byte padding_length, payload, padding; no MAC with `none`).
async fn rewrite_up(
    mut from: BufReader<tokio::net::tcp::OwnedReadHalf>,
    to: &mut tokio::net::tcp::OwnedWriteHalf,
    claimed: u32,
    rewritten: &AtomicUsize,
) {
    let mut version = Vec::new();
    if from.read_until(b'\n', &mut version).await.is_err() || to.write_all(&version).await.is_err()
    {
        return;
    }
    loop {
        let mut length = [0; 4];
        if from.read_exact(&mut length).await.is_err() {
            return;
        }
        let len = u32::from_be_bytes(length) as usize;
        assert!(
            (5..=MAX_PLAIN_PACKET).contains(&len),
            "packet length {len}: the client's traffic is not plaintext (was `none` negotiated?)"
        );
        let mut packet = vec![0; len];
        if from.read_exact(&mut packet).await.is_err() {
            return;
        }
        if packet[1] == MSG_CHANNEL_OPEN {
            inflate_open(&mut packet[1..], claimed);
            rewritten.fetch_add(1, Ordering::SeqCst);
        }
        if to.write_all(&length).await.is_err() || to.write_all(&packet).await.is_err() {
            return;
        }
    }
}

/// CHANNEL_OPEN: byte 90, string channel type, uint32 sender channel, uint32 initial window,
/// uint32 maximum packet, type-specific data (RFC 4254 §5.1).
fn inflate_open(payload: &mut [u8], claimed: u32) {
    let type_len = u32::from_be_bytes(payload[1..5].try_into().expect("4 bytes")) as usize;
    let window = 5 + type_len + 4;
    payload[window..window + 4].copy_from_slice(&claimed.to_be_bytes());
}
