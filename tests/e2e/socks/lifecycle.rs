//! How a SOCKS client's session begins and ends: a connection carries half-close and is reset
//! when its session dies; a client that arrives while the server is down is held (past the
//! handshake timeout, which bounds only the request) and served once it is back; the session
//! closes `idle_timeout` after the last client and the next opens a fresh one.

use std::time::Instant;

use lazytunnel::socks::HANDSHAKE_TIMEOUT;
use tokio::io::AsyncReadExt;

use super::{start_socks_daemon, start_socks_daemon_with};
use crate::common::{DataServer, Mode, TIMEOUT, TestSshd, deterministic_bytes};
use crate::forwarding_support::{
    IDLE_SETTING, assert_reset, assert_retired_idle, assert_same_bytes, drain, echo_once,
    round_trip, socks5_connect, socks5_granted, socks5_request,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks_connection_carries_half_close_and_is_reset_when_its_session_dies() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let download = DataServer::start(Mode::Download {
        seed: 3,
        len: u64::MAX,
    })
    .await;
    let (daemon, port) = start_socks_daemon(&sshd).await;

    // The client half-closes after its last byte; the echo then ends its side after echoing
    // everything: both EOFs travel through the proxy.
    let data = deterministic_bytes(9, 3 << 20);
    let (echoed, ended) = round_trip(socks5_connect(port, echo.addr()).await, data.clone()).await;
    ended.expect("a clean EOF after the echo");
    assert_same_bytes(&echoed, &data, "echo through SOCKS");

    let mut endless = socks5_connect(port, download.addr()).await;
    let mut first = [0; 4096];
    endless.read_exact(&mut first).await.unwrap();
    assert!(
        !sshd.kill_session_processes().is_empty(),
        "no session to kill"
    );
    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut endless))
        .await
        .expect("the download neither ended nor was reset within TIMEOUT");
    assert_reset(ended, "download through a killed session");

    // The next request opens a new session.
    daemon.wait_for_log("session down", TIMEOUT).await;
    let mut client = socks5_connect(port, echo.addr()).await;
    echo_once(&mut client, b"after the session died").await;
    let host = daemon.sole_host_status();
    assert_eq!(host["sessions_opened"], 2, "{host}");
}

/// A client that arrives while the server cannot be reached is held, not refused: its request
/// starts an attempt, which fails, and the retry serves it once the server is back. The
/// handshake timeout bounds only the reading of the request: the retry comes after
/// `backoff_min`, 11 s, so the client waits for its session past that timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_held_while_the_server_is_down_waits_past_the_handshake_timeout_and_is_served() {
    let mut sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    // The first failure's retry comes 11 to 13.2 s after it (jitter cannot shorten the first
    // delay below backoff_min), well within connect_timeout of the client's arrival.
    let settings = "backoff_min = \"11s\"\nconnect_timeout = \"30s\"";
    let (daemon, port) = start_socks_daemon_with(&sshd, settings).await;
    sshd.stop();

    let asked = Instant::now();
    let mut held = socks5_request(port, echo.addr()).await;
    let host = daemon
        .wait_for_sole_host("failed once", TIMEOUT, |host| host["failures"] == 1)
        .await;
    assert_eq!(host["state"], "backoff", "{host}");
    assert_eq!(host["attempts"], 1, "{host}");
    let status = daemon.status_json();
    assert_eq!(
        status["forwards"][0]["connections_open"], 1,
        "not held: {status}"
    );
    sshd.start_again();

    socks5_granted(&mut held).await;
    let waited = asked.elapsed();
    assert!(
        waited > HANDSHAKE_TIMEOUT,
        "granted {waited:?} after the request: the spec needs a wait past the handshake timeout"
    );
    let data = deterministic_bytes(21, 1 << 20);
    let (echoed, ended) = round_trip(held, data.clone()).await;
    ended.expect("a clean EOF after the echo");
    assert_same_bytes(&echoed, &data, "echo to the held client");
    let status = daemon.status_json();
    let host = &status["hosts"][0];
    assert_eq!(host["sessions_opened"], 1, "{host}");
    assert_eq!(host["attempts"], 2, "the held client's retry: {host}");
    assert!(status["forwards"][0]["last_error"].is_null(), "{status}");
}

/// With `idle_timeout`, the session is disconnected once the last SOCKS client has been gone
/// that long; the port keeps listening, and the next client opens a fresh session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_session_closes_idle_timeout_after_the_last_client_and_the_next_opens_a_fresh_one() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let (daemon, port) = start_socks_daemon_with(&sshd, IDLE_SETTING).await;

    let first = socks5_connect(port, echo.addr()).await;
    // Its channel is open until the round trip ends, so the session is not idle before this.
    let closing = Instant::now();
    let data = deterministic_bytes(22, 256 << 10);
    let (echoed, ended) = round_trip(first, data.clone()).await;
    ended.expect("a clean EOF after the echo");
    assert_same_bytes(&echoed, &data, "echo to the first client");

    assert_retired_idle(&daemon, &sshd, closing).await;

    let data = deterministic_bytes(23, 256 << 10);
    let (echoed, ended) = round_trip(socks5_connect(port, echo.addr()).await, data.clone()).await;
    ended.expect("a clean EOF after the echo");
    assert_same_bytes(&echoed, &data, "echo to the next client");
    let host = daemon.sole_host_status();
    assert_eq!(host["sessions_opened"], 2, "{host}");
    // Retired for idleness, not lost: the second session is no reconnect.
    assert_eq!(host["reconnects"], 0, "{host}");
}
