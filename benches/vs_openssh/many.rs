//! Many connections open at once on one session: each sends its own 16 bytes and checks the
//! echo, all stay open together while the forwarder's memory is read, then each half-closes
//! and checks for a clean end.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::measure::rss_kib;

/// Connections being set up at once, so the listen backlogs (128 for ssh) don't drop SYNs.
const OPENING_AT_ONCE: usize = 64;
const DEADLINE: Duration = Duration::from_secs(120);

pub struct Many {
    pub correct: usize,
    pub open_at_once: usize,
    pub rss_per_conn_kib: f64,
    pub open_secs: f64,
}

pub async fn hold_many(pid: u32, port: u16, count: usize) -> Many {
    // Let memory freed by earlier work settle before the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let baseline = rss_kib(pid);
    let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let (ready_tx, mut ready_rx) = mpsc::channel::<()>(count);
    let (release_tx, release_rx) = watch::channel(false);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..count {
        let (gate, ready_tx, mut release_rx) = (gate.clone(), ready_tx.clone(), release_rx.clone());
        tasks.spawn(async move {
            let message = format!("conn {i:>11}\n").into_bytes();
            let mut stream = {
                let _permit = gate.acquire().await.expect("gate");
                let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
                stream.write_all(&message).await.ok()?;
                let mut back = vec![0; message.len()];
                stream.read_exact(&mut back).await.ok()?;
                if back != message {
                    return None;
                }
                stream
            };
            let _ = ready_tx.send(()).await;
            let _ = release_rx.wait_for(|go| *go).await;
            stream.shutdown().await.ok()?;
            let mut rest = [0; 16];
            (stream.read(&mut rest).await.ok()? == 0).then_some(())
        });
    }
    drop(ready_tx);
    let mut open = 0;
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while open < count {
        match tokio::time::timeout_at(deadline, ready_rx.recv()).await {
            Ok(Some(())) => open += 1,
            _ => break,
        }
    }
    let open_secs = start.elapsed().as_secs_f64();
    // All open at once now: the memory they hold.
    let held = rss_kib(pid);
    let _ = release_tx.send(true);
    let mut correct = 0;
    while let Some(done) = tasks.join_next().await {
        if matches!(done, Ok(Some(()))) {
            correct += 1;
        }
    }
    Many {
        correct,
        open_at_once: open,
        rss_per_conn_kib: (held as f64 - baseline as f64) / open.max(1) as f64,
        open_secs,
    }
}
