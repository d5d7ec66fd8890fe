//! Running as a service: sockets inherited from systemd or launchd ([`activation`]),
//! readiness for systemd ([`systemd`]), exiting when idle ([`idle`]), detaching into the
//! background with one instance per control socket ([`detach`], [`lock`], [`paths`]), and
//! installing launchd agents or systemd user units ([`install`]).

pub mod activation;
pub mod detach;
pub mod idle;
pub mod install;
pub mod launchd;
pub mod lock;
pub mod paths;
pub mod systemd;
