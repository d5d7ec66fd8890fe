//! Bulk transfers through a forward: single-stream and parallel, upload (to the sink) and
//! download (from the source), timed from connect to the last byte confirmed, with the CPU
//! time the forwarding process spent meanwhile.

use std::io;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

use crate::common::procfs;
use crate::measure::cpu_seconds;
use crate::servers::{count_until_eof, send_payload};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Upload,
    Download,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
        }
    }
}

/// One measured transfer.
pub struct Transfer {
    pub mb_per_s: f64,
    pub cpu_s_per_gib: f64,
    /// The same for the server's side: every process under the sshd listener.
    pub sshd_cpu_s_per_gib: f64,
}

/// Moves `total` bytes in `streams` equal parts at once through `port`, while `pid` forwards
/// to the sshd listening as `sshd_pid`. An error if any stream was cut (lazytunnel resets a
/// client that falls `connection_buffer` behind a download, see docs/architecture.md).
pub async fn transfer(
    pid: u32,
    sshd_pid: u32,
    port: u16,
    direction: Direction,
    total: u64,
    streams: u64,
) -> io::Result<Transfer> {
    let each = total / streams;
    let cpu_before = cpu_seconds(pid);
    let sshd_before = sshd_cpu_seconds(sshd_pid);
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..streams {
        tasks.spawn(async move {
            match direction {
                Direction::Upload => upload(port, each).await,
                Direction::Download => download(port, each).await,
            }
        });
    }
    let mut outcome = Ok(());
    while let Some(done) = tasks.join_next().await {
        if let Err(e) = done.expect("transfer task") {
            outcome = Err(e);
        }
    }
    outcome?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid) - cpu_before;
    let sshd_cpu = sshd_cpu_seconds(sshd_pid) - sshd_before;
    let gib = (each * streams) as f64 / (1u64 << 30) as f64;
    Ok(Transfer {
        mb_per_s: gib * (1u64 << 30) as f64 / elapsed / 1e6,
        cpu_s_per_gib: cpu / gib,
        sshd_cpu_s_per_gib: sshd_cpu / gib,
    })
}

/// CPU time of the sshd processes serving sessions; only one session moves data at a time.
fn sshd_cpu_seconds(listener: u32) -> f64 {
    procfs::descendants(listener)
        .into_iter()
        .map(|pid| {
            // A process may end between listing and reading.
            std::panic::catch_unwind(|| cpu_seconds(pid)).unwrap_or(0.0)
        })
        .sum()
}

async fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    let _ = stream.set_nodelay(true);
    stream
}

/// Sends `len` bytes, half-closes, and checks the sink's count of what arrived.
async fn upload(port: u16, len: u64) -> io::Result<()> {
    let mut stream = connect(port).await;
    send_payload(&mut stream, len).await?;
    stream.shutdown().await?;
    let mut count = [0; 8];
    stream.read_exact(&mut count).await?;
    assert_eq!(
        u64::from_le_bytes(count),
        len,
        "the sink got a different count"
    );
    Ok(())
}

/// Asks the source for `len` bytes and reads until its EOF, checking the count.
async fn download(port: u16, len: u64) -> io::Result<()> {
    let mut stream = connect(port).await;
    stream.write_all(&len.to_le_bytes()).await?;
    let got = count_until_eof(&mut stream).await?;
    assert_eq!(got, len, "download ended early");
    Ok(())
}
