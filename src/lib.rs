//! lazytunnel: a daemon that listens on local ports and forwards each accepted connection over
//! a lazily opened, shared, self-healing SSH session (one per host), as `ssh -L` would.
//!
//! The path of an accepted socket: [`listener`] accepts it (a TCP or Unix stream, see
//! [`local`]) → [`session`] leases a channel on
//! the host's session (opening it via [`client`] and [`auth`] if needed, verified by
//! [`known_hosts`]; through a jump host over a `session::jump` hop) → [`forward`] copies bytes
//! both ways until both sides are done. A SOCKS forward first reads the client's destination
//! with [`socks`], and answers it once the channel is open or has failed.
//!
//! Around it: [`config`] and [`ssh_config`] say what to forward and how to reach each host;
//! [`startup`] brings the process up (inherited or bound listeners, the [`instance`] lock,
//! detaching); [`daemon`] serves, reloads and shuts down; [`control`] answers `status`, `stop`,
//! `reload` and `connect`; [`install`] writes launchd and systemd units.

pub mod auth;
pub mod check;
pub mod client;
pub mod config;
pub mod control;
pub mod daemon;
pub mod files;
pub mod forward;
pub mod install;
pub mod instance;
pub mod known_hosts;
pub mod limits;
pub mod listener;
pub mod local;
pub mod manual;
pub mod memory;
pub mod netwatch;
pub mod printable;
pub mod session;
pub mod socks;
pub mod ssh_config;
pub mod startup;
