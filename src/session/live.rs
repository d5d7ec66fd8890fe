//! One open SSH session: its channel count (for idle teardown), and the means to find out
//! whether it still works (a probe with a deadline) and to give up on it (declaring it dead
//! without waiting for keepalives or the kernel).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

use crate::client::Connection;

/// How long a clean disconnect may take before the session is simply dropped.
pub(super) const DISCONNECT_WAIT: Duration = Duration::from_secs(3);

/// One open SSH session and the count of channels it carries.
pub struct LiveSession {
    pub(super) conn: Connection,
    pub(super) generation: u64,
    pub(super) channels: watch::Sender<usize>,
    /// Set while a probe runs, so that a burst of evidence sends one ping, not one each.
    probing: AtomicBool,
    /// For a session through a jump host: its channel on the jump session, counted there.
    carrier: Option<Carrier>,
}

/// A lease whose channel carries another session (ProxyJump): keeps the jump session, and its
/// channel count, up for as long as the session it carries lives.
pub struct Carrier {
    session: Arc<LiveSession>,
    _count: ChannelCount,
}

impl Carrier {
    pub(super) fn new(session: Arc<LiveSession>, count: ChannelCount) -> Carrier {
        Carrier {
            session,
            _count: count,
        }
    }
}

impl LiveSession {
    pub(super) fn new(conn: Connection, carrier: Option<Carrier>, generation: u64) -> LiveSession {
        LiveSession {
            conn,
            generation,
            channels: watch::channel(0).0,
            probing: AtomicBool::new(false),
            carrier,
        }
    }

    /// Cancelled when the session has ended, or has been declared dead; connection tasks reset
    /// their clients on it.
    pub fn dead(&self) -> &CancellationToken {
        &self.conn.dead
    }

    /// Resolves when the session has ended. A session carried by a jump host whose session
    /// ended is declared dead at once: its own transport might take keepalives to notice.
    pub(super) async fn ended(self: &Arc<Self>) {
        let Some(carrier) = &self.carrier else {
            return self.conn.dead.cancelled().await;
        };
        tokio::select! {
            () = self.conn.dead.cancelled() => {}
            () = carrier.session.dead().cancelled() => {
                self.declare_dead("its jump host's session ended".into());
            }
        }
    }

    pub(super) fn is_usable(&self) -> bool {
        !self.conn.dead.is_cancelled() && !self.conn.handle.is_closed()
    }

    /// The addresses of the TCP connection the session runs over (its jump host's, for
    /// ProxyJump).
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.conn.local_addr
    }

    pub fn remote_addr(&self) -> std::net::SocketAddr {
        self.conn.remote_addr
    }

    /// Asks the server for a reply within `deadline`; declares the session dead if none comes.
    /// Returns whether the session is alive. A probe already running answers for this one.
    pub(super) async fn probe(self: &Arc<Self>, deadline: Duration, why: &str) -> bool {
        if self.probing.swap(true, Ordering::AcqRel) {
            return self.is_usable();
        }
        debug!(generation = self.generation, "probing session: {why}");
        let answered = tokio::time::timeout(deadline, self.conn.handle.send_ping()).await;
        self.probing.store(false, Ordering::Release);
        // `send_ping` also returns Ok when the session died while waiting.
        let alive = matches!(answered, Ok(Ok(()))) && self.is_usable();
        if !alive && !self.conn.dead.is_cancelled() {
            self.declare_dead(format!(
                "no reply to a probe within {}: {why}",
                humantime::format_duration(deadline)
            ));
        }
        alive
    }

    /// Gives up on the session now: its connections are reset and the next one opens a new
    /// session. russh's own task ends later, when its keepalives or the kernel give up.
    pub(super) fn declare_dead(self: &Arc<Self>, reason: String) {
        if let Ok(mut end) = self.conn.end_reason.lock() {
            end.get_or_insert(reason);
        }
        self.conn.dead.cancel();
        let session = self.clone();
        // Best effort: on a vanished path the DISCONNECT never arrives, and nothing waits for it.
        tokio::spawn(async move {
            let disconnect = session.conn.handle.disconnect(
                russh::Disconnect::ByApplication,
                "connection lost",
                "en",
            );
            let _ = tokio::time::timeout(DISCONNECT_WAIT, disconnect).await;
        });
    }

    /// Disconnects cleanly and waits (boundedly) until russh's session task has finished, so
    /// the TCP connection is really gone.
    pub(super) async fn disconnect(&self, why: &str) {
        let result = self
            .conn
            .handle
            .disconnect(russh::Disconnect::ByApplication, why, "en")
            .await;
        if let Err(e) = result {
            debug!("disconnect: {e}");
        }
        let finished = tokio::time::timeout(DISCONNECT_WAIT, self.conn.dead.cancelled()).await;
        if finished.is_err() {
            info!("session did not close within {DISCONNECT_WAIT:?}; dropping it");
        }
    }
}

/// Keeps a session's open-channel count up while alive.
pub(super) struct ChannelCount(Arc<LiveSession>);

impl ChannelCount {
    pub(super) fn new(session: Arc<LiveSession>) -> Self {
        session.channels.send_modify(|n| *n += 1);
        ChannelCount(session)
    }
}

impl Drop for ChannelCount {
    fn drop(&mut self) {
        self.0.channels.send_modify(|n| *n = n.saturating_sub(1));
    }
}
