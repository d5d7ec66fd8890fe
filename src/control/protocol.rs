//! The control protocol: one JSON request per line from the client, one JSON response per line
//! from the daemon, then the daemon closes the connection. The status report's schema
//! ([`Status`], `"version": 1`) is stable: fields may be added, none renamed or removed
//! without raising the version.

use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::forward::Transferred;
use crate::session::{HostState, HostStatus};

/// The schema version of [`Status`].
pub const STATUS_VERSION: u32 = 1;

/// Longest request line accepted, newline included.
pub const MAX_REQUEST: usize = 64 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
/// Unknown fields are ignored, so that a newer client's optional fields reach an older daemon
/// harmlessly; an unknown command is an error.
#[serde(tag = "command", rename_all = "lowercase")]
pub enum Request {
    Status,
    Stop,
    Reload,
    Connect { host: String },
}

/// `{"ok": true, …}` with the payload of the command, or `{"ok": false, "error": "…"}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What happened, for a person (stop, reload, connect).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

impl Response {
    pub fn error(error: impl Into<String>) -> Response {
        Response {
            ok: false,
            error: Some(error.into()),
            ..Response::default()
        }
    }

    pub fn message(message: impl Into<String>) -> Response {
        Response {
            ok: true,
            message: Some(message.into()),
            ..Response::default()
        }
    }
}

/// `lazytunnel status --json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub version: u32,
    pub pid: u32,
    pub hosts: Vec<Host>,
    pub forwards: Vec<Forward>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// As the config names it, or a jump host's alias.
    pub host: String,
    /// `idle`, `connecting`, `up`, `backoff` (a transient failure) or `failed` (a permanent
    /// one: host key, authentication; retried after `backoff_max` or `lazytunnel connect`).
    pub state: String,
    /// RFC 3339, UTC, seconds.
    pub since: String,
    /// `backoff`/`failed`: the earliest next attempt (RFC 3339), else null.
    pub next_attempt: Option<String>,
    /// `backoff`/`failed`: why the last attempt failed, else null.
    pub error: Option<String>,
    /// `up`: the session's TCP addresses (the first hop's, through ProxyJump), else null.
    pub local_addr: Option<String>,
    pub remote_addr: Option<String>,
    pub failures: u32,
    pub reconnects: u64,
    /// Since the daemon started: connect attempts started (one per attempt, however many
    /// connections waited on it) and sessions opened (after idling out as well as after a loss).
    #[serde(default)]
    pub attempts: u64,
    #[serde(default)]
    pub sessions_opened: u64,
    /// `up`: channels open on the session, else 0.
    pub channels: usize,
    /// `up`: the receive window each channel grants the server (bytes), and the round trip
    /// measured when the session opened, that an automatic window was chosen from; else null.
    #[serde(default)]
    pub window: Option<u32>,
    #[serde(default)]
    pub path_rtt_us: Option<u64>,
    /// Since the daemon started, over every session of the host: up is client → server.
    pub bytes_up: u64,
    pub bytes_down: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Forward {
    pub name: String,
    /// The addresses listened on (several for some inherited sockets).
    pub listen: Vec<String>,
    pub host: String,
    /// `host:port`, or `socks` for a SOCKS forward (each client names its destination).
    pub target: String,
    /// Whether this is a SOCKS forward (`socks = true`, `run -D`).
    #[serde(default)]
    pub socks: bool,
    pub connections_open: u64,
    pub connections_total: u64,
    pub bytes_up: u64,
    pub bytes_down: u64,
    /// The last connection that failed for a reason other than its client, else null.
    pub last_error: Option<LastError>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: String,
    pub message: String,
}

pub fn timestamp(at: SystemTime) -> String {
    humantime::format_rfc3339_seconds(at).to_string()
}

impl From<HostStatus> for Host {
    fn from(status: HostStatus) -> Host {
        let Transferred { up, down } = status.bytes;
        let mut host = Host {
            host: status.host,
            state: String::new(),
            since: timestamp(status.since),
            next_attempt: None,
            error: None,
            local_addr: None,
            remote_addr: None,
            failures: status.failures,
            reconnects: status.reconnects,
            attempts: status.attempts,
            sessions_opened: status.sessions_opened,
            channels: 0,
            window: None,
            path_rtt_us: None,
            bytes_up: up,
            bytes_down: down,
        };
        host.state = match status.state {
            HostState::Idle => "idle".into(),
            HostState::Connecting => "connecting".into(),
            HostState::Up {
                local,
                remote,
                channels,
                window,
                path_rtt,
            } => {
                host.local_addr = Some(local.to_string());
                host.remote_addr = Some(remote.to_string());
                host.channels = channels;
                host.window = Some(window);
                host.path_rtt_us = Some(u64::try_from(path_rtt.as_micros()).unwrap_or(u64::MAX));
                "up".into()
            }
            HostState::Backoff {
                next_attempt,
                error,
                permanent,
            } => {
                host.next_attempt = Some(timestamp(next_attempt));
                host.error = Some(error);
                if permanent { "failed" } else { "backoff" }.into()
            }
        };
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_tagged_by_command() {
        let parse = |s: &str| serde_json::from_str::<Request>(s);
        assert_eq!(parse(r#"{"command":"status"}"#).unwrap(), Request::Status);
        assert_eq!(
            parse(r#"{"command":"connect","host":"srv11"}"#).unwrap(),
            Request::Connect {
                host: "srv11".into()
            }
        );
        assert!(parse(r#"{"command":"launch"}"#).is_err());
        assert_eq!(
            parse(r#"{"command":"status","since":1}"#).unwrap(),
            Request::Status
        );
        assert!(parse(r#"{"host":"srv11"}"#).is_err());
        assert!(parse("[]").is_err());
        assert!(parse(r#"{"command":"connect"}"#).is_err());
        assert_eq!(
            serde_json::to_string(&Request::Reload).unwrap(),
            r#"{"command":"reload"}"#
        );
    }

    #[test]
    fn errors_carry_no_payload() {
        let text = serde_json::to_string(&Response::error("bad")).unwrap();
        assert_eq!(text, r#"{"ok":false,"error":"bad"}"#);
    }
}
