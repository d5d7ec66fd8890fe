//! The daemon's lifecycle: resolve every host, serve the bound listeners, and on shutdown stop
//! accepting, let open connections drain for a bounded time, cut the rest, close sessions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::info;

use crate::config::{Config, Limits};
use crate::listener::{self, BoundForward, ConnectionContext};
use crate::service;
use crate::session::{self, Backoff, SessionManager};
use crate::ssh_config::{HostConfig, SYSTEM_SSH_CONFIG, SshConfigFile};

/// How long open connections may go on after a shutdown request before they are reset.
pub const DRAIN_PERIOD: Duration = Duration::from_secs(5);

/// Loads the ssh_config the daemon config names and resolves every host its forwards use.
pub fn resolve_hosts(config: &Config) -> anyhow::Result<Vec<HostConfig>> {
    let is_default = crate::config::expand_tilde(crate::config::DEFAULT_SSH_CONFIG)
        .is_ok_and(|p| p == config.ssh_config);
    // As OpenSSH: the system file too, unless a non-default file is named (like `ssh -F`).
    let system = is_default.then_some(Path::new(SYSTEM_SSH_CONFIG));
    let ssh = SshConfigFile::load(&config.ssh_config, is_default, system)
        .with_context(|| format!("cannot use ssh_config {}", config.ssh_config.display()))?;
    let mut hosts: BTreeMap<String, HostConfig> = BTreeMap::new();
    for forward in &config.forwards {
        if hosts.contains_key(&forward.host.alias) {
            continue;
        }
        let host = ssh.resolve(config, &forward.host).with_context(|| {
            format!(
                "forward {:?}: cannot resolve host {}",
                forward.name, forward.host
            )
        })?;
        hosts.insert(forward.host.alias.clone(), host);
    }
    Ok(hosts.into_values().collect())
}

/// Serves `listeners` until `shutdown` fires (or, with `exit_when_idle`, until the daemon has
/// been idle that long), then shuts down gracefully.
pub async fn run(
    hosts: Vec<HostConfig>,
    limits: Limits,
    listeners: Vec<BoundForward>,
    shutdown: CancellationToken,
    exit_when_idle: Option<Duration>,
) {
    let stop_sessions = CancellationToken::new();
    let backoff = Backoff {
        min: limits.backoff_min,
        max: limits.backoff_max,
    };
    let sessions = Arc::new(SessionManager::new(hosts, backoff, stop_sessions.clone()));
    let network = tokio::spawn(session::watch_network(
        sessions.clone(),
        stop_sessions.clone(),
    ));
    let ctx = ConnectionContext {
        sessions: sessions.clone(),
        limits,
        limit: Arc::new(Semaphore::new(limits.max_connections)),
        connections: TaskTracker::new(),
        stop_accepting: shutdown.clone(),
        cut_connections: CancellationToken::new(),
    };
    let accept_loops = TaskTracker::new();
    for bound in listeners {
        accept_loops.spawn(listener::accept_loop(bound, ctx.clone()));
    }
    accept_loops.close();
    if let Some(after) = exit_when_idle {
        let (sessions, connections) = (sessions.clone(), ctx.connections.clone());
        let is_idle = move || connections.is_empty() && !sessions.has_live_session();
        tokio::spawn(service::idle::exit_when_idle(
            after,
            is_idle,
            shutdown.clone(),
        ));
    }

    shutdown.cancelled().await;
    accept_loops.wait().await;
    ctx.connections.close();
    let open = ctx.connections.len();
    if open > 0 {
        info!(
            open,
            "shutting down: waiting up to {DRAIN_PERIOD:?} for open connections"
        );
        if tokio::time::timeout(DRAIN_PERIOD, ctx.connections.wait())
            .await
            .is_err()
        {
            info!(
                open = ctx.connections.len(),
                "drain period over: resetting remaining connections"
            );
            ctx.cut_connections.cancel();
            ctx.connections.wait().await;
        }
    }
    stop_sessions.cancel();
    let _ = network.await;
    sessions.close_all().await;
    info!("stopped");
}
