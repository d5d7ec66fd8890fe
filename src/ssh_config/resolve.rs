//! One host's settings from the collected options, OpenSSH's defaults, the daemon's
//! `[host.NAME]` table and timer defaults, including the hosts it is reached through
//! (ProxyJump).

use std::path::PathBuf;
use std::time::Duration;

use super::algorithms::{self, Algorithms, Kind};
use super::jumps::{self, Reaching, Route};
use super::numeric::canonical_host;
use super::openssh::{default_identity_files, local_user_name};
use super::options::{Found, Options};
use super::tokens::{self, Tokens};
use super::{HostConfig, IdentityAgent, SshConfigError, SshConfigFile, StrictHostKeyChecking};
use super::{proxy_jump, values};
use crate::config::{Config, HostSpec, WindowSize};

impl SshConfigFile {
    /// Resolves `spec` the way `ssh [user@]host [-p port]` would, then applies the daemon's
    /// `[host.NAME]` overrides and timer defaults.
    pub fn resolve(&self, config: &Config, spec: &HostSpec) -> Result<HostConfig, SshConfigError> {
        self.resolve_route(config, spec, Route::Own, &mut Vec::new())
    }

    /// Resolves the last hop of `hops` (a ProxyJump value read at `at` for `host`), through
    /// the hops before it.
    fn resolve_jump(
        &self,
        config: &Config,
        hops: &str,
        (at, host): (&str, &str),
        reaching: &Reaching,
        tokens: &Tokens,
        chain: &mut Vec<String>,
    ) -> Result<Box<HostConfig>, SshConfigError> {
        let (spec, route) = jumps::last_hop(hops, (at, host), reaching, tokens)?;
        chain.push(spec.host.clone());
        if chain.len() > jumps::MAX_JUMP_DEPTH {
            return Err(SshConfigError::JumpLoop {
                host: host.to_string(),
                chain: chain.join(" -> "),
            });
        }
        let resolved = self.resolve_route(config, &spec, route, chain)?;
        chain.pop();
        Ok(Box::new(resolved))
    }

    fn resolve_route(
        &self,
        config: &Config,
        spec: &HostSpec,
        route: Route,
        chain: &mut Vec<String>,
    ) -> Result<HostConfig, SshConfigError> {
        let files: Vec<_> = self.files.iter().collect();
        // OpenSSH matches Host patterns against the name exactly as given.
        let opts = Options::collect(&files, &spec.host);
        let over = config.host_override(spec).cloned().unwrap_or_default();
        let host = spec.alias.clone();
        let bad = |found: &Found, option: &'static str, message: String| SshConfigError::Value {
            at: found.at.to_string(),
            host: host.clone(),
            option,
            value: found.args.join(" "),
            message,
        };

        let host_name = match (&over.hostname, opts.get("hostname")) {
            (Some(name), _) => name.clone(),
            (None, Some(found)) => tokens::expand_host_name(found.value(), &spec.host)
                .map_err(|m| bad(found, "HostName", m))?,
            (None, None) => spec.host.clone(),
        }
        .to_ascii_lowercase();
        let family = opts.get("addressfamily").map(Found::value);
        let host_name = canonical_host(&host_name, family);
        let port = match (spec.port.or(over.port), opts.get("port")) {
            (Some(port), _) => port,
            (None, Some(found)) => {
                values::port(found.value()).map_err(|m| bad(found, "Port", m))?
            }
            (None, None) => 22,
        };
        let user = match (spec.user.clone().or(over.user.clone()), opts.get("user")) {
            (Some(user), _) => user,
            (None, Some(found)) => found.value().to_string(),
            (None, None) => {
                local_user_name().ok_or_else(|| SshConfigError::NoUser { host: host.clone() })?
            }
        };
        reject_unsupported(&opts, &host)?;
        // OpenSSH lower-cases HostKeyAlias (and so `%k`).
        let host_key_alias = opts
            .get("hostkeyalias")
            .map(|found| found.value().to_ascii_lowercase());
        let local_user = local_user_name().unwrap_or_default();
        let tokens = Tokens {
            home: &self.home,
            host_name: &host_name,
            original: &spec.host,
            key_alias: host_key_alias.as_deref(),
            port,
            remote_user: &user,
            local_user: &local_user,
        };
        let paths = |found: &Found, option: &'static str| -> Result<Vec<PathBuf>, SshConfigError> {
            found
                .args
                .iter()
                .filter(|arg| !arg.eq_ignore_ascii_case("none"))
                .map(|arg| tokens::expand_path(arg, &tokens).map_err(|m| bad(found, option, m)))
                .collect()
        };

        let identity_lines = opts.all("identityfile");
        let (identity_files, identity_files_explicit) = match &over.identity_file {
            Some(files) if !files.is_empty() => (files.clone(), true),
            _ if !identity_lines.is_empty() => {
                let mut files = Vec::new();
                for found in identity_lines {
                    files.extend(paths(found, "IdentityFile")?);
                }
                (files, true)
            }
            _ => (default_identity_files(&self.home), false),
        };
        let mut certificate_files = Vec::new();
        for found in opts.all("certificatefile") {
            certificate_files.extend(paths(found, "CertificateFile")?);
        }
        let identities_only = match over.identities_only {
            Some(v) => v,
            None => yes_no(opts.get("identitiesonly"), "IdentitiesOnly", &bad)?.unwrap_or(false),
        };
        let identity_agent = match opts.get("identityagent") {
            None => IdentityAgent::Env("SSH_AUTH_SOCK".into()),
            Some(found) => match found.value() {
                v if v.eq_ignore_ascii_case("none") => IdentityAgent::Disabled,
                "SSH_AUTH_SOCK" => IdentityAgent::Env("SSH_AUTH_SOCK".into()),
                v if v.starts_with('$') && !v.starts_with("${") => {
                    IdentityAgent::Env(v[1..].to_string())
                }
                v => IdentityAgent::Socket(
                    tokens::expand_path(v, &tokens).map_err(|m| bad(found, "IdentityAgent", m))?,
                ),
            },
        };

        let user_known_hosts_files =
            match (&over.user_known_hosts_file, opts.get("userknownhostsfile")) {
                (Some(files), _) => files.clone(),
                (None, Some(found)) => paths(found, "UserKnownHostsFile")?,
                (None, None) => vec![
                    self.home.join(".ssh/known_hosts"),
                    self.home.join(".ssh/known_hosts2"),
                ],
            };
        let global_known_hosts_files = match opts.get("globalknownhostsfile") {
            // GlobalKnownHostsFile takes `~` but no tokens.
            Some(found) => found
                .args
                .iter()
                .filter(|arg| !arg.eq_ignore_ascii_case("none"))
                .map(|arg| {
                    tokens::expand_tilde(arg, &self.home)
                        .map_err(|m| bad(found, "GlobalKnownHostsFile", m))
                })
                .collect::<Result<_, _>>()?,
            None => vec![
                PathBuf::from("/etc/ssh/ssh_known_hosts"),
                PathBuf::from("/etc/ssh/ssh_known_hosts2"),
            ],
        };
        let strict_host_key_checking = match (
            over.strict_host_key_checking,
            opts.get("stricthostkeychecking"),
        ) {
            (Some(v), _) => StrictHostKeyChecking::from(v),
            (None, Some(found)) => {
                StrictHostKeyChecking::parse(found.value()).ok_or_else(|| {
                    bad(
                        found,
                        "StrictHostKeyChecking",
                        "expected yes, ask, accept-new, no or off".into(),
                    )
                })?
            }
            (None, None) => StrictHostKeyChecking::Yes,
        };
        let hash_known_hosts =
            yes_no(opts.get("hashknownhosts"), "HashKnownHosts", &bad)?.unwrap_or(false);

        let keepalive_max = match (over.keepalive_max, opts.get("serveralivecountmax")) {
            (Some(v), _) => v,
            (None, Some(found)) => {
                values::integer(found.value()).map_err(|m| bad(found, "ServerAliveCountMax", m))?
            }
            (None, None) => config.defaults.effective_keepalive_max(),
        };
        let seconds =
            |key: &str, option: &'static str| -> Result<Option<Duration>, SshConfigError> {
                opts.get(key)
                    .map(|found| values::time(found.value()).map_err(|m| bad(found, option, m)))
                    .transpose()
            };
        // ServerAliveInterval 0 means "off" to OpenSSH; a daemon that must notice dead links keeps
        // its default instead, which is never weaker.
        let keepalive_interval = match over.keepalive_interval {
            Some(v) => v,
            None => seconds("serveraliveinterval", "ServerAliveInterval")?
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| config.defaults.effective_keepalive_interval()),
        };
        let connect_timeout = match over.connect_timeout {
            Some(v) => v,
            None => seconds("connecttimeout", "ConnectTimeout")?
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| config.defaults.effective_connect_timeout()),
        };
        let idle_timeout = over
            .idle_timeout
            .unwrap_or_else(|| config.defaults.effective_idle_timeout());
        let window_size = match over.window_size.or(config.defaults.window_size) {
            Some(WindowSize::Fixed(bytes)) => Some(bytes),
            Some(WindowSize::Auto) | None => None,
        };

        let mut algorithms = Algorithms::default();
        for (key, kind, slot) in [
            ("ciphers", Kind::Ciphers, &mut algorithms.ciphers),
            ("kexalgorithms", Kind::Kex, &mut algorithms.kex),
            ("macs", Kind::Macs, &mut algorithms.macs),
            (
                "hostkeyalgorithms",
                Kind::HostKeys,
                &mut algorithms.host_keys,
            ),
        ] {
            let Some(found) = opts.get(key) else { continue };
            let (kept, dropped) = algorithms::resolve(kind, found.value())
                .map_err(|m| bad(found, kind.option(), m))?;
            if !dropped.is_empty() {
                tracing::warn!(
                    "{}: {} {}: lazytunnel does not support {}; using the rest",
                    found.at,
                    kind.option(),
                    found.value(),
                    dropped.join(",")
                );
            }
            *slot = Some(kept);
        }

        let reaching = Reaching {
            host_name: &host_name,
            user: &user,
            port,
        };
        let jump = match route {
            Route::Through { hops, at } => {
                Some(self.resolve_jump(config, &hops, (&at, &host), &reaching, &tokens, chain)?)
            }
            Route::Own => match opts.get("proxy") {
                None => None,
                Some(found) if found.keyword == "proxycommand" => {
                    if found.value().eq_ignore_ascii_case("none") {
                        None
                    } else {
                        return Err(SshConfigError::Unsupported {
                            at: found.at.to_string(),
                            host: host.clone(),
                            option: "ProxyCommand",
                            message: "is an embedded SSH client and cannot run a proxy command; use ProxyJump or a direct address",
                        });
                    }
                }
                Some(found) => match proxy_jump::hops_of(&found.rest, found.value()) {
                    value if proxy_jump::is_none(value) => None,
                    value => Some(self.resolve_jump(
                        config,
                        value,
                        (&found.at.to_string(), &host),
                        &reaching,
                        &tokens,
                        chain,
                    )?),
                },
            },
        };

        Ok(HostConfig {
            spec: spec.clone(),
            host_name,
            port,
            user,
            identity_files,
            identity_files_explicit,
            identities_only,
            identity_agent,
            user_known_hosts_files,
            global_known_hosts_files,
            strict_host_key_checking,
            hash_known_hosts,
            connect_timeout,
            keepalive_interval,
            keepalive_max,
            idle_timeout,
            window_size,
            certificate_files,
            algorithms,
            jump,
            host_key_alias,
        })
    }
}

/// Options that change how OpenSSH checks host keys or which config applies, which lazytunnel
/// does not implement: ignoring them could accept what OpenSSH refuses (RevokedHostKeys) or
/// read other settings than OpenSSH would (CanonicalizeHostname), so they are errors.
fn reject_unsupported(opts: &Options, host: &str) -> Result<(), SshConfigError> {
    let unsupported: [(&str, &'static str, &[&str], &'static str); 3] = [
        (
            "revokedhostkeys",
            "RevokedHostKeys",
            &["none"],
            "does not read revoked host key lists; list the keys as @revoked in known_hosts instead",
        ),
        (
            "knownhostscommand",
            "KnownHostsCommand",
            &["none"],
            "does not run commands for host keys; put the keys in a known_hosts file",
        ),
        (
            "canonicalizehostname",
            "CanonicalizeHostname",
            &["no"],
            "does not canonicalize host names; use HostName in the host's block",
        ),
    ];
    for (key, option, harmless, message) in unsupported {
        // `false` is `no` to OpenSSH's flag parser.
        let value = |found: &Found| {
            values::multistate(found.value(), &["always"]).unwrap_or_else(|_| found.value().into())
        };
        if let Some(found) = opts.get(key)
            && !harmless
                .iter()
                .any(|h| value(found).eq_ignore_ascii_case(h))
        {
            return Err(SshConfigError::Unsupported {
                at: found.at.to_string(),
                host: host.to_string(),
                option,
                message,
            });
        }
    }
    Ok(())
}

fn yes_no(
    found: Option<&Found>,
    option: &'static str,
    bad: &dyn Fn(&Found, &'static str, String) -> SshConfigError,
) -> Result<Option<bool>, SshConfigError> {
    found
        .map(|f| values::flag(f.value()).map_err(|m| bad(f, option, m)))
        .transpose()
}
