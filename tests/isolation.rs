//! End-to-end spec: one local client that stops reading does not stall the other connections
//! on the same SSH session, and a client that reads slowly is paced, never cut. russh delivers
//! every channel through one loop and replenishes the server's window on arrival, so the
//! daemon takes each channel's data at once into that connection's buffer; only when the
//! buffer is full (`connection_buffer`) does it stop taking, and a client that then takes
//! nothing for `stall_timeout` is reset.

mod common;
mod forwarding_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use common::{DataServer, Mode, TIMEOUT, TestSshd, deterministic_bytes, sha256};
use forwarding_support::{Forward, assert_reset, drain, echo_once, start_daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

const MIB: usize = 1 << 20;

/// A server that sends `data` to its first client, reports when the kernel has taken all of
/// it, and keeps the connection open until the client closes.
async fn blob_server(data: Vec<u8>) -> (SocketAddr, oneshot::Receiver<()>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the blob server");
    let addr = listener.local_addr().expect("local address");
    let (sent, sent_rx) = oneshot::channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("accept");
        socket.write_all(&data).await.expect("send the blob");
        let _ = sent.send(());
        let _ = socket.read(&mut [0; 1]).await;
    });
    (addr, sent_rx)
}

/// Reads exactly `len` bytes, `chunk` at a time with `pause` between reads.
async fn read_paced(client: &mut TcpStream, len: usize, chunk: usize, pause: Duration) -> Vec<u8> {
    let mut received = Vec::with_capacity(len);
    let mut buf = vec![0; chunk];
    while received.len() < len {
        let want = chunk.min(len - received.len());
        let n = tokio::time::timeout(TIMEOUT, client.read(&mut buf[..want]))
            .await
            .expect("no data within TIMEOUT")
            .expect("read the download");
        assert!(n > 0, "EOF after {} of {len} bytes", received.len());
        received.extend_from_slice(&buf[..n]);
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    received
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_holds_up_no_one_and_loses_nothing() {
    let sshd = TestSshd::start();
    // More than kernel buffers and russh's queue for the channel hold together: a forwarder
    // that waited on this client would hold up the whole session. Less than the buffer.
    let blob = deterministic_bytes(7, 48 * MIB);
    let (blob_addr, all_sent) = blob_server(blob.clone()).await;
    let echo = DataServer::echo().await;
    let stalled = Forward::new("stalled", blob_addr);
    let lively = Forward::new("lively", echo.addr());
    let daemon = start_daemon(
        &sshd,
        "connection_buffer = \"64MiB\"\nstall_timeout = \"1s\"",
        &[&stalled, &lively],
    )
    .await;
    let mut lively_client = lively.connect().await;
    echo_once(&mut lively_client, b"warm up").await;

    let mut stalled_client = stalled.connect().await;
    tokio::time::timeout(TIMEOUT, all_sent)
        .await
        .expect("the blob server could not send everything within TIMEOUT")
        .expect("blob server");
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for i in 0..500 {
        let round_trip = Instant::now();
        echo_once(&mut lively_client, format!("round trip {i}").as_bytes()).await;
        slowest = slowest.max(round_trip.elapsed());
    }
    eprintln!(
        "500 echo round trips in {:?} (slowest {slowest:?}) while another client read nothing",
        started.elapsed()
    );

    // Longer than stall_timeout without reading, yet not cut: its buffer never filled.
    let received = read_paced(&mut stalled_client, blob.len(), MIB, Duration::ZERO).await;
    assert!(sha256(&received) == sha256(&blob), "the download differs");
    assert_eq!(daemon.log_file().count("took nothing"), 0);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_slower_than_the_server_sends_is_paced_not_cut() {
    let sshd = TestSshd::start();
    let len = 24 * MIB;
    let download = DataServer::start(Mode::Download {
        seed: 9,
        len: len as u64,
    })
    .await;
    let slow = Forward::new("slow", download.addr());
    // A small buffer, so that it fills and stays full for the whole download.
    let daemon = start_daemon(
        &sshd,
        "connection_buffer = \"1MiB\"\nstall_timeout = \"1s\"",
        &[&slow],
    )
    .await;

    let mut client = slow.connect().await;
    let started = Instant::now();
    // About 12 MiB/s: far below what the server sends on loopback.
    let received = read_paced(&mut client, len, 64 * 1024, Duration::from_millis(5)).await;
    eprintln!("24 MiB read at a slow pace in {:?}", started.elapsed());

    assert!(
        sha256(&received) == sha256(&deterministic_bytes(9, len)),
        "the download differs"
    );
    drop(client);
    assert_eq!(daemon.log_file().count("took nothing"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_takes_nothing_with_its_buffer_full_is_reset_after_stall_timeout() {
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
        "connection_buffer = \"4MiB\"\nstall_timeout = \"2s\"",
        &[&firehose, &lively],
    )
    .await;
    let mut lively_client = lively.connect().await;
    echo_once(&mut lively_client, b"before").await;

    let mut ignored = firehose.connect().await;
    // Echo round trips until the stuck client is reset: each is held up at most while the
    // stuck client's buffer is full and it takes nothing, i.e. stall_timeout.
    let log = daemon.log_file();
    let started = Instant::now();
    let mut held = Duration::ZERO;
    while log.count("took nothing for 2s") == 0 && started.elapsed() < TIMEOUT {
        let round_trip = Instant::now();
        echo_once(&mut lively_client, b"during").await;
        held = held.max(round_trip.elapsed());
    }
    let line = daemon.wait_for_log("took nothing for 2s", TIMEOUT).await;
    assert!(line.contains("connection_buffer full"), "{line}");
    let (read, ended) = tokio::time::timeout(TIMEOUT, drain(&mut ignored))
        .await
        .expect("the stuck connection was not cut");
    assert_reset(ended, "a client that took nothing with its buffer full");
    eprintln!(
        "echoes were held up at most {held:?} by a stuck client ({read} bytes had reached it, \
         reset after {:?})",
        started.elapsed()
    );
    assert!(
        held < Duration::from_secs(2) + Duration::from_millis(1500),
        "an echo on the same session waited {held:?}, beyond stall_timeout"
    );

    echo_once(&mut lively_client, b"after").await;
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}
