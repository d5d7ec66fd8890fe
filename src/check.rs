//! `lazytunnel check`: the resolved picture of a configuration, as the daemon would use it,
//! and with `--connect` a session attempt to each host.

use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use russh::WindowBudget;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::session::{Backoff, SessionManager};
use crate::ssh_config::{HostConfig, IdentityAgent};

/// `lazytunnel check`: prints what the config at `config` (else the default one) resolves to;
/// with `connect`, then tries each host and fails unless all of them could be reached.
pub fn run(config: Option<&Path>, connect: bool) -> anyhow::Result<()> {
    let config = Config::load_or_default(config)?;
    let hosts = crate::daemon::resolve_hosts(&config)?;
    print!("{}", render(&config, &hosts));
    if !connect {
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (report, all_ok) = runtime.block_on(connect_all(&config, hosts));
    print!("{report}");
    anyhow::ensure!(all_ok, "some hosts could not be reached (see above)");
    Ok(())
}

/// `check --connect`: opens a session to each host in turn, as the daemon would (through its
/// jump hosts, checking host keys, authenticating), and closes it. Returns one line per host
/// and whether all succeeded.
pub async fn connect_all(config: &Config, hosts: Vec<HostConfig>) -> (String, bool) {
    let names: Vec<String> = hosts.iter().map(|h| h.spec.alias.clone()).collect();
    let backoff = Backoff {
        min: config.limits.backoff_min,
        max: config.limits.backoff_max,
    };
    let stop = CancellationToken::new();
    let sessions = SessionManager::new(
        hosts,
        backoff,
        Arc::new(WindowBudget::new(config.limits.receive_budget)),
        stop.clone(),
    );
    let mut out = String::from("\nconnect\n");
    let mut all_ok = true;
    for name in names {
        match sessions.connect_now(&name).await {
            Ok(up) => {
                let _ = writeln!(out, "  {name}: ok ({} -> {})", up.local, up.remote);
            }
            Err(e) => {
                all_ok = false;
                let _ = writeln!(out, "  {name}: FAILED: {e}");
            }
        }
    }
    stop.cancel();
    sessions.close_all().await;
    (out, all_ok)
}

/// Renders what the daemon would do with `config` and its resolved `hosts`.
pub fn render(config: &Config, hosts: &[HostConfig]) -> String {
    let mut out = String::new();
    let source = config
        .source
        .as_deref()
        .map(Path::display)
        .map(|d| d.to_string());
    let _ = writeln!(
        out,
        "config: {}",
        source.as_deref().unwrap_or("(command line)")
    );
    let _ = writeln!(out, "ssh_config: {}", config.ssh_config.display());
    if let Some(socket) = &config.control_socket {
        let _ = writeln!(out, "control_socket: {}", socket.display());
    }
    if let Some(after) = config.exit_when_idle {
        let _ = writeln!(out, "exit_when_idle: {}", humantime::format_duration(after));
    }
    for host in hosts {
        let _ = writeln!(out, "\nhost {}", host.spec);
        let _ = writeln!(out, "  hostname: {}", host.host_name);
        let _ = writeln!(out, "  port: {}", host.port);
        let _ = writeln!(out, "  user: {}", host.user);
        let which = if host.identity_files_explicit {
            ""
        } else {
            " (OpenSSH defaults, those that exist)"
        };
        let _ = writeln!(
            out,
            "  identity files{which}: {}",
            paths(&host.identity_files)
        );
        let _ = writeln!(
            out,
            "  certificate files: {}",
            paths(&host.certificate_files)
        );
        let _ = writeln!(out, "  identities only: {}", yes_no(host.identities_only));
        let agent = match &host.identity_agent {
            IdentityAgent::Env(var) => format!("${var}"),
            IdentityAgent::Socket(path) => path.display().to_string(),
            IdentityAgent::Disabled => "none".to_string(),
        };
        let _ = writeln!(out, "  identity agent: {agent}");
        let _ = writeln!(
            out,
            "  known_hosts: {}",
            paths(&host.user_known_hosts_files)
        );
        let _ = writeln!(
            out,
            "  global known_hosts: {}",
            paths(&host.global_known_hosts_files)
        );
        let _ = writeln!(
            out,
            "  strict host key checking: {}",
            host.strict_host_key_checking
        );
        if let Some(alias) = &host.host_key_alias {
            let _ = writeln!(out, "  host key alias: {alias}");
        }
        let _ = writeln!(out, "  algorithms: {}", algorithms(host));
        let _ = writeln!(out, "  jump hosts: {}", jump_chain(host));
        let _ = writeln!(
            out,
            "  timers: connect {}, keepalive {} x {}, idle {}",
            humantime::format_duration(host.connect_timeout),
            humantime::format_duration(host.keepalive_interval),
            host.keepalive_max,
            humantime::format_duration(host.idle_timeout),
        );
        let _ = match host.window_size {
            Some(bytes) => writeln!(out, "  window: {bytes} bytes"),
            None => writeln!(out, "  window: auto (from the round trip)"),
        };
    }
    let _ = writeln!(out, "\nforwards");
    for forward in &config.forwards {
        let _ = writeln!(
            out,
            "  {}: {} -> {} -> {}",
            forward.name, forward.listen, forward.host, forward.target
        );
        if forward.target.is_socks() {
            let _ = writeln!(
                out,
                "    SOCKS4/4a/5 proxy: each client names its destination, which {} resolves",
                forward.host
            );
        }
    }
    out
}

/// The algorithm lists ssh_config sets, after filtering; `default` when it sets none.
fn algorithms(host: &HostConfig) -> String {
    let chosen = &host.algorithms;
    let lists = [
        ("ciphers", &chosen.ciphers),
        ("kex", &chosen.kex),
        ("macs", &chosen.macs),
        ("host keys", &chosen.host_keys),
    ];
    let set: Vec<String> = lists
        .iter()
        .filter_map(|(name, list)| list.as_ref().map(|l| format!("{name} {}", l.join(","))))
        .collect();
    if set.is_empty() {
        "default".into()
    } else {
        set.join("; ")
    }
}

/// `first -> … -> last` hop, each as `user@host:port`, or `none`.
fn jump_chain(host: &HostConfig) -> String {
    let mut hops = Vec::new();
    let mut next = host.jump.as_deref();
    while let Some(hop) = next {
        hops.push(format!("{}@{}:{}", hop.user, hop.host_name, hop.port));
        next = hop.jump.as_deref();
    }
    if hops.is_empty() {
        return "none".into();
    }
    hops.reverse();
    hops.join(" -> ")
}

fn paths(list: &[std::path::PathBuf]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn yes_no(v: bool) -> &'static str {
    if v { "yes" } else { "no" }
}
