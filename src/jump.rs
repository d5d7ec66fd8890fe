//! ProxyJump: a session to a host reached through its jump host's session, as `ssh -J` does
//! with `ssh -W`: a direct-tcpip channel on the jump host's session to the host's HostName and
//! Port, and the SSH handshake run over that channel. Each hop checks its own host key under
//! its own name and port, with its own known_hosts settings, because each hop has its own
//! resolved [`HostConfig`].
//!
//! The jump host's session is an ordinary session of the session manager: opened lazily,
//! shared by every host that jumps through it, and kept up (its channel counted by a
//! [`Carrier`]) for as long as a session it carries lives. When it dies, the carried session's
//! transport ends, and that session ends in turn.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::Channel;
use russh::client::Msg;

use crate::client::{self, ConnectError, Connection};
use crate::config::Target;
use crate::session::{Carrier, OpenError};
use crate::ssh_config::HostConfig;

/// `ssh -W` reports this originator for the channels it opens.
pub const ORIGINATOR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Where the jump host's channel goes for `host`: its HostName and Port.
pub fn hop_target(host: &HostConfig) -> Target {
    Target {
        host: host.host_name.clone(),
        port: host.port,
    }
}

/// A channel on the jump session, what keeps it counted, the jump session's TCP addresses, and
/// how long the channel took to open: the round trip to the host through its jump host.
pub type Hop = (Channel<Msg>, Carrier, SocketAddr, SocketAddr, Duration);

/// Opens `host`'s session over `hop`, the outcome of opening a channel to [`hop_target`] on
/// its jump host's session.
pub async fn connect_over(
    host: Arc<HostConfig>,
    hop: Result<Hop, OpenError>,
    carries: bool,
    budget: Arc<russh::WindowBudget>,
) -> Result<(Connection, Option<Carrier>), ConnectError> {
    let (channel, carrier, local_addr, remote_addr, rtt) = hop.map_err(|error| {
        let permanent = match &error {
            OpenError::Connect { error, .. } => error.is_permanent(),
            _ => false,
        };
        ConnectError::Jump {
            jump: host
                .jump
                .as_deref()
                .map(|j| j.spec.to_string())
                .unwrap_or_default(),
            error: error.to_string(),
            permanent,
        }
    })?;
    let conn = client::connect_over(
        host,
        channel.into_stream(),
        local_addr,
        remote_addr,
        rtt,
        carries,
        budget,
    )
    .await?;
    Ok((conn, Some(carrier)))
}
