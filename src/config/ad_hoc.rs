//! The config of an ad-hoc `lazytunnel run -L SPEC... -D SPEC... DESTINATION`: built-in
//! defaults and one forward per argument.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt;

use super::dynamic::parse_dynamic_forward_with;
use super::local_forward::parse_local_forward_with;
use super::{
    Clash, Config, ConfigError, DEFAULT_SSH_CONFIG, Defaults, Forward, ForwardTarget, HostSpec,
    Limits, Listen, derived_name, find_clash, paths,
};

/// One forward argument of an ad-hoc run.
#[derive(Debug, Clone, Copy)]
pub(super) enum AdHocSpec<'a> {
    /// `-L [BIND:]PORT:HOST:HOSTPORT`, or a form with a socket path on either end
    Local(&'a str),
    /// `-D [BIND:]PORT` or `-D /PATH`
    Dynamic(&'a str),
}

impl AdHocSpec<'_> {
    fn parse(self, home: Option<&OsStr>) -> Result<(Listen, ForwardTarget), ConfigError> {
        match self {
            AdHocSpec::Local(spec) => parse_local_forward_with(spec, home)
                .map(|(listen, t)| (listen, ForwardTarget::Fixed(t))),
            AdHocSpec::Dynamic(spec) => {
                parse_dynamic_forward_with(spec, home).map(|listen| (listen, ForwardTarget::Socks))
            }
        }
    }

    fn error(self, message: String) -> ConfigError {
        match self {
            AdHocSpec::Local(spec) => ConfigError::LocalForward {
                spec: spec.to_owned(),
                message,
            },
            AdHocSpec::Dynamic(spec) => ConfigError::DynamicForward {
                spec: spec.to_owned(),
                message,
            },
        }
    }
}

/// `-L "8080:db:80"`, as an error message quotes an argument.
impl fmt::Display for AdHocSpec<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdHocSpec::Local(spec) => write!(f, "-L {spec:?}"),
            AdHocSpec::Dynamic(spec) => write!(f, "-D {spec:?}"),
        }
    }
}

pub(super) fn ad_hoc_with<'a>(
    specs: impl IntoIterator<Item = AdHocSpec<'a>>,
    destination: &str,
    home: Option<&OsStr>,
) -> Result<Config, ConfigError> {
    let specs: Vec<AdHocSpec> = specs.into_iter().collect();
    let host: HostSpec = destination
        .parse()
        .map_err(|message| ConfigError::Destination {
            spec: destination.to_owned(),
            message,
        })?;
    if specs.is_empty() {
        return Err(ConfigError::NoLocalForwards);
    }
    let mut forwards = Vec::with_capacity(specs.len());
    for spec in &specs {
        let (listen, target) = spec.parse(home)?;
        if !listen.is_local() {
            return Err(spec.error(format!(
                "{listen} is not a loopback address: listening there would expose the \
                 tunnel to the network; to allow that, use a config file and set \
                 `allow_non_loopback = true` on the forward"
            )));
        }
        forwards.push(Forward {
            name: derived_name(&listen),
            listen,
            host: host.clone(),
            target,
            allow_non_loopback: false,
        });
    }
    if let Some((first, second, clash)) = find_clash(&forwards) {
        let what = match clash {
            Clash::Listen => "listen address",
            Clash::Name => "name",
        };
        if let (Some(first), Some(second)) = (specs.get(first), specs.get(second)) {
            return Err(second.error(format!("its {what} clashes with {first}")));
        }
    }
    Ok(Config {
        ssh_config: paths::expand_tilde_with(DEFAULT_SSH_CONFIG, home)?,
        control_socket: None,
        defaults: Defaults::default(),
        limits: Limits::default(),
        exit_when_idle: None,
        hosts: BTreeMap::new(),
        forwards,
        source: None,
    })
}
