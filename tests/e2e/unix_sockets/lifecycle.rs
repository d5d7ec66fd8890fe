//! How a Unix-socket client's session begins and ends: a client whose session dies is closed
//! and the next gets a new session; a client that arrives while the server is down is held and
//! served once it is back; the session closes `idle_timeout` after the last client, the socket
//! file stays, and the next client opens a fresh session.

use std::os::unix::fs::FileTypeExt;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::{daemon, daemon_inheriting, temp_dir};
use crate::common::{DataServer, Mode, TIMEOUT, TestSshd, deterministic_bytes, path_str};
use crate::forwarding_support::{
    self, IDLE_SETTING, assert_retired_idle, assert_same_bytes, read_to_end,
};

/// A Unix client whose session dies mid-download is closed at once, not left hanging (Unix
/// sockets have no reset, so it sees the end of the stream short of the data), and the next
/// client is served on a new session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_client_is_closed_when_its_session_dies_and_the_next_gets_a_new_session() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let endless = DataServer::start(Mode::Download {
        seed: 8,
        len: u64::MAX,
    })
    .await;
    let echo = DataServer::echo().await;
    let (down_path, echo_path) = (dir.path().join("down.sock"), dir.path().join("echo.sock"));
    let daemon = daemon(
        &sshd,
        &[
            ("down", path_str(&down_path), &endless.addr().to_string()),
            ("echo", path_str(&echo_path), &echo.addr().to_string()),
        ],
    );
    daemon.wait_for_log_count("listening", 2, TIMEOUT).await;

    let mut client = UnixStream::connect(&down_path).await.unwrap();
    let mut start = vec![0; 64 * 1024];
    tokio::time::timeout(TIMEOUT, client.read_exact(&mut start))
        .await
        .expect("no data within TIMEOUT")
        .expect("read the start of the download");
    assert!(
        !sshd.kill_session_processes().is_empty(),
        "no session to kill"
    );
    // Read until the end (a reset is impossible on a Unix socket: an error or EOF is a close).
    let (_, _either_is_a_close) =
        tokio::time::timeout(TIMEOUT, forwarding_support::drain(&mut client))
            .await
            .expect("the client was left hanging after its session died");

    let mut next = UnixStream::connect(&echo_path).await.unwrap();
    forwarding_support::echo_once(&mut next, b"after the session died").await;
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 2);
}

/// A Unix client that arrives while the server cannot be reached is held, not refused: the
/// attempt it starts fails, and a retry serves it once the server is back, with what it sent
/// while it waited.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_client_arriving_while_the_server_is_down_is_held_and_served_once_it_is_back() {
    let mut sshd = TestSshd::start();
    let dir = temp_dir();
    let echo = DataServer::echo().await;
    let path = dir.path().join("echo.sock");
    let daemon = daemon(
        &sshd,
        &[("echo", path_str(&path), &echo.addr().to_string())],
    );
    daemon.wait_for_log("listening", TIMEOUT).await;
    sshd.stop();

    let mut held = UnixStream::connect(&path).await.unwrap();
    // Sent before there is a session: it waits in the socket for the channel.
    let early = deterministic_bytes(24, 64 << 10);
    held.write_all(&early).await.unwrap();
    // At least one attempt has failed (with the default backoff_min, a second may follow
    // before sshd is back), and the client is still open.
    let host = daemon
        .wait_for_sole_host("failed", TIMEOUT, |host| {
            host["failures"].as_u64() >= Some(1)
        })
        .await;
    assert_eq!(host["sessions_opened"], 0, "{host}");
    let status = daemon.status_json();
    assert_eq!(
        status["forwards"][0]["connections_open"], 1,
        "not held: {status}"
    );
    sshd.start_again();

    let mut back = vec![0; early.len()];
    tokio::time::timeout(TIMEOUT, held.read_exact(&mut back))
        .await
        .expect("the held client was not served within TIMEOUT")
        .expect("the held client was closed instead of served");
    assert_same_bytes(&back, &early, "what the held client sent while it waited");
    echo_then_close(held, &deterministic_bytes(25, 64 << 10)).await;
    let status = daemon.status_json();
    let host = &status["hosts"][0];
    assert_eq!(host["sessions_opened"], 1, "{host}");
    assert_eq!(host["failures"], 0, "{host}");
    assert!(status["forwards"][0]["last_error"].is_null(), "{status}");
}

/// With `idle_timeout`, the session is disconnected once the last Unix client has been gone
/// that long; the socket file stays, and the next client opens a fresh session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_closes_idle_timeout_after_the_last_unix_client_and_the_next_opens_a_new_one() {
    let sshd = TestSshd::start();
    let dir = temp_dir();
    let echo = DataServer::echo().await;
    let path = dir.path().join("echo.sock");
    let forwards = [("echo", path_str(&path), &*echo.addr().to_string())];
    let daemon = daemon_inheriting(&sshd, IDLE_SETTING, &forwards, Vec::new());
    daemon.wait_for_log("listening", TIMEOUT).await;

    let first = UnixStream::connect(&path).await.unwrap();
    // Its channel is open until the client has closed, so the session is not idle before this.
    let closing = Instant::now();
    echo_then_close(first, &deterministic_bytes(26, 64 << 10)).await;

    assert_retired_idle(&daemon, &sshd, closing).await;
    let file = std::fs::metadata(&path).expect("the socket file after the session closed");
    assert!(
        file.file_type().is_socket(),
        "{} is no socket",
        path.display()
    );

    let next = UnixStream::connect(&path).await.unwrap();
    echo_then_close(next, &deterministic_bytes(27, 64 << 10)).await;
    let host = daemon.sole_host_status();
    assert_eq!(host["sessions_opened"], 2, "{host}");
    // Retired for idleness, not lost: the second session is no reconnect.
    assert_eq!(host["reconnects"], 0, "{host}");
}

/// Echoes `data` through `client` byte-exact, then half-closes it and expects the echo's clean
/// EOF with nothing more.
async fn echo_then_close(mut client: UnixStream, data: &[u8]) {
    forwarding_support::echo_once(&mut client, data).await;
    client.shutdown().await.expect("half-close");
    let (rest, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no EOF within TIMEOUT");
    ended.expect("a clean EOF after the echo");
    assert!(rest.is_empty(), "{} bytes after the echo", rest.len());
}
