//! Resolution of one host's connection settings, as OpenSSH would compute them from
//! `ssh_config`, overlaid with the daemon's own `[host.NAME]` table.
//!
//! ssh2-config does the parsing; this module fills its gaps: options it only hands back raw
//! (StrictHostKeyChecking, UserKnownHostsFile, ServerAliveCountMax, IdentitiesOnly, …), `Match`
//! blocks it would merge into the preceding `Host` (we neutralise them and warn), parse errors
//! without line numbers (we find the line), and OpenSSH's defaults.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ssh2_config::SshConfig;

mod openssh;
mod parse;

use openssh::{
    RawOptions, default_identity_files, expand_host_tokens, home_dir, local_user_name,
    reject_unsupported,
};
use parse::{first_failing_line, neutralise_match_blocks, parse_text};

use crate::config::{Config, HostSpec, expand_tilde};

#[derive(Debug, thiserror::Error)]
pub enum SshConfigError {
    #[error("{path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}:{line}: {message} in `{content}`")]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
        content: String,
    },
    #[error("{path}: {message}")]
    ParseNoLine { path: PathBuf, message: String },
    #[error("host {host}: {option} {value:?} in ssh_config: {message}")]
    Value {
        host: String,
        option: &'static str,
        value: String,
        message: String,
    },
    #[error("host {host}: {option} is set in ssh_config, but lazytunnel {message}")]
    Unsupported {
        host: String,
        option: &'static str,
        message: &'static str,
    },
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
    pub fn parse(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "yes" | "ask" => Some(Self::Yes),
            "accept-new" => Some(Self::AcceptNew),
            "no" | "off" => Some(Self::No),
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
    /// `$SSH_AUTH_SOCK`, if set.
    Env,
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
}

impl HostConfig {
    /// The known_hosts files to consult, user files first.
    pub fn known_hosts_files(&self) -> Vec<PathBuf> {
        let mut files = self.user_known_hosts_files.clone();
        files.extend(self.global_known_hosts_files.iter().cloned());
        files
    }
}

/// A parsed ssh_config file (or none, when the default file does not exist).
pub struct SshConfigFile {
    path: PathBuf,
    parsed: SshConfig,
    home: PathBuf,
}

impl SshConfigFile {
    /// Reads and parses `path`. A missing file is an empty configuration only when it is the
    /// default `~/.ssh/config` (as for OpenSSH); a missing explicitly named file is an error.
    pub fn load(path: &Path, is_default: bool) -> Result<Self, SshConfigError> {
        let home = home_dir();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && is_default => String::new(),
            Err(error) => {
                return Err(SshConfigError::Read {
                    path: path.to_owned(),
                    error,
                });
            }
        };
        Self::parse(path, &text, home)
    }

    /// Parses `text` as the content of `path`, resolving `~` against `home`.
    pub fn parse(path: &Path, text: &str, home: PathBuf) -> Result<Self, SshConfigError> {
        let original = text;
        let text = neutralise_match_blocks(path, text);
        let parsed =
            parse_text(&text, &home).map_err(|message| match first_failing_line(&text, &home) {
                Some(line) => SshConfigError::Parse {
                    path: path.to_owned(),
                    line,
                    message,
                    content: original
                        .lines()
                        .nth(line - 1)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                },
                None => SshConfigError::ParseNoLine {
                    path: path.to_owned(),
                    message,
                },
            })?;
        Ok(Self {
            path: path.to_owned(),
            parsed,
            home,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Resolves `spec` the way `ssh [user@]host [-p port]` would, then applies the daemon's
    /// `[host.NAME]` overrides and timer defaults.
    pub fn resolve(&self, config: &Config, spec: &HostSpec) -> Result<HostConfig, SshConfigError> {
        // OpenSSH lowercases the host name it matches Host patterns against.
        let query_name = spec.host.to_ascii_lowercase();
        let params = self.parsed.query(&query_name);
        let raw = RawOptions(&params.unsupported_fields);
        let over = config.host_override(spec).cloned().unwrap_or_default();
        let host = spec.alias.clone();

        reject_unsupported(&host, &params, &raw)?;

        let host_name = match (&over.hostname, &params.host_name) {
            (Some(name), _) => name.clone(),
            (None, Some(name)) => expand_host_tokens(name, &spec.host),
            (None, None) => spec.host.clone(),
        };
        let port = spec.port.or(over.port).or(params.port).unwrap_or(22);
        let user = match spec
            .user
            .clone()
            .or(over.user.clone())
            .or(params.user.clone())
        {
            Some(user) => user,
            None => {
                local_user_name().ok_or_else(|| SshConfigError::NoUser { host: host.clone() })?
            }
        };

        let (identity_files, identity_files_explicit) =
            match (&over.identity_file, &params.identity_file) {
                (Some(files), _) if !files.is_empty() => (files.clone(), true),
                (_, Some(files)) if !files.is_empty() => (files.clone(), true),
                _ => (default_identity_files(&self.home), false),
            };
        let identities_only = match over.identities_only {
            Some(v) => v,
            None => raw
                .bool(&host, "identitiesonly", "IdentitiesOnly")?
                .unwrap_or(false),
        };
        let identity_agent = match raw.first("identityagent") {
            None => IdentityAgent::Env,
            Some(v) if v.eq_ignore_ascii_case("none") => IdentityAgent::Disabled,
            Some("SSH_AUTH_SOCK") => IdentityAgent::Env,
            Some(v) => IdentityAgent::Socket(self.expand_path(v)?),
        };

        let user_known_hosts_files =
            match (&over.user_known_hosts_file, raw.all("userknownhostsfile")) {
                (Some(files), _) => files.clone(),
                (None, Some(files)) => self.expand_paths(files)?,
                (None, None) => vec![
                    self.home.join(".ssh/known_hosts"),
                    self.home.join(".ssh/known_hosts2"),
                ],
            };
        let global_known_hosts_files = match raw.all("globalknownhostsfile") {
            Some(files) => self.expand_paths(files)?,
            None => vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
        };
        let strict_host_key_checking = match (
            over.strict_host_key_checking,
            raw.first("stricthostkeychecking"),
        ) {
            (Some(v), _) => StrictHostKeyChecking::from(v),
            (None, Some(v)) => {
                StrictHostKeyChecking::parse(v).ok_or_else(|| SshConfigError::Value {
                    host: host.clone(),
                    option: "StrictHostKeyChecking",
                    value: v.to_string(),
                    message: "expected yes, ask, accept-new, no or off".into(),
                })?
            }
            (None, None) => StrictHostKeyChecking::Yes,
        };
        let hash_known_hosts = raw
            .bool(&host, "hashknownhosts", "HashKnownHosts")?
            .unwrap_or(false);

        let keepalive_max = match over.keepalive_max {
            Some(v) => v,
            None => match raw.first("serveralivecountmax") {
                Some(v) => v.parse::<u32>().ok().filter(|n| *n > 0).ok_or_else(|| {
                    SshConfigError::Value {
                        host: host.clone(),
                        option: "ServerAliveCountMax",
                        value: v.to_string(),
                        message: "expected a whole number of at least 1".into(),
                    }
                })?,
                None => config.defaults.effective_keepalive_max(),
            },
        };
        // ServerAliveInterval 0 means "off" to OpenSSH; a daemon that must notice dead links keeps
        // its default instead, which is never weaker.
        let keepalive_interval = over
            .keepalive_interval
            .or(params.server_alive_interval.filter(|d| !d.is_zero()))
            .unwrap_or_else(|| config.defaults.effective_keepalive_interval());
        let connect_timeout = over
            .connect_timeout
            .or(params.connect_timeout.filter(|d| !d.is_zero()))
            .unwrap_or_else(|| config.defaults.effective_connect_timeout());
        let idle_timeout = over
            .idle_timeout
            .unwrap_or_else(|| config.defaults.effective_idle_timeout());

        Ok(HostConfig {
            spec: spec.clone(),
            host_name,
            port,
            user,
            identity_files,
            identity_files_explicit,
            identities_only,
            identity_agent,
            user_known_hosts_files,
            global_known_hosts_files,
            strict_host_key_checking,
            hash_known_hosts,
            connect_timeout,
            keepalive_interval,
            keepalive_max,
            idle_timeout,
        })
    }

    fn expand_path(&self, raw: &str) -> Result<PathBuf, SshConfigError> {
        if raw == "~" || raw.starts_with("~/") {
            return Ok(self
                .home
                .join(raw.trim_start_matches('~').trim_start_matches('/')));
        }
        Ok(expand_tilde(raw)?)
    }

    fn expand_paths(&self, raw: &[String]) -> Result<Vec<PathBuf>, SshConfigError> {
        // UserKnownHostsFile takes several space-separated files; ssh2-config hands back the
        // arguments as it split them.
        raw.iter()
            .flat_map(|arg| arg.split_whitespace())
            .filter(|p| !p.eq_ignore_ascii_case("none"))
            .map(|p| self.expand_path(p))
            .collect()
    }
}

#[cfg(test)]
mod tests;
