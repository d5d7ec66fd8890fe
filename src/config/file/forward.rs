//! The `[[forward]]` tables: each one checked on its own (listen, target, name), and the
//! message for two that clash.

use serde::Deserialize;
use toml::Spanned;

use super::Cx;
use crate::config::addr::parse_listen;
use crate::config::endpoint::{DEFAULT_LISTEN_MODE, local_path, parse_mode};
use crate::config::{
    Clash, ConfigError, Forward, ForwardTarget, HostSpec, Listen, check_name, derived_name,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForward {
    name: Option<Spanned<String>>,
    listen: Spanned<String>,
    /// Only for a Unix socket `listen`: its permission bits, octal.
    listen_mode: Option<Spanned<String>>,
    host: Spanned<String>,
    /// Exactly one of `target` and `socks = true`.
    target: Option<Spanned<String>>,
    socks: Option<Spanned<bool>>,
    #[serde(default)]
    allow_non_loopback: bool,
}

/// A validated forward and where its name came from, for clash messages.
pub(super) struct Placed {
    pub(super) forward: Forward,
    /// `name`, or `listen` when the name is derived.
    name_value: Spanned<String>,
    name_derived: bool,
    listen_value: Spanned<String>,
}

impl Cx<'_> {
    /// `listen`: an address, or (containing `/`) a local socket path with its `listen_mode`.
    fn listen(&self, raw: &RawForward) -> Result<Listen, ConfigError> {
        let value = raw.listen.get_ref();
        if !value.contains('/') {
            if let Some(mode) = &raw.listen_mode {
                return Err(self.bad(
                    "listen_mode",
                    mode,
                    format!(
                        "applies only to a Unix socket, and this forward listens on a port \
                         ({value:?}); remove `listen_mode`, or make `listen` an absolute path"
                    ),
                ));
            }
            return parse_listen(value)
                .map(Listen::Tcp)
                .map_err(|p| self.bad("listen", &raw.listen, p));
        }
        let path = local_path(value, self.home).map_err(|p| self.bad("listen", &raw.listen, p))?;
        let mode = match &raw.listen_mode {
            Some(mode) => {
                parse_mode(mode.get_ref()).map_err(|p| self.bad("listen_mode", mode, p))?
            }
            None => DEFAULT_LISTEN_MODE,
        };
        Ok(Listen::Unix { path, mode })
    }

    pub(super) fn forward(&self, raw: &RawForward) -> Result<Placed, ConfigError> {
        let listen = self.listen(raw)?;
        if !listen.is_local() && !raw.allow_non_loopback {
            return Err(self.bad(
                "listen",
                &raw.listen,
                format!(
                    "{listen} is not a loopback address: listening there would expose the \
                     tunnel to anyone who can reach this machine over the network; set \
                     `allow_non_loopback = true` in this [[forward]] if that is intended"
                ),
            ));
        }
        let host: HostSpec = raw.host.get_ref().parse().map_err(|p| {
            self.bad(
                "host",
                &raw.host,
                format!("expected [user@]host[:port]: {p}"),
            )
        })?;
        let target = self.target(raw)?;
        let (name, name_value, name_derived) = match &raw.name {
            Some(name) => {
                check_name(name.get_ref()).map_err(|p| self.bad("name", name, p))?;
                (name.get_ref().clone(), name.clone(), false)
            }
            None => (derived_name(&listen), raw.listen.clone(), true),
        };
        Ok(Placed {
            forward: Forward {
                name,
                listen,
                host,
                target,
                allow_non_loopback: raw.allow_non_loopback,
            },
            name_value,
            name_derived,
            listen_value: raw.listen.clone(),
        })
    }

    /// `target = "HOST:PORT"` (or a path on the server) or `socks = true`, never both, never
    /// neither.
    fn target(&self, raw: &RawForward) -> Result<ForwardTarget, ConfigError> {
        let socks = raw.socks.as_ref().filter(|s| *s.get_ref());
        match (&raw.target, socks) {
            (Some(target), None) => target
                .get_ref()
                .parse()
                .map(ForwardTarget::Fixed)
                .map_err(|p| self.bad("target", target, p)),
            (None, Some(_)) => Ok(ForwardTarget::Socks),
            (Some(target), Some(_)) => Err(self.bad(
                "target",
                target,
                "a forward has either `target` (one fixed destination) or `socks = true` \
                 (each client names its destination); remove one of them",
            )),
            (None, None) => Err(self.bad(
                "listen",
                &raw.listen,
                "this [[forward]] needs `target = \"HOST:PORT\"` (or a socket path on the \
                 server, `target = \"/run/app.sock\"`), or `socks = true` for a SOCKS proxy \
                 (like ssh -D)",
            )),
        }
    }

    /// Names both forwards; points at the later one.
    pub(super) fn clash(&self, first: &Placed, second: &Placed, clash: Clash) -> ConfigError {
        let earlier = format!(
            "forward {:?}{} at line {}",
            first.forward.name,
            if first.name_derived {
                " (derived name)"
            } else {
                ""
            },
            self.line(&first.name_value.span())
        );
        match clash {
            Clash::Listen => self.bad(
                "listen",
                &second.listen_value,
                format!(
                    "forward {:?} listens on {}, which clashes with {earlier} listening on {}; \
                     give each forward its own address",
                    second.forward.name, second.forward.listen, first.forward.listen
                ),
            ),
            Clash::Name if second.name_derived => self.bad(
                "listen",
                &second.name_value,
                format!(
                    "duplicate forward name: this forward has no `name`, and the one derived \
                     from `listen`, {:?}, is already used by {earlier}; set a unique `name`",
                    second.forward.name
                ),
            ),
            Clash::Name => self.bad(
                "name",
                &second.name_value,
                format!("duplicate forward name, already used by {earlier}"),
            ),
        }
    }
}
