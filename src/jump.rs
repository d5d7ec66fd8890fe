//! ProxyJump: a session to a host reached through its jump host's session, as `ssh -J` does
//! with `ssh -W`: a direct-tcpip channel on the jump host's session to the host's HostName and
//! Port, and the SSH handshake run over that channel. Each hop checks its own host key under
//! its own name and port, with its own known_hosts settings, because each hop has its own
//! resolved [`HostConfig`].
//!
//! The jump host's session is an ordinary session of the [`SessionManager`]: opened lazily,
//! shared by every host that jumps through it, and kept up (its channel counted) for as long
//! as a session it carries lives. When it dies, the carried session's transport ends, and that
//! session is declared dead in turn.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use crate::client::{self, ConnectError, Connection};
use crate::config::Target;
use crate::session::{Carrier, HostSlot, OpenError, SessionManager};
use crate::ssh_config::HostConfig;

/// `ssh -W` reports this originator for the channels it opens.
const ORIGINATOR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// Opens `host`'s session through the jump host of slot `via`.
pub(crate) async fn connect(
    sessions: &SessionManager,
    via: &Arc<HostSlot>,
    host: Arc<HostConfig>,
) -> Result<(Connection, Option<Carrier>), ConnectError> {
    // Set whenever the slot has a jump host: both come from the same HostConfig.
    let jump = host
        .jump
        .as_deref()
        .map(|j| j.spec.to_string())
        .unwrap_or_default();
    let target = Target {
        host: host.host_name.clone(),
        port: host.port,
    };
    let lease = sessions
        .open_on(via, &target, ORIGINATOR)
        .await
        .map_err(|error| {
            let permanent = match &error {
                OpenError::Connect { error, .. } => error.is_permanent(),
                _ => false,
            };
            ConnectError::Jump {
                jump: jump.clone(),
                error: error.to_string(),
                permanent,
            }
        })?;
    let (local_addr, remote_addr) = (lease.session.local_addr(), lease.session.remote_addr());
    let (channel, carrier) = lease.into_carrier();
    let conn = client::connect_over(host, channel.into_stream(), local_addr, remote_addr).await?;
    Ok((conn, Some(carrier)))
}
