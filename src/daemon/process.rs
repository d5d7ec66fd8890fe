//! The `run` command's whole process: [`startup`]'s steps in their order, then [`super::run`]
//! on the runtime they end with, once the signals are installed and readiness reported.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::signals::Signals;
use crate::config::Config;
use crate::instance::paths;
use crate::listener::BoundForward;
use crate::ssh_config::HostConfig;
use crate::startup::{self, Started, idle, systemd};

/// Where the daemon's config comes from.
pub enum ConfigSource {
    /// A config file; the default one if `None`.
    File(Option<PathBuf>),
    /// `-L` and `-D` forwards through one destination, instead of a file.
    AdHoc {
        local_forwards: Vec<String>,
        dynamic_forwards: Vec<String>,
        destination: String,
    },
}

/// What `lazytunnel run` was asked to do.
pub struct RunOptions {
    pub config: ConfigSource,
    /// A control socket given on the command line, instead of the config's.
    pub control_socket: Option<PathBuf>,
    /// Stay attached to the terminal instead of detaching.
    pub foreground: bool,
}

/// Runs the daemon until it is stopped. Call it first thing after setting up logging: nothing
/// may open a file or start a thread before [`startup::begin`].
///
/// Everything that can fail for a reason the user must fix (config, ports, another instance)
/// happens before detaching, so that it reaches the terminal with a non-zero exit.
pub fn run_process(options: RunOptions) -> anyhow::Result<()> {
    let inherited = startup::begin()?;
    let mut config = match &options.config {
        ConfigSource::AdHoc {
            local_forwards,
            dynamic_forwards,
            destination,
        } => Config::ad_hoc(local_forwards, dynamic_forwards, destination)?,
        ConfigSource::File(path) => Config::load_or_default(path.as_deref())?,
    };
    if let Some(path) = &options.control_socket {
        config.control_socket = Some(path.clone());
    }
    let hosts = super::resolve_hosts(&config)?;
    if let Some(after) = config.exit_when_idle.filter(|a| *a < idle::MIN_SENSIBLE) {
        warn!(
            "exit_when_idle = {} is below {}: launchd throttles restarts to one per 10 s",
            humantime::format_duration(after),
            humantime::format_duration(idle::MIN_SENSIBLE)
        );
    }
    let listening = inherited
        .lock(&paths::control_socket(&config)?)?
        .listen(&config.forwards)?;
    if config.exit_when_idle.is_some() && listening.inherited() == 0 {
        info!(
            "exit_when_idle is set but no socket manager passed sockets: the ports close when lazytunnel exits"
        );
    }
    let started = listening.start(options.foreground, &paths::log_file()?)?;
    serve(started, config, hosts, options.control_socket)
}

/// Serves on the started process's runtime until shutdown, then removes the control socket;
/// the instance lock goes with the process.
fn serve(
    started: Started,
    config: Config,
    hosts: Vec<HostConfig>,
    pinned_control_socket: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (listeners, control) = (started.listeners, started.control);
    let served = started.runtime.block_on(async {
        let bound = listeners
            .sockets
            .into_iter()
            .map(|(forward, socket)| BoundForward::from_std(forward, socket))
            .collect::<std::io::Result<Vec<_>>>()
            .context("cannot register the listening sockets")?;
        let control_listener = control
            .listener
            .try_clone()
            .and_then(tokio::net::UnixListener::from_std)
            .context("cannot register the control socket")?;
        let shutdown = CancellationToken::new();
        let reload = Arc::new(Notify::new());
        let signals = Signals::install().context("cannot install signal handlers")?;
        tokio::spawn(signals.handle(shutdown.clone(), reload.clone()));
        let status = format!(
            "serving {} forward(s), {} inherited socket(s)",
            config.forwards.len(),
            listeners.inherited
        );
        systemd::notify_ready(&status);
        if let Some(ready) = started.ready {
            ready.signal();
        }
        super::run(super::Setup {
            config,
            hosts,
            listeners: bound,
            control: Some(control_listener),
            pinned_control_socket,
            shutdown,
            reload,
        })
        .await;
        // The socket file goes before the lock is released, so `stop` finds neither.
        drop(control);
        Ok(())
    });
    // A file read stuck on a hung file system holds a blocking-pool thread: do not wait for it.
    started.runtime.shutdown_background();
    // The kernel releases the lock as the process ends: `stop`, which waits for it, returns
    // only once nothing of the daemon runs any more.
    std::mem::forget(started.lock);
    served
}
