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
mod connect_now;
mod connector;
mod jump;
mod live;
mod monitor;
mod open;
mod slot;
mod status;
#[cfg(test)]
mod tests;

use russh::WindowBudget;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use russh::Channel;
use russh::client::Msg;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

pub use backoff::Backoff;
pub use connect_now::{ConnectNowError, Connected};
pub use connector::{Connector, Opening, SshConnector};
pub use jump::Hop;
pub use live::{Carrier, LiveSession};
pub use monitor::watch_network;
pub use status::{HostState, HostStatus};

use crate::client::{ConnectError, Connection};
use crate::config::{Endpoint, HostSpec};
use crate::forward::Traffic;
use crate::ssh_config::HostConfig;
use live::ChannelCount;
use slot::{HostSlot, Phase, Setup};

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
        /// The server's reason code, which a SOCKS reply reports.
        failure: russh::ChannelOpenFailure,
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
    /// Replaced as a whole by [`SessionManager::update_hosts`] (a reload).
    hosts: RwLock<Hosts>,
    shared: Shared,
}

#[derive(Default, Clone)]
struct Hosts {
    /// The forwards' hosts, by spec.
    by_spec: HashMap<HostSpec, Arc<HostSlot>>,
    /// Every slot, forwards' hosts and jump hosts, each jump host before the hosts it carries.
    slots: Vec<Arc<HostSlot>>,
}

/// What connection tasks and connect attempts need of the manager; cheap to clone into a task.
#[derive(Clone)]
struct Shared {
    backoff: Backoff,
    /// What all sessions' channels may hold for their clients (`receive_budget`).
    window_budget: Arc<WindowBudget>,
    /// Opens each session; [`SshConnector`] but in unit specs.
    connector: Arc<dyn Connector>,
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
    /// How long the server took to confirm the channel: a round trip to the target through it.
    pub opened_in: std::time::Duration,
    pub session: Arc<LiveSession>,
    /// The host's byte counters, which the connection adds to.
    pub traffic: Arc<Traffic>,
    _count: ChannelCount,
}

impl SessionManager {
    /// `hosts` holds every host the forwards name, already resolved.
    pub fn new(
        hosts: impl IntoIterator<Item = HostConfig>,
        backoff: Backoff,
        window_budget: Arc<WindowBudget>,
        shutdown: CancellationToken,
    ) -> Self {
        let manager = SessionManager {
            hosts: RwLock::default(),
            shared: Shared {
                backoff,
                window_budget,
                connector: Arc::new(SshConnector),
                tasks: TaskTracker::new(),
                shutdown,
                session_up: Arc::new(Notify::new()),
            },
        };
        manager.update_hosts(hosts);
        manager
    }

    /// Opens sessions with `connector` instead of [`SshConnector`] (for specs that need no
    /// server). Call before the manager is used.
    pub fn with_connector(mut self, connector: Arc<dyn Connector>) -> Self {
        self.shared.connector = connector;
        self
    }

    /// Makes `hosts` the forwards' hosts (a reload). A host whose resolved settings changed
    /// keeps its slot, and with it its session and state; the new settings apply from its next
    /// session. New hosts get slots; slots no host uses any more are dropped once idle.
    pub fn update_hosts(&self, hosts: impl IntoIterator<Item = HostConfig>) {
        // Jump hosts first: a host that is also another's jump host then has its new settings
        // in place before the host it carries looks for its slot.
        let mut hosts: Vec<HostConfig> = hosts.into_iter().collect();
        hosts.sort_by_key(hops);
        let mut current = self.hosts.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::take(&mut *current);
        for config in hosts {
            let spec = config.spec.clone();
            let slot = match old.by_spec.get(&spec) {
                Some(slot) if *slot.config() != config => {
                    info!(host = %spec, "settings changed: the next session uses them");
                    let via = config
                        .jump
                        .as_deref()
                        .map(|jump| slot_for(jump.clone(), &mut current.slots, &old.slots).carry());
                    slot.replace_setup(Setup {
                        config: Arc::new(config),
                        via,
                    });
                    if !current.slots.iter().any(|s| Arc::ptr_eq(s, slot)) {
                        current.slots.push(slot.clone());
                    }
                    slot.clone()
                }
                _ => slot_for(config, &mut current.slots, &old.slots),
            };
            current.by_spec.insert(spec, slot);
        }
        // Unused slots with a session or attempt stay until it ends, so shutdown closes it.
        for slot in old.slots {
            let idle = matches!(
                slot.state.borrow().phase,
                Phase::Idle | Phase::Backoff { .. }
            );
            if !idle && !current.slots.iter().any(|s| Arc::ptr_eq(s, &slot)) {
                current.slots.push(slot);
            }
        }
    }

    fn slot(&self, host: &HostSpec) -> Option<Arc<HostSlot>> {
        let hosts = self.hosts.read().unwrap_or_else(PoisonError::into_inner);
        hosts.by_spec.get(host).cloned()
    }

    /// Every slot, as of now.
    fn slots(&self) -> Vec<Arc<HostSlot>> {
        let hosts = self.hosts.read().unwrap_or_else(PoisonError::into_inner);
        hosts.slots.clone()
    }

    /// Opens a channel to `target` on `host`'s session (direct-tcpip, or direct-streamlocal for
    /// a socket path), opening the session first if there is none, and replacing it once if it
    /// turns out dead.
    pub async fn open_channel(
        &self,
        host: &HostSpec,
        target: &Endpoint,
        originator: SocketAddr,
    ) -> Result<Lease, OpenError> {
        let slot = self
            .slot(host)
            .ok_or_else(|| OpenError::UnknownHost(host.to_string()))?;
        self.shared.open_on(&slot, target, originator).await
    }
}

impl SessionManager {
    /// The network changed (an address or link came or went): let hosts that failed
    /// transiently retry at once, and check the sessions' local addresses.
    pub fn network_changed(&self) {
        for slot in self.slots() {
            slot.forgive_transient_failure();
        }
        self.check_local_addresses();
    }

    /// Probes every session whose local address is no longer configured on any interface.
    pub fn check_local_addresses(&self) {
        for slot in self.slots() {
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
        for slot in self.slots() {
            if let Some(session) = slot.live() {
                let why = format!("clock jumped by {}", humantime::format_duration(by));
                info!(host = %slot.host(), "{why}; probing the session");
                self.spawn_probe(session, PROBE_DEADLINE, why);
            }
        }
    }

    /// Whether any host has a session up (the network watcher works only then).
    pub fn any_session_up(&self) -> bool {
        self.slots().iter().any(|slot| slot.live().is_some())
    }

    /// Whether any host has a session up or being opened: the daemon is not idle then.
    pub fn has_live_session(&self) -> bool {
        self.slots()
            .iter()
            .any(|slot| matches!(slot.state.borrow().phase, Phase::Up(_) | Phase::Connecting))
    }

    /// Resolves once a session has come up since the last call (at once if one did meanwhile).
    pub async fn session_came_up(&self) {
        self.shared.session_up.notified().await;
    }

    fn spawn_probe(&self, session: Arc<LiveSession>, deadline: Duration, why: String) {
        let shutdown = self.shared.shutdown.clone();
        self.shared.tasks.spawn(async move {
            tokio::select! {
                _ = session.probe(deadline, &why) => {}
                () = shutdown.cancelled() => {}
            }
        });
    }

    /// Closes every session and waits for their watchers and attempts to finish.
    pub async fn close_all(&self) {
        // Sessions carried by a jump host first, then the jump host.
        for slot in self.slots().into_iter().rev() {
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

/// How many jump hosts `config` goes through.
fn hops(config: &HostConfig) -> usize {
    std::iter::successors(config.jump.as_deref(), |j| j.jump.as_deref()).count()
}

/// The slot for `config`, shared with any equal host (a jump host used by several targets, or
/// also forwarded to, is one session), created with its jump host's slot first if new. An
/// equal slot among `previous` (before a reload) is taken over with its session.
fn slot_for(
    config: HostConfig,
    slots: &mut Vec<Arc<HostSlot>>,
    previous: &[Arc<HostSlot>],
) -> Arc<HostSlot> {
    if let Some(slot) = slots.iter().find(|s| *s.config() == config) {
        return slot.clone();
    }
    if let Some(slot) = previous.iter().find(|s| *s.config() == config) {
        // Its jump host first, as for a new slot.
        if let Some(via) = slot.setup().via {
            slot_for((*via.config()).clone(), slots, previous);
        }
        slots.push(slot.clone());
        return slot.clone();
    }
    let via = config
        .jump
        .as_deref()
        .map(|jump| slot_for(jump.clone(), slots, previous).carry());
    let slot = Arc::new(HostSlot::new(config, via));
    slots.push(slot.clone());
    slot
}
