//! Resolution of one host's connection settings, as OpenSSH would compute them from its
//! ssh_config files, overlaid with the daemon's own `[host.NAME]` table.
//!
//! We read ssh_config ourselves rather than through a parser crate, because fidelity is the
//! point: OpenSSH keeps the first value of an option even within one block, reads the user's
//! file and then `/etc/ssh/ssh_config`, conditions `Include` on the enclosing block, and expands
//! `%` tokens per option. Submodules: [`lexer`] (one line), [`keywords`] (every keyword and
//! its checks), [`values`], [`files`] (blocks, Include, Match), [`options`] (first value wins),
//! [`tokens`], [`numeric`] (numeric host names), [`algorithms`], [`resolve`] (one host),
//! [`proxy_jump`] and [`jumps`] (hops).

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

mod algorithms;
mod files;
mod jumps;
mod keywords;
mod lexer;
mod numeric;
mod openssh;
mod options;
mod proxy_jump;
mod resolve;
mod tokens;
mod values;

pub use algorithms::{Algorithms, host_key_algorithm};
use files::{ConfigFile, IncludeBase};
use openssh::home_dir;

use crate::config::HostSpec;

/// The system-wide file OpenSSH reads after the user's, unless `-F` names another file.
pub const SYSTEM_SSH_CONFIG: &str = "/etc/ssh/ssh_config";

#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A config file someone else could have written (OpenSSH's "Bad owner or permissions").
    #[error("{0}")]
    Insecure(String),
    #[error("{path}:{line}: {message} in `{content}`")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
        content: String,
    },
    #[error("{at}: {option} {value:?} (host {host}): {message}")]
    Value {
        at: String,
        host: String,
        option: &'static str,
        value: String,
        message: String,
    },
    #[error("host {host}: {option} is set at {at}, but lazytunnel {message}")]
    Unsupported {
        at: String,
        host: String,
        option: &'static str,
        message: &'static str,
    },
    #[error("host {host}: ProxyJump loop through {chain}")]
    JumpLoop { host: String, chain: String },
    #[error(
        "host {host}: cannot determine the user name: set User in ssh_config or `user` in [host.{host}], or set $USER"
    )]
    NoUser { host: String },
    #[error("{0}")]
    Path(#[from] crate::config::ConfigError),
}

/// What to do with a host key that no known_hosts line vouches for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StrictHostKeyChecking {
    /// `yes`, and `ask` (a daemon cannot ask): refuse unknown hosts.
    Yes,
    /// Learn unknown hosts; refuse changed keys.
    AcceptNew,
    /// `no`/`off`: accept unknown hosts with a warning; still refuse changed keys.
    No,
}

impl StrictHostKeyChecking {
    /// OpenSSH's words, any case; `true`/`false` are `yes`/`no`.
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "yes" | "true" | "ask" => Some(Self::Yes),
            "accept-new" => Some(Self::AcceptNew),
            "no" | "false" | "off" => Some(Self::No),
            _ => None,
        }
    }
}

impl From<crate::config::StrictHostKeyChecking> for StrictHostKeyChecking {
    fn from(value: crate::config::StrictHostKeyChecking) -> Self {
        use crate::config::StrictHostKeyChecking as Setting;
        match value {
            Setting::Yes | Setting::Ask => Self::Yes,
            Setting::AcceptNew => Self::AcceptNew,
            Setting::No => Self::No,
        }
    }
}

impl fmt::Display for StrictHostKeyChecking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Yes => "yes",
            Self::AcceptNew => "accept-new",
            Self::No => "no",
        })
    }
}

/// Where agent signatures come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityAgent {
    /// The socket named by an environment variable, if set: `SSH_AUTH_SOCK` by default, or
    /// `IdentityAgent $NAME`.
    Env(String),
    /// An explicit socket path.
    Socket(PathBuf),
    /// `IdentityAgent none`.
    Disabled,
}

/// Everything needed to open and keep one SSH session, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// The host as forwards name it (ssh_config alias or `[user@]host[:port]`).
    pub spec: HostSpec,
    pub host_name: String,
    pub port: u16,
    pub user: String,
    /// Key files to try, in order; `identity_files_explicit` says whether they came from
    /// configuration (a missing explicit file is worth a warning, a missing default is not).
    pub identity_files: Vec<PathBuf>,
    pub identity_files_explicit: bool,
    pub identities_only: bool,
    pub identity_agent: IdentityAgent,
    pub user_known_hosts_files: Vec<PathBuf>,
    pub global_known_hosts_files: Vec<PathBuf>,
    pub strict_host_key_checking: StrictHostKeyChecking,
    pub hash_known_hosts: bool,
    pub connect_timeout: Duration,
    pub keepalive_interval: Duration,
    pub keepalive_max: u32,
    pub idle_timeout: Duration,
    /// The receive window configured for this host; `None` chooses it from the round trip.
    pub window_size: Option<u32>,
    /// CertificateFile, in order; each is offered with the matching identity's key.
    pub certificate_files: Vec<PathBuf>,
    pub algorithms: Algorithms,
    /// The hop this host is reached through (ProxyJump), itself fully resolved.
    pub jump: Option<Box<HostConfig>>,
    /// HostKeyAlias: the name to look host keys up and record them under.
    pub host_key_alias: Option<String>,
}

impl HostConfig {
    /// The known_hosts files to consult, user files first.
    /// The name and port host keys are looked up and recorded under: HostKeyAlias without a
    /// port (as OpenSSH looks it up), else HostName and Port.
    pub fn host_key_name(&self) -> (&str, u16) {
        match &self.host_key_alias {
            Some(alias) => (alias, 22),
            None => (&self.host_name, self.port),
        }
    }

    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        let mut files = self.user_known_hosts_files.clone();
        files.extend(self.global_known_hosts_files.iter().cloned());
        files
    }
}

/// The ssh_config files a daemon reads: the user's, then (as OpenSSH without `-F`) the
/// system's.
pub struct SshConfigFile {
    path: PathBuf,
    files: Vec<ConfigFile>,
    home: PathBuf,
}

impl SshConfigFile {
    /// Reads and parses `path`, then `system` if given. A missing file is an empty
    /// configuration when it is the default `~/.ssh/config` (`is_default`, as for OpenSSH) or
    /// the system file; a missing explicitly named file is an error.
    pub fn load(
        path: &Path,
        is_default: bool,
        system: Option<&Path>,
    ) -> Result<Self, SshConfigError> {
        let home = home_dir();
        let user_dir = home.join(".ssh");
        let mut files = Vec::new();
        if let Some(text) = read(path, is_default)? {
            // OpenSSH checks the default user file; a file named like `ssh -F` it does not.
            if is_default {
                files::check_permissions(path).map_err(SshConfigError::Insecure)?;
            }
            let base = IncludeBase {
                home: &home,
                dir: &user_dir,
            };
            files.push(ConfigFile::parse(path, &text, &base)?);
        }
        if let Some(system) = system
            && let Some(text) = read(system, true)?
        {
            let dir = system.parent().unwrap_or(Path::new("/"));
            let base = IncludeBase { home: &home, dir };
            files.push(ConfigFile::parse(system, &text, &base)?);
        }
        Ok(Self {
            path: path.to_owned(),
            files,
            home,
        })
    }

    /// Parses `text` as the content of `path` (no system file), resolving `~` against `home`.
    pub fn parse(path: &Path, text: &str, home: PathBuf) -> Result<Self, SshConfigError> {
        let dir = home.join(".ssh");
        let base = IncludeBase {
            home: &home,
            dir: &dir,
        };
        let file = ConfigFile::parse(path, text, &base)?;
        Ok(Self {
            path: path.to_owned(),
            files: vec![file],
            home,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn read(path: &Path, missing_is_empty: bool) -> Result<Option<String>, SshConfigError> {
    match crate::files::read_capped_string(path, crate::files::MAX_SMALL_FILE) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && missing_is_empty => Ok(None),
        Err(error) => Err(SshConfigError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

#[cfg(test)]
mod tests;
