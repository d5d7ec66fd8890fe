//! ProxyJump: a session to a host reached through its jump host's session, as `ssh -J` does
//! with `ssh -W`: a direct-tcpip channel on the jump host's session to the host's HostName and
//! Port (the [`Hop`]), and the SSH handshake run over that channel. Each hop checks its own host
//! key under its own name and port, with its own known_hosts settings, because each hop has its
//! own resolved [`HostConfig`].
//!
//! The jump host's session is an ordinary session of the session manager: opened lazily,
//! shared by every host that jumps through it, and kept up (its channel counted by a
//! [`Carrier`]) for as long as a session it carries lives. When it dies, the carried session's
//! transport ends, and that session ends in turn.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use russh::ChannelStream;
use russh::client::Msg;

use super::live::Carrier;
use super::slot::HostSlot;
use super::{OpenError, Shared};
use crate::client::ConnectError;
use crate::config::{Endpoint, Target};
use crate::ssh_config::HostConfig;

/// `ssh -W` reports this originator for the channels it opens.
const ORIGINATOR: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 0);

/// The transport of a session through a jump host: a channel on the jump host's session.
pub struct Hop {
    pub stream: ChannelStream<Msg>,
    /// The jump session's TCP addresses.
    pub local_addr: SocketAddr,
    pub remote_addr: SocketAddr,
    /// How long the channel took to open: the round trip to the host through its jump host.
    pub rtt: Duration,
}

impl Shared {
    /// Opens the hop to `host` on its jump host's slot `via`, with the carrier that keeps the
    /// jump session counted while `host`'s session lives.
    pub(super) async fn open_hop(
        &self,
        via: &Arc<HostSlot>,
        host: &HostConfig,
    ) -> Result<(Hop, Carrier), ConnectError> {
        let lease = self
            .open_on(via, &hop_target(host), ORIGINATOR)
            .await
            .map_err(|error| jump_failed(host, error))?;
        let hop = Hop {
            local_addr: lease.session.local_addr(),
            remote_addr: lease.session.remote_addr(),
            rtt: lease.opened_in,
            stream: lease.channel.into_stream(),
        };
        Ok((hop, Carrier::new(lease.session, lease._count)))
    }
}

/// Where the jump host's channel goes for `host`: its HostName and Port.
fn hop_target(host: &HostConfig) -> Endpoint {
    Endpoint::Tcp(Target {
        host: host.host_name.clone(),
        port: host.port,
    })
}

/// `host`'s attempt fails when its jump host cannot carry it; permanently if the jump host's
/// own failure is.
fn jump_failed(host: &HostConfig, error: OpenError) -> ConnectError {
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
}
