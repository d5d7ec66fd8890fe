//! Where a forward's connections go: one fixed `target` (`ssh -L`), or wherever each client
//! asks by SOCKS (`socks = true`, `ssh -D`); and OpenSSH's `-D [BIND:]PORT` syntax.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use super::ConfigError;
use super::Target;
use super::addr::{parse_bind, parse_port, split_fields};

/// What a forward connects its clients to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ForwardTarget {
    /// Always `host:port`, resolved on the server.
    Fixed(Target),
    /// The destination each client names in a SOCKS4/4a/5 request; a name is passed to the
    /// server and resolved there, as `ssh -D` does.
    Socks,
}

impl ForwardTarget {
    pub fn is_socks(&self) -> bool {
        matches!(self, ForwardTarget::Socks)
    }
}

/// `HOST:PORT` as a fixed target; `socks = true` is a key of its own, not a target.
impl FromStr for ForwardTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(ForwardTarget::Fixed)
    }
}

/// `host:port`, or `socks`: what status and `check` show.
impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTarget::Fixed(target) => target.fmt(f),
            ForwardTarget::Socks => f.write_str("socks"),
        }
    }
}

/// Parses an OpenSSH `-D` spec, `[BIND:]PORT`, with the BIND forms of `-L`
/// ([`super::parse_local_forward`]). Whether a non-loopback BIND is allowed is the caller's
/// decision.
pub fn parse_dynamic_forward(spec: &str) -> Result<SocketAddr, ConfigError> {
    dynamic_forward(spec).map_err(|message| ConfigError::DynamicForward {
        spec: spec.to_owned(),
        message,
    })
}

fn dynamic_forward(spec: &str) -> Result<SocketAddr, String> {
    let (bind, port) = match split_fields(spec)?.as_slice() {
        [port] => (None, *port),
        [bind, port] => (Some(*bind), *port),
        _ => return Err("expected [BIND:]PORT".into()),
    };
    Ok(SocketAddr::new(parse_bind(bind)?, parse_port(port)?))
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
        ] {
            let err = parse_dynamic_forward(bad).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid -D {bad:?}: ")), "{err}");
        }
    }

    #[test]
    fn socks_targets_show_as_socks() {
        let fixed = ForwardTarget::Fixed("db:5432".parse().unwrap());
        assert_eq!(fixed.to_string(), "db:5432");
        assert_eq!(ForwardTarget::Socks.to_string(), "socks");
        assert!(ForwardTarget::Socks.is_socks() && !fixed.is_socks());
    }
}
