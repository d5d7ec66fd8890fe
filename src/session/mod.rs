//! The session manager: at most one SSH session per host, opened lazily by the first
//! connection that needs it, shared by every forward to that host, replaced when it dies, and
//! closed when it has carried no channel for the host's idle timeout.
//!
//! A connection that needs a session waits ("is held") while one is being opened, and across
//! failed attempts while the next attempt is due within the host's `connect_timeout` of its
//! arrival. A session that stops answering is found out by a probe with a deadline: when a
//! channel open gets no reply, when the local address under it vanishes, when the machine
//! wakes from sleep; the held connection is then served on a new session.

mod backoff;
mod live;
mod monitor;
mod slot;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use russh::Channel;
use russh::client::Msg;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, info, info_span};

pub use backoff::Backoff;
pub use live::{Carrier, LiveSession};
pub use monitor::watch_network;

use crate::client::{self, ConnectError, Connection};
use crate::config::{HostSpec, Target};
use crate::jump;
use crate::ssh_config::HostConfig;
use live::ChannelCount;
use slot::{HostSlot, Phase};

/// A channel open that has had no answer for this long makes us probe the session.
const OPEN_PROBE_AFTER: Duration = Duration::from_secs(1);
/// How long a probe waits for the server's reply before the session is declared dead.
pub const PROBE_DEADLINE: Duration = Duration::from_secs(2);
/// The same when the local address under the session has vanished: strong evidence already.
pub const PROBE_DEADLINE_ADDRESS_GONE: Duration = Duration::from_millis(500);
/// How many sessions one connection may try before it is reset: a session found dead while
/// opening the channel is replaced once.
const SESSIONS_PER_CONNECTION: usize = 2;

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
    /// The forwards' hosts, by spec.
    hosts: HashMap<HostSpec, Arc<HostSlot>>,
    /// Every slot, forwards' hosts and jump hosts, each jump host before the hosts it carries.
    slots: Vec<Arc<HostSlot>>,
    shared: Shared,
}

/// What connection tasks and connect attempts need of the manager; cheap to clone into a task.
#[derive(Clone)]
struct Shared {
    backoff: Backoff,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Wakes the network watcher, which idles while no session is up.
    session_up: Arc<Notify>,
}

type Connecting<'a> =
    Pin<Box<dyn Future<Output = Result<(Connection, Option<Carrier>), ConnectError>> + Send + 'a>>;

/// A channel on a session, counted as open until dropped.
pub struct Lease {
    pub channel: Channel<Msg>,
    pub session: Arc<LiveSession>,
    _count: ChannelCount,
}

/// What a connection does next, decided under the slot's lock.
enum Step {
    Leased(Arc<LiveSession>, ChannelCount),
    Connect,
    Wait(Option<Instant>),
    Fail(Arc<ConnectError>),
}

impl SessionManager {
    /// `hosts` holds every host the forwards name, already resolved.
    pub fn new(
        hosts: impl IntoIterator<Item = HostConfig>,
        backoff: Backoff,
        shutdown: CancellationToken,
    ) -> Self {
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
            shared: Shared {
                backoff,
                tasks: TaskTracker::new(),
                shutdown,
                session_up: Arc::new(Notify::new()),
            },
        }
    }

    /// Opens a direct-tcpip channel to `target` on `host`'s session, opening the session first
    /// if there is none, and replacing it once if it turns out dead.
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
        self.shared.open_on(slot, target, originator).await
    }
}

impl Shared {
    /// [`SessionManager::open_channel`] on a given slot, also a jump host's.
    async fn open_on(
        &self,
        slot: &Arc<HostSlot>,
        target: &Target,
        originator: SocketAddr,
    ) -> Result<Lease, OpenError> {
        let host = &slot.config.spec;
        let lost = || OpenError::SessionLost {
            host: host.to_string(),
            target: target.to_string(),
        };
        for _ in 0..SESSIONS_PER_CONNECTION {
            let (session, count) = self.lease_session(slot).await?;
            let opening = session.conn.handle.channel_open_direct_tcpip(
                target.host.clone(),
                u32::from(target.port),
                originator.ip().to_string(),
                u32::from(originator.port()),
            );
            match open_or_probe(&session, opening).await {
                Some(Ok(channel)) => {
                    return Ok(Lease {
                        channel,
                        session,
                        _count: count,
                    });
                }
                Some(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    return Err(OpenError::Refused {
                        host: host.to_string(),
                        target: target.to_string(),
                        reason: format!("{reason:?}"),
                    });
                }
                Some(Err(e)) => {
                    debug!("channel open failed: {e}");
                    if !session.dead().is_cancelled() {
                        session.declare_dead(format!("channel open failed: {e}"));
                    }
                }
                None => {}
            }
            debug!("session died while opening a channel; trying a new one");
        }
        Err(lost())
    }

    /// Returns the host's live session with a channel counted on it, waiting for (or starting)
    /// an attempt if there is none. Fails with the last attempt's error once no attempt can
    /// come within the host's connect timeout.
    async fn lease_session(
        &self,
        slot: &Arc<HostSlot>,
    ) -> Result<(Arc<LiveSession>, ChannelCount), OpenError> {
        let hold_until = Instant::now() + slot.config.connect_timeout;
        let mut changes = slot.state.subscribe();
        loop {
            if self.shutdown.is_cancelled() {
                return Err(OpenError::ShuttingDown);
            }
            let mut step = Step::Wait(None);
            slot.state.send_if_modified(|s| {
                let now = Instant::now();
                match &s.phase {
                    Phase::Up(session) if session.is_usable() => {
                        step = Step::Leased(session.clone(), ChannelCount::new(session.clone()));
                        false
                    }
                    Phase::Connecting => false,
                    Phase::Backoff { until, error } if *until > now => {
                        step = if error.is_permanent() || *until > hold_until {
                            Step::Fail(error.clone())
                        } else {
                            Step::Wait(Some(*until))
                        };
                        false
                    }
                    // Idle, due for a retry, or a session that died before its watcher noticed.
                    phase => {
                        if matches!(phase, Phase::Up(_)) {
                            s.lost = true;
                        }
                        s.enter(Phase::Connecting);
                        step = Step::Connect;
                        true
                    }
                }
            });
            let wake_at = match step {
                Step::Leased(session, count) => return Ok((session, count)),
                Step::Fail(error) => {
                    return Err(OpenError::Connect {
                        host: slot.host(),
                        error,
                    });
                }
                Step::Connect => {
                    self.spawn_attempt(slot.clone());
                    None
                }
                Step::Wait(at) => at,
            };
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err(OpenError::ShuttingDown);
                },
                () = sleep_until(wake_at) => {}
                () = self.shutdown.cancelled() => return Err(OpenError::ShuttingDown),
            }
        }
    }

    /// Runs a connect attempt in its own task, so that it completes (and its outcome is shared)
    /// even if the connection that started it goes away.
    fn spawn_attempt(&self, slot: Arc<HostSlot>) {
        let shared = self.clone();
        let host = slot.host();
        let span = info_span!(parent: None, "connect", %host);
        self.tasks.spawn(
            async move {
                let connecting = shared.connect(&slot);
                if let Some(session) = slot
                    .attempt(connecting, shared.backoff, &shared.shutdown)
                    .await
                {
                    shared.session_up.notify_one();
                    let span =
                        info_span!(parent: None, "session", %host, generation = session.generation);
                    shared.tasks.spawn(
                        watch_session(slot, session, shared.shutdown.clone()).instrument(span),
                    );
                }
            }
            .instrument(span),
        );
    }

    /// Opens `slot`'s session: directly, or over a channel of its jump host's session.
    fn connect<'a>(&'a self, slot: &'a HostSlot) -> Connecting<'a> {
        let config = slot.config.clone();
        match &slot.via {
            None => Box::pin(async move { client::connect(config).await.map(|c| (c, None)) }),
            Some(via) => Box::pin(async move {
                let lease = self
                    .open_on(via, &jump::hop_target(&config), jump::ORIGINATOR)
                    .await;
                let lease = lease.map(|lease| {
                    let (local, remote) = (lease.session.local_addr(), lease.session.remote_addr());
                    (
                        lease.channel,
                        Carrier::new(lease.session, lease._count),
                        local,
                        remote,
                    )
                });
                jump::connect_over(config, lease).await
            }),
        }
    }
}

impl SessionManager {
    /// The network changed (an address or link came or went): let hosts that failed
    /// transiently retry at once, and check the sessions' local addresses.
    pub fn network_changed(&self) {
        for slot in self.slots.iter() {
            slot.forgive_transient_failure();
        }
        self.check_local_addresses();
    }

    /// Probes every session whose local address is no longer configured on any interface.
    pub fn check_local_addresses(&self) {
        for slot in self.slots.iter() {
            let Some(session) = slot.live() else { continue };
            let local = session.local_addr().ip();
            match crate::netwatch::is_local_address(local) {
                Ok(true) => {}
                Ok(false) => {
                    let why = format!("local address {local} is gone");
                    info!(host = %slot.host(), "{why}; probing the session");
                    self.spawn_probe(session, PROBE_DEADLINE_ADDRESS_GONE, why);
                }
                Err(e) => debug!("cannot list local addresses: {e}"),
            }
        }
    }

    /// The machine slept or its clock jumped: probe every session.
    pub fn clock_jumped(&self, by: Duration) {
        for slot in self.slots.iter() {
            if let Some(session) = slot.live() {
                let why = format!("clock jumped by {}", humantime::format_duration(by));
                info!(host = %slot.host(), "{why}; probing the session");
                self.spawn_probe(session, PROBE_DEADLINE, why);
            }
        }
    }

    /// Whether any host has a session up (the network watcher works only then).
    pub fn any_session_up(&self) -> bool {
        self.slots.iter().any(|slot| slot.live().is_some())
    }

    /// Whether any host has a session up or being opened: the daemon is not idle then.
    pub fn has_live_session(&self) -> bool {
        self.hosts
            .values()
            .any(|slot| matches!(slot.state.borrow().phase, Phase::Up(_) | Phase::Connecting))
    }

    /// Resolves once a session has come up since the last call (at once if one did meanwhile).
    pub async fn session_came_up(&self) {
        self.shared.session_up.notified().await;
    }

    fn spawn_probe(&self, session: Arc<LiveSession>, deadline: Duration, why: String) {
        self.shared.tasks.spawn(async move {
            session.probe(deadline, &why).await;
        });
    }

    /// Closes every session and waits for their watchers and attempts to finish.
    pub async fn close_all(&self) {
        // Sessions carried by a jump host first, then the jump host.
        for slot in self.slots.iter().rev() {
            let mut taken = None;
            slot.state.send_if_modified(|s| match &s.phase {
                Phase::Up(session) => {
                    taken = Some(session.clone());
                    s.enter(Phase::Idle);
                    true
                }
                _ => false,
            });
            if let Some(session) = taken {
                session.disconnect("lazytunnel is shutting down").await;
            }
        }
        self.shared.tasks.close();
        self.shared.tasks.wait().await;
    }
}

/// Awaits a channel open on `session`. An open with no answer after [`OPEN_PROBE_AFTER`] makes
/// us probe the session: a slow target is fine, a dead session is declared so. Returns `None`
/// when the session died.
async fn open_or_probe(
    session: &Arc<LiveSession>,
    opening: impl Future<Output = Result<Channel<Msg>, russh::Error>>,
) -> Option<Result<Channel<Msg>, russh::Error>> {
    tokio::pin!(opening);
    let probe_at = tokio::time::sleep(OPEN_PROBE_AFTER);
    tokio::pin!(probe_at);
    let mut probed = false;
    loop {
        tokio::select! {
            // A session declared dead wins over a late reply on it.
            biased;
            () = session.dead().cancelled() => return None,
            result = &mut opening => return Some(result),
            () = &mut probe_at, if !probed => {
                probed = true;
                session.probe(PROBE_DEADLINE, "a channel open got no reply").await;
            }
        }
    }
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
                // Leases are taken under the same lock, so none can appear on a retired session.
                if slot.retire(&session, false, |s| *s.channels.borrow() == 0) {
                    info!(idle = %humantime::format_duration(idle_timeout), "session closed after idle timeout");
                    session.disconnect("idle").await;
                    return;
                }
                debug!(generation = session.generation, "session became busy again; not retiring");
            }
        }
    }
    let reason = session.conn.end_reason.lock().ok().and_then(|r| r.clone());
    info!(
        reason = reason.as_deref().unwrap_or("connection lost"),
        "session down"
    );
    slot.retire(&session, true, |_| true);
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
    let slot = Arc::new(HostSlot::new(config, via));
    slots.push(slot.clone());
    slot
}
