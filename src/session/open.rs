//! How a connection gets its channel: leasing the host's session (waiting for, or starting, a
//! connect attempt; failing once none is due in time), opening the channel with a probe when
//! the server is silent, and replacing a session found dead; plus the watcher that ends a
//! session's life (death or idle timeout).

use std::net::SocketAddr;
use std::sync::Arc;

use russh::Channel;
use russh::client::Msg;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span};

use super::live::{ChannelCount, LiveSession};
use super::slot::{HostSlot, Phase, Setup};
use super::{
    Connecting, Lease, OPEN_PROBE_AFTER, OpenError, PROBE_DEADLINE, SESSIONS_PER_CONNECTION, Shared,
};
use crate::client::ConnectError;
use crate::config::Endpoint;
use crate::memory;

/// What a connection does next, decided under the slot's lock.
enum Step {
    Leased(Arc<LiveSession>, ChannelCount),
    Connect,
    Wait(Option<Instant>),
    Fail(Arc<ConnectError>),
}

impl Shared {
    /// [`SessionManager::open_channel`] on a given slot, also a jump host's.
    pub(super) async fn open_on(
        &self,
        slot: &Arc<HostSlot>,
        target: &Endpoint,
        originator: SocketAddr,
    ) -> Result<Lease, OpenError> {
        let host = &slot.config().spec;
        let lost = || OpenError::SessionLost {
            host: host.to_string(),
            target: target.to_string(),
        };
        for _ in 0..SESSIONS_PER_CONNECTION {
            let (session, count) = self.lease_session(slot).await?;
            let started = Instant::now();
            let handle = &session.conn.handle;
            let opening = async {
                match target {
                    Endpoint::Tcp(target) => {
                        handle
                            .channel_open_direct_tcpip(
                                target.host.clone(),
                                u32::from(target.port),
                                originator.ip().to_string(),
                                u32::from(originator.port()),
                            )
                            .await
                    }
                    Endpoint::Unix(path) => {
                        handle.channel_open_direct_streamlocal(path.clone()).await
                    }
                }
            };
            match open_or_probe(&session, opening).await {
                Some(Ok(channel)) => {
                    return Ok(Lease {
                        channel,
                        opened_in: started.elapsed(),
                        session,
                        traffic: slot.traffic.clone(),
                        _count: count,
                    });
                }
                Some(Err(russh::Error::ChannelOpenFailure(reason))) => {
                    return Err(OpenError::Refused {
                        host: host.to_string(),
                        target: target.to_string(),
                        reason: format!("{reason:?}"),
                        failure: reason,
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
        let hold_until = Instant::now() + slot.config().connect_timeout;
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
    pub(super) fn spawn_attempt(&self, slot: Arc<HostSlot>) {
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
        let Setup { config, via } = slot.setup();
        let carries = slot.carries();
        Box::pin(async move {
            let (hop, carrier) = match via {
                None => (None, None),
                Some(via) => {
                    let (hop, carrier) = self.open_hop(&via, &config).await?;
                    (Some(hop), Some(carrier))
                }
            };
            let budget = self.window_budget.clone();
            let conn = self.connector.connect(config, hop, carries, budget).await?;
            Ok((conn, carrier))
        })
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
    let idle_timeout = slot.config().idle_timeout;
    let mut channels = session.channels.subscribe();
    loop {
        tokio::select! {
            () = session.ended() => break,
            () = shutdown.cancelled() => return,
            _ = channels.wait_for(|n| *n == 0) => {}
        }
        tokio::select! {
            () = session.ended() => break,
            () = shutdown.cancelled() => return,
            _ = channels.changed() => continue,
            () = tokio::time::sleep(idle_timeout) => {
                // Leases are taken under the same lock, so none can appear on a retired session.
                if slot.retire(&session, false, |s| *s.channels.borrow() == 0) {
                    info!(idle = %humantime::format_duration(idle_timeout), "session closed after idle timeout");
                    session.disconnect("idle").await;
                    drop(session);
                    memory::release();
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
    drop(session);
    memory::release();
}
