//! What OpenSSH resolves: `ssh -G -F FILE host` for the host, then for each ProxyJump hop what
//! ssh itself runs for it: `ssh -l USER -p PORT -J EARLIER-HOPS -F FILE HOP`, with the `%`
//! tokens of the host being reached expanded in the hop's user, host and earlier hops (the
//! ProxyCommand ssh builds from ProxyJump). `ssh -G` prints ProxyJump unexpanded, so this
//! expansion of `%h %n %p %r %%` is the one piece of OpenSSH done here.

use std::path::Path;
use std::process::{Command, Stdio};

use super::View;

/// More levels than any generated chain; deeper means hops that lead back around, which
/// OpenSSH would follow without end (a real connection never gets anywhere).
const MAX_DEPTH: usize = 16;

pub struct Hop<'a> {
    pub host: &'a str,
    pub user: Option<&'a str>,
    pub port: Option<&'a str>,
    pub jump: Option<&'a str>,
}

/// ssh's resolution of `hop`, or the error that made it refuse.
pub fn resolve(file: &Path, hop: &Hop, extra: &[String], depth: usize) -> Result<View, String> {
    if depth > MAX_DEPTH {
        return Err("jump hosts loop".into());
    }
    let mut command = Command::new("ssh");
    command.args(extra).arg("-G").arg("-F").arg(file);
    if let Some(user) = hop.user {
        command.args(["-l", user]);
    }
    if let Some(port) = hop.port {
        command.args(["-p", port]);
    }
    if let Some(jump) = hop.jump {
        command.args(["-J", jump]);
    }
    let output = command
        .arg(hop.host)
        .stdin(Stdio::null())
        .output()
        .expect("could not run ssh -G");
    if !output.status.success() {
        return Err(String::from_utf8_lossy(&output.stderr).trim().to_string());
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(|l| l.split_once(' ').unwrap_or((l, "")))
        .collect();
    let one = |key: &str| lines.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let all = |key: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
            .collect()
    };
    let host_name = one("hostname").unwrap_or_default().to_string();
    let port = one("port").unwrap_or("22").to_string();
    let user = one("user").unwrap_or_default().to_string();
    let jumps = match one("proxyjump") {
        None | Some("none") => Vec::new(),
        Some(list) => {
            let expand = |text: &str| expand(text, &host_name, hop.host, &port, &user);
            let (before, last) = match list.rsplit_once(',') {
                Some((before, last)) => (Some(expand(before)?), last),
                None => (None, list),
            };
            let (last_user, rest) = match last.rsplit_once('@') {
                Some((u, rest)) => (Some(expand(u)?), rest),
                None => (None, last),
            };
            let (last_host, last_port) = split_host_port(rest);
            let last_host = expand(&last_host)?;
            let next = Hop {
                host: &last_host,
                user: last_user.as_deref(),
                port: last_port.as_deref(),
                jump: before.as_deref(),
            };
            let resolved = resolve(file, &next, extra, depth + 1)?;
            let mut jumps = resolved.jumps.clone();
            jumps.push(format!(
                "{}@{}:{}",
                resolved.user, resolved.host_name, resolved.port
            ));
            jumps
        }
    };
    Ok(View {
        host_name: host_name.clone(),
        port: port.parse().expect("ssh -G prints a numeric port"),
        user: user.clone(),
        identity_files: all("identityfile"),
        certificate_files: all("certificatefile"),
        identities_only: one("identitiesonly") == Some("yes"),
        user_known_hosts: words(one("userknownhostsfile")),
        global_known_hosts: words(one("globalknownhostsfile")),
        strict: one("stricthostkeychecking").unwrap_or_default().to_string(),
        keepalive_interval: number(one("serveraliveinterval")),
        keepalive_max: number(one("serveralivecountmax")),
        connect_timeout: number(one("connecttimeout")),
        jumps,
        host_key_alias: one("hostkeyalias").map(String::from),
    })
}

fn words(value: Option<&str>) -> Vec<String> {
    value
        .map(|v| v.split(' ').map(String::from).collect())
        .unwrap_or_default()
}

/// A number `ssh -G` prints; `none` is 0 (unset).
fn number(value: Option<&str>) -> u64 {
    value.and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// `host[:port]` or `[host]:port` as `ssh -G` prints a hop.
fn split_host_port(text: &str) -> (String, Option<String>) {
    if let Some(inner) = text.strip_prefix('[') {
        let (host, after) = inner.split_once(']').unwrap_or((inner, ""));
        let port = after.strip_prefix(':').map(String::from);
        return (host.to_string(), port);
    }
    match text.rsplit_once(':') {
        Some((host, port)) => (host.to_string(), Some(port.to_string())),
        None => (text.to_string(), None),
    }
}

/// The ProxyCommand tokens ssh expands in the command it builds for a hop.
fn expand(
    text: &str,
    host: &str,
    original: &str,
    port: &str,
    user: &str,
) -> Result<String, String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => out.push('%'),
            Some('h') => out.push_str(host),
            Some('n') => out.push_str(original),
            Some('p') => out.push_str(port),
            Some('r') => out.push_str(user),
            other => return Err(format!("percent_expand: unknown key %{other:?}")),
        }
    }
    Ok(out)
}
