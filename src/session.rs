//! The session manager: at most one SSH session per host, opened lazily by the first
//! connection that needs it, shared by every forward to that host, and closed when it has
//! carried no channel for the host's idle timeout.
//!
//! Each host has a slot guarded by an async mutex. Taking a channel lease, opening a session
//! and retiring an idle one all happen under that mutex, so concurrent first connections share
//! one handshake and a lease can never be taken on a session that is being retired.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use russh::Channel;
use russh::client::Msg;
use tokio::sync::{Mutex, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::client::{self, ConnectError, Connection};
use crate::config::{HostSpec, Target};
use crate::ssh_config::HostConfig;

/// How long a clean disconnect may take before the session is simply dropped.
const DISCONNECT_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("no session to {host}: {error}")]
    Connect {
        host: String,
        /// Shared by every connection that waited for the same failed attempt.
        error: Arc<ConnectError>,
    },
    #[error("{host} refused to open a channel to {target}: {reason}")]
    Refused {
        host: String,
        target: String,
        reason: String,
    },
    #[error("session to {host} ended while opening a channel to {target}")]
    SessionLost { host: String, target: String },
    #[error("host {0} is not among the resolved hosts")]
    UnknownHost(String),
    #[error("daemon is shutting down")]
    ShuttingDown,
}

/// Owns every host's session.
pub struct SessionManager {
    hosts: HashMap<HostSpec, Arc<HostSlot>>,
    /// Every slot, forwards' hosts and jump hosts, each jump host before the hosts it carries.
    slots: Vec<Arc<HostSlot>>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
}

pub(crate) struct HostSlot {
    config: Arc<HostConfig>,
    /// The jump host's slot (ProxyJump): this host's sessions run over its channels.
    via: Option<Arc<HostSlot>>,
    current: Mutex<Option<Arc<LiveSession>>>,
    generation: AtomicU64,
    /// Set when the last session died rather than being retired, so the next one is logged
    /// as a reconnect.
    lost: AtomicBool,
    /// The last failed attempt: connections that were already waiting when it failed share
    /// its outcome instead of each trying again in turn.
    last_failure: std::sync::Mutex<Option<(Instant, Arc<ConnectError>)>>,
}

/// One open SSH session and the count of channels it carries.
pub struct LiveSession {
    conn: Connection,
    generation: u64,
    channels: watch::Sender<usize>,
    /// For a session through a jump host: its channel on the jump session, counted there.
    _carrier: Option<Carrier>,
}

impl LiveSession {
    /// Cancelled when the session has ended; connection tasks reset their clients on it.
    pub fn dead(&self) -> &CancellationToken {
        &self.conn.dead
    }

    /// The addresses of the TCP connection the session runs over (a jump host's, for
    /// ProxyJump).
    pub fn local_addr(&self) -> SocketAddr {
        self.conn.local_addr
    }

    pub fn remote_addr(&self) -> SocketAddr {
        self.conn.remote_addr
    }

    fn is_usable(&self) -> bool {
        !self.conn.dead.is_cancelled() && !self.conn.handle.is_closed()
    }
}

/// A channel on a session, counted as open until dropped.
pub struct Lease {
    pub channel: Channel<Msg>,
    pub session: Arc<LiveSession>,
    _count: ChannelCount,
}

/// A lease whose channel carries another session (ProxyJump): keeps the jump session, and its
/// channel count, up for as long as the session it carries lives.
pub struct Carrier {
    _session: Arc<LiveSession>,
    _count: ChannelCount,
}

impl Lease {
    /// The channel, to carry a session over, and what keeps it counted.
    pub fn into_carrier(self) -> (Channel<Msg>, Carrier) {
        let carrier = Carrier {
            _session: self.session,
            _count: self._count,
        };
        (self.channel, carrier)
    }
}

/// Keeps a session's open-channel count up while alive.
struct ChannelCount(Arc<LiveSession>);

impl ChannelCount {
    fn new(session: Arc<LiveSession>) -> Self {
        session.channels.send_modify(|n| *n += 1);
        ChannelCount(session)
    }
}

impl Drop for ChannelCount {
    fn drop(&mut self) {
        self.0.channels.send_modify(|n| *n = n.saturating_sub(1));
    }
}

impl HostSlot {
    /// The failure of an attempt that ended after `arrived`, if any.
    fn failure_since(&self, arrived: Instant) -> Option<Arc<ConnectError>> {
        let last = self.last_failure.lock().ok()?;
        last.as_ref()
            .filter(|(at, _)| *at >= arrived)
            .map(|(_, error)| error.clone())
    }

    fn record_failure(&self, error: Arc<ConnectError>) {
        if let Ok(mut last) = self.last_failure.lock() {
            *last = Some((Instant::now(), error));
        }
    }
}

impl SessionManager {
    /// `hosts` holds every host the forwards name, already resolved.
    pub fn new(hosts: impl IntoIterator<Item = HostConfig>, shutdown: CancellationToken) -> Self {
        let mut slots = Vec::new();
        let hosts = hosts
            .into_iter()
            .map(|config| {
                let slot = slot_for(config, &mut slots);
                (slot.config.spec.clone(), slot)
            })
            .collect();
        SessionManager {
            hosts,
            slots,
            tasks: TaskTracker::new(),
            shutdown,
        }
    }

    /// Opens a direct-tcpip channel to `target` on `host`'s session, opening the session first
    /// if there is none.
    pub async fn open_channel(
        &self,
        host: &HostSpec,
        target: &Target,
        originator: SocketAddr,
    ) -> Result<Lease, OpenError> {
        let slot = self
            .hosts
            .get(host)
            .ok_or_else(|| OpenError::UnknownHost(host.to_string()))?;
        self.open_on(slot, target, originator).await
    }

    /// [`Self::open_channel`] on a given slot, also a jump host's.
    pub(crate) async fn open_on(
        &self,
        slot: &Arc<HostSlot>,
        target: &Target,
        originator: SocketAddr,
    ) -> Result<Lease, OpenError> {
        let host = &slot.config.spec;
        let (session, count) = self.lease_session(slot).await?;
        let opening = session.conn.handle.channel_open_direct_tcpip(
            target.host.clone(),
            u32::from(target.port),
            originator.ip().to_string(),
            u32::from(originator.port()),
        );
        let result = tokio::select! {
            result = opening => result,
            () = session.dead().cancelled() => Err(russh::Error::Disconnect),
        };
        match result {
            Ok(channel) => Ok(Lease {
                channel,
                session,
                _count: count,
            }),
            Err(russh::Error::ChannelOpenFailure(reason)) => Err(OpenError::Refused {
                host: host.to_string(),
                target: target.to_string(),
                reason: format!("{reason:?}"),
            }),
            Err(_) => Err(OpenError::SessionLost {
                host: host.to_string(),
                target: target.to_string(),
            }),
        }
    }

    /// Returns the host's live session with a channel counted on it, connecting if needed.
    async fn lease_session(
        &self,
        slot: &Arc<HostSlot>,
    ) -> Result<(Arc<LiveSession>, ChannelCount), OpenError> {
        let arrived = Instant::now();
        let mut current = slot.current.lock().await;
        if let Some(session) = current.as_ref().filter(|s| s.is_usable()) {
            let session = session.clone();
            let count = ChannelCount::new(session.clone());
            return Ok((session, count));
        }
        if self.shutdown.is_cancelled() {
            return Err(OpenError::ShuttingDown);
        }
        let host = slot.config.spec.to_string();
        if let Some(error) = slot.failure_since(arrived) {
            return Err(OpenError::Connect { host, error });
        }
        let generation = slot.generation.fetch_add(1, Ordering::Relaxed) + 1;
        if slot.lost.swap(false, Ordering::Relaxed) {
            info!(%host, "reconnecting: the previous session was lost");
        } else {
            debug!(%host, "opening session");
        }
        let connecting = async {
            match &slot.via {
                None => client::connect(slot.config.clone())
                    .await
                    .map(|c| (c, None)),
                // Boxed: it leases a session on the jump host's slot, recursively.
                Some(via) => Box::pin(crate::jump::connect(self, via, slot.config.clone())).await,
            }
        };
        let (conn, carrier) = tokio::select! {
            conn = connecting => conn,
            () = self.shutdown.cancelled() => return Err(OpenError::ShuttingDown),
        }
        .map_err(|error| {
            warn!(%host, permanent = error.is_permanent(), "session failed: {error}");
            let error = Arc::new(error);
            slot.record_failure(error.clone());
            OpenError::Connect {
                host: host.clone(),
                error,
            }
        })?;
        info!(%host, local = %conn.local_addr, remote = %conn.remote_addr, "session up");
        let (channels, _) = watch::channel(0);
        let session = Arc::new(LiveSession {
            conn,
            generation,
            channels,
            _carrier: carrier,
        });
        let count = ChannelCount::new(session.clone());
        *current = Some(session.clone());
        self.tasks.spawn(
            watch_session(slot.clone(), session.clone(), self.shutdown.clone())
                .instrument(info_span!(parent: None, "session", %host, generation)),
        );
        Ok((session, count))
    }

    /// Closes every session and waits for their watchers to finish.
    pub async fn close_all(&self) {
        // Sessions carried by a jump host first, then the jump host.
        for slot in self.slots.iter().rev() {
            let session = slot.current.lock().await.take();
            if let Some(session) = session {
                disconnect(&session, "lazytunnel is shutting down").await;
            }
        }
        self.tasks.close();
        self.tasks.wait().await;
    }
}

/// The slot for `config`, shared with any equal host (a jump host used by several targets, or
/// also forwarded to, is one session), created with its jump host's slot first if new.
fn slot_for(config: HostConfig, slots: &mut Vec<Arc<HostSlot>>) -> Arc<HostSlot> {
    if let Some(slot) = slots.iter().find(|s| *s.config == config) {
        return slot.clone();
    }
    let via = config
        .jump
        .as_deref()
        .map(|jump| slot_for(jump.clone(), slots));
    let slot = Arc::new(HostSlot {
        config: Arc::new(config),
        via,
        current: Mutex::new(None),
        generation: AtomicU64::new(0),
        lost: AtomicBool::new(false),
        last_failure: std::sync::Mutex::new(None),
    });
    slots.push(slot.clone());
    slot
}

/// Watches one session for the end of its life: death (logged), idle timeout (retired), or
/// daemon shutdown. Sleeps only while the session carries no channel.
async fn watch_session(
    slot: Arc<HostSlot>,
    session: Arc<LiveSession>,
    shutdown: CancellationToken,
) {
    let idle_timeout = slot.config.idle_timeout;
    let mut channels = session.channels.subscribe();
    loop {
        tokio::select! {
            () = session.dead().cancelled() => break,
            () = shutdown.cancelled() => return,
            _ = channels.wait_for(|n| *n == 0) => {}
        }
        tokio::select! {
            () = session.dead().cancelled() => break,
            () = shutdown.cancelled() => return,
            _ = channels.changed() => continue,
            () = tokio::time::sleep(idle_timeout) => {
                if retire_if_idle(&slot, &session).await {
                    info!(idle = %humantime::format_duration(idle_timeout), "session closed after idle timeout");
                    disconnect(&session, "idle").await;
                    return;
                }
            }
        }
    }
    let reason = session.conn.end_reason.lock().ok().and_then(|r| r.clone());
    info!(
        reason = reason.as_deref().unwrap_or("connection lost"),
        "session down"
    );
    slot.lost.store(true, Ordering::Relaxed);
    let mut current = slot.current.lock().await;
    if current.as_ref().is_some_and(|s| Arc::ptr_eq(s, &session)) {
        *current = None;
    }
}

/// Takes the session out of its slot if it still carries no channel; leases are taken under
/// the same lock, so none can appear on a retired session.
async fn retire_if_idle(slot: &HostSlot, session: &Arc<LiveSession>) -> bool {
    let mut current = slot.current.lock().await;
    let is_current = current.as_ref().is_some_and(|s| Arc::ptr_eq(s, session));
    if is_current && *session.channels.borrow() == 0 {
        *current = None;
        return true;
    }
    debug!(
        generation = session.generation,
        "session became busy again; not retiring"
    );
    false
}

async fn disconnect(session: &LiveSession, why: &str) {
    let result = session
        .conn
        .handle
        .disconnect(russh::Disconnect::ByApplication, why, "en")
        .await;
    if let Err(e) = result {
        debug!("disconnect: {e}");
    }
    // Wait for russh's session task to finish, so the TCP connection is really gone; a
    // server that stopped answering must not hold up shutdown.
    let finished = tokio::time::timeout(DISCONNECT_WAIT, session.conn.dead.cancelled()).await;
    if finished.is_err() {
        warn!("session did not close within {DISCONNECT_WAIT:?}; dropping it");
    }
}
