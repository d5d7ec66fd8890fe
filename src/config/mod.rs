//! lazytunnel's own TOML config file (not ssh_config): daemon-wide settings, session defaults,
//! per-host overrides and the list of forwards, plus the same model built from `-L` arguments
//! for an ad-hoc `lazytunnel run`.
//!
//! Parsing ([`Config::from_str`]) reads no file and is unit-tested over text; every validation error names the file, the line and
//! column of the offending value, and the value. `config/example.toml` shows every key.

mod ad_hoc;
mod addr;
mod dynamic;
mod endpoint;
mod error;
mod file;
mod local_forward;
mod paths;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ad_hoc::{AdHocSpec, ad_hoc_with};
pub(crate) use addr::check_host_name;
pub use addr::{HostSpec, Target, is_loopback};
pub use dynamic::{ForwardTarget, parse_dynamic_forward};
pub use endpoint::{DEFAULT_LISTEN_MODE, Endpoint, Listen};
pub use error::{ConfigError, Position};
pub use local_forward::parse_local_forward;
pub use paths::expand_tilde;

/// Used when the file has no `ssh_config` key, and for ad-hoc runs.
pub const DEFAULT_SSH_CONFIG: &str = "~/.ssh/config";
/// Every timer must lie in this range; the upper bound keeps deadline arithmetic far from
/// overflow.
const MIN_TIMER: Duration = Duration::from_secs(1);
const MAX_TIMER: Duration = Duration::from_secs(366 * 24 * 3600);
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// systemd's limit for `FileDescriptorName`, which forward names become.
const MAX_FORWARD_NAME_LEN: usize = 255;

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// OpenSSH client config consulted for host aliases (`~` expanded; a relative path is
    /// joined to the config file's directory).
    pub ssh_config: PathBuf,
    /// Where the control socket listens; `None` lets the caller choose.
    pub control_socket: Option<PathBuf>,
    /// Top-level session settings, as written.
    pub defaults: Defaults,
    /// Daemon-wide limits and reconnect pacing, defaults filled in.
    pub limits: Limits,
    /// Exit (status 0) after this long with no session up and no connection open; meant for
    /// socket activation, where the socket manager keeps the ports and starts us again.
    pub exit_when_idle: Option<Duration>,
    /// `[host.NAME]` tables, keyed by NAME; see [`Config::host_override`].
    pub hosts: BTreeMap<String, HostOverride>,
    /// In file order; never empty, names unique, listen addresses disjoint.
    pub forwards: Vec<Forward>,
    /// The file the config came from; `None` for [`Config::ad_hoc`].
    pub source: Option<PathBuf>,
}

/// Session settings as the user wrote them: `None` means "not set here".
///
/// Precedence is `[host.X]` > ssh_config > these > built-in; the `effective_*` accessors give
/// these with the built-in defaults filled in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Defaults {
    /// How long a session with no forwarded connection is kept open.
    pub idle_timeout: Option<Duration>,
    /// Limit on TCP connect plus SSH handshake and authentication.
    pub connect_timeout: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    /// Unanswered keepalives after which the session is considered dead.
    pub keepalive_max: Option<u32>,
    pub window_size: Option<WindowSize>,
}

/// The per-channel receive window a session grants the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowSize {
    /// Chosen from the round trip measured when the session opens ([`crate::client::window_for`]).
    Auto,
    /// Bytes, as configured.
    Fixed(u32),
}

impl FromStr for WindowSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "auto" {
            return Ok(WindowSize::Auto);
        }
        parse_buffer_size(s)
            .and_then(|n| u32::try_from(n).map_err(|_| "too large".to_string()))
            .map(WindowSize::Fixed)
            .map_err(|problem| format!("{problem}, or \"auto\""))
    }
}

impl Defaults {
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
    pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(15);
    pub const KEEPALIVE_MAX: u32 = 3;

    pub fn effective_idle_timeout(&self) -> Duration {
        self.idle_timeout.unwrap_or(Self::IDLE_TIMEOUT)
    }

    pub fn effective_connect_timeout(&self) -> Duration {
        self.connect_timeout.unwrap_or(Self::CONNECT_TIMEOUT)
    }

    pub fn effective_keepalive_interval(&self) -> Duration {
        self.keepalive_interval.unwrap_or(Self::KEEPALIVE_INTERVAL)
    }

    pub fn effective_keepalive_max(&self) -> u32 {
        self.keepalive_max.unwrap_or(Self::KEEPALIVE_MAX)
    }
}

/// Daemon-wide bounds: how many connections, how much data held for clients, how fast to
/// retry a failing host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Open (or held) local connections across all forwards; more wait in the listen backlog.
    pub max_connections: usize,
    /// Server-to-client bytes held, in total, for local clients that have not read them yet
    /// (plus what servers may still send): every channel's receive window is reserved from
    /// it, and windows shrink towards one packet each when it is tight.
    pub receive_budget: usize,
    /// First delay after a failed connect; doubled per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 4096,
            receive_budget: 64 << 20,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    }
}

/// A `[host.NAME]` table: values that win over what ssh_config says for that host.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostOverride {
    pub hostname: Option<String>,
    pub port: Option<u16>,
    pub user: Option<String>,
    /// Resolved like `ssh_config`: `~` expanded, relative to the config file's directory.
    pub identity_file: Option<Vec<PathBuf>>,
    pub identities_only: Option<bool>,
    /// Resolved like `identity_file`.
    pub user_known_hosts_file: Option<Vec<PathBuf>>,
    pub strict_host_key_checking: Option<StrictHostKeyChecking>,
    pub idle_timeout: Option<Duration>,
    pub connect_timeout: Option<Duration>,
    pub keepalive_interval: Option<Duration>,
    pub keepalive_max: Option<u32>,
    pub window_size: Option<WindowSize>,
}

/// OpenSSH's `StrictHostKeyChecking`; `off` is accepted as a synonym of `no`, as in OpenSSH.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrictHostKeyChecking {
    Yes,
    No,
    Ask,
    AcceptNew,
}

impl FromStr for StrictHostKeyChecking {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "yes" => Ok(Self::Yes),
            "no" | "off" => Ok(Self::No),
            "ask" => Ok(Self::Ask),
            "accept-new" => Ok(Self::AcceptNew),
            _ => Err("expected one of yes, no, ask, accept-new, off".into()),
        }
    }
}

impl fmt::Display for StrictHostKeyChecking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yes => "yes",
            Self::No => "no",
            Self::Ask => "ask",
            Self::AcceptNew => "accept-new",
        })
    }
}

/// One local port or Unix socket forwarded through an SSH server, like `ssh -L` (or `ssh -D`
/// for SOCKS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    /// Unique, `[A-Za-z0-9._-]{1,255}`; see [`derived_name`] when not written.
    pub name: String,
    /// Never port 0; loopback (or a Unix socket) unless `allow_non_loopback`.
    pub listen: Listen,
    pub host: HostSpec,
    pub target: ForwardTarget,
    pub allow_non_loopback: bool,
}

impl Config {
    /// Parses and validates config text. `origin` names the file in errors and is the base of
    /// relative paths; nothing is read from disk. `~` expands to `$HOME`.
    #[allow(clippy::should_implement_trait)] // needs `origin`, so it cannot be `FromStr`
    pub fn from_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        file::parse(text, origin, std::env::var_os("HOME").as_deref())
    }

    /// Reads and parses the config file at `path`, which may be at most 1 MiB.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::from_str(&read_limited(path)?, path)
    }

    /// Loads the config file at `path`, or at [`Config::default_path`] if none is given.
    pub fn load_or_default(path: Option<&Path>) -> Result<Config, ConfigError> {
        match path {
            Some(path) => Self::load(path),
            None => Self::load(&Self::default_path()?),
        }
    }

    /// `$XDG_CONFIG_HOME/lazytunnel/config.toml`, else `~/.config/lazytunnel/config.toml`.
    pub fn default_path() -> Result<PathBuf, ConfigError> {
        let xdg = std::env::var_os("XDG_CONFIG_HOME");
        let home = std::env::var_os("HOME");
        paths::default_path_from(xdg.as_deref(), home.as_deref())
    }

    /// The config of `lazytunnel run -L SPEC... -D SPEC... DESTINATION`: built-in defaults
    /// and one forward per `-L`, then one SOCKS forward per `-D`, all through `destination`.
    /// Non-loopback binds are refused: only a config file can set `allow_non_loopback`.
    pub fn ad_hoc(
        local_forwards: &[String],
        dynamic_forwards: &[String],
        destination: &str,
    ) -> Result<Config, ConfigError> {
        let specs = local_forwards
            .iter()
            .map(|s| AdHocSpec::Local(s))
            .chain(dynamic_forwards.iter().map(|s| AdHocSpec::Dynamic(s)));
        ad_hoc_with(specs, destination, std::env::var_os("HOME").as_deref())
    }

    /// The `[host.NAME]` table for `host`: NAME equal to the spec as written (`alias`) wins,
    /// else NAME equal to its bare host name, so `[host.srv11]` also applies to `vit@srv11`.
    pub fn host_override(&self, host: &HostSpec) -> Option<&HostOverride> {
        self.hosts
            .get(&host.alias)
            .or_else(|| self.hosts.get(&host.host))
    }
}

/// Reads a whole config file, refusing to read without end from a mistaken path such as
/// `/dev/zero`.
fn read_limited(path: &Path) -> Result<String, ConfigError> {
    // It can turn host key checking off: checked like ~/.ssh/config.
    crate::files::read_private_string(path, MAX_CONFIG_BYTES).map_err(|error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    })
}

/// Parses a humantime duration: `"30s"`, `"5m"`, `"1h30m"`. No range check.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| e.to_string())
}

/// Parses a byte size: a whole number with an optional `KiB`, `MiB` or `GiB` suffix
/// (`"512KiB"`, `"8 MiB"`, `"1048576"`). No range check.
pub fn parse_size(s: &str) -> Result<usize, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let whole_number =
        || "expected a whole number of bytes, optionally followed by KiB, MiB or GiB".to_string();
    if digits.is_empty() {
        return Err(whole_number());
    }
    let shift = match unit.trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        other => return Err(format!("unknown unit {other:?}: use KiB, MiB or GiB")),
    };
    let n: usize = digits.parse().map_err(|_| whole_number())?;
    n.checked_mul(1 << shift)
        .ok_or_else(|| "too large".to_string())
}

/// [`parse_size`] within the range every buffer and window size key accepts: 64KiB to 1GiB.
pub fn parse_buffer_size(s: &str) -> Result<usize, String> {
    let n = parse_size(s)?;
    if (64 << 10..=1 << 30).contains(&n) {
        Ok(n)
    } else {
        Err("must be between 64KiB and 1GiB".into())
    }
}

/// Range check shared by every timer.
fn check_timer(d: Duration) -> Result<Duration, String> {
    if d < MIN_TIMER {
        Err("must be at least 1s".into())
    } else if d > MAX_TIMER {
        Err("must be at most 366 days".into())
    } else {
        Ok(d)
    }
}

/// The name of a forward without `name`: the port for 127.0.0.1 (`"4445"`), else
/// `ADDRESS_PORT` with IPv6 colons turned into `-` (`"0.0.0.0_8080"`, `"--1_5432"` for
/// `[::1]:5432`); distinct addresses always give distinct names. A Unix socket's name is its
/// path's (`"tmp_docker.sock"` for `/tmp/docker.sock`).
pub fn derived_name(listen: &Listen) -> String {
    let listen = match listen {
        Listen::Tcp(addr) => addr,
        Listen::Unix { path, .. } => return endpoint::name_of_path(path),
    };
    if listen.ip() == std::net::Ipv4Addr::LOCALHOST {
        listen.port().to_string()
    } else {
        format!(
            "{}_{}",
            listen.ip().to_string().replace(':', "-"),
            listen.port()
        )
    }
}

/// Names become launchd socket names and systemd `FileDescriptorName`s.
fn check_name(name: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if name.is_empty() || name.len() > MAX_FORWARD_NAME_LEN || !name.chars().all(valid) {
        Err(format!(
            "a forward name must be 1-{MAX_FORWARD_NAME_LEN} characters from A-Z a-z 0-9 . _ -"
        ))
    } else if name == "." || name == ".." {
        Err("a forward name cannot be `.` or `..`".into())
    } else {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Clash {
    Listen,
    Name,
}

/// The first pair of forwards `(earlier, later)` that cannot coexist. Addresses clash when
/// the ports are equal and the IPs are equal or either is unspecified (0.0.0.0 or ::), as
/// the second bind would fail; socket paths when they are equal.
fn find_clash(forwards: &[Forward]) -> Option<(usize, usize, Clash)> {
    let clash = |a: &Listen, b: &Listen| match (a, b) {
        (Listen::Tcp(a), Listen::Tcp(b)) => {
            a.port() == b.port()
                && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
        }
        _ => a.same_place(b),
    };
    for (j, later) in forwards.iter().enumerate() {
        let earlier = forwards
            .iter()
            .take(j)
            .position(|f| clash(&f.listen, &later.listen));
        if let Some(i) = earlier {
            return Some((i, j, Clash::Listen));
        }
    }
    let mut seen = HashMap::new();
    for (j, f) in forwards.iter().enumerate() {
        if let Some(&i) = seen.get(f.name.as_str()) {
            return Some((i, j, Clash::Name));
        }
        seen.insert(f.name.as_str(), j);
    }
    None
}
