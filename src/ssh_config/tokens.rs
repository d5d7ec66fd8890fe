//! OpenSSH's expansions in path-like options: `~`, then `${VAR}` and `%` tokens, in that
//! order (ssh.c applies `tilde_expand_filename`, then `default_client_percent_dollar_expand`).
//! An unknown token or an unset variable is an error, as in OpenSSH: guessing a path could
//! pick the wrong key or known_hosts file.

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

/// The values `%` tokens stand for (see ssh_config(5), TOKENS).
pub(super) struct Tokens<'a> {
    /// `%d`
    pub(super) home: &'a Path,
    /// `%h`: the host name after HostName.
    pub(super) host_name: &'a str,
    /// `%n`: the name as given.
    pub(super) original: &'a str,
    /// `%k`: HostKeyAlias if set, else the name as given.
    pub(super) key_alias: Option<&'a str>,
    /// `%p`
    pub(super) port: u16,
    /// `%r`
    pub(super) remote_user: &'a str,
    /// `%u`
    pub(super) local_user: &'a str,
}

/// `~` and `~/…` against `home`; `~user` and `~user/…` against that user's home directory
/// in the password database (an unknown user is an error, as in OpenSSH).
pub(super) fn expand_tilde(value: &str, home: &Path) -> Result<PathBuf, String> {
    let Some(after) = value.strip_prefix('~') else {
        return Ok(PathBuf::from(value));
    };
    let (user, rest) = after.split_once('/').unwrap_or((after, ""));
    let base = match user {
        "" => home.to_path_buf(),
        user => super::openssh::user_home(user)
            .ok_or_else(|| format!("no such user {user:?} for `~{user}`"))?,
    };
    Ok(if rest.is_empty() {
        base
    } else {
        base.join(rest)
    })
}

/// A path option's value with `~`, `${VAR}` and every `%` token of `Tokens` expanded.
pub(super) fn expand_path(value: &str, tokens: &Tokens) -> Result<PathBuf, String> {
    let tilde = expand_tilde(value, tokens.home)?;
    let text = tilde
        .to_str()
        .ok_or_else(|| "path is not UTF-8".to_string())?;
    let dollar = expand_env(text)?;
    Ok(PathBuf::from(expand_percent(&dollar, |c| {
        full_token(c, tokens)
    })?))
}

/// HostName accepts only `%h` (the name as given) and `%%`.
pub(super) fn expand_host_name(value: &str, given: &str) -> Result<String, String> {
    expand_percent(value, |c| (c == 'h').then(|| given.to_string()))
}

/// ProxyJump accepts `%h %n %p %r %%`.
pub(super) fn expand_proxy_jump(value: &str, t: &Tokens) -> Result<String, String> {
    expand_percent(value, |c| match c {
        'h' | 'n' | 'p' | 'r' => full_token(c, t),
        _ => None,
    })
}

fn full_token(c: char, t: &Tokens) -> Option<String> {
    Some(match c {
        'd' => t.home.to_string_lossy().into_owned(),
        'h' => t.host_name.to_string(),
        'n' => t.original.to_string(),
        'k' => t.key_alias.unwrap_or(t.original).to_string(),
        'p' => t.port.to_string(),
        'r' => t.remote_user.to_string(),
        'u' => t.local_user.to_string(),
        'i' => local_uid().to_string(),
        'L' => local_host_name()
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string(),
        'l' => local_host_name(),
        'C' => {
            let text = format!(
                "{}{}{}{}",
                local_host_name(),
                t.host_name,
                t.port,
                t.remote_user
            );
            Sha1::digest(text.as_bytes())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        }
        _ => return None,
    })
}

fn local_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

fn local_host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its whole length; gethostname NUL-terminates within it
    // on success (we also stop at the end if it does not).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn expand_percent(value: &str, token: impl Fn(char) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some(key) => match token(key) {
                Some(text) => out.push_str(&text),
                None => return Err(format!("unknown token %{key}")),
            },
            None => return Err("a `%` at the end (write `%%` for a literal one)".into()),
        }
    }
    Ok(out)
}

fn expand_env(value: &str) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| "unterminated `${`".to_string())?;
        let name = &after[..end];
        let var =
            std::env::var(name).map_err(|_| format!("environment variable {name} is not set"))?;
        out.push_str(&var);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens<'static> {
        Tokens {
            home: Path::new("/home/u"),
            host_name: "10.0.0.1",
            original: "srv11",
            port: 2222,
            remote_user: "vit",
            local_user: "me",
            key_alias: None,
        }
    }

    #[test]
    fn path_tokens_expand_after_tilde() {
        let path = expand_path("~/.ssh/%n-%h-%p-%r-%u-%%", &tokens()).unwrap();
        assert_eq!(
            path,
            PathBuf::from("/home/u/.ssh/srv11-10.0.0.1-2222-vit-me-%")
        );
        assert_eq!(
            expand_path("%d/k", &tokens()).unwrap(),
            PathBuf::from("/home/u/k")
        );
    }

    #[test]
    fn percent_c_is_the_sha1_of_local_host_remote_host_port_user() {
        let path = expand_path("%C", &tokens()).unwrap();
        let text = path.to_str().unwrap();
        assert_eq!(text.len(), 40);
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn env_variables_expand_and_an_unset_one_is_an_error() {
        let home = std::env::var("HOME").unwrap_or_default();
        assert_eq!(
            expand_path("${HOME}/x", &tokens()).unwrap(),
            PathBuf::from(format!("{home}/x"))
        );
        let err = expand_path("${LAZYTUNNEL_SURELY_UNSET}/x", &tokens()).unwrap_err();
        assert!(err.contains("LAZYTUNNEL_SURELY_UNSET"), "{err}");
    }

    #[test]
    fn unknown_tokens_and_unknown_tilde_users_are_errors() {
        assert!(expand_path("%z", &tokens()).unwrap_err().contains("%z"));
        assert!(
            expand_path("~no-such-user-lazytunnel/k", &tokens())
                .unwrap_err()
                .contains("no such user")
        );
    }

    /// Issue 16 item 8: `~user` is that user's home, as OpenSSH expands it.
    #[test]
    fn tilde_user_is_that_users_home() {
        let root = super::super::openssh::user_home("root").expect("root has a home");
        assert_eq!(
            expand_path("~root/.ssh/k", &tokens()).unwrap(),
            root.join(".ssh/k")
        );
        assert_eq!(
            expand_path("~", &tokens()).unwrap(),
            PathBuf::from("/home/u")
        );
    }

    #[test]
    fn host_name_knows_only_percent_h() {
        assert_eq!(expand_host_name("%h.lan", "box").unwrap(), "box.lan");
        assert!(expand_host_name("%p", "box").is_err());
    }
}
