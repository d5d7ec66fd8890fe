//! Acknowledging what the SSH server sent as soon as we have read all of it, so the server's
//! Nagle algorithm never waits on our delayed ACK.
//!
//! OpenSSH's sshd leaves Nagle on for sessions without a terminal (ours). When a target answers
//! and closes, sshd writes the answer's CHANNEL_DATA and then, a moment later, CHANNEL_EOF and
//! CHANNEL_CLOSE: small packets that Nagle holds while the small data segment before them is
//! unacknowledged. Our kernel delays that ACK (Linux: about 40 ms, the minimum delayed-ACK
//! timeout), because we have nothing to send back that could carry it. So every connection
//! whose server closes first (HTTP/1.0, `Connection: close`, SMTP, health checks) saw its EOF
//! 40 ms late. `ssh -L` pays the same.
//!
//! On Linux, setting `TCP_QUICKACK` when an ACK is pending sends that ACK at once (and leaves
//! delayed-ACK mode until the kernel re-enters it). We set it when a read has drained the socket:
//! a read that returned less than asked, or a read that found nothing. At most once per run of
//! reads that brought data, so a busy session pays one `setsockopt` per time it catches up with
//! the server, not one per read, and an idle one pays nothing.
//!
//! macOS has no `TCP_QUICKACK`. Its delayed ACK is governed system-wide by the sysctl
//! `net.inet.tcp.delayed_ack` (default 3: ACK every other packet, or fewer once a stream is
//! detected, else wait for the delayed-ACK timer), so a lone small segment still waits there.
//! `TCP_SENDMOREACKS` only changes how often a stream is acknowledged, not a lone segment. What
//! a user can do is set `net.inet.tcp.delayed_ack=0` (as root, for every connection of the
//! machine); the one lever left to a process, sending a packet that carries the ACK (an
//! SSH_MSG_IGNORE) after each drained read, would cost the server a packet each time, and is
//! not done. There, and on other systems without the option, the
//! wrapper only passes reads and writes through.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// The SSH server's socket, acknowledging promptly what it has read (see the module docs).
pub struct QuickAck {
    stream: TcpStream,
    /// Data has been read since the last time we asked for an immediate ACK.
    owed: bool,
}

impl QuickAck {
    pub fn new(stream: TcpStream) -> QuickAck {
        QuickAck {
            stream,
            owed: false,
        }
    }

    /// Sends the ACK the kernel is holding back, if it holds one.
    fn ack_now(&mut self) {
        self.owed = false;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        {
            use std::os::fd::AsRawFd;
            let on: libc::c_int = 1;
            // SAFETY: a socket option on a descriptor we own, with a pointer to a local int
            // and its size. A failure (the socket gone) only means no ACK was sent early.
            unsafe {
                libc::setsockopt(
                    self.stream.as_raw_fd(),
                    libc::IPPROTO_TCP,
                    libc::TCP_QUICKACK,
                    (&raw const on).cast(),
                    size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
    }
}

impl AsyncRead for QuickAck {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let (before, wanted) = (buf.filled().len(), buf.remaining());
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        match &polled {
            Poll::Ready(Ok(())) => {
                let got = buf.filled().len() - before;
                if got > 0 {
                    this.owed = true;
                    // A short read emptied the socket: the server may be waiting on our ACK.
                    if got < wanted {
                        this.ack_now();
                    }
                }
            }
            // The socket was emptied by a read that filled its buffer exactly.
            Poll::Pending if this.owed => this.ack_now(),
            _ => {}
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
