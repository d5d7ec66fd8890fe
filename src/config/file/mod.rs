//! Deserialising the config file and validating it into a [`Config`]. Values are kept as
//! `Spanned` so that errors found after deserialisation still point at the offending value.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Display;
use std::net::IpAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;
use tracing::warn;

mod forward;

use self::forward::RawForward;
use super::addr;
use super::error::Position;
use super::paths::{expand_tilde_with, resolve};
use super::{
    Config, ConfigError, DEFAULT_SSH_CONFIG, Defaults, Forward, HostOverride, Limits,
    StrictHostKeyChecking, WindowSize, check_timer, find_clash, parse_buffer_size, parse_duration,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    ssh_config: Option<Spanned<String>>,
    control_socket: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<String>>,
    keepalive_max: Option<Spanned<i64>>,
    window_size: Option<Spanned<String>>,
    max_connections: Option<Spanned<i64>>,
    receive_budget: Option<Spanned<String>>,
    /// Removed (each channel now has its own window); accepted with a warning.
    connection_buffer: Option<Spanned<String>>,
    stall_timeout: Option<Spanned<String>>,
    backoff_min: Option<Spanned<String>>,
    backoff_max: Option<Spanned<String>>,
    exit_when_idle: Option<Spanned<String>>,
    #[serde(default)]
    host: BTreeMap<String, RawHost>,
    #[serde(default)]
    forward: Vec<RawForward>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    hostname: Option<Spanned<String>>,
    port: Option<Spanned<i64>>,
    user: Option<Spanned<String>>,
    identity_file: Option<Vec<Spanned<String>>>,
    identities_only: Option<bool>,
    user_known_hosts_file: Option<Vec<Spanned<String>>>,
    strict_host_key_checking: Option<Spanned<String>>,
    idle_timeout: Option<Spanned<String>>,
    connect_timeout: Option<Spanned<String>>,
    keepalive_interval: Option<Spanned<String>>,
    keepalive_max: Option<Spanned<i64>>,
    window_size: Option<Spanned<String>>,
}

/// What errors need to point into the file, and what paths are resolved against.
struct Cx<'a> {
    file: &'a Path,
    text: &'a str,
    base: &'a Path,
    home: Option<&'a OsStr>,
}

pub(super) fn parse(
    text: &str,
    origin: &Path,
    home: Option<&OsStr>,
) -> Result<Config, ConfigError> {
    let cx = Cx {
        file: origin,
        text,
        base: origin.parent().unwrap_or(Path::new("")),
        home,
    };
    let raw: RawConfig =
        toml::from_str(text).map_err(|e| ConfigError::from_toml(&e, origin, text))?;

    let ssh_config = match &raw.ssh_config {
        Some(value) => cx.path("ssh_config", value)?,
        None => expand_tilde_with(DEFAULT_SSH_CONFIG, home).map_err(|_| {
            ConfigError::in_file(
                origin,
                format!(
                    "`ssh_config` defaults to {DEFAULT_SSH_CONFIG} but HOME is not set; \
                     set `ssh_config` to a path"
                ),
            )
        })?,
    };
    let control_socket = raw
        .control_socket
        .as_ref()
        .map(|v| cx.path("control_socket", v))
        .transpose()?;
    let defaults = Defaults {
        idle_timeout: cx.duration("idle_timeout", &raw.idle_timeout)?,
        connect_timeout: cx.duration("connect_timeout", &raw.connect_timeout)?,
        keepalive_interval: cx.duration("keepalive_interval", &raw.keepalive_interval)?,
        keepalive_max: cx.count("keepalive_max", &raw.keepalive_max)?,
        window_size: cx.window_size("window_size", &raw.window_size)?,
    };
    let limits = cx.limits(&raw)?;
    let exit_when_idle = cx.duration("exit_when_idle", &raw.exit_when_idle)?;
    let mut hosts = BTreeMap::new();
    for (name, host) in &raw.host {
        hosts.insert(name.clone(), cx.host(name, host)?);
    }

    if raw.forward.is_empty() {
        return Err(ConfigError::in_file(
            origin,
            "no forwards configured: add a [[forward]] table with `listen`, `host` and \
             `target`, e.g. listen = \"4445\", host = \"srv11\", target = \"localhost:445\" \
             (or `socks = true` instead of `target` for a SOCKS proxy)"
                .into(),
        ));
    }
    let placed = raw
        .forward
        .iter()
        .map(|f| cx.forward(f))
        .collect::<Result<Vec<_>, _>>()?;
    let forwards: Vec<Forward> = placed.iter().map(|p| p.forward.clone()).collect();
    if let Some((first, second, clash)) = find_clash(&forwards)
        && let (Some(first), Some(second)) = (placed.get(first), placed.get(second))
    {
        return Err(cx.clash(first, second, clash));
    }

    Ok(Config {
        ssh_config,
        control_socket,
        defaults,
        limits,
        exit_when_idle,
        hosts,
        forwards,
        source: Some(origin.to_path_buf()),
    })
}

impl Cx<'_> {
    /// An error about `value`, written as "`key = value`: problem".
    fn bad(&self, key: &str, value: &Spanned<String>, problem: impl Display) -> ConfigError {
        let message = format!("`{key} = {:?}`: {problem}", value.get_ref());
        ConfigError::at_span(self.file, self.text, value.span(), message)
    }

    fn line(&self, span: &Range<usize>) -> usize {
        Position::of(self.text, span.start).line
    }

    fn path(&self, key: &str, value: &Spanned<String>) -> Result<PathBuf, ConfigError> {
        resolve(value.get_ref(), self.base, self.home).map_err(|p| self.bad(key, value, p))
    }

    fn paths(
        &self,
        key: &str,
        values: &Option<Vec<Spanned<String>>>,
    ) -> Result<Option<Vec<PathBuf>>, ConfigError> {
        values
            .as_ref()
            .map(|vs| vs.iter().map(|v| self.path(key, v)).collect())
            .transpose()
    }

    fn duration(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
    ) -> Result<Option<Duration>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        parse_duration(value.get_ref())
            .map_err(|e| format!("not a duration like \"30s\", \"5m\" or \"1h30m\" ({e})"))
            .and_then(check_timer)
            .map(Some)
            .map_err(|p| self.bad(key, value, p))
    }

    /// An integer in `range`, reported with its key and value otherwise.
    fn int(
        &self,
        key: &str,
        value: &Spanned<i64>,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<i64, ConfigError> {
        let n = *value.get_ref();
        if range.contains(&n) {
            return Ok(n);
        }
        let message = format!(
            "`{key} = {n}`: must be between {} and {}",
            range.start(),
            range.end()
        );
        Err(ConfigError::at_span(
            self.file,
            self.text,
            value.span(),
            message,
        ))
    }

    fn count(&self, key: &str, value: &Option<Spanned<i64>>) -> Result<Option<u32>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        let n = self.int(key, value, 1..=i64::from(u32::MAX))?;
        Ok(u32::try_from(n).ok())
    }

    fn limits(&self, raw: &RawConfig) -> Result<Limits, ConfigError> {
        let default = Limits::default();
        let max_connections = match &raw.max_connections {
            Some(v) => usize::try_from(self.int("max_connections", v, 1..=1_000_000)?)
                .unwrap_or(default.max_connections),
            None => default.max_connections,
        };
        let receive_budget = match &raw.receive_budget {
            Some(v) => {
                parse_buffer_size(v.get_ref()).map_err(|p| self.bad("receive_budget", v, p))?
            }
            None => default.receive_budget,
        };
        for (key, value) in [
            ("connection_buffer", &raw.connection_buffer),
            ("stall_timeout", &raw.stall_timeout),
        ] {
            if let Some(v) = value {
                let gone = "no longer used and ignored: each connection now has its own flow \
                            control, so a slow client is never reset and holds back nobody \
                            else (receive_budget bounds the memory); delete this line";
                warn!("{}", self.bad(key, v, gone));
            }
        }
        let backoff_min = self
            .duration("backoff_min", &raw.backoff_min)?
            .unwrap_or(default.backoff_min);
        let backoff_max = self
            .duration("backoff_max", &raw.backoff_max)?
            .unwrap_or(default.backoff_max.max(backoff_min));
        if backoff_max < backoff_min
            && let Some(v) = &raw.backoff_max
        {
            return Err(self.bad(
                "backoff_max",
                v,
                format!(
                    "must not be below backoff_min ({})",
                    humantime::format_duration(backoff_min)
                ),
            ));
        }
        Ok(Limits {
            max_connections,
            receive_budget,
            backoff_min,
            backoff_max,
        })
    }

    fn host(&self, name: &str, raw: &RawHost) -> Result<HostOverride, ConfigError> {
        let key = |field: &str| format!("host.{name}.{field}");
        let hostname = raw.hostname.as_ref().map(|v| {
            let ok =
                v.get_ref().parse::<IpAddr>().is_ok() || addr::check_host_name(v.get_ref()).is_ok();
            if ok {
                Ok(v.get_ref().clone())
            } else {
                Err(self.bad(&key("hostname"), v, "not a host name or IP address"))
            }
        });
        let user = raw
            .user
            .as_ref()
            .map(|v| addr::check_user(v.get_ref()).map_err(|p| self.bad(&key("user"), v, p)));
        let port = raw
            .port
            .as_ref()
            .map(|v| self.int(&key("port"), v, 1..=65535));
        let strict = raw.strict_host_key_checking.as_ref().map(|v| {
            v.get_ref()
                .parse::<StrictHostKeyChecking>()
                .map_err(|p| self.bad(&key("strict_host_key_checking"), v, p))
        });
        Ok(HostOverride {
            hostname: hostname.transpose()?,
            port: port.transpose()?.and_then(|p| u16::try_from(p).ok()),
            user: user.transpose()?,
            identity_file: self.paths(&key("identity_file"), &raw.identity_file)?,
            identities_only: raw.identities_only,
            user_known_hosts_file: self
                .paths(&key("user_known_hosts_file"), &raw.user_known_hosts_file)?,
            strict_host_key_checking: strict.transpose()?,
            idle_timeout: self.duration(&key("idle_timeout"), &raw.idle_timeout)?,
            connect_timeout: self.duration(&key("connect_timeout"), &raw.connect_timeout)?,
            keepalive_interval: self
                .duration(&key("keepalive_interval"), &raw.keepalive_interval)?,
            keepalive_max: self.count(&key("keepalive_max"), &raw.keepalive_max)?,
            window_size: self.window_size(&key("window_size"), &raw.window_size)?,
        })
    }

    fn window_size(
        &self,
        key: &str,
        value: &Option<Spanned<String>>,
    ) -> Result<Option<WindowSize>, ConfigError> {
        let Some(value) = value else { return Ok(None) };
        value
            .get_ref()
            .parse()
            .map(Some)
            .map_err(|problem| self.bad(key, value, problem))
    }
}
