//! The daemon's answers to control requests.

use crate::control::Handler;
use crate::control::protocol::{self, STATUS_VERSION};

use super::Daemon;

impl Handler for Daemon {
    fn status(&self) -> protocol::Status {
        protocol::Status {
            version: STATUS_VERSION,
            pid: std::process::id(),
            hosts: self.sessions.status().into_iter().map(Into::into).collect(),
            forwards: self.forwards().report(),
        }
    }

    fn stop(&self) {
        self.shutdown.cancel();
    }

    async fn reload(&self) -> Result<String, String> {
        Daemon::reload(self).await.map_err(|e| format!("{e:#}"))
    }

    async fn connect(&self, host: &str) -> Result<String, String> {
        if self.shutdown.is_cancelled() {
            return Err("the daemon is shutting down".into());
        }
        match self.sessions.connect_now(host).await {
            Ok(up) if up.already_up => Ok(format!(
                "{}: session already up ({} -> {})",
                up.host, up.local, up.remote
            )),
            Ok(up) => Ok(format!(
                "{}: session up ({} -> {})",
                up.host, up.local, up.remote
            )),
            Err(e) => Err(format!("{host}: {e}")),
        }
    }
}
