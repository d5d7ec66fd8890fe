//! End-to-end specs of forwards with a Unix-domain socket on either end, through a real OpenSSH
//! server: Unix→TCP, TCP→Unix (direct-streamlocal to a socket on the server's side) and
//! Unix→Unix, each byte-exact with half-close both ways; the local socket's mode; a stale socket
//! file replaced, a live one or a regular file refused with a message naming the path; the
//! socket file removed at shutdown; a SOCKS proxy on a Unix socket. How a client's session
//! begins and ends: [`lifecycle`].

mod lifecycle;

use crate::{common, forwarding_support};

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{
    DataServer, Mode, TIMEOUT, TestDaemon, TestSshd, bind_loopback, deterministic_bytes, path_str,
    port_of, sha256,
};
use forwarding_support::{assert_same_bytes, read_to_end};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;

const UP: usize = (1 << 20) + 11;
const DOWN: usize = (2 << 20) + 5;

/// What the two servers behind a forward do, as `DataServer`'s `HashUpload` and `Download`:
/// one answers the SHA-256 of everything read once the client's EOF comes; the other sends
/// `DOWN` bytes, half-closes, and reports how much it reads until the client's EOF.
#[derive(Clone, Copy)]
enum Role {
    HashUpload,
    Download,
}

/// A Unix socket server on the sshd's side (the same machine here; the test sshd reaches the
/// temp dir), playing `role` for every connection and reporting bytes read by `Download`.
struct UnixServer {
    path: PathBuf,
    reports: mpsc::UnboundedReceiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl UnixServer {
    fn start(dir: &Path, name: &str, role: Role) -> UnixServer {
        let path = dir.join(name);
        let listener = UnixListener::bind(&path).expect("bind the server's Unix socket");
        let (report, reports) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, role, report.clone()));
            }
        });
        UnixServer {
            path,
            reports,
            task,
        }
    }
}

impl Drop for UnixServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(mut stream: UnixStream, role: Role, report: mpsc::UnboundedSender<usize>) {
    match role {
        Role::HashUpload => {
            let mut upload = Vec::new();
            if stream.read_to_end(&mut upload).await.is_ok() {
                let _ = stream.write_all(&sha256(&upload)).await;
                let _ = stream.shutdown().await;
            }
        }
        Role::Download => {
            let data = deterministic_bytes(7, DOWN);
            if stream.write_all(&data).await.is_ok() && stream.shutdown().await.is_ok() {
                let mut rest = Vec::new();
                if stream.read_to_end(&mut rest).await.is_ok() {
                    let _ = report.send(rest.len());
                }
            }
        }
    }
}

/// The client's half of `HashUpload`: upload, half-close, then the digest arrives and a clean EOF.
async fn upload_then_half_close<S: AsyncRead + AsyncWrite + Unpin>(mut client: S) {
    let data = deterministic_bytes(3, UP);
    client.write_all(&data).await.expect("upload");
    client.shutdown().await.expect("half-close");
    let (digest, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no reply within TIMEOUT");
    ended.expect("a clean EOF after the digest");
    assert_eq!(
        digest,
        sha256(&data),
        "the server read other bytes than sent"
    );
}

/// The client's half of `Download`: everything arrives with a clean EOF, after which the client
/// still sends; returns what it sent after the server's EOF.
async fn download_then_send<S: AsyncRead + AsyncWrite + Unpin>(mut client: S) -> usize {
    let (received, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no EOF within TIMEOUT");
    ended.expect("a clean EOF, not a cut");
    assert_same_bytes(&received, &deterministic_bytes(7, DOWN), "download");
    let after = deterministic_bytes(8, 300_001);
    client.write_all(&after).await.expect("send after EOF");
    client.shutdown().await.expect("half-close");
    after.len()
}

fn daemon(sshd: &TestSshd, forwards: &[(&str, &str, &str)]) -> TestDaemon {
    daemon_inheriting(sshd, "", forwards, Vec::new())
}

/// [`daemon`] with `settings` (top-level TOML lines such as `idle_timeout = "1s"`), handing it
/// `listeners` (already listening, matched by address), so that no port is chosen free and
/// then bound by the daemon.
fn daemon_inheriting(
    sshd: &TestSshd,
    settings: &str,
    forwards: &[(&str, &str, &str)],
    listeners: Vec<std::net::TcpListener>,
) -> TestDaemon {
    let mut text = format!(
        "ssh_config = {:?}\n{settings}\n",
        path_str(&sshd.ssh_config_path())
    );
    for (name, listen, target) in forwards {
        text.push_str(&format!(
            "\n[[forward]]\nname = {name:?}\nlisten = {listen:?}\nhost = \"test\"\n\
             target = {target:?}\n"
        ));
    }
    listeners
        .into_iter()
        .fold(
            TestDaemon::builder().config_text(text),
            |builder, listener| builder.inherit(listener),
        )
        .start()
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("socket file")
        .permissions()
        .mode()
        & 0o777
}

fn temp_dir() -> tempfile::TempDir {
    // Short: a socket path has at most 107 bytes.
    tempfile::Builder::new()
        .prefix("lt-unix-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_to_tcp_is_byte_exact_with_half_close_both_ways_and_its_file_goes_at_shutdown() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let upload = DataServer::start(Mode::HashUpload).await;
    let download = DataServer::start(Mode::Download {
        seed: 7,
        len: DOWN as u64,
    })
    .await;
    let (up_path, down_path) = (dir.path().join("up.sock"), dir.path().join("down.sock"));
    let mut daemon = daemon(
        &sshd,
        &[
            ("up", path_str(&up_path), &upload.addr().to_string()),
            ("down", path_str(&down_path), &download.addr().to_string()),
        ],
    );
    daemon.wait_for_log_count("listening", 2, TIMEOUT).await;
    assert_eq!(mode_of(&up_path), 0o600, "the default listen_mode");
    assert_eq!(sshd.established_connections(), 0, "not lazy");

    upload_then_half_close(UnixStream::connect(&up_path).await.unwrap()).await;
    let sent = download_then_send(UnixStream::connect(&down_path).await.unwrap()).await;
    let reports = download.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(
        (reports[0].bytes_read, reports[0].error),
        (sent as u64, None)
    );
    assert_eq!(sshd.established_connections(), 1, "one session for both");

    let status = daemon.status_json();
    let listens: Vec<&str> = status["forwards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["listen"][0].as_str().unwrap())
        .collect();
    assert_eq!(listens, [path_str(&up_path), path_str(&down_path)]);

    assert!(daemon.shutdown(TIMEOUT).await.success());
    assert!(
        !up_path.exists() && !down_path.exists(),
        "socket files left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_to_a_unix_socket_on_the_server_is_byte_exact_with_half_close_both_ways() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let upload = UnixServer::start(dir.path(), "hash.sock", Role::HashUpload);
    let mut download = UnixServer::start(dir.path(), "send.sock", Role::Download);
    let listeners = vec![bind_loopback(), bind_loopback()];
    let (up_port, down_port) = (port_of(&listeners[0]), port_of(&listeners[1]));
    let daemon = daemon_inheriting(
        &sshd,
        "",
        &[
            (
                "up",
                &format!("127.0.0.1:{up_port}"),
                path_str(&upload.path),
            ),
            (
                "down",
                &format!("127.0.0.1:{down_port}"),
                path_str(&download.path),
            ),
        ],
        listeners,
    );
    daemon.wait_for_log_count("listening", 2, TIMEOUT).await;

    let connect = |port| TcpStream::connect(("127.0.0.1", port));
    upload_then_half_close(connect(up_port).await.unwrap()).await;
    let sent = download_then_send(connect(down_port).await.unwrap()).await;
    let read = tokio::time::timeout(TIMEOUT, download.reports.recv()).await;
    assert_eq!(read.expect("no report").expect("server gone"), sent);
    assert_eq!(
        daemon.status_json()["forwards"][0]["target"],
        path_str(&upload.path)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_to_unix_is_byte_exact_with_half_close_both_ways_and_keeps_its_mode() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let upload = UnixServer::start(dir.path(), "hash.sock", Role::HashUpload);
    let mut download = UnixServer::start(dir.path(), "send.sock", Role::Download);
    let (up_path, down_path) = (dir.path().join("up.sock"), dir.path().join("down.sock"));
    let text = format!(
        "ssh_config = {:?}\n\n[[forward]]\nlisten = {:?}\nlisten_mode = \"0660\"\n\
         host = \"test\"\ntarget = {:?}\n\n[[forward]]\nlisten = {:?}\nhost = \"test\"\n\
         target = {:?}\n",
        path_str(&sshd.ssh_config_path()),
        path_str(&up_path),
        path_str(&upload.path),
        path_str(&down_path),
        path_str(&download.path),
    );
    let daemon = TestDaemon::start(text);
    daemon.wait_for_log_count("listening", 2, TIMEOUT).await;
    assert_eq!(mode_of(&up_path), 0o660);

    upload_then_half_close(UnixStream::connect(&up_path).await.unwrap()).await;
    let sent = download_then_send(UnixStream::connect(&down_path).await.unwrap()).await;
    let read = tokio::time::timeout(TIMEOUT, download.reports.recv()).await;
    assert_eq!(read.expect("no report").expect("server gone"), sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_socket_is_replaced_but_a_live_one_or_a_regular_file_is_refused() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let echo = DataServer::echo().await;
    let target = echo.addr().to_string();
    let path = dir.path().join("a.sock");
    // A dead daemon's file: bound, never closed by its owner's cleanup.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());

    let first = daemon(&sshd, &[("a", path_str(&path), &target)]);
    first.wait_for_log("listening", TIMEOUT).await;
    let mut client = UnixStream::connect(&path)
        .await
        .expect("the replaced socket");
    client.write_all(b"ping").await.unwrap();
    let mut reply = [0; 4];
    client.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"ping");

    let mut second = daemon(&sshd, &[("a", path_str(&path), &target)]);
    let status = second
        .wait_for_exit(TIMEOUT)
        .await
        .expect("second daemon still running");
    assert!(!status.success());
    let log = second.log();
    assert!(
        log.contains(path_str(&path)) && log.contains("in use"),
        "{log}"
    );
    assert!(path.exists(), "the live daemon's socket was removed");

    let file = dir.path().join("notes.txt");
    std::fs::write(&file, "keep").unwrap();
    let mut third = daemon(&sshd, &[("f", path_str(&file), &target)]);
    let status = third
        .wait_for_exit(TIMEOUT)
        .await
        .expect("third daemon still running");
    assert!(!status.success());
    let log = third.log();
    assert!(
        log.contains(path_str(&file)) && log.contains("not a socket"),
        "{log}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_removes_a_dropped_forwards_socket_file_and_applies_a_changed_mode() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let echo = DataServer::echo().await;
    let target = echo.addr().to_string();
    let (kept, dropped, added) = (
        dir.path().join("kept.sock"),
        dir.path().join("dropped.sock"),
        dir.path().join("added.sock"),
    );
    let forward = |name: &str, path: &Path, mode: &str| {
        format!(
            "\n[[forward]]\nname = {name:?}\nlisten = {:?}\nlisten_mode = {mode:?}\n\
             host = \"test\"\ntarget = {target:?}\n",
            path_str(path)
        )
    };
    let ssh_config = format!("ssh_config = {:?}\n", path_str(&sshd.ssh_config_path()));
    let daemon = TestDaemon::start(format!(
        "{ssh_config}{}{}",
        forward("kept", &kept, "0600"),
        forward("dropped", &dropped, "0600")
    ));
    daemon.wait_for_log_count("listening", 2, TIMEOUT).await;

    daemon.write_config(&format!(
        "{ssh_config}{}{}",
        forward("kept", &kept, "0660"),
        forward("added", &added, "0600")
    ));
    let reload = daemon.cli(["reload"]);
    assert!(reload.status.success(), "reload: {reload:?}");

    assert!(
        !dropped.exists(),
        "the removed forward's socket file is still there"
    );
    assert_eq!(mode_of(&kept), 0o660, "the changed listen_mode");
    for path in [&kept, &added] {
        let mut client = UnixStream::connect(path)
            .await
            .expect("connect after reload");
        client.write_all(b"ping").await.unwrap();
        let mut reply = [0; 4];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"ping", "{}", path.display());
    }
}

/// A SOCKS forward may listen on a Unix socket too (`listen` a path, `socks = true`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks_proxy_on_a_unix_socket_connects_where_the_client_asks() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let echo = DataServer::echo().await;
    let path = dir.path().join("socks.sock");
    let text = format!(
        "ssh_config = {:?}\n\n[[forward]]\nname = \"proxy\"\nlisten = {:?}\nhost = \"test\"\n\
         socks = true\n",
        path_str(&sshd.ssh_config_path()),
        path_str(&path)
    );
    let daemon = TestDaemon::start(text);
    daemon.wait_for_log("listening", TIMEOUT).await;
    assert_eq!(mode_of(&path), 0o600);

    let mut client = UnixStream::connect(&path).await.unwrap();
    let std::net::SocketAddr::V4(target) = echo.addr() else {
        panic!("the echo server listens on IPv4");
    };
    let mut request = vec![5, 1, 0, 5, 1, 0, 1];
    request.extend(target.ip().octets());
    request.extend(target.port().to_be_bytes());
    client.write_all(&request).await.unwrap();
    // The method choice, then success with an IPv4 bound address.
    let mut replies = [0; 12];
    tokio::time::timeout(TIMEOUT, client.read_exact(&mut replies))
        .await
        .expect("no reply within TIMEOUT")
        .expect("read the replies");
    assert_eq!(replies[..4], [5, 0, 5, 0], "replies {replies:?}");
    forwarding_support::echo_once(&mut client, b"through a SOCKS socket").await;
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}
