//! The daemon's lifecycle: resolve every host, serve the bound listeners and the control
//! socket, apply reloads, and on shutdown stop accepting, let open connections drain for a
//! bounded time, cut the rest, close sessions. [`run_process`] is the `run` command's whole
//! process: start-up, signals, readiness, then [`run`].

mod control;
mod forwards;
mod process;
mod reload;
mod signals;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use russh::WindowBudget;
use tokio::net::UnixListener;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info};

use crate::config::Config;
use crate::listener::{BoundForward, ConnectionContext};
use crate::session::{self, Backoff, SessionManager};
use crate::ssh_config::{HostConfig, SYSTEM_SSH_CONFIG, SshConfigFile};
use crate::{control as control_socket, startup};
use forwards::Forwards;
pub use process::{ConfigSource, RunOptions, run_process};

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

/// What [`run`] serves.
pub struct Setup {
    /// The validated config, and the hosts it resolved to.
    pub config: Config,
    pub hosts: Vec<HostConfig>,
    /// Every forward's listening sockets (several per forward for some inherited ones).
    pub listeners: Vec<BoundForward>,
    /// The bound control socket, if any.
    pub control: Option<UnixListener>,
    /// A control socket given on the command line, which a reload keeps.
    pub pinned_control_socket: Option<std::path::PathBuf>,
    /// Starts a graceful shutdown (signals, `stop`, `exit_when_idle`).
    pub shutdown: CancellationToken,
    /// Each notification re-reads the config (SIGHUP).
    pub reload: Arc<Notify>,
}

/// The running daemon, as the control socket and reloads see it.
pub struct Daemon {
    sessions: Arc<SessionManager>,
    ctx: ConnectionContext,
    forwards: Mutex<Forwards>,
    /// The config now applied (for a reload's comparison).
    config: Mutex<Config>,
    /// One reload at a time; shutdown takes it too, so no loop starts after it.
    reloading: tokio::sync::Mutex<()>,
    pinned_control_socket: Option<std::path::PathBuf>,
    shutdown: CancellationToken,
}

/// Serves until `setup.shutdown` fires (or, with `exit_when_idle`, until the daemon has been
/// idle that long), then shuts down gracefully.
pub async fn run(setup: Setup) {
    let Setup {
        config,
        hosts,
        listeners,
        control,
        pinned_control_socket,
        shutdown,
        reload,
    } = setup;
    let limits = config.limits;
    let stop_sessions = CancellationToken::new();
    let backoff = Backoff {
        min: limits.backoff_min,
        max: limits.backoff_max,
    };
    let sessions = Arc::new(SessionManager::new(
        hosts,
        backoff,
        Arc::new(WindowBudget::new(limits.receive_budget)),
        stop_sessions.clone(),
    ));
    let network = tokio::spawn(session::watch_network(
        sessions.clone(),
        stop_sessions.clone(),
    ));
    let ctx = ConnectionContext {
        sessions: sessions.clone(),
        limits,
        limit: Arc::new(Semaphore::new(crate::limits::client_capacity(
            limits.max_connections,
        ))),
        connections: TaskTracker::new(),
        stop_accepting: shutdown.clone(),
        cut_connections: CancellationToken::new(),
    };
    let mut forwards = Forwards::new();
    let mut by_name: BTreeMap<String, Vec<crate::local::Listener>> = BTreeMap::new();
    for bound in listeners {
        by_name
            .entry(bound.forward.name.clone())
            .or_default()
            .push(bound.listener);
    }
    for forward in &config.forwards {
        let own = by_name.remove(&forward.name).unwrap_or_default();
        forwards.start(forward.clone(), own, &ctx);
    }
    let exit_when_idle = config.exit_when_idle;
    let daemon = Arc::new(Daemon {
        sessions: sessions.clone(),
        ctx: ctx.clone(),
        forwards: Mutex::new(forwards),
        config: Mutex::new(config),
        reloading: tokio::sync::Mutex::new(()),
        pinned_control_socket,
        shutdown: shutdown.clone(),
    });
    // The control socket answers until the very end, so `status` works while draining.
    let stop_control = CancellationToken::new();
    let control = control.map(|listener| {
        tokio::spawn(control_socket::server::serve(
            listener,
            daemon.clone(),
            stop_control.clone(),
        ))
    });
    tokio::spawn(reload_on_notify(daemon.clone(), reload));
    if let Some(after) = exit_when_idle {
        let (sessions, connections) = (sessions.clone(), ctx.connections.clone());
        let is_idle = move || connections.is_empty() && !sessions.has_live_session();
        tokio::spawn(startup::idle::exit_when_idle(
            after,
            is_idle,
            shutdown.clone(),
        ));
    }

    shutdown.cancelled().await;
    // A reload in progress finishes first; none starts after this.
    let _no_reload = daemon.reloading.lock().await;
    let stopping = daemon.forwards().stop_all();
    for forward in stopping {
        // Closes the ports: new clients are refused from here on.
        drop(forward.listeners().await);
    }
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
    stop_control.cancel();
    if let Some(control) = control {
        let _ = control.await;
    }
    info!("stopped");
}

impl Daemon {
    fn forwards(&self) -> std::sync::MutexGuard<'_, Forwards> {
        // Every change to the registry is a single push or remove: still consistent.
        self.forwards.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// SIGHUP: reload, logging the outcome (there is no caller to tell).
async fn reload_on_notify(daemon: Arc<Daemon>, reload: Arc<Notify>) {
    loop {
        tokio::select! {
            () = reload.notified() => {}
            () = daemon.shutdown.cancelled() => return,
        }
        if let Err(e) = daemon.reload().await {
            error!("reload failed, the running config stays: {e:#}");
        }
    }
}
