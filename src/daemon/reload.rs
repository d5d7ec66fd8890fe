//! What a reload changes: the forwards of the running config compared with the new one's, by
//! name. Pure, so that the rules are tested without a daemon.

use std::collections::HashMap;

use crate::config::Forward;

/// The difference between two configs' forwards.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// In the new config only: start listening.
    pub added: Vec<Forward>,
    /// In the old config only: stop listening; open connections drain.
    pub removed: Vec<String>,
    /// In both under the same name, but different: restart with the new definition.
    pub changed: Vec<Forward>,
    /// Left alone, with their connections.
    pub unchanged: Vec<String>,
}

impl Plan {
    pub fn new(old: &[Forward], new: &[Forward]) -> Plan {
        let before: HashMap<&str, &Forward> = old.iter().map(|f| (f.name.as_str(), f)).collect();
        let mut plan = Plan::default();
        for forward in new {
            match before.get(forward.name.as_str()) {
                None => plan.added.push(forward.clone()),
                Some(old) if *old != forward => plan.changed.push(forward.clone()),
                Some(_) => plan.unchanged.push(forward.name.clone()),
            }
        }
        plan.removed = old
            .iter()
            .filter(|f| !new.iter().any(|n| n.name == f.name))
            .map(|f| f.name.clone())
            .collect();
        plan
    }

    /// One line for the log and the `reload` command.
    pub fn summary(&self) -> String {
        let names = |list: &mut dyn Iterator<Item = &str>| {
            let list: Vec<&str> = list.collect();
            if list.is_empty() {
                "none".to_string()
            } else {
                list.join(", ")
            }
        };
        format!(
            "added {}; removed {}; changed {}; unchanged {}",
            names(&mut self.added.iter().map(|f| f.name.as_str())),
            names(&mut self.removed.iter().map(String::as_str)),
            names(&mut self.changed.iter().map(|f| f.name.as_str())),
            names(&mut self.unchanged.iter().map(String::as_str)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forward(name: &str, port: u16, target: &str) -> Forward {
        Forward {
            name: name.into(),
            listen: crate::config::Listen::Tcp(format!("127.0.0.1:{port}").parse().unwrap()),
            host: "srv".parse().unwrap(),
            target: target.parse().unwrap(),
            allow_non_loopback: false,
        }
    }

    #[test]
    fn forwards_are_matched_by_name() {
        let old = [
            forward("keep", 1, "db:5432"),
            forward("move", 2, "web:80"),
            forward("drop", 3, "smb:445"),
        ];
        let new = [
            forward("keep", 1, "db:5432"),
            forward("move", 2, "web:8080"),
            forward("new", 3, "smb:445"),
        ];
        let plan = Plan::new(&old, &new);
        assert_eq!(plan.added, [new[2].clone()]);
        assert_eq!(plan.removed, ["drop"]);
        assert_eq!(plan.changed, [new[1].clone()]);
        assert_eq!(plan.unchanged, ["keep"]);
        assert_eq!(
            plan.summary(),
            "added new; removed drop; changed move; unchanged keep"
        );
    }

    #[test]
    fn turning_a_forward_into_a_socks_proxy_restarts_it() {
        let old = [forward("web", 1, "web:80"), forward("proxy", 2, "web:80")];
        let mut new = old.clone();
        new[1].target = crate::config::ForwardTarget::Socks;
        let plan = Plan::new(&old, &new);
        assert_eq!(plan.changed, [new[1].clone()]);
        assert_eq!(plan.unchanged, ["web"]);
        let back = Plan::new(&new, &old);
        assert_eq!(back.changed, [old[1].clone()]);
    }

    #[test]
    fn an_identical_config_changes_nothing() {
        let old = [forward("a", 1, "x:1")];
        let plan = Plan::new(&old, &old);
        assert!(plan.added.is_empty() && plan.removed.is_empty() && plan.changed.is_empty());
    }
}

/// Applying a reload to the running daemon.
mod apply {
    use std::collections::HashMap;

    use anyhow::{Context, bail};
    use tracing::{info, warn};

    use super::Plan;
    use crate::config::{Config, Listen};
    use crate::daemon::{Daemon, resolve_hosts};
    use crate::instance::paths;
    use crate::listener::bind_std;
    use crate::local::Listener;

    impl Daemon {
        /// Re-reads the config file and applies it as a difference (see the README). Everything
        /// that can fail (reading, validating, resolving hosts, binding new addresses) happens
        /// before anything changes, so an error leaves the running config serving.
        pub async fn reload(&self) -> anyhow::Result<String> {
            let _one_at_a_time = self.reloading.lock().await;
            if self.shutdown.is_cancelled() {
                bail!("the daemon is shutting down");
            }
            let old = self.config().clone();
            let Some(source) = old.source.clone() else {
                bail!("started with -L arguments: there is no config file to reload");
            };
            // Files are read on the blocking pool: one on a hung file system must not stop
            // the daemon's only worker (and with it every host, `status` and signals).
            let (pinned, path) = (self.pinned_control_socket.clone(), source.clone());
            let (new, hosts) = tokio::task::spawn_blocking(move || {
                let mut new = Config::load(&path)?;
                if let Some(path) = pinned {
                    new.control_socket = Some(path);
                }
                let hosts = resolve_hosts(&new)?;
                anyhow::Ok((new, hosts))
            })
            .await
            .context("reading the config failed")??;
            let plan = Plan::new(&old.forwards, &new.forwards);
            let restart_needed = restart_needed(&old, &new)?;

            // Addresses the forwards being replaced hold now, handed over rather than re-bound.
            let replaced: Vec<&str> = plan
                .removed
                .iter()
                .map(String::as_str)
                .chain(plan.changed.iter().map(|f| f.name.as_str()))
                .collect();
            let freed: Vec<Listen> = {
                let forwards = self.forwards();
                replaced
                    .iter()
                    .flat_map(|n| forwards.listening(n))
                    .collect()
            };
            let mut fresh: HashMap<String, Listener> = HashMap::new();
            for forward in plan.added.iter().chain(&plan.changed) {
                if freed.iter().any(|l| l.same_place(&forward.listen)) {
                    continue;
                }
                let listener = bind_std(forward)?;
                let listener = Listener::from_std(listener)
                    .with_context(|| format!("cannot register {}", forward.listen))?;
                fresh.insert(forward.name.clone(), listener);
            }

            // From here on nothing fails.
            let stopping: Vec<_> = {
                let mut forwards = self.forwards();
                replaced.iter().filter_map(|n| forwards.stop(n)).collect()
            };
            // Inherited sockets may sit on other addresses than the configured one (launchd
            // resolves names); they go with the configured address.
            let mut by_addr: Vec<(Listen, Vec<Listener>)> = Vec::new();
            for stopped in stopping {
                let configured = stopped.forward.listen.clone();
                by_addr.push((configured, stopped.listeners().await));
            }
            self.sessions.update_hosts(hosts);
            {
                let mut forwards = self.forwards();
                for forward in plan.added.iter().chain(&plan.changed) {
                    let listeners = match fresh.remove(&forward.name) {
                        Some(listener) => vec![listener],
                        None => take_place(&mut by_addr, &forward.listen),
                    };
                    for listener in &listeners {
                        if let Err(e) = listener.apply_mode(&forward.listen) {
                            warn!(forward = %forward.name, "cannot change the socket's mode: {e}");
                        }
                    }
                    forwards.start(forward.clone(), listeners, &self.ctx);
                }
                forwards.sort_like(&new.forwards);
            }
            // What is left in `by_addr` belonged to removed forwards: dropping it closes them
            // (and removes the socket files this daemon created).
            drop(by_addr);
            *self.config() = new;
            let mut summary = format!("reloaded {}: {}", source.display(), plan.summary());
            if !restart_needed.is_empty() {
                summary.push_str(&format!(
                    "; not applied until restart: {}",
                    restart_needed.join(", ")
                ));
            }
            info!("{summary}");
            Ok(summary)
        }
    }

    /// The listeners stopped forwards held at `listen`'s address or socket path.
    fn take_place(by_addr: &mut [(Listen, Vec<Listener>)], listen: &Listen) -> Vec<Listener> {
        let mut taken = Vec::new();
        for (place, listeners) in by_addr.iter_mut() {
            if place.same_place(listen) {
                taken.append(listeners);
            }
        }
        taken
    }

    /// Settings a running daemon cannot change: it keeps the old ones until restarted.
    fn restart_needed(old: &Config, new: &Config) -> anyhow::Result<Vec<&'static str>> {
        let mut needed = Vec::new();
        if paths::control_socket(old)? != paths::control_socket(new)? {
            needed.push("control_socket");
        }
        if old.limits != new.limits {
            needed.push("limits (max_connections, receive_budget, backoff)");
        }
        if old.exit_when_idle != new.exit_when_idle {
            needed.push("exit_when_idle");
        }
        Ok(needed)
    }
}
