//! Copying one accepted socket over its SSH channel: byte-exact both ways, with half-close
//! carried both ways, an explicit channel close at the end, and a reset (RST; a plain close
//! for a Unix socket, which has no reset) for the local client whenever the transfer is cut, so
//! a TCP client never mistakes a cut for a clean end.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};
use russh::client::Msg;
use russh::{Channel, ChannelMsg};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::local::{LocalStream, ReadHalf, WriteHalf};

/// Read size from the local socket; one SSH packet carries at most ~64 KiB.
const READ_CHUNK: usize = 64 * 1024;
/// Pending chunks handed to one vectored write.
const WRITE_SLICES: usize = 16;
/// Server messages smaller than this are merged while they wait for the client.
const MERGE_BELOW: usize = 4 * 1024;

/// Bytes moved by one connection.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Transferred {
    /// Local client → server.
    pub up: u64,
    /// Server → local client.
    pub down: u64,
}

/// Running byte counts, shared by whoever reports on them (a forward, a host); a connection
/// adds to them as data moves, not only when it ends, so a long transfer shows in status.
#[derive(Debug, Default)]
pub struct Traffic {
    up: AtomicU64,
    down: AtomicU64,
}

impl Traffic {
    pub fn add_up(&self, n: u64) {
        self.up.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_down(&self, n: u64) {
        self.down.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> Transferred {
        Transferred {
            up: self.up.load(Ordering::Relaxed),
            down: self.down.load(Ordering::Relaxed),
        }
    }
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
/// Every byte moved is also added to each of `meters` as it goes.
pub async fn forward(
    mut local: LocalStream,
    channel: Channel<Msg>,
    meters: &[&Traffic],
    cut: impl Future<Output = &'static str>,
) -> Result<Transferred, ForwardError> {
    let mut moved = Transferred::default();
    let result = {
        let (local_read, local_write) = local.split();
        let copying = copy_both_ways(local_read, local_write, channel, meters, &mut moved);
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
            local.reset();
            Err(e)
        }
    }
}

async fn copy_both_ways(
    mut local_read: ReadHalf<'_>,
    mut local_write: WriteHalf<'_>,
    channel: Channel<Msg>,
    meters: &[&Traffic],
    moved: &mut Transferred,
) -> Result<(), ForwardError> {
    let (mut remote_read, remote_write) = channel.split();
    let mut up_bytes = 0u64;

    let upstream = async {
        loop {
            // Allocate only once data is waiting, so an idle connection holds no buffer; the
            // filled buffer is handed to russh whole.
            local_read.readable().await.map_err(ForwardError::Local)?;
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
            meters.iter().for_each(|m| m.add_up(n as u64));
            remote_write
                .data_bytes(buf.freeze())
                .await
                .map_err(|_| ForwardError::SessionLost)?;
        }
    };

    let downstream = drain_downstream(&mut remote_read, &mut local_write, meters);
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

/// Server → client: takes every message off the channel and writes its data to the local
/// socket as fast as the client reads it. Data counts as consumed (and the server may send
/// that much more) only once written, so a slow client holds back only its own channel, and
/// what waits here stays within the channel's window. Returns the bytes delivered once the
/// server has closed the channel and everything is written.
async fn drain_downstream(
    remote_read: &mut russh::ChannelReadHalf,
    local_write: &mut WriteHalf<'_>,
    meters: &[&Traffic],
) -> Result<u64, ForwardError> {
    let consumer = remote_read.consume_manually();
    let mut pending = Pending::default();
    let mut delivered = 0u64;
    let (mut remote_eof, mut remote_closed, mut local_shut) = (false, false, false);
    loop {
        if pending.is_empty() {
            // Remote EOF → shutdown(Write) locally, once everything before it is written.
            if remote_eof && !local_shut {
                local_write.shutdown().await.map_err(ForwardError::Local)?;
                local_shut = true;
            }
            if remote_closed {
                return Ok(delivered);
            }
        }
        tokio::select! {
            message = remote_read.wait(), if !remote_closed => match message {
                Some(ChannelMsg::Data { data }) => pending.push(data),
                Some(ChannelMsg::Eof) => remote_eof = true,
                Some(ChannelMsg::Close) => remote_closed = true,
                Some(_) => {}
                // The channel vanished without CHANNEL_CLOSE: the session is gone.
                None => return Err(ForwardError::SessionLost),
            },
            written = pending.write_to(local_write), if !pending.is_empty() => {
                let n = written.map_err(ForwardError::Local)?;
                if n == 0 {
                    return Err(ForwardError::Local(io::ErrorKind::WriteZero.into()));
                }
                pending.consume(n);
                consumer.consumed(n);
                delivered += n as u64;
                meters.iter().for_each(|m| m.add_down(n as u64));
            }
        }
    }
}

/// Data received from the server and not yet written to the local client: whole messages,
/// then small ones merged into `tail`, so that a flood of tiny messages costs its bytes and
/// not a queue entry each.
#[derive(Default)]
struct Pending {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.chunks.is_empty() && self.tail.is_empty()
    }

    fn push(&mut self, data: Bytes) {
        if data.len() < MERGE_BELOW {
            self.tail.extend_from_slice(&data);
        } else {
            if !self.tail.is_empty() {
                self.chunks.push_back(self.tail.split().freeze());
            }
            self.chunks.push_back(data);
        }
    }

    /// Writes as much of the front as the socket takes in one vectored write.
    async fn write_to(&self, out: &mut WriteHalf<'_>) -> io::Result<usize> {
        let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
        let mut used = 0;
        let parts = self.chunks.iter().map(|c| &c[..]).chain([&self.tail[..]]);
        for (slot, part) in slices.iter_mut().zip(parts.filter(|p| !p.is_empty())) {
            *slot = IoSlice::new(part);
            used += 1;
        }
        out.write_vectored(&slices[..used]).await
    }

    /// Drops the first `n` bytes, which have been written.
    fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.chunks.front_mut() else {
                self.tail.advance(n.min(self.tail.len()));
                return;
            };
            if front.len() > n {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.chunks.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_messages_are_merged_and_consumed_in_order() {
        let mut pending = Pending::default();
        for byte in 0..200u8 {
            pending.push(Bytes::from(vec![byte]));
        }
        pending.push(Bytes::from(vec![7u8; MERGE_BELOW]));
        pending.push(Bytes::from_static(b"end"));
        // One merged run of tiny messages, one whole message, and the tail again.
        assert_eq!(pending.chunks.len(), 2);
        assert_eq!(pending.chunks[0].len(), 200);
        pending.consume(199);
        assert_eq!(pending.chunks[0][..], [199]);
        pending.consume(1 + MERGE_BELOW + 1);
        assert_eq!(&pending.tail[..], b"nd");
        pending.consume(2);
        assert!(pending.is_empty());
    }
}
