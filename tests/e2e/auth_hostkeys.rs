//! End-to-end tests of whom the daemon trusts, how it proves who it is and how it reaches a
//! host, through a real OpenSSH server: host keys and host certificates checked against
//! known_hosts before authentication ([`host_keys`], [`certificates`]), agent, key-file and
//! certificate authentication ([`auth`], [`user_certs`]), how ssh_config is read
//! ([`config_files`]) and ProxyJump ([`proxy_jump`]). Where OpenSSH answers the same question,
//! the real `ssh` client, run on the same ssh_config, must decide the same.
//!
//! A connection through the daemon either works (a client of the forward gets its bytes
//! echoed back, then EOF) or is refused (the client is reset, and the daemon logs a line
//! naming the reason).

use crate::common;

mod auth;
mod certificates;
mod config_files;
mod host_key_variants;
mod host_keys;
mod proxy_jump;
mod user_certs;

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::net::read_until_closed;
use common::ssh_client::ssh_command;
use common::sshd_files::SSH_CONFIG_TEMPLATE;
use common::{
    DataServer, TIMEOUT, TestAgent, TestDaemon, TestSshd, bind_loopback, is_reset, port_of,
    refusing_port,
};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// What a client sends through the forward.
const PAYLOAD: &[u8] = b"lazytunnel: auth and host key check\n";

/// A daemon forwarding one local port, through `Host test` of an ssh_config, to an echo server.
struct Tunnel {
    daemon: TestDaemon,
    port: u16,
    _echo: DataServer,
}

impl Tunnel {
    /// Starts the daemon on `ssh_config`, with `SSH_AUTH_SOCK` pointing at `agent` if given,
    /// and waits until it listens. No session is opened until a client connects.
    async fn start(ssh_config: &Path, agent: Option<&TestAgent>) -> Tunnel {
        let echo = DataServer::echo().await;
        let listener = bind_loopback();
        let port = port_of(&listener);
        let config = format!(
            "ssh_config = \"{}\"\n\n[[forward]]\nname = \"echo\"\nlisten = \"127.0.0.1:{port}\"\n\
             host = \"test\"\ntarget = \"{}\"\n",
            common::path_str(ssh_config),
            echo.addr()
        );
        let mut builder = TestDaemon::builder().config_text(config).inherit(listener);
        if let Some(agent) = agent {
            builder = builder.env("SSH_AUTH_SOCK", agent.socket_path());
        }
        let daemon = builder.start();
        daemon.wait_for_log("listening", TIMEOUT).await;
        Tunnel {
            daemon,
            port,
            _echo: echo,
        }
    }

    /// Sends [`PAYLOAD`] through the forward, half-closes, and reads until the end: the bytes
    /// that came back, or the error that ended the connection.
    async fn echo_through(&self) -> io::Result<Vec<u8>> {
        let stream = TcpStream::connect(("127.0.0.1", self.port)).await?;
        let (mut reader, mut writer) = stream.into_split();
        writer.write_all(PAYLOAD).await?;
        writer.shutdown().await?;
        let read = tokio::time::timeout(TIMEOUT, read_until_closed(&mut reader)).await;
        let (received, ended) = read.map_err(|_| {
            io::Error::new(io::ErrorKind::TimedOut, "neither echo nor reset in time")
        })?;
        ended.map(|()| received)
    }

    /// The connection works: the payload comes back byte for byte, then a clean EOF.
    async fn assert_works(&self) {
        match self.echo_through().await {
            Ok(echoed) => assert!(
                echoed == PAYLOAD,
                "echo differs: got {:?}",
                String::from_utf8_lossy(&echoed)
            ),
            Err(err) => panic!("connection through the daemon failed: {err}"),
        }
    }

    /// The connection is refused: the client is reset and the daemon logs `reason`. Returns
    /// the first log line containing `reason`, for the caller to check what else it names.
    async fn assert_refused(&self, reason: &str) -> String {
        match self.echo_through().await {
            Err(err) => assert!(is_reset(&err), "expected a reset, got {err}"),
            Ok(echoed) => panic!(
                "connection went through ({} bytes echoed) but should be refused for {reason:?}",
                echoed.len()
            ),
        }
        let log = self.daemon.wait_for_log(reason, TIMEOUT).await;
        log_line(&log, reason)
    }

    /// Whether the daemon connects a client at all: for comparing its decision with OpenSSH's.
    async fn accepts(&self) -> bool {
        self.echo_through()
            .await
            .is_ok_and(|echoed| echoed == PAYLOAD)
    }
}

/// The first line of `log` containing `needle`.
fn log_line(log: &str, needle: &str) -> String {
    log.lines()
        .find(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in:\n{log}"))
        .to_string()
}

/// The harness's `Host test` client config (see [`SSH_CONFIG_TEMPLATE`]) with some options
/// changed: `(option, Some(value))` sets one, `(option, None)` leaves it out. Written as
/// `name` in the server's dir, which is returned.
fn client_config(sshd: &TestSshd, name: &str, changes: &[(&str, Option<&str>)]) -> PathBuf {
    for (option, _) in changes {
        // A misspelt option would silently change nothing.
        assert!(
            SSH_CONFIG_TEMPLATE.contains(option),
            "{option} is not in the template"
        );
    }
    let mut text = String::new();
    for line in SSH_CONFIG_TEMPLATE.lines() {
        let option = line.split_whitespace().next().unwrap_or_default();
        match changes.iter().find(|(changed, _)| *changed == option) {
            Some((_, Some(value))) => text.push_str(&format!("    {option} {value}\n")),
            Some((_, None)) => {}
            None => text.push_str(&format!("{line}\n")),
        }
    }
    sshd.write_ssh_config(name, &text)
}

/// How OpenSSH decides: `ssh -F CONFIG -o BatchMode=yes ARGS test true` with `agent`'s socket
/// as `SSH_AUTH_SOCK` if given. Returns whether it logged in, and what it said.
fn openssh(config: &Path, agent: Option<&TestAgent>, args: &[&str]) -> (bool, String) {
    let mut command = ssh_command(config);
    if let Some(agent) = agent {
        command.env("SSH_AUTH_SOCK", agent.socket_path());
    }
    let output = command
        .args(args)
        .args(["test", "true"])
        .output()
        .expect("could not run ssh");
    let said = String::from_utf8_lossy(&output.stderr).into_owned();
    (output.status.success(), said)
}

/// The `SHA256:...` fingerprint of the first key in `file`: a public key or a known_hosts.
fn fingerprint(file: &Path) -> String {
    let output = Command::new("ssh-keygen")
        .args(["-l", "-E", "sha256", "-f"])
        .arg(file)
        .output()
        .expect("could not run ssh-keygen -l");
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find(|field| field.starts_with("SHA256:"))
        .unwrap_or_else(|| panic!("no fingerprint for {}: {text}", file.display()))
        .to_string()
}

/// The file's contents; panics with its path.
fn read(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("could not read {}: {err}", path.display()))
}
