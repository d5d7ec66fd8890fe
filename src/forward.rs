//! Copying one accepted socket over its SSH channel: byte-exact both ways, with half-close
//! carried both ways, an explicit channel close at the end, and a reset (RST) for the local
//! client whenever the transfer is cut, so a client never mistakes a cut for a clean end.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{ReadHalf, WriteHalf};

/// Read size from the local socket; one SSH packet carries at most ~64 KiB.
const READ_CHUNK: usize = 64 * 1024;

/// Bytes moved by one connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Local client → server.
    pub up: u64,
    /// Server → local client.
    pub down: u64,
}

/// How a forwarded connection ended.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("the ssh session ended mid-transfer")]
    SessionLost,
    #[error("local socket: {0}")]
    Local(io::Error),
    #[error("stopped: {0}")]
    Stopped(&'static str),
}

/// Forwards `local` over `channel` until both directions have ended, or until `cut` resolves
/// (session death, forced shutdown) with its reason. On any error the local socket is reset.
pub async fn forward(
    mut local: TcpStream,
    channel: Channel<Msg>,
    cut: impl Future<Output = &'static str>,
) -> Result<Transferred, ForwardError> {
    let mut moved = Transferred::default();
    let result = {
        let (local_read, local_write) = local.split();
        let copying = copy_both_ways(local_read, local_write, channel, &mut moved);
        tokio::select! {
            // Session death wins over a simultaneous channel EOF: russh ends channels on a dead
            // session as if they had finished cleanly.
            biased;
            reason = cut => Err(ForwardError::Stopped(reason)),
            result = copying => result,
        }
    };
    match result {
        Ok(()) => Ok(moved),
        Err(e) => {
            reset(&local);
            Err(e)
        }
    }
}

/// Closes `stream` with RST instead of FIN once dropped.
pub fn reset(stream: &TcpStream) {
    // Failure to set linger leaves a FIN close; nothing better is possible then.
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn copy_both_ways(
    mut local_read: ReadHalf<'_>,
    mut local_write: WriteHalf<'_>,
    channel: Channel<Msg>,
    moved: &mut Transferred,
) -> Result<(), ForwardError> {
    let (mut remote_read, remote_write) = channel.split();
    let mut up_bytes = 0u64;

    let upstream = async {
        loop {
            // Allocate only once data is waiting, so an idle connection holds no buffer; the
            // filled buffer is handed to russh whole.
            local_read
                .as_ref()
                .readable()
                .await
                .map_err(ForwardError::Local)?;
            let mut buf = BytesMut::with_capacity(READ_CHUNK);
            let n = local_read
                .read_buf(&mut buf)
                .await
                .map_err(ForwardError::Local)?;
            if n == 0 {
                // Local EOF → CHANNEL_EOF; the other direction keeps going.
                remote_write
                    .eof()
                    .await
                    .map_err(|_| ForwardError::SessionLost)?;
                return Ok::<(), ForwardError>(());
            }
            up_bytes += n as u64;
            remote_write
                .data_bytes(buf.freeze())
                .await
                .map_err(|_| ForwardError::SessionLost)?;
        }
    };

    let downstream = async {
        let mut down_bytes = 0u64;
        loop {
            match remote_read.wait().await {
                Some(ChannelMsg::Data { data }) => {
                    local_write
                        .write_all(&data)
                        .await
                        .map_err(ForwardError::Local)?;
                    down_bytes += data.len() as u64;
                }
                // Remote EOF → shutdown(Write) locally; keep reading until CHANNEL_CLOSE.
                Some(ChannelMsg::Eof) => {
                    local_write.shutdown().await.map_err(ForwardError::Local)?
                }
                Some(ChannelMsg::Close) => return Ok(down_bytes),
                Some(_) => {}
                // The channel vanished without CHANNEL_CLOSE: the session is gone.
                None => return Err(ForwardError::SessionLost),
            }
        }
    };

    let outcome = {
        tokio::pin!(upstream, downstream);
        let mut upstream_done = false;
        loop {
            tokio::select! {
                result = &mut upstream, if !upstream_done => match result {
                    Ok(()) => upstream_done = true,
                    Err(e) => break Err(e),
                },
                result = &mut downstream => break result.map(|down| moved.down = down),
            }
        }
    };
    moved.up = up_bytes;
    match outcome {
        // The server closed the channel; russh has answered with CHANNEL_CLOSE already.
        Ok(()) => Ok(()),
        Err(e) => {
            // Tell the server we are done with the channel, so it doesn't leak there.
            let _ = remote_write.close().await;
            Err(e)
        }
    }
}
