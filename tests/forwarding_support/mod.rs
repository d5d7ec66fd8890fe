//! Helpers shared by the forwarding specs (`tests/forwarding*.rs`): writing a daemon config for
//! a [`TestSshd`], starting the daemon and awaiting its listeners, and client-side transfers.
//!
//! Each test binary uses only part of this module, hence the `allow(dead_code)`.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::io;
use std::net::{SocketAddr, TcpListener};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::daemon::TestDaemonBuilder;
use crate::common::{TIMEOUT, TestDaemon, TestSshd, bind_loopback, path_str, port_of};

/// One `[[forward]]` of a test config, through the host alias `host`.
pub struct Forward {
    pub name: &'static str,
    pub host: &'static str,
    /// The 127.0.0.1 port the daemon listens on.
    pub port: u16,
    pub target: SocketAddr,
    /// The listening socket on `port`, bound when the forward was made and held until a daemon
    /// inherits it ([`daemon_builder`]), so that no other process can take the port meanwhile.
    socket: Mutex<Option<TcpListener>>,
}

impl Forward {
    /// A forward through the generated ssh_config's `test` host.
    pub fn new(name: &'static str, target: SocketAddr) -> Forward {
        Forward::via("test", name, target)
    }

    pub fn via(host: &'static str, name: &'static str, target: SocketAddr) -> Forward {
        let socket = bind_loopback();
        Forward {
            name,
            host,
            port: port_of(&socket),
            target,
            socket: Mutex::new(Some(socket)),
        }
    }

    /// A forward on `port`, a port someone else holds (no socket of its own to hand over).
    pub fn on_port(port: u16, name: &'static str, target: SocketAddr) -> Forward {
        Forward {
            name,
            host: "test",
            port,
            target,
            socket: Mutex::new(None),
        }
    }

    /// This forward with another target: the same name, host and port (whose socket stays
    /// with this one, or with the daemon that inherited it).
    pub fn retargeted(&self, target: SocketAddr) -> Forward {
        Forward {
            name: self.name,
            host: self.host,
            port: self.port,
            target,
            socket: Mutex::new(None),
        }
    }

    /// The listening socket, for a daemon to inherit; `None` once one has.
    pub fn take_socket(&self) -> Option<TcpListener> {
        self.socket.lock().expect("socket lock").take()
    }

    /// Closes our socket, for a test in which the daemon binds the port itself (a forward a
    /// reload adds): it may lose the port to another process meanwhile, so such a test retries
    /// with a new port when told the address is in use.
    pub fn release(&self) {
        drop(self.take_socket());
    }

    pub async fn connect(&self) -> TcpStream {
        connect(self.port).await
    }
}

/// Daemon config text: `ssh_config` set to `ssh_config`, then `settings` (top-level TOML lines
/// such as `idle_timeout = "1s"`), then `forwards`.
pub fn config_text(ssh_config: &std::path::Path, settings: &str, forwards: &[&Forward]) -> String {
    let mut text = format!("ssh_config = {:?}\n{settings}\n", path_str(ssh_config));
    for forward in forwards {
        let _ = write!(
            text,
            "\n[[forward]]\nname = {:?}\nlisten = \"127.0.0.1:{}\"\nhost = {:?}\ntarget = \"{}\"\n",
            forward.name, forward.port, forward.host, forward.target
        );
    }
    text
}

/// Starts a daemon using `sshd`'s generated ssh_config and waits until all `forwards` listen.
pub async fn start_daemon(sshd: &TestSshd, settings: &str, forwards: &[&Forward]) -> TestDaemon {
    start_daemon_with(&sshd.ssh_config_path(), settings, forwards).await
}

/// Like [`start_daemon`] with any ssh_config file.
pub async fn start_daemon_with(
    ssh_config: &std::path::Path,
    settings: &str,
    forwards: &[&Forward],
) -> TestDaemon {
    let daemon = daemon_builder(ssh_config, settings, forwards).start();
    daemon
        .wait_for_log_count("listening", forwards.len(), TIMEOUT)
        .await;
    daemon
}

/// A daemon with the config [`config_text`] writes, inheriting the forwards' sockets.
pub fn daemon_builder(
    ssh_config: &std::path::Path,
    settings: &str,
    forwards: &[&Forward],
) -> TestDaemonBuilder {
    let builder = TestDaemon::builder().config_text(config_text(ssh_config, settings, forwards));
    forwards
        .iter()
        .filter_map(|forward| forward.take_socket())
        .fold(builder, TestDaemonBuilder::inherit)
}

pub async fn connect(port: u16) -> TcpStream {
    TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|err| panic!("could not connect to 127.0.0.1:{port}: {err}"))
}

/// Connects and reads until the connection ends. On loopback the daemon can reset a connection
/// before the client's connect has even completed, so a reset reported by connect itself counts
/// as the way the connection ended.
pub async fn connect_and_drain(port: u16) -> (u64, io::Result<()>) {
    match TcpStream::connect(("127.0.0.1", port)).await {
        Ok(mut stream) => drain(&mut stream).await,
        Err(err) if crate::common::is_reset(&err) => (0, Err(err)),
        Err(err) => panic!("could not connect to 127.0.0.1:{port}: {err}"),
    }
}

/// Writes `data` and reads the same number of bytes back, leaving the connection open: checks
/// that an echo connection still works.
pub async fn echo_once<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, data: &[u8]) {
    stream.write_all(data).await.expect("write to the echo");
    let mut back = vec![0; data.len()];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut back))
        .await
        .expect("no echo within TIMEOUT")
        .expect("read the echo");
    assert!(back == data, "the echo differs from what was sent");
}

/// Sends `data` while reading concurrently, half-closes after the last byte, and returns
/// everything read until the connection ended, with how it ended (`Ok` for a clean EOF).
pub async fn round_trip(stream: TcpStream, data: Vec<u8>) -> (Vec<u8>, io::Result<()>) {
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        writer.write_all(&data).await?;
        writer.shutdown().await
    });
    let received = tokio::time::timeout(TIMEOUT, read_to_end(&mut reader))
        .await
        .expect("the connection did not end within TIMEOUT");
    sending
        .await
        .expect("sender task")
        .expect("send and half-close");
    received
}

/// Reads until EOF or an error, keeping everything read.
pub async fn read_to_end<R: AsyncRead + Unpin>(reader: &mut R) -> (Vec<u8>, io::Result<()>) {
    crate::common::net::read_until_closed(reader).await
}

/// Reads until EOF or an error, counting the bytes and keeping none: for streams too long to
/// hold.
pub async fn drain<R: AsyncRead + Unpin>(reader: &mut R) -> (u64, io::Result<()>) {
    let mut count = 0;
    let mut buf = vec![0; 256 * 1024];
    loop {
        match reader.read(&mut buf).await {
            Ok(0) => return (count, Ok(())),
            Ok(n) => count += n as u64,
            Err(err) => return (count, Err(err)),
        }
    }
}

/// Panics unless `ended` is a reset (RST), naming what it was instead.
pub fn assert_reset(ended: io::Result<()>, what: &str) {
    match ended {
        Ok(()) => panic!("{what}: clean EOF, expected a reset"),
        Err(err) => assert!(
            crate::common::is_reset(&err),
            "{what}: ended with {err:?}, expected a reset"
        ),
    }
}

/// Asserts byte equality through SHA-256, reporting lengths instead of dumping the data.
pub fn assert_same_bytes(received: &[u8], expected: &[u8], what: &str) {
    use crate::common::sha256;
    assert!(
        received.len() == expected.len() && sha256(received) == sha256(expected),
        "{what}: received {} bytes that differ from the {} expected",
        received.len(),
        expected.len()
    );
}

/// Connects to the SOCKS forward on `port`, asks for `target` with SOCKS5 and awaits the grant.
pub async fn socks5_connect(port: u16, target: SocketAddr) -> TcpStream {
    let mut stream = socks5_request(port, target).await;
    socks5_granted(&mut stream).await;
    stream
}

/// Connects to the SOCKS forward on `port`, sends a SOCKS5 greeting and a CONNECT request for
/// `target`, and awaits the method choice (no authentication), which is answered at once; the
/// reply to the request comes once its channel is open or has failed ([`socks5_granted`]).
pub async fn socks5_request(port: u16, target: SocketAddr) -> TcpStream {
    let mut stream = connect(port).await;
    let SocketAddr::V4(v4) = target else {
        panic!("{target} is not IPv4")
    };
    let mut request = vec![5, 1, 0, 5, 1, 0, 1];
    request.extend(v4.ip().octets());
    request.extend(v4.port().to_be_bytes());
    stream.write_all(&request).await.unwrap();
    let mut method = [0; 2];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut method))
        .await
        .expect("no SOCKS method choice within TIMEOUT")
        .expect("read the SOCKS method choice");
    assert_eq!(method, [5, 0], "not the method `no authentication`");
    stream
}

/// Awaits the reply to a SOCKS5 request ([`socks5_request`]) and asserts that it grants it.
pub async fn socks5_granted<S: AsyncRead + Unpin>(stream: &mut S) {
    let mut reply = [0; 10];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut reply))
        .await
        .expect("no SOCKS reply within TIMEOUT")
        .expect("read the SOCKS reply");
    assert_eq!(reply, [5, 0, 0, 1, 0, 0, 0, 0, 0, 0], "not granted");
}

/// How long an event that should follow at once may take on a busy machine.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// A short idle timeout, for the specs of idle teardown, and the setting that makes it a
/// daemon's.
pub const IDLE: Duration = Duration::from_secs(1);
pub const IDLE_SETTING: &str = r#"idle_timeout = "1s""#;

/// Waits until the daemon's sole host has retired its first session for idleness, and checks
/// how: not before [`IDLE`] since `last_client_closing` (a moment before the last client of
/// the session closed), the SSH connection gone at sshd, and sshd told why with a clean
/// disconnect (by application, 11, "idle"), of which sshd's log is the only witness.
pub async fn assert_retired_idle(
    daemon: &TestDaemon,
    sshd: &TestSshd,
    last_client_closing: Instant,
) {
    let host = daemon
        .wait_for_sole_host("idle after its session", TIMEOUT, |host| {
            host["state"] == "idle" && host["sessions_opened"] == 1
        })
        .await;
    let idle_after = last_client_closing.elapsed();
    assert!(
        idle_after >= IDLE,
        "idle {idle_after:?} after the last client closed: {host}"
    );
    assert_eq!(
        sshd.wait_for_connections(0, TIMEOUT).await,
        0,
        "session left open at sshd"
    );
    sshd.log_file()
        .wait_for_count("sshd", ":11: idle", 1, TIMEOUT)
        .await;
}
