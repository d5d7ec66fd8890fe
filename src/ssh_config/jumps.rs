//! ProxyJump hops, resolved as OpenSSH reaches them. For `ProxyJump a,b,c` ssh runs
//! `ssh -l USER -p PORT -J a,b -W … c` with the hop's user, host and the earlier hops taken from
//! the list and `%` tokens expanded for the host being reached; that ssh does the same for `b`
//! with `-J a`, and so on. So `c` is resolved by its own ssh_config with the rest of the list
//! as its ProxyJump, and tokens in earlier hops are expanded once per level (`%%` in `a`
//! survives one level less than the list is long).
//!
//! Each level refuses a last hop that is the host itself (same host name, user and port), as
//! OpenSSH's "jumphost loop"; hops that lead back around through other hosts are cut at
//! [`MAX_JUMP_DEPTH`] (OpenSSH would start ssh processes without end).
//!
//! Nothing here resolves a host: [`last_hop`] names the hop to resolve next and its [`Route`],
//! and `resolve` resolves it like any other host.

use super::tokens::{self, Tokens};
use super::{SshConfigError, proxy_jump};
use crate::config::HostSpec;

/// More hops than anyone chains on purpose: beyond this it is a loop.
pub(super) const MAX_JUMP_DEPTH: usize = 16;

/// The host a ProxyJump list belongs to: its final name, user and port.
pub(super) struct Reaching<'a> {
    pub(super) host_name: &'a str,
    pub(super) user: &'a str,
    pub(super) port: u16,
}

/// How a host is reached: as its own ssh_config says, or through the hops before it in a
/// ProxyJump list, which OpenSSH hands the hop's own ssh as `-J` (overriding the hop's own
/// ProxyJump) after expanding its tokens once more.
pub(super) enum Route {
    Own,
    /// The `-J` list and where the ProxyJump it came from was read.
    Through {
        hops: String,
        at: String,
    },
}

/// The last hop of `hops` (a ProxyJump value read at `at` for `host`, which `reaching`
/// describes), and the route to it through the hops before it.
pub(super) fn last_hop(
    hops: &str,
    (at, host): (&str, &str),
    reaching: &Reaching,
    tokens: &Tokens,
) -> Result<(HostSpec, Route), SshConfigError> {
    let bad = |message: String| SshConfigError::Value {
        at: at.to_string(),
        host: host.to_string(),
        option: "ProxyJump",
        value: hops.to_string(),
        message,
    };
    let parsed = proxy_jump::parse(hops).map_err(bad)?;
    let last = parsed.last().ok_or_else(|| bad("no hop".into()))?;
    let (before, _) = proxy_jump::split_last(hops);
    // OpenSSH compares the hop as written with the host after HostName.
    if last.host == reaching.host_name
        && last.user.as_deref().unwrap_or(reaching.user) == reaching.user
        && last.port.unwrap_or(22) == reaching.port
    {
        return Err(SshConfigError::JumpLoop {
            host: host.to_string(),
            chain: format!("{} -> {} (a jump host loop)", reaching.host_name, last.host),
        });
    }
    let expand = |text: &str| tokens::expand_proxy_jump(text, tokens).map_err(bad);
    let hop_host = expand(&last.host)?;
    let user = last.user.as_deref().map(expand).transpose()?;
    let route = match before {
        Some(before) => Route::Through {
            hops: expand(before)?,
            at: at.to_string(),
        },
        None => Route::Own,
    };
    // The hop as `ssh -l USER -p PORT HOST` names it, for messages and `[host.NAME]`.
    let mut alias = user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
    match hop_host.contains(':') {
        true => alias.push_str(&format!("[{hop_host}]")),
        false => alias.push_str(&hop_host),
    }
    if let Some(port) = last.port {
        alias.push_str(&format!(":{port}"));
    }
    Ok((
        HostSpec {
            alias,
            user,
            host: hop_host,
            port: last.port,
        },
        route,
    ))
}
