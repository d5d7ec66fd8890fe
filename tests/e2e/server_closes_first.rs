//! End-to-end spec of a server that answers and closes (HTTP/1.0, `Connection: close`, SMTP,
//! health checks), through a real OpenSSH server: the client sees the EOF right after the
//! answer, not after our kernel's delayed ACK releases the CHANNEL_EOF that sshd's Nagle
//! algorithm holds back (src/client/quick_ack.rs).
//!
//! Linux only: macOS has no per-socket way to send the ACK early (see quick_ack.rs).
#![cfg(target_os = "linux")]

use crate::{common, forwarding_support};

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{TIMEOUT, TestSshd};
use forwarding_support::{Forward, start_daemon};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How many request/response exchanges are timed; the median is judged.
const TRIES: usize = 9;
/// Linux never fires a delayed ACK sooner than 40 ms (TCP_DELACK_MIN). Half of it leaves room
/// for a loaded machine while every try that waits for the timer lands above it.
const BOUND: Duration = Duration::from_millis(20);
/// An answer smaller than one segment: the case Nagle holds the next packet behind.
const ANSWER: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_answers_and_closes_is_seen_closed_within_milliseconds() {
    let sshd = TestSshd::start();
    let (server, mut closed_at) = answer_and_close().await;
    let forward = Forward::new("closer", server);
    let daemon = start_daemon(&sshd, "", &[&forward]).await;

    // The first exchange opens the session; it is not timed.
    exchange(&forward).await;
    closed_at.recv().await.expect("the server closed");

    let mut waits = Vec::with_capacity(TRIES);
    for _ in 0..TRIES {
        let eof_at = exchange(&forward).await;
        let closed = closed_at.recv().await.expect("the server closed");
        waits.push(eof_at.saturating_duration_since(closed));
    }
    waits.sort();
    let median = waits[TRIES / 2];
    assert!(
        median < BOUND,
        "from the server's close to the client's EOF took {median:?} (median; all: {waits:?}), \
         longer than {BOUND:?}: something waits for a delayed ACK\n{}",
        daemon.log()
    );
}

/// A server on 127.0.0.1:0 that reads a request, writes [`ANSWER`] bytes and closes at once,
/// sending the instant of each close.
async fn answer_and_close() -> (SocketAddr, mpsc::UnboundedReceiver<Instant>) {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the server");
    let addr = listener.local_addr().expect("server address");
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut request = [0; 64];
            if stream.read(&mut request).await.unwrap_or(0) == 0 {
                continue;
            }
            stream.write_all(&[b'a'; ANSWER]).await.expect("answer");
            drop(stream);
            let _ = tx.send(Instant::now());
        }
    });
    (addr, rx)
}

/// Sends a request through `forward`, reads the whole answer; returns when EOF arrived.
async fn exchange(forward: &Forward) -> Instant {
    let mut client = forward.connect().await;
    client
        .write_all(b"request")
        .await
        .expect("send the request");
    let mut answer = Vec::new();
    tokio::time::timeout(TIMEOUT, client.read_to_end(&mut answer))
        .await
        .expect("no EOF within the timeout")
        .expect("read the answer");
    let eof_at = Instant::now();
    assert_eq!(answer, [b'a'; ANSWER], "the answer arrived whole");
    eof_at
}
