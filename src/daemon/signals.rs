//! The signals the daemon acts on: SIGHUP reloads, SIGINT and SIGTERM shut it down.

use std::sync::Arc;

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The handlers, installed before the daemon serves (SIGHUP would kill it otherwise).
pub(super) struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    pub(super) fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }

    /// SIGHUP reloads; SIGINT or SIGTERM starts a graceful shutdown, and a second one exits at
    /// once.
    pub(super) async fn handle(mut self, shutdown: CancellationToken, reload: Arc<Notify>) {
        loop {
            tokio::select! {
                _ = self.term.recv() => info!("SIGTERM: shutting down"),
                _ = self.int.recv() => info!("SIGINT: shutting down"),
                _ = self.hup.recv() => {
                    info!("SIGHUP: reloading the config");
                    reload.notify_one();
                    continue;
                }
                () = shutdown.cancelled() => {}
            }
            break;
        }
        shutdown.cancel();
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
        info!("second signal: exiting now");
        std::process::exit(1);
    }
}
