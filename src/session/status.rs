//! A snapshot of every host's slot for status reports: read from the slots' states, changing
//! nothing.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::SessionManager;
use super::slot::Phase;
use crate::forward::Transferred;

/// Where a host's session stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostState {
    /// No session and no attempt; the next connection opens one.
    Idle,
    Connecting,
    Up {
        local: SocketAddr,
        remote: SocketAddr,
        channels: usize,
        /// The receive window granted per channel, and the round trip measured at opening.
        window: u32,
        path_rtt: Duration,
    },
    /// The last attempt failed; `next_attempt` is the earliest time of the next one. A
    /// permanent failure needs the user's action first (a host key, a login).
    Backoff {
        next_attempt: SystemTime,
        error: String,
        permanent: bool,
    },
}

/// One host's slot as of the call.
#[derive(Debug, Clone)]
pub struct HostStatus {
    /// The host as the config names it (`srv11`, `vit@srv11:2222`), or a jump host's alias.
    pub host: String,
    pub state: HostState,
    /// Since when `state` has held (its kind, not its counters).
    pub since: SystemTime,
    /// Consecutive failed attempts.
    pub failures: u32,
    /// Sessions opened after one was lost.
    pub reconnects: u64,
    /// Connect attempts started, and sessions opened, since the daemon started.
    pub attempts: u64,
    pub sessions_opened: u64,
    /// Bytes carried for this host's connections since the daemon started.
    pub bytes: Transferred,
}

impl SessionManager {
    /// Every host's slot (forwards' hosts and jump hosts, each jump host before the hosts it
    /// carries).
    pub fn status(&self) -> Vec<HostStatus> {
        self.slots()
            .iter()
            .map(|slot| {
                let state = slot.state.borrow();
                let host_state = match &state.phase {
                    Phase::Idle => HostState::Idle,
                    Phase::Connecting => HostState::Connecting,
                    Phase::Up(session) => HostState::Up {
                        local: session.local_addr(),
                        remote: session.remote_addr(),
                        channels: *session.channels.borrow(),
                        window: session.conn.window,
                        path_rtt: session.conn.path_rtt,
                    },
                    Phase::Backoff { until, error } => HostState::Backoff {
                        next_attempt: SystemTime::now()
                            + until.saturating_duration_since(Instant::now()),
                        error: crate::printable::printable(&error.to_string()).into_owned(),
                        permanent: error.is_permanent(),
                    },
                };
                HostStatus {
                    host: slot.host(),
                    state: host_state,
                    since: state.since,
                    failures: state.failures,
                    reconnects: state.reconnects,
                    attempts: state.attempts,
                    sessions_opened: state.sessions_opened,
                    bytes: slot.traffic.get(),
                }
            })
            .collect()
    }
}
