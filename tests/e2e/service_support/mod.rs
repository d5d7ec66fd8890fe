//! Helpers for the service specs (`tests/socket_activation.rs`, `tests/background.rs`): a
//! sandbox with a config file, and the daemon started the ways a socket manager or a user
//! starts it.
//!
//! Each test binary uses only part of this module, hence the `allow(dead_code)`.
#![allow(dead_code)]

use std::ffi::OsString;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use crate::common::daemon::{Sandbox, lazytunnel_bin};
use crate::common::inherit::{EXEC_WITH_LISTEN_PID, pass_listeners};
use crate::common::log::LogFile;
use crate::common::{TIMEOUT, send_signal, wait_for_exit, wait_for_exit_blocking, write_file};

/// A sandbox (HOME, XDG dirs), a config file and one log that every process started from it
/// appends to.
pub struct Setup {
    pub sandbox: Sandbox,
    pub config: PathBuf,
    pub log: LogFile,
    dir: TempDir,
}

impl Setup {
    pub fn new(config_text: &str) -> Setup {
        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-service-")
            .tempdir()
            .expect("could not create a temp dir");
        let config = dir.path().join("lazytunnel.toml");
        write_file(&config, config_text);
        let sandbox = Sandbox::new(dir.path(), Vec::new());
        let log = LogFile::new(dir.path().join("daemon.log"));
        Setup {
            sandbox,
            config,
            log,
            dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// `lazytunnel run --foreground --config FILE` as an argument list.
    pub fn run_args(&self) -> Vec<OsString> {
        let bin = lazytunnel_bin().expect("the lazytunnel binary");
        vec![
            bin.into(),
            "run".into(),
            "--foreground".into(),
            "--config".into(),
            self.config.clone().into(),
        ]
    }

    /// Starts the daemon as systemd would: `listeners` on fds 3.., `LISTEN_PID`, `LISTEN_FDS`
    /// and, if given, `LISTEN_FDNAMES`. A shell sets `LISTEN_PID=$$` and execs the daemon, so
    /// the variable names the daemon's own pid.
    pub fn spawn_with_fds(&self, listeners: &[&TcpListener], names: Option<&str>) -> Running {
        self.spawn_with_fds_counted(listeners, names, listeners.len())
    }

    /// Starts the real `systemd-socket-activate`, which starts the daemon on the first
    /// connection. It is handed `listeners` as systemd hands sockets over (it passes on those
    /// it inherits, named `fdnames` with `--fdname`) rather than binding ports itself: bound
    /// here, no port is ever free for another process to take.
    pub fn spawn_socket_activate(&self, listeners: &[&TcpListener], fdnames: &str) -> Running {
        // Through a shell that sets LISTEN_PID: the activator takes the sockets as systemd's.
        let mut command = self.socket_activate(None, fdnames);
        command.env("LISTEN_FDS", listeners.len().to_string());
        let high = pass_listeners(&mut command, listeners);
        let child = command.spawn().expect("could not spawn sh");
        drop(high);
        Running::new(child, &self.log)
    }

    /// The real `systemd-socket-activate` binding `listen` itself (`--listen=`): for a Unix
    /// socket path, which no other process can take from under it.
    pub fn spawn_socket_activate_on(&self, listen: &str, fdnames: &str) -> Running {
        let child = self
            .socket_activate(Some(listen), fdnames)
            .spawn()
            .expect("could not spawn systemd-socket-activate");
        Running::new(child, &self.log)
    }

    /// `systemd-socket-activate` starting the daemon: binding `listen` itself, or else (run
    /// by a shell that sets `LISTEN_PID`) passing on the sockets it inherits. It passes on
    /// only the variables it is given: the sandbox's.
    fn socket_activate(&self, listen: Option<&str>, fdnames: &str) -> Command {
        Command::new("systemd-socket-activate")
            .arg("--version")
            .output()
            .expect("systemd-socket-activate (Debian package systemd) must be installed");
        let mut command = match listen {
            Some(listen) => {
                let mut command = Command::new("systemd-socket-activate");
                command.arg(format!("--listen={listen}"));
                command
            }
            None => {
                let mut command = Command::new("sh");
                command
                    .args(EXEC_WITH_LISTEN_PID)
                    .arg("systemd-socket-activate");
                command
            }
        };
        command.arg(format!("--fdname={fdnames}"));
        for (key, value) in self.sandbox.vars() {
            let mut setenv = OsString::from("--setenv=");
            setenv.push(key);
            setenv.push("=");
            setenv.push(value);
            command.arg(setenv);
        }
        command
            .args(self.run_args())
            .stdin(Stdio::null())
            .stdout(self.log.stdio())
            .stderr(self.log.stdio());
        command
    }

    /// Like [`Setup::spawn_with_fds`], with `LISTEN_FDS` set to `count` whatever was passed (a
    /// wrong count, as a broken socket manager would give).
    pub fn spawn_with_fds_counted(
        &self,
        listeners: &[&TcpListener],
        names: Option<&str>,
        count: usize,
    ) -> Running {
        let mut command = Command::new("sh");
        command
            .args(EXEC_WITH_LISTEN_PID)
            .args(self.run_args())
            .env_clear()
            .envs(self.sandbox.vars())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("LISTEN_FDS", count.to_string())
            .stdin(Stdio::null())
            .stdout(self.log.stdio())
            .stderr(self.log.stdio());
        if let Some(names) = names {
            command.env("LISTEN_FDNAMES", names);
        }
        let high = pass_listeners(&mut command, listeners);
        let child = command.spawn().expect("could not spawn sh");
        drop(high);
        Running::new(child, &self.log)
    }
}

/// A child process, SIGTERMed (then SIGKILLed) on drop; its log is printed if the test fails.
pub struct Running {
    pub child: Child,
    log: LogFile,
}

impl Running {
    pub fn new(child: Child, log: &LogFile) -> Running {
        Running {
            child,
            log: log.clone(),
        }
    }

    pub async fn wait_for_exit(&mut self, timeout: Duration) -> ExitStatus {
        wait_for_exit(&mut self.child, timeout)
            .await
            .unwrap_or_else(|| panic!("did not exit within {timeout:?}:\n{}", self.log.contents()))
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail("lazytunnel");
        }
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.child.id(), "TERM");
            if wait_for_exit_blocking(&mut self.child, TIMEOUT).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}

/// Whether connecting to 127.0.0.1:`port` is refused (nothing listens there).
pub async fn refused(port: u16) -> bool {
    match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
        Ok(_) => false,
        Err(err) => err.kind() == std::io::ErrorKind::ConnectionRefused,
    }
}
