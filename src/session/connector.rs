//! What opens a session: the [`Connector`] the manager calls for each attempt. The daemon's is
//! [`SshConnector`] (TCP or a jump host's channel, then the russh handshake, host key check and
//! authentication, all in [`crate::client`]); unit specs give the manager a fake one, to drive
//! holding, backoff and shared attempts in paused time.

use std::pin::Pin;
use std::sync::Arc;

use russh::WindowBudget;

use super::jump::Hop;
use crate::client::{self, ConnectError, Connection};
use crate::ssh_config::HostConfig;

/// One attempt to open a session.
pub type Opening = Pin<Box<dyn Future<Output = Result<Connection, ConnectError>> + Send>>;

pub trait Connector: Send + Sync {
    /// Opens `host`'s session: over TCP to its HostName and Port, or over `hop`, a channel on
    /// its jump host's session. `carries`: it will carry other hosts' sessions. Channels'
    /// receive windows are reserved from `budget`.
    fn connect(
        &self,
        host: Arc<HostConfig>,
        hop: Option<Hop>,
        carries: bool,
        budget: Arc<WindowBudget>,
    ) -> Opening;
}

/// Opens real SSH sessions.
pub struct SshConnector;

impl Connector for SshConnector {
    fn connect(
        &self,
        host: Arc<HostConfig>,
        hop: Option<Hop>,
        carries: bool,
        budget: Arc<WindowBudget>,
    ) -> Opening {
        match hop {
            None => Box::pin(client::connect(host, carries, budget)),
            Some(hop) => Box::pin(client::connect_over(
                host,
                hop.stream,
                hop.local_addr,
                hop.remote_addr,
                hop.rtt,
                carries,
                budget,
            )),
        }
    }
}
