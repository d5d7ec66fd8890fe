//! One host's slot: the state machine of its session (idle, connecting, up, backing off after
//! a failure) and the tasks that move it: a connect attempt, and the watcher of a live session.
//!
//! The state sits in a `watch` channel: every transition is made under its lock (so exactly
//! one waiting connection starts an attempt, and a lease can never be taken on a session being
//! retired), and every waiting connection wakes on each transition.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::backoff::{Backoff, random_unit};
use super::live::{Carrier, LiveSession};
use crate::auth::AuthError;
use crate::client::{ConnectError, Connection};
use crate::forward::Traffic;
use crate::ssh_config::HostConfig;

/// How soon a host is tried again after this process ran out of descriptors.
const LOCAL_RETRY: Duration = Duration::from_millis(250);

pub(crate) struct HostSlot {
    /// Replaced by a reload; read when an attempt starts, so a change applies to the next
    /// session while the current one carries on unchanged.
    setup: Mutex<Setup>,
    pub(super) state: watch::Sender<SlotState>,
    generation: AtomicU64,
    /// Bytes carried by every session of this host, for status reports.
    pub(super) traffic: Arc<Traffic>,
    /// Some host is reached through this one (ProxyJump): its sessions carry other sessions.
    carries: AtomicBool,
}

/// How the slot's next session is opened.
#[derive(Clone)]
pub(super) struct Setup {
    pub(super) config: Arc<HostConfig>,
    /// The jump host's slot (ProxyJump): this host's sessions run over its channels.
    pub(super) via: Option<Arc<HostSlot>>,
}

#[derive(Clone)]
pub(super) enum Phase {
    /// No session and no attempt: the next connection starts one.
    Idle,
    Connecting,
    Up(Arc<LiveSession>),
    /// The last attempt failed; no new one before `until`, except after a network change for
    /// a transient failure.
    Backoff {
        until: Instant,
        error: Arc<ConnectError>,
    },
}

pub(super) struct SlotState {
    pub(super) phase: Phase,
    /// Since when the phase has held, for status reports.
    pub(super) since: SystemTime,
    /// Consecutive failed attempts.
    pub(super) failures: u32,
    /// Sessions opened after one was lost.
    pub(super) reconnects: u64,
    /// Connect attempts started, and sessions they opened, since the daemon started: what
    /// status reports so that "no new session" and "attempts shared" can be observed.
    pub(super) attempts: u64,
    pub(super) sessions_opened: u64,
    /// The last session died rather than being retired: the next one is a reconnect.
    pub(super) lost: bool,
}

impl SlotState {
    pub(super) fn enter(&mut self, phase: Phase) {
        self.phase = phase;
        self.since = SystemTime::now();
    }
}

impl HostSlot {
    pub(super) fn new(config: HostConfig, via: Option<Arc<HostSlot>>) -> HostSlot {
        let state = SlotState {
            phase: Phase::Idle,
            since: SystemTime::now(),
            failures: 0,
            reconnects: 0,
            attempts: 0,
            sessions_opened: 0,
            lost: false,
        };
        HostSlot {
            setup: Mutex::new(Setup {
                config: Arc::new(config),
                via,
            }),
            state: watch::channel(state).0,
            generation: AtomicU64::new(0),
            traffic: Arc::default(),
            carries: AtomicBool::new(false),
        }
    }

    /// Marks this slot as some host's jump host.
    pub(super) fn carry(self: Arc<Self>) -> Arc<Self> {
        self.carries.store(true, Ordering::Relaxed);
        self
    }

    pub(super) fn carries(&self) -> bool {
        self.carries.load(Ordering::Relaxed)
    }

    /// The settings the next session will use.
    pub(super) fn config(&self) -> Arc<HostConfig> {
        self.setup().config
    }

    pub(super) fn setup(&self) -> Setup {
        // The data is replaced whole, so a poisoned lock still holds a consistent value.
        self.setup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Makes the next session use `setup`; the current one, if any, is left alone.
    pub(super) fn replace_setup(&self, setup: Setup) {
        *self.setup.lock().unwrap_or_else(PoisonError::into_inner) = setup;
    }

    pub(super) fn host(&self) -> String {
        self.config().spec.to_string()
    }

    /// Runs one connect attempt, `connecting` (the caller has already moved the slot to
    /// `Connecting`), and records its outcome. Returns the session, for the caller to watch,
    /// if one came up.
    pub(super) async fn attempt(
        &self,
        connecting: impl Future<Output = Result<(Connection, Option<Carrier>), ConnectError>>,
        backoff: Backoff,
        shutdown: &CancellationToken,
    ) -> Option<Arc<LiveSession>> {
        let host = self.host();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let reconnecting = self.state.borrow().lost;
        self.state.send_modify(|s| s.attempts += 1);
        if reconnecting {
            info!(%host, "reconnecting: the previous session was lost");
        } else {
            tracing::debug!(%host, "opening session");
        }
        // Whatever ends the attempt, a panic or its task cancelled included, leaves the slot
        // with an outcome: waiting connections must never see "connecting" forever.
        let unfinished = Unfinished {
            slot: self,
            backoff,
        };
        let outcome = tokio::select! {
            outcome = connecting => outcome,
            () = shutdown.cancelled() => {
                std::mem::forget(unfinished);
                self.state.send_modify(|s| s.enter(Phase::Idle));
                return None;
            }
        };
        std::mem::forget(unfinished);
        match outcome {
            Ok((conn, carrier)) => {
                info!(
                    %host,
                    local = %conn.local_addr,
                    remote = %conn.remote_addr,
                    rtt = ?conn.path_rtt,
                    window = conn.window,
                    "session up"
                );
                let session = Arc::new(LiveSession::new(conn, carrier, generation));
                self.state.send_modify(|s| {
                    s.enter(Phase::Up(session.clone()));
                    s.failures = 0;
                    s.sessions_opened += 1;
                    if s.lost {
                        s.reconnects += 1;
                        s.lost = false;
                    }
                });
                Some(session)
            }
            Err(error) => {
                self.record_failure(error, backoff);
                None
            }
        }
    }

    /// Puts the slot in backoff after a failed attempt. Running out of descriptors is this
    /// process's condition, not the host's: it pauses only briefly and counts no failure.
    fn record_failure(&self, error: ConnectError, backoff: Backoff) {
        let host = self.host();
        // Server text and config values in it must not forge log lines.
        let shown = crate::printable::printable(&error.to_string()).into_owned();
        if out_of_descriptors(&error) {
            warn!(
                %host,
                "session not opened: {shown}; out of file descriptors here (not the host's \
                 fault), retrying in {}",
                humantime::format_duration(LOCAL_RETRY)
            );
            self.state.send_modify(|s| {
                s.enter(Phase::Backoff {
                    until: Instant::now() + LOCAL_RETRY,
                    error: Arc::new(error),
                });
            });
            return;
        }
        let permanent = error.is_permanent();
        self.state.send_modify(|s| {
            s.failures = s.failures.saturating_add(1);
            let delay = backoff.delay(s.failures, permanent, random_unit());
            let kind = if permanent { "permanent" } else { "transient" };
            warn!(
                %host,
                failures = s.failures,
                "session failed ({kind}): {shown}; next attempt no sooner than in {}",
                humantime::format_duration(round_to_millis(delay))
            );
            s.enter(Phase::Backoff {
                until: Instant::now() + delay,
                error: Arc::new(error),
            });
        });
    }

    /// After a network change a transient failure may be gone: let the next connection try at
    /// once. Permanent failures keep their delay.
    pub(super) fn forgive_transient_failure(&self) {
        let forgiven = self.state.send_if_modified(|s| match &s.phase {
            Phase::Backoff { until, error } if !error.is_permanent() && *until > Instant::now() => {
                s.phase = Phase::Backoff {
                    until: Instant::now(),
                    error: error.clone(),
                };
                true
            }
            _ => false,
        });
        if forgiven {
            info!(host = %self.host(), "network changed: the next connection retries at once");
        }
    }

    /// The live session, if the slot has one.
    pub(super) fn live(&self) -> Option<Arc<LiveSession>> {
        match &self.state.borrow().phase {
            Phase::Up(session) => Some(session.clone()),
            _ => None,
        }
    }

    /// Moves the slot from `session` to `Idle`, if `session` is still its session and `when`
    /// (given the session) allows. Returns whether it did.
    pub(super) fn retire(
        &self,
        session: &Arc<LiveSession>,
        lost: bool,
        when: impl FnOnce(&LiveSession) -> bool,
    ) -> bool {
        self.state.send_if_modified(|s| match &s.phase {
            Phase::Up(current) if Arc::ptr_eq(current, session) && when(session) => {
                s.enter(Phase::Idle);
                s.lost = lost;
                true
            }
            _ => false,
        })
    }
}

fn round_to_millis(d: std::time::Duration) -> std::time::Duration {
    std::time::Duration::from_millis(d.as_millis().try_into().unwrap_or(u64::MAX))
}

/// Records an attempt that ended without an outcome when dropped: by a panic unwinding
/// through it, or its task being cancelled.
struct Unfinished<'a> {
    slot: &'a HostSlot,
    backoff: Backoff,
}

impl Drop for Unfinished<'_> {
    fn drop(&mut self) {
        let why = if std::thread::panicking() {
            "it panicked"
        } else {
            "it was cancelled"
        };
        self.slot
            .record_failure(ConnectError::Abandoned(why), self.backoff);
    }
}

/// Whether `error` is this process running out of file descriptors rather than anything the
/// host did.
fn out_of_descriptors(error: &ConnectError) -> bool {
    use crate::limits::is_out_of_descriptors;
    match error {
        ConnectError::Resolve { error, .. } | ConnectError::Tcp { error, .. } => {
            is_out_of_descriptors(error)
        }
        ConnectError::Handshake {
            error: russh::Error::IO(error),
            ..
        } => is_out_of_descriptors(error),
        ConnectError::Auth(AuthError::Files { .. }) => true,
        _ => false,
    }
}
