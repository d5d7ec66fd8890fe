//! The two forwarders under comparison, each started against the same sshd with the same
//! targets: the lazytunnel daemon (the release binary) and OpenSSH's `ssh -N -L`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::daemon::TestDaemon;
use crate::common::ssh_client::{SshProcess, ssh_command};
use crate::common::{TIMEOUT, bind_loopback, free_port, path_str, port_of};

pub enum Process {
    Lazy(TestDaemon),
    Ssh(SshProcess),
}

/// A running forwarder and the local ports of its forwards, in the order of the targets.
pub struct Forwarder {
    pub process: Process,
    pub ports: Vec<u16>,
}

impl Forwarder {
    pub fn pid(&self) -> u32 {
        match &self.process {
            Process::Lazy(daemon) => daemon.pid(),
            Process::Ssh(ssh) => ssh.pid(),
        }
    }

    /// lazytunnel with one forward per target through `ssh_config`'s `test` host.
    /// `settings` are extra top-level config lines.
    pub async fn lazytunnel(
        ssh_config: &Path,
        settings: &str,
        targets: &[SocketAddr],
    ) -> Forwarder {
        // Bound here and handed over, as the tests do: no other process can take a port.
        let listeners: Vec<_> = targets.iter().map(|_| bind_loopback()).collect();
        let ports: Vec<u16> = listeners.iter().map(port_of).collect();
        let mut text = format!("ssh_config = {:?}\n{settings}\n", path_str(ssh_config));
        for (i, (port, target)) in ports.iter().zip(targets).enumerate() {
            let _ = write!(
                text,
                "\n[[forward]]\nname = \"f{i}\"\nlisten = \"127.0.0.1:{port}\"\nhost = \"test\"\ntarget = \"{target}\"\n"
            );
        }
        // Per-connection debug lines would cost the daemon time OpenSSH does not spend.
        let daemon = listeners
            .into_iter()
            .fold(TestDaemon::builder(), |builder, listener| {
                builder.inherit(listener)
            })
            .config_text(text)
            .env("RUST_LOG", "lazytunnel=info")
            .start();
        daemon
            .wait_for_log_count("listening", targets.len(), TIMEOUT)
            .await;
        Forwarder {
            process: Process::Lazy(daemon),
            ports,
        }
    }

    /// `ssh -N -L` with one `-L` per target; returns once every port listens (after
    /// authentication, as ssh binds only then). ssh binds the ports itself, so another
    /// process may take one first: ssh then exits saying so, and new ports are tried.
    pub async fn openssh(ssh_config: &Path, targets: &[SocketAddr]) -> Forwarder {
        for _ in 0..3 {
            let ports: Vec<u16> = targets.iter().map(|_| free_port()).collect();
            let mut command = ssh_command(ssh_config);
            command.args(["-N", "-o", "ExitOnForwardFailure=yes"]);
            for (port, target) in ports.iter().zip(targets) {
                command.arg("-L").arg(format!(
                    "127.0.0.1:{port}:{}:{}",
                    target.ip(),
                    target.port()
                ));
            }
            command.arg("test");
            let mut ssh = SshProcess::spawn(command);
            let deadline = Instant::now() + TIMEOUT;
            loop {
                if ports.iter().all(|&port| is_listening(port)) {
                    return Forwarder {
                        process: Process::Ssh(ssh),
                        ports,
                    };
                }
                if let Some(status) = ssh.try_status() {
                    let log = ssh.log();
                    assert!(
                        log.contains("Address already in use"),
                        "ssh -L exited ({status}):\n{log}"
                    );
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "ssh -L not listening:\n{}",
                    ssh.log()
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        panic!("ssh -L found its ports taken three times in a row");
    }
}

/// Whether a socket listens on 127.0.0.1:`port` (state 0A in /proc/net/tcp). Probing with a
/// connection instead would open a channel to the target.
pub fn is_listening(port: u16) -> bool {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .map(|table| {
            table.lines().skip(1).any(|row| {
                let fields: Vec<&str> = row.split_whitespace().collect();
                fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")
            })
        })
        .unwrap_or(false)
}
