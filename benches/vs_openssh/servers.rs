//! The targets the forwards point at, in the benchmark's own process so nothing needs
//! installing: a sink (reads to EOF, answers with the byte count), a source (sends as many
//! bytes as asked for) and an echo (the tests' [`DataServer`](crate::common::DataServer)).

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::OnceLock;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::common::deterministic_bytes;

/// Size of the buffer the clients and servers copy from and read into.
pub const CHUNK: usize = 256 * 1024;

/// Incompressible bytes to send, the same on every run.
fn payload() -> &'static [u8] {
    static PAYLOAD: OnceLock<Vec<u8>> = OnceLock::new();
    PAYLOAD.get_or_init(|| deterministic_bytes(7, CHUNK))
}

/// A TCP server on 127.0.0.1:0 running `serve` for each connection; stops on drop.
pub struct Server {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    async fn start<F, Fut>(serve: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind a bench server on 127.0.0.1:0");
        let addr = listener.local_addr().expect("bench server address");
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    // Descriptor exhaustion: back off rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream));
            }
        });
        Server { addr, task }
    }

    /// Reads until EOF, then replies with the number of bytes read (u64, little-endian).
    pub async fn sink() -> Server {
        Server::start(|mut stream: TcpStream| async move {
            let total = count_until_eof(&mut stream).await?;
            stream.write_all(&total.to_le_bytes()).await?;
            stream.shutdown().await
        })
        .await
    }

    /// Reads a length (u64, little-endian), sends that many bytes, shuts down its side and
    /// waits for the client's EOF.
    pub async fn source() -> Server {
        Server::start(|mut stream: TcpStream| async move {
            let mut len = [0; 8];
            stream.read_exact(&mut len).await?;
            send_payload(&mut stream, u64::from_le_bytes(len)).await?;
            stream.shutdown().await?;
            let mut rest = [0; 64];
            while stream.read(&mut rest).await? > 0 {}
            Ok(())
        })
        .await
    }
}

/// Writes `len` bytes of [`payload`].
pub async fn send_payload(stream: &mut TcpStream, len: u64) -> std::io::Result<()> {
    let data = payload();
    let mut left = len;
    while left > 0 {
        let n = left.min(data.len() as u64) as usize;
        stream.write_all(&data[..n]).await?;
        left -= n as u64;
    }
    Ok(())
}

/// Reads until EOF, keeping nothing; returns how many bytes came.
pub async fn count_until_eof(stream: &mut TcpStream) -> std::io::Result<u64> {
    let mut buf = vec![0; CHUNK];
    let mut total = 0u64;
    loop {
        match stream.read(&mut buf).await? {
            0 => return Ok(total),
            n => total += n as u64,
        }
    }
}
