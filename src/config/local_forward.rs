//! OpenSSH's `-L` syntax, read as its `parse_forward` reads it: up to four `:`-separated
//! fields (a field in `[...]` taken literally, `\` escaping the next character outside them); a
//! field containing `/` is a Unix socket path. So:
//!
//! - `[BIND:]PORT:HOST:HOSTPORT`: TCP to TCP;
//! - `/LOCAL.sock:HOST:HOSTPORT`: a local socket to TCP;
//! - `[BIND:]PORT:/REMOTE.sock`: TCP to a socket on the server;
//! - `/LOCAL.sock:/REMOTE.sock`: socket to socket.

use std::ffi::OsStr;
use std::net::SocketAddr;

use super::addr::{check_host_name, parse_bind, parse_port};
use super::endpoint::{DEFAULT_LISTEN_MODE, Endpoint, Listen, local_path, remote_path};
use super::{ConfigError, Target};

/// One field of a forward spec.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Field {
    /// As OpenSSH passes it on: brackets removed, escapes resolved.
    pub value: String,
    /// As our address parsers take it: an IPv6 address keeps its brackets.
    pub raw: String,
    /// Contains an unescaped `/`.
    pub is_path: bool,
}

/// Splits a spec into OpenSSH's fields. A trailing `:` ends the last field (OpenSSH ignores
/// it); more than four fields is an error.
pub(super) fn fields(spec: &str) -> Result<Vec<Field>, String> {
    let mut rest = spec.trim_start();
    let mut fields = Vec::new();
    while !rest.is_empty() {
        if fields.len() == 4 {
            return Err("more than four `:`-separated fields".into());
        }
        let (field, after) = match rest.strip_prefix('[') {
            Some(inner) => bracketed(inner)?,
            None => plain(rest)?,
        };
        fields.push(field);
        rest = after;
    }
    Ok(fields)
}

/// `[...]` up to its `]`, which must end the field.
fn bracketed(inner: &str) -> Result<(Field, &str), String> {
    let (value, after) = inner.split_once(']').ok_or("unbalanced `[`")?;
    let after = match after.strip_prefix(':') {
        Some(after) => after,
        None if after.is_empty() => after,
        None => return Err(format!("unexpected {after:?} after `]`")),
    };
    let field = Field {
        value: value.to_owned(),
        raw: format!("[{value}]"),
        is_path: value.contains('/'),
    };
    Ok((field, after))
}

/// Up to the next unescaped `:`.
fn plain(text: &str) -> Result<(Field, &str), String> {
    let mut value = String::new();
    let mut is_path = false;
    let mut chars = text.char_indices();
    let mut after = "";
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some((_, escaped)) => value.push(escaped),
                None => return Err("a `\\` at the end escapes nothing".into()),
            },
            ':' => {
                after = text.get(i + 1..).unwrap_or_default();
                break;
            }
            '/' => {
                is_path = true;
                value.push(c);
            }
            c => value.push(c),
        }
    }
    if value.contains(['[', ']']) {
        return Err("unbalanced `[` `]`".into());
    }
    let raw = value.clone();
    Ok((
        Field {
            value,
            raw,
            is_path,
        },
        after,
    ))
}

/// Parses an OpenSSH `-L` spec (see the module doc). BIND defaults to 127.0.0.1; `localhost`
/// means 127.0.0.1 and `*` or an empty BIND means 0.0.0.0; IPv6 addresses go in brackets; `~`
/// in a local socket path is expanded. Whether a non-loopback BIND is allowed is the caller's
/// decision (see [`Listen::is_local`]).
pub fn parse_local_forward(spec: &str) -> Result<(Listen, Endpoint), ConfigError> {
    parse_local_forward_with(spec, std::env::var_os("HOME").as_deref())
}

pub(super) fn parse_local_forward_with(
    spec: &str,
    home: Option<&OsStr>,
) -> Result<(Listen, Endpoint), ConfigError> {
    local_forward(spec, home).map_err(|message| ConfigError::LocalForward {
        spec: spec.to_owned(),
        message,
    })
}

fn local_forward(spec: &str, home: Option<&OsStr>) -> Result<(Listen, Endpoint), String> {
    let fields = fields(spec)?;
    let unix = |field: &Field| {
        local_path(&field.value, home).map(|path| Listen::Unix {
            path,
            mode: DEFAULT_LISTEN_MODE,
        })
    };
    let remote = |field: &Field| remote_path(&field.value).map(Endpoint::Unix);
    match fields.as_slice() {
        [listen, target] if listen.is_path && target.is_path => {
            Ok((unix(listen)?, remote(target)?))
        }
        [port, target] if target.is_path => Ok((tcp(None, port)?, remote(target)?)),
        [listen, host, port] if listen.is_path => Ok((unix(listen)?, tcp_target(host, port)?)),
        [bind, port, target] if target.is_path => Ok((tcp(Some(bind), port)?, remote(target)?)),
        [port, host, host_port] => Ok((tcp(None, port)?, tcp_target(host, host_port)?)),
        [bind, port, host, host_port] => Ok((tcp(Some(bind), port)?, tcp_target(host, host_port)?)),
        _ => Err(
            "expected [BIND:]PORT:HOST:HOSTPORT, [BIND:]PORT:/REMOTE/PATH, \
                  /LOCAL/PATH:HOST:HOSTPORT or /LOCAL/PATH:/REMOTE/PATH"
                .into(),
        ),
    }
}

fn tcp(bind: Option<&Field>, port: &Field) -> Result<Listen, String> {
    let ip = parse_bind(bind.map(|b| b.raw.as_str()))?;
    Ok(Listen::Tcp(SocketAddr::new(ip, parse_port(&port.raw)?)))
}

fn tcp_target(host: &Field, port: &Field) -> Result<Endpoint, String> {
    let host = match host.raw.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("[{v6}] is not an IPv6 address"))?
            .to_string(),
        None => check_host_name(&host.raw)?,
    };
    Ok(Endpoint::Tcp(Target {
        host,
        port: parse_port(&port.raw)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Option<&'static OsStr> {
        Some(OsStr::new("/home/vit"))
    }

    fn shown(spec: &str) -> (String, String) {
        let (listen, target) = parse_local_forward_with(spec, home()).unwrap();
        (listen.to_string(), target.to_string())
    }

    #[test]
    fn tcp_forms() {
        let cases = [
            ("8080:db:5432", "127.0.0.1:8080", "db:5432"),
            ("localhost:8080:db:5432", "127.0.0.1:8080", "db:5432"),
            ("127.0.0.2:8080:db:5432", "127.0.0.2:8080", "db:5432"),
            ("*:8080:db:5432", "0.0.0.0:8080", "db:5432"),
            (":8080:db:5432", "0.0.0.0:8080", "db:5432"),
            ("[::1]:8080:[::1]:5432", "[::1]:8080", "[::1]:5432"),
            ("4445:localhost:445", "127.0.0.1:4445", "localhost:445"),
        ];
        for (spec, listen, target) in cases {
            assert_eq!(shown(spec), (listen.into(), target.into()), "{spec}");
        }
    }

    #[test]
    fn path_forms_are_recognised_by_their_slash() {
        let cases = [
            ("/tmp/d.sock:db:5432", "/tmp/d.sock", "db:5432"),
            (
                "5432:/var/run/postgresql/.s.PGSQL.5432",
                "127.0.0.1:5432",
                "/var/run/postgresql/.s.PGSQL.5432",
            ),
            (
                "[::1]:2375:/run/docker.sock",
                "[::1]:2375",
                "/run/docker.sock",
            ),
            (
                "localhost:2375:/run/docker.sock",
                "127.0.0.1:2375",
                "/run/docker.sock",
            ),
            (
                "/tmp/docker.sock:/var/run/docker.sock",
                "/tmp/docker.sock",
                "/var/run/docker.sock",
            ),
            ("~/d.sock:/run/d.sock", "/home/vit/d.sock", "/run/d.sock"),
            // Literal brackets and escapes, as OpenSSH reads them.
            (
                "[/tmp/a:b.sock]:/run/c.sock",
                "/tmp/a:b.sock",
                "/run/c.sock",
            ),
            (
                r"/tmp/a\:b.sock:/run/c.sock",
                "/tmp/a:b.sock",
                "/run/c.sock",
            ),
            // OpenSSH ignores one trailing colon.
            ("/tmp/d.sock:/run/d.sock:", "/tmp/d.sock", "/run/d.sock"),
        ];
        for (spec, listen, target) in cases {
            assert_eq!(shown(spec), (listen.into(), target.into()), "{spec}");
        }
        let (listen, _) = parse_local_forward_with("/tmp/d.sock:/x/y", home()).unwrap();
        assert_eq!(
            listen,
            Listen::Unix {
                path: "/tmp/d.sock".into(),
                mode: 0o600
            }
        );
    }

    #[test]
    fn bad_forms_name_the_argument() {
        for bad in [
            "8080",
            "8080:db",
            "0:db:80",
            "8080:db:0",
            "8080:db:65536",
            "x:8080:db:80",
            "a:b:8080:db:80",
            "[::1:8080:db:80",
            "8080:[nope]:80",
            "::1:8080:db:80",
            "8080::80",
            "host.example:8080:db:80",
            // Paths in the wrong places, or not absolute.
            "/tmp/d.sock",
            "/tmp/d.sock:db",
            "8080:db:/run/x.sock",
            "/tmp/d.sock:db:/run/x.sock",
            "x:1:/run/d.sock:80",
            "tmp/d.sock:/run/d.sock",
            "/tmp/d.sock:run/d.sock",
            r"/tmp/d.sock:/run/d.sock\",
            "[/tmp/d.sock]x:/run/d.sock",
        ] {
            let err = parse_local_forward_with(bad, home())
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn an_escaped_slash_does_not_make_a_path() {
        let fields = fields(r"a\/b:c").unwrap();
        assert_eq!(fields[0].value, "a/b");
        assert!(!fields[0].is_path);
        assert!(fields[1..].iter().all(|f| !f.is_path));
    }
}
