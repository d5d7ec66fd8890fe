//! The address syntaxes of forwards: `listen`, `host` (`[user@]host[:port]`), `target`
//! (`host:port`), and the fields of OpenSSH's `-L` and `-D` (see `local_forward`).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Longest host name or user we accept (DNS names are at most 253 characters).
const MAX_NAME_LEN: usize = 255;

/// The SSH server a forward goes through: an ssh_config alias or `[user@]host[:port]`.
///
/// Forwards with equal specs share one SSH session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostSpec {
    /// The text as written: `"srv11"`, `"vit@srv11:2222"`, `"[::1]:22"`.
    pub alias: String,
    pub user: Option<String>,
    /// Alias, host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: Option<u16>,
}

impl FromStr for HostSpec {
    type Err = String;

    /// Parses `[user@]host[:port]` or `[user@][v6]:port`; the user is everything before the
    /// last `@`, as in OpenSSH.
    fn from_str(s: &str) -> Result<Self, String> {
        let (user, rest) = match s.rsplit_once('@') {
            Some((user, rest)) => (Some(check_user(user)?), rest),
            None => (None, s),
        };
        let (host, port) = split_host_port(rest)?;
        let port = port.map(parse_port).transpose()?;
        Ok(HostSpec {
            alias: s.to_owned(),
            user,
            host,
            port,
        })
    }
}

impl fmt::Display for HostSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.alias)
    }
}

/// Where the SSH server connects a forwarded connection to, resolved on the server (`ssh -L`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Host name or IP address (IPv6 without brackets).
    pub host: String,
    pub port: u16,
}

impl FromStr for Target {
    type Err = String;

    /// Parses `host:port` or `[v6]:port`.
    fn from_str(s: &str) -> Result<Self, String> {
        match split_host_port(s)? {
            (host, Some(port)) => Ok(Target {
                host,
                port: parse_port(port)?,
            }),
            (_, None) => Err("expected HOST:PORT or [IPv6]:PORT".into()),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// True for addresses reachable only from this machine: 127.0.0.0/8 and ::1 (also
/// IPv4-mapped). The unspecified addresses 0.0.0.0 and :: are not loopback.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

/// Parses a `listen` value: `IP:PORT`, `[IPv6]:PORT`, `localhost:PORT` or a bare `PORT`
/// (both meaning 127.0.0.1). Port 0 is refused: clients need to know where to connect.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let addr = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        SocketAddr::new(LOCALHOST, parse_port(s)?)
    } else if let Some(port) = s.strip_prefix("localhost:") {
        SocketAddr::new(LOCALHOST, parse_port(port)?)
    } else {
        s.parse().map_err(|_| {
            "expected IP:PORT, [IPv6]:PORT, localhost:PORT or PORT, with a port in 1-65535"
                .to_owned()
        })?
    };
    if addr.port() == 0 {
        return Err("port 0 is not allowed: a forward needs a fixed port".into());
    }
    Ok(addr)
}

/// The BIND of `-L`/`-D`, as OpenSSH reads it: none or `localhost` is 127.0.0.1, `*` or empty
/// is 0.0.0.0, an IPv6 address goes in brackets.
pub(super) fn parse_bind(bind: Option<&str>) -> Result<IpAddr, String> {
    Ok(match bind {
        None | Some("localhost") => LOCALHOST,
        Some("" | "*") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(bind) => match bind.strip_prefix('[').and_then(|b| b.strip_suffix(']')) {
            Some(v6) => IpAddr::V6(parse_v6(v6)?),
            None => bind.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
                format!("bind address {bind:?} is not an IP address, `localhost` or `*`")
            })?,
        },
    })
}

/// Splits `host[:port]` or `[v6][:port]`, validating the host part.
fn split_host_port(s: &str) -> Result<(String, Option<&str>), String> {
    if let Some(inner) = s.strip_prefix('[') {
        let (ip, after) = inner
            .split_once(']')
            .ok_or("missing `]` after the IPv6 address")?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected {after:?} after `]`"))?,
            ),
        };
        return Ok((parse_v6(ip)?.to_string(), port));
    }
    match s.split_once(':') {
        Some((_, port)) if port.contains(':') => {
            Err("IPv6 addresses must be in brackets, as in [::1]:22".into())
        }
        Some((host, port)) => Ok((check_host_name(host)?, Some(port))),
        None => Ok((check_host_name(s)?, None)),
    }
}

fn parse_v6(s: &str) -> Result<Ipv6Addr, String> {
    s.parse()
        .map_err(|_| format!("[{s}] is not an IPv6 address"))
}

/// Parses a decimal port in 1..=65535 (no sign, no spaces).
pub(super) fn parse_port(s: &str) -> Result<u16, String> {
    if s.is_empty() {
        return Err("missing port".into());
    }
    match s.parse::<u16>() {
        Ok(0) => Err("port 0 is not allowed: ports are 1-65535".into()),
        Ok(port) if s.bytes().all(|b| b.is_ascii_digit()) => Ok(port),
        _ => Err(format!("port {s:?} is not a number in 1-65535")),
    }
}

/// Host names and aliases: letters, digits, `.`, `-`, `_`; not starting with `-` so that
/// they can never be taken for an option.
pub(crate) fn check_host_name(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("missing host".into());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("host is longer than {MAX_NAME_LEN} characters"));
    }
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if s.starts_with('-') || !s.chars().all(valid) {
        return Err(format!(
            "host {s:?} may only contain letters, digits, `.`, `-` and `_`, and not start with `-`"
        ));
    }
    Ok(s.to_owned())
}

/// User names: anything printable without spaces, not starting with `-`.
pub(crate) fn check_user(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("empty user before `@`".into());
    }
    if s.len() > MAX_NAME_LEN {
        return Err(format!("user is longer than {MAX_NAME_LEN} characters"));
    }
    if s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "user {s:?} must not contain spaces or start with `-`"
        ));
    }
    Ok(s.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn host_specs_keep_the_text_as_written() {
        let spec: HostSpec = "vit@srv11:2222".parse().unwrap();
        assert_eq!(spec.user.as_deref(), Some("vit"));
        assert_eq!((spec.host.as_str(), spec.port), ("srv11", Some(2222)));
        assert_eq!(spec.to_string(), "vit@srv11:2222");

        let spec: HostSpec = "srv11".parse().unwrap();
        assert_eq!(
            (spec.user, spec.host.as_str(), spec.port),
            (None, "srv11", None)
        );

        let spec: HostSpec = "a@b@[2001:db8::1]:22".parse().unwrap();
        assert_eq!(spec.user.as_deref(), Some("a@b"));
        assert_eq!((spec.host.as_str(), spec.port), ("2001:db8::1", Some(22)));
        assert_eq!(spec.to_string(), "a@b@[2001:db8::1]:22");

        let spec: HostSpec = "[::1]".parse().unwrap();
        assert_eq!((spec.host.as_str(), spec.port), ("::1", None));
    }

    #[test]
    fn bad_host_specs_are_refused() {
        for bad in [
            "",
            "@srv",
            "vit@",
            "srv:",
            "srv:0",
            "srv:65536",
            "srv:x",
            "::1",
            "[::1",
            "[nope]:22",
            "[::1]x",
            "-oProxyCommand=x",
            "srv 11",
            "-u@srv",
            "srv/x",
        ] {
            assert!(bad.parse::<HostSpec>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn targets_parse_and_display_with_brackets_for_ipv6() {
        let t: Target = "localhost:445".parse().unwrap();
        assert_eq!((t.host.as_str(), t.port), ("localhost", 445));
        let t: Target = "[::1]:5432".parse().unwrap();
        assert_eq!(t.host, "::1");
        assert_eq!(t.to_string(), "[::1]:5432");
        for bad in [
            "localhost",
            "localhost:0",
            "h:65536",
            ":80",
            "::1:80",
            "h:+80",
            "h: 80",
        ] {
            assert!(bad.parse::<Target>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn listen_forms() {
        assert_eq!(parse_listen("4445"), Ok(sa("127.0.0.1:4445")));
        assert_eq!(parse_listen("localhost:4445"), Ok(sa("127.0.0.1:4445")));
        assert_eq!(parse_listen("127.0.0.2:80"), Ok(sa("127.0.0.2:80")));
        assert_eq!(parse_listen("[::1]:80"), Ok(sa("[::1]:80")));
        for bad in [
            "0",
            "127.0.0.1:0",
            "65536",
            "host:80",
            "::1:80",
            "",
            "127.0.0.1",
        ] {
            assert!(parse_listen(bad).is_err(), "{bad:?} was accepted");
        }
        assert!(parse_listen("0").unwrap_err().contains("port 0"));
    }

    #[test]
    fn loopback_is_127_slash_8_and_v6_localhost_only() {
        for yes in [
            "127.0.0.1:1",
            "127.9.9.9:1",
            "[::1]:1",
            "[::ffff:127.0.0.1]:1",
        ] {
            assert!(is_loopback(&sa(yes)), "{yes}");
        }
        for no in ["0.0.0.0:1", "[::]:1", "192.168.1.1:1", "[2001:db8::1]:1"] {
            assert!(!is_loopback(&sa(no)), "{no}");
        }
    }
}
