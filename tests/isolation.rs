//! End-to-end spec: one local client that stops reading does not stall the other connections
//! on the same SSH session. russh delivers every channel through one loop and replenishes the
//! server's window on arrival, so the daemon drains each channel at once into that
//! connection's budget (`connection_buffer`), and resets a connection that stays over half of
//! it for `stall_timeout` or fills it.

mod common;
mod forwarding_support;

use std::time::Duration;

use common::{DataServer, Mode, TIMEOUT, TestSshd};
use forwarding_support::{Forward, assert_reset, drain, echo_once, start_daemon};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const MIB: u64 = 1 << 20;

/// Echo round trips on `client` until `stop_when` says so, returning each one's duration.
async fn echo_until(client: &mut TcpStream, mut stop_when: impl FnMut() -> bool) -> Vec<Duration> {
    let mut took = Vec::new();
    while !stop_when() {
        let started = Instant::now();
        echo_once(client, b"still moving?").await;
        took.push(started.elapsed());
    }
    took
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_is_reset_after_stall_timeout_while_others_on_the_session_keep_going() {
    let sshd = TestSshd::start();
    // 48 MiB: the kernel buffers of the stalled socket take some, the rest stays pending in
    // the daemon: over half of the 64 MiB budget, below all of it.
    let download = DataServer::start(Mode::Download {
        seed: 7,
        len: 48 * MIB,
    })
    .await;
    let echo = DataServer::echo().await;
    let stalled = Forward::new("stalled", download.addr());
    let lively = Forward::new("lively", echo.addr());
    let daemon = start_daemon(
        &sshd,
        "connection_buffer = \"64MiB\"\nstall_timeout = \"3s\"",
        &[&stalled, &lively],
    )
    .await;
    let mut lively_client = lively.connect().await;
    echo_once(&mut lively_client, b"warm up").await;

    let mut stalled_client = stalled.connect().await;
    download.wait_for_active(1, TIMEOUT).await;
    let log = daemon.log_file();
    let stalled_at = Instant::now();
    let round_trips = echo_until(&mut lively_client, || {
        log.count("left over half of connection_buffer unread") > 0
            || stalled_at.elapsed() > TIMEOUT
    })
    .await;
    let reset_after = stalled_at.elapsed();

    let slowest = round_trips.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} echo round trips while a reader stalled, slowest {slowest:?}; reset after {reset_after:?}",
        round_trips.len()
    );
    assert!(
        round_trips.len() >= 10,
        "only {} echo round trips completed while the other reader stalled",
        round_trips.len()
    );
    assert!(
        reset_after < TIMEOUT,
        "the stalled connection was not reset"
    );
    let mut buf = vec![0; 1 << 20];
    let (_, ended) = tokio::time::timeout(TIMEOUT, async {
        // What was already in the kernel buffers still arrives; then the reset.
        loop {
            match stalled_client.read(&mut buf).await {
                Ok(0) => return (0, Ok(())),
                Ok(_) => continue,
                Err(e) => return (0, Err(e)),
            }
        }
    })
    .await
    .expect("the stalled connection neither ended nor was reset");
    assert_reset(ended, "a client that stopped reading");
    echo_once(&mut lively_client, b"after the reset").await;
    assert_eq!(daemon.log_file().count("session up"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_falls_a_whole_budget_behind_is_reset_at_once() {
    let sshd = TestSshd::start();
    let endless = DataServer::start(Mode::Download {
        seed: 8,
        len: 1 << 40,
    })
    .await;
    let echo = DataServer::echo().await;
    let firehose = Forward::new("firehose", endless.addr());
    let lively = Forward::new("lively", echo.addr());
    let daemon = start_daemon(
        &sshd,
        "connection_buffer = \"4MiB\"\nstall_timeout = \"1h\"",
        &[&firehose, &lively],
    )
    .await;

    let started = Instant::now();
    let mut ignored = firehose.connect().await;
    let line = daemon
        .wait_for_log("bytes behind the server", TIMEOUT)
        .await;
    assert!(line.contains("connection_buffer"), "{line}");
    let (read, ended) = tokio::time::timeout(TIMEOUT, drain(&mut ignored))
        .await
        .expect("the connection was not cut");
    assert_reset(ended, "a client that fell a whole budget behind");
    eprintln!(
        "reset {:?} after connecting, {read} bytes had reached the client",
        started.elapsed()
    );

    let mut client = lively.connect().await;
    echo_once(&mut client, b"the session is not stalled").await;
    assert_eq!(daemon.log_file().count("session up"), 1);
}
