//! Self-checks of the fault-injecting proxy (`tests/common/proxy.rs`) against an echo server:
//! the reliability tests trust that a blackhole is silent, a reset is a reset, and an
//! unfaulted connection is relayed byte-exact.

use crate::common;

use std::time::{Duration, Instant};

use common::net::read_until_closed;
use common::proxy::FaultProxy;
use common::{DataServer, TIMEOUT, deterministic_bytes, is_reset, sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a read must stay unanswered to count as silence. Short, since it is what a
/// blackhole test asserts; an echo on loopback answers in well under a millisecond.
const SILENCE: Duration = Duration::from_millis(300);

async fn connect(proxy: &FaultProxy) -> TcpStream {
    TcpStream::connect(proxy.addr())
        .await
        .expect("connect to the proxy")
}

/// Writes `message` and reads the echo of the same length.
async fn echo_once(stream: &mut TcpStream, message: &[u8]) -> Vec<u8> {
    stream.write_all(message).await.expect("write");
    let mut echoed = vec![0; message.len()];
    tokio::time::timeout(TIMEOUT, stream.read_exact(&mut echoed))
        .await
        .expect("no echo in time")
        .expect("read the echo");
    echoed
}

/// Whether a read gets nothing at all (no data, no EOF, no error) for [`SILENCE`].
async fn is_silent(stream: &mut TcpStream) -> bool {
    let mut buf = [0; 64];
    tokio::time::timeout(SILENCE, stream.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test]
async fn relays_bytes_exactly_and_carries_half_close() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    let data = deterministic_bytes(7, 4 * 1024 * 1024 + 13);

    let (mut reader, mut writer) = connect(&proxy).await.into_split();
    let sent = data.clone();
    let sending = tokio::spawn(async move {
        writer.write_all(&sent).await.expect("send");
        // Half-close: the echo must still come back in full, then EOF.
        writer.shutdown().await.expect("half-close");
        writer
    });
    let (received, ended) = read_until_closed(&mut reader).await;
    let _writer = sending.await.expect("sender task");

    assert!(ended.is_ok(), "stream ended with {ended:?}");
    assert_eq!(received.len(), data.len());
    assert_eq!(sha256(&received), sha256(&data));
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(echo.accepted(), 1);
    drop((reader, _writer));
    assert_eq!(proxy.wait_for_open(0, TIMEOUT).await, 0);
}

#[tokio::test]
async fn blackhole_silences_current_connections_while_new_ones_work() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    let mut old = connect(&proxy).await;
    assert_eq!(echo_once(&mut old, b"before").await, b"before");

    proxy.blackhole();

    // Writes still succeed (the path swallows them), but nothing comes back, not even EOF.
    old.write_all(b"into the void").await.expect("write");
    assert!(
        is_silent(&mut old).await,
        "a blackholed connection answered"
    );
    let mut new = connect(&proxy).await;
    assert_eq!(echo_once(&mut new, b"after").await, b"after");
    assert_eq!(proxy.open(), 2, "the blackholed connection must stay open");
    assert_eq!(echo.active(), 2, "the upstream side must stay open too");
    assert!(is_silent(&mut old).await, "a blackholed connection woke up");
}

#[tokio::test]
async fn blackhole_all_silences_new_connections_until_heal() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    proxy.blackhole_all();

    let mut dead = connect(&proxy).await;
    dead.write_all(b"hello?").await.expect("write");
    assert!(
        is_silent(&mut dead).await,
        "a blackholed connection answered"
    );
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(
        echo.accepted(),
        0,
        "a blackholed connection reached upstream"
    );

    proxy.heal();
    let mut alive = connect(&proxy).await;
    assert_eq!(echo_once(&mut alive, b"healed").await, b"healed");
    assert!(
        is_silent(&mut dead).await,
        "heal must not revive old connections"
    );
}

#[tokio::test]
async fn reset_all_resets_both_sides() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    let mut client = connect(&proxy).await;
    assert_eq!(echo_once(&mut client, b"ping").await, b"ping");

    proxy.reset_all();

    let (received, ended) = read_until_closed(&mut client).await;
    assert!(received.is_empty());
    let err = ended.expect_err("the client saw a clean EOF, not a reset");
    assert!(is_reset(&err), "client got {err:?}, not a reset");
    let finished = echo.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(
        finished[0].error,
        Some(std::io::ErrorKind::ConnectionReset),
        "upstream side: {finished:?}"
    );
    assert_eq!(proxy.wait_for_open(0, TIMEOUT).await, 0);
}

#[tokio::test]
async fn reset_all_also_resets_blackholed_connections() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    let mut relayed = connect(&proxy).await;
    assert_eq!(echo_once(&mut relayed, b"ping").await, b"ping");
    proxy.blackhole_all();
    let mut never_relayed = connect(&proxy).await;
    assert_eq!(proxy.wait_for_accepted(2, TIMEOUT).await, 2);

    proxy.reset_all();

    for client in [&mut relayed, &mut never_relayed] {
        let (_, ended) = read_until_closed(client).await;
        let err = ended.expect_err("a clean EOF, not a reset");
        assert!(is_reset(&err), "got {err:?}, not a reset");
    }
    assert_eq!(proxy.wait_for_open(0, TIMEOUT).await, 0);
}

#[tokio::test]
async fn a_reset_from_upstream_reaches_the_client() {
    let echo = DataServer::echo().await;
    let upstream = FaultProxy::start(echo.addr()).await;
    let proxy = FaultProxy::start(upstream.addr()).await;
    let mut client = connect(&proxy).await;
    assert_eq!(echo_once(&mut client, b"ping").await, b"ping");

    upstream.reset_all();

    let (_, ended) = read_until_closed(&mut client).await;
    let err = ended.expect_err("a clean EOF, not a reset");
    assert!(is_reset(&err), "got {err:?}, not a reset");
}

#[tokio::test]
async fn delay_slows_each_direction() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    let mut client = connect(&proxy).await;
    assert_eq!(echo_once(&mut client, b"warm").await, b"warm");

    let delay = Duration::from_millis(150);
    proxy.set_delay(delay);
    let started = Instant::now();
    assert_eq!(echo_once(&mut client, b"slow").await, b"slow");
    let elapsed = started.elapsed();

    assert!(elapsed >= 2 * delay, "round trip took only {elapsed:?}");
    proxy.set_delay(Duration::ZERO);
    let started = Instant::now();
    assert_eq!(echo_once(&mut client, b"fast").await, b"fast");
    assert!(started.elapsed() < delay, "still delayed");
}

#[tokio::test]
async fn refuse_new_resets_connections_at_once_and_counts_them() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    proxy.refuse_new(true);

    for _ in 0..3 {
        let mut client = connect(&proxy).await;
        let (_, ended) = read_until_closed(&mut client).await;
        let err = ended.expect_err("a clean EOF, not a reset");
        assert!(is_reset(&err), "got {err:?}, not a reset");
    }
    assert_eq!(proxy.wait_for_accepted(3, TIMEOUT).await, 3);
    assert_eq!(proxy.wait_for_open(0, TIMEOUT).await, 0);
    assert_eq!(echo.accepted(), 0);

    proxy.refuse_new(false);
    let mut client = connect(&proxy).await;
    assert_eq!(echo_once(&mut client, b"open").await, b"open");
}

#[tokio::test]
async fn dropping_the_proxy_closes_its_connections() {
    let echo = DataServer::echo().await;
    let proxy = FaultProxy::start(echo.addr()).await;
    let mut client = connect(&proxy).await;
    assert_eq!(echo_once(&mut client, b"ping").await, b"ping");

    drop(proxy);

    let closed = tokio::time::timeout(TIMEOUT, read_until_closed(&mut client)).await;
    assert!(closed.is_ok(), "the connection outlived the proxy");
    assert_eq!(echo.wait_for_active(0, TIMEOUT).await, 0);
}
