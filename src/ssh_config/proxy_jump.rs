//! ProxyJump's syntax, as OpenSSH's `parse_jump` checks it when it reads the line (before any
//! `%` token is expanded): a comma-separated list of `[user@]host[:port]` or
//! `ssh://[user@]host[:port][/]` hops, `none` alone for no jump. The value is the line as
//! written up to a `#`, its first word only; quotes are not removed.

use super::values;

/// One hop as written: its user, host (brackets removed) and port, when given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Hop {
    pub(super) user: Option<String>,
    pub(super) host: String,
    pub(super) port: Option<u16>,
}

/// The ProxyJump value of a line whose text after the keyword is `rest`.
pub(super) fn value_of(rest: &str) -> &str {
    let text = rest.trim_start_matches([' ', '\t', '=']);
    let text = text.split('#').next().unwrap_or_default();
    text.split([' ', '\t']).next().unwrap_or_default()
}

/// The hops to reach, from a line whose text after the keyword is `rest` and whose first
/// argument (quotes removed) is `unquoted`. OpenSSH keeps quotes in the value, but hands the
/// hops to a shell in the command it runs for them, which removes them: so a quoted value
/// names the hops without its quotes.
pub(super) fn hops_of<'a>(rest: &'a str, unquoted: &'a str) -> &'a str {
    match value_of(rest) {
        value if value.contains(['"', '\'']) => unquoted,
        value => value,
    }
}

/// `none` (any case) means no jump host.
pub(super) fn is_none(value: &str) -> bool {
    value.eq_ignore_ascii_case("none")
}

/// Every hop of `value`, first hop first. The error is OpenSSH's, naming the value.
pub(super) fn parse(value: &str) -> Result<Vec<Hop>, String> {
    let invalid = || format!("Invalid ProxyJump {value:?}");
    if value.is_empty() {
        return Err(invalid());
    }
    value
        .split(',')
        .map(|hop| parse_hop(hop).ok_or_else(invalid))
        .collect()
}

/// The last hop and the hops before it as one list (what OpenSSH hands the hop's own ssh as
/// `-J`), or `None` when there is only one hop.
pub(super) fn split_last(value: &str) -> (Option<&str>, &str) {
    match value.rsplit_once(',') {
        Some((before, last)) => (Some(before), last),
        None => (None, value),
    }
}

fn parse_hop(text: &str) -> Option<Hop> {
    match text.strip_prefix("ssh://") {
        Some(uri) => parse_uri(uri),
        None => user_host_port(text),
    }
}

fn user_host_port(text: &str) -> Option<Hop> {
    let (user, rest) = match text.rsplit_once('@') {
        Some(("", _)) => return None,
        Some((user, rest)) => (Some(user.to_string()), rest),
        None => (None, text),
    };
    let (host, port) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (host, after) = inner.split_once(']')?;
            match after {
                "" => (host, None),
                _ => (host, Some(after.strip_prefix(':')?)),
            }
        }
        None => match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        },
    };
    if host.is_empty() || host.contains('/') {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(values::port(port).ok()?),
    };
    Some(Hop {
        user,
        host: host.to_string(),
        port,
    })
}

/// `ssh://[user@]host[:port][/]`: the user may be %-encoded; the host may not hold `%`,
/// brackets or a path.
fn parse_uri(uri: &str) -> Option<Hop> {
    let uri = uri.strip_suffix('/').unwrap_or(uri);
    if uri.contains(['/', '?', '#', '[', ']']) {
        return None;
    }
    let (user, rest) = match uri.rsplit_once('@') {
        Some((user, rest)) => (Some(percent_decode(user)?), rest),
        None => (None, uri),
    };
    if user.as_deref() == Some("") {
        return None;
    }
    let (host, port) = match rest.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (rest, None),
    };
    if host.is_empty() || host.contains('%') {
        return None;
    }
    let port = match port {
        None | Some("") => None,
        Some(port) => Some(values::port(port).ok()?),
    };
    Some(Hop {
        user,
        host: host.to_string(),
        port,
    })
}

fn percent_decode(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [bytes.next()?, bytes.next()?];
        let hex = std::str::from_utf8(&hex).ok()?;
        out.push(u8::from_str_radix(hex, 16).ok()?);
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(user: Option<&str>, host: &str, port: Option<u16>) -> Hop {
        Hop {
            user: user.map(String::from),
            host: host.into(),
            port,
        }
    }

    /// Issue 16 item 8: a bracketed IPv4 address is a host like any other.
    #[test]
    fn bracketed_hosts_and_uris_parse() {
        assert_eq!(
            parse("[10.1.2.3]:2200").unwrap(),
            vec![hop(None, "10.1.2.3", Some(2200))]
        );
        assert_eq!(
            parse("u@[::1]:22,ssh://a%40b@h:2/,x:").unwrap(),
            vec![
                hop(Some("u"), "::1", Some(22)),
                hop(Some("a@b"), "h", Some(2)),
                hop(None, "x", None)
            ]
        );
        assert_eq!(parse("a@b@c").unwrap(), vec![hop(Some("a@b"), "c", None)]);
    }

    /// Issue 16 item 10: OpenSSH checks the syntax before expanding tokens, so a token where a
    /// port must be, or in a URI, is refused.
    #[test]
    fn syntax_is_checked_before_tokens() {
        for bad in [
            "bastion:%p",
            "ssh://%h-jump",
            "a,,b",
            ",a",
            "a,",
            "@h",
            "u@",
            "[h]x",
            "a:1:2",
            "h:0",
            "h/22",
            "SSH://h",
            "ssh://h/p",
            "ssh://[::1]:2",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert!(parse("%r@bastion,%h-j").is_ok());
    }

    #[test]
    fn the_value_is_the_first_word_before_a_comment() {
        assert_eq!(value_of("= a b"), "a");
        assert_eq!(value_of("a#b"), "a");
        assert_eq!(value_of("\"b\""), "\"b\"");
        assert_eq!(split_last("a,b,c"), (Some("a,b"), "c"));
        assert_eq!(hops_of("\"a,b\" # c", "a,b"), "a,b");
        assert_eq!(hops_of("a#b", "a#b"), "a");
    }
}
