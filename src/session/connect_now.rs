//! `lazytunnel connect HOST`: open a host's session now, rather than for a connection, and
//! report how it went. A host backing off is retried at once: the user asking is the reason
//! to retry, so the backoff is reset too.

use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};

use super::SessionManager;
use super::slot::{HostSlot, Phase};
use crate::client::ConnectError;

/// The session a [`SessionManager::connect_now`] found or opened.
#[derive(Debug, Clone)]
pub struct Connected {
    pub host: String,
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// A session was up already; nothing new was opened.
    pub already_up: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectNowError {
    #[error("no forward uses host {host:?} (known: {known})")]
    UnknownHost { host: String, known: String },
    #[error("{} failure: {error}", error.kind())]
    Failed {
        host: String,
        error: Arc<ConnectError>,
    },
    #[error("the attempt was interrupted (daemon shutting down, or the session closed meanwhile)")]
    Interrupted,
}

impl SessionManager {
    /// Opens `host`'s session unless one is up (waiting for an attempt in progress), resetting
    /// its backoff. `host` is a forward's host as written, or a jump host's alias.
    pub async fn connect_now(&self, host: &str) -> Result<Connected, ConnectNowError> {
        let slot = self.find_slot(host)?;
        let mut changes = slot.state.subscribe();
        let mut start = false;
        slot.state.send_if_modified(|s| match &s.phase {
            Phase::Up(session) if session.is_usable() => false,
            Phase::Connecting => false,
            phase => {
                if matches!(phase, Phase::Up(_)) {
                    s.lost = true;
                }
                s.failures = 0;
                s.enter(Phase::Connecting);
                start = true;
                true
            }
        });
        if start {
            self.shared.spawn_attempt(slot.clone());
        }
        let mut first = true;
        loop {
            match &changes.borrow_and_update().phase {
                Phase::Up(session) => {
                    return Ok(Connected {
                        host: slot.host(),
                        local: session.local_addr(),
                        remote: session.remote_addr(),
                        already_up: first && !start,
                    });
                }
                Phase::Backoff { error, .. } => {
                    return Err(ConnectNowError::Failed {
                        host: slot.host(),
                        error: error.clone(),
                    });
                }
                // Only shutdown (which ends an attempt with Idle) or an idle session retired
                // between our look and now lead here.
                Phase::Idle => return Err(ConnectNowError::Interrupted),
                Phase::Connecting => {}
            }
            first = false;
            tokio::select! {
                changed = changes.changed() => if changed.is_err() {
                    return Err(ConnectNowError::Interrupted);
                },
                () = self.shared.shutdown.cancelled() => return Err(ConnectNowError::Interrupted),
            }
        }
    }

    fn find_slot(&self, host: &str) -> Result<Arc<HostSlot>, ConnectNowError> {
        let hosts = self.hosts.read().unwrap_or_else(PoisonError::into_inner);
        let found = hosts
            .by_spec
            .iter()
            .find(|(spec, _)| spec.alias == host)
            .map(|(_, slot)| slot.clone())
            .or_else(|| hosts.slots.iter().find(|s| s.host() == host).cloned());
        found.ok_or_else(|| {
            let mut known: Vec<String> = hosts.slots.iter().map(|s| s.host()).collect();
            known.sort();
            ConnectNowError::UnknownHost {
                host: host.to_string(),
                known: known.join(", "),
            }
        })
    }
}
