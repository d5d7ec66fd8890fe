//! Where a forward's connections go: one fixed `target` (`ssh -L`), or wherever each client
//! asks by SOCKS (`socks = true`, `ssh -D`); and OpenSSH's `-D [BIND:]PORT` syntax (or
//! `-D /PATH` for a SOCKS proxy on a local Unix socket).

use std::ffi::OsStr;
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::ConfigError;
use super::addr::{parse_bind, parse_port};
use super::endpoint::{DEFAULT_LISTEN_MODE, Endpoint, Listen, local_path};
use super::local_forward::fields;

/// What a forward connects its clients to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardTarget {
    /// Always `host:port` (resolved on the server) or a socket path on the server.
    Fixed(Endpoint),
    /// The destination each client names in a SOCKS4/4a/5 request; a name is passed to the
    /// server and resolved there, as `ssh -D` does.
    Socks,
}

impl ForwardTarget {
    pub fn is_socks(&self) -> bool {
        matches!(self, ForwardTarget::Socks)
    }
}

/// `HOST:PORT` or `/PATH` as a fixed target; `socks = true` is a key of its own, not a target.
impl FromStr for ForwardTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(ForwardTarget::Fixed)
    }
}

/// `host:port`, a path, or `socks`: what status and `check` show.
impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTarget::Fixed(target) => target.fmt(f),
            ForwardTarget::Socks => f.write_str("socks"),
        }
    }
}

/// Parses an OpenSSH `-D` spec, `[BIND:]PORT` with the BIND forms of `-L`
/// ([`super::parse_local_forward`]), or `/PATH` (a local socket, `~` expanded). Whether a
/// non-loopback BIND is allowed is the caller's decision.
pub fn parse_dynamic_forward(spec: &str) -> Result<Listen, ConfigError> {
    parse_dynamic_forward_with(spec, std::env::var_os("HOME").as_deref())
}

pub(super) fn parse_dynamic_forward_with(
    spec: &str,
    home: Option<&OsStr>,
) -> Result<Listen, ConfigError> {
    dynamic_forward(spec, home).map_err(|message| ConfigError::DynamicForward {
        spec: spec.to_owned(),
        message,
    })
}

fn dynamic_forward(spec: &str, home: Option<&OsStr>) -> Result<Listen, String> {
    let (bind, port) = match fields(spec)?.as_slice() {
        [path] if path.is_path => {
            let path = local_path(&path.value, home)?;
            return Ok(Listen::Unix {
                path,
                mode: DEFAULT_LISTEN_MODE,
            });
        }
        [port] => (None, port.raw.clone()),
        [bind, port] => (Some(bind.raw.clone()), port.raw.clone()),
        _ => return Err("expected [BIND:]PORT or /PATH".into()),
    };
    let ip = parse_bind(bind.as_deref())?;
    Ok(Listen::Tcp(SocketAddr::new(ip, parse_port(&port)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_forward_forms_are_openssh_s() {
        let cases = [
            ("1080", "127.0.0.1:1080"),
            ("localhost:1080", "127.0.0.1:1080"),
            ("127.0.0.2:1080", "127.0.0.2:1080"),
            ("*:1080", "0.0.0.0:1080"),
            (":1080", "0.0.0.0:1080"),
            ("[::1]:1080", "[::1]:1080"),
            ("0.0.0.0:1080", "0.0.0.0:1080"),
        ];
        for (spec, listen) in cases {
            assert_eq!(
                parse_dynamic_forward(spec).unwrap(),
                listen.parse::<SocketAddr>().unwrap(),
                "{spec}"
            );
        }
        let home = Some(OsStr::new("/home/vit"));
        let unix = parse_dynamic_forward_with("~/socks.sock", home).unwrap();
        assert_eq!(unix.to_string(), "/home/vit/socks.sock");
    }

    #[test]
    fn bad_dynamic_forwards_name_the_argument() {
        for bad in [
            "",
            "0",
            "65536",
            "x",
            "host.example:1080",
            "::1:1080",
            "[::1:1080",
            "a:b:1080",
            "1080:db:80",
            "+1080",
            "socks.sock/",
            "1080:/tmp/socks.sock",
        ] {
            let err = parse_dynamic_forward(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid -D {bad:?}: ")), "{err}");
        }
    }

    #[test]
    fn socks_targets_show_as_socks() {
        let fixed: ForwardTarget = "db:5432".parse().unwrap();
        assert_eq!(fixed.to_string(), "db:5432");
        assert_eq!(ForwardTarget::Socks.to_string(), "socks");
        assert!(ForwardTarget::Socks.is_socks() && !fixed.is_socks());
    }
}
