//! A long path on loopback: a TCP relay that delivers every byte a fixed time after it arrived,
//! in each direction, without limiting how many are in flight (unlike the tests' fault proxy,
//! which delays one chunk at a time). This kernel has no netem, so the delay is in user space.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Relays connections to `upstream`, each byte `one_way` late in each direction; returns the
/// address to connect to. Runs until the runtime stops.
pub async fn start(upstream: SocketAddr, one_way: Duration) -> SocketAddr {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .expect("bind the delay line");
    let addr = listener.local_addr().expect("delay line address");
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                let Ok(server) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::join!(
                    delayed(client_read, server_write, one_way),
                    delayed(server_read, client_write, one_way),
                );
            });
        }
    });
    addr
}

/// Copies `from` to `to`, each chunk written `delay` after it was read; EOF is passed on the
/// same way.
async fn delayed(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, delay: Duration) {
    let (queue, mut due) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        loop {
            let mut chunk = vec![0; 256 * 1024];
            let n = from.read(&mut chunk).await.unwrap_or(0);
            chunk.truncate(n);
            let _ = queue.send((Instant::now() + delay, chunk));
            if n == 0 {
                return;
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if chunk.is_empty() || to.write_all(&chunk).await.is_err() {
                let _ = to.shutdown().await;
                return;
            }
        }
    };
    tokio::join!(reader, writer);
}
