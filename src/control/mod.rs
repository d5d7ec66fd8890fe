//! The control socket: a Unix socket on which `lazytunnel status`, `stop`, `reload` and
//! `connect` reach the running daemon. [`protocol`] defines the messages, [`server`] the
//! daemon's end, [`client`] the commands' end, [`render`] the human status table.

pub mod client;
pub mod protocol;
pub mod render;
pub mod server;

use protocol::Status;

/// What the daemon does for control requests.
pub trait Handler: Send + Sync + 'static {
    fn status(&self) -> Status;
    /// Starts a graceful shutdown, as SIGTERM does.
    fn stop(&self);
    /// Re-reads the config and applies it; `Err` leaves everything as it was.
    fn reload(&self) -> impl Future<Output = Result<String, String>> + Send;
    /// Opens `host`'s session now (resetting its backoff).
    fn connect(&self, host: &str) -> impl Future<Output = Result<String, String>> + Send;
}
