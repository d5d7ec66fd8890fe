//! [`TestDaemon`]: the lazytunnel binary run as a daemon in a sandboxed environment, and
//! [`run_cli`] for its one-shot commands.
//!
//! The contract with the binary, which tests rely on:
//! - `lazytunnel run --foreground --config FILE` runs until SIGTERM or SIGINT, then exits 0;
//! - it logs to stderr through `RUST_LOG` (set here to `lazytunnel=debug`);
//! - once a forward's listener is bound it logs one line containing `listening` (naming the
//!   forward and address). That line is the readiness signal: tests await it with
//!   `wait_for_log("listening", ..)`, or `wait_for_log_count("listening", n, ..)` for n forwards;
//! - `lazytunnel check --config FILE` validates a config and exits (non-zero if invalid).
//!
//! The config is TOML, for example:
//! ```toml
//! ssh_config = "/abs/path/ssh_config"   # e.g. TestSshd::ssh_config_path()
//! idle_timeout = "5m"
//! [[forward]]
//! name = "echo"
//! listen = "127.0.0.1:PORT"
//! host = "test"
//! target = "127.0.0.1:ECHOPORT"
//! ```
//!
//! `HOME` and the XDG directories point into the daemon's temp dir, and `SSH_AUTH_SOCK` is
//! removed unless a test sets it, so nothing of the real user's (`~/.ssh`, agent) leaks in and
//! parallel daemons never share a control socket.

use std::ffi::{OsStr, OsString};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::inherit::{EXEC_WITH_LISTEN_PID, pass_listeners};
use super::log::LogFile;
use super::netns::NsHandle;
use super::{TIMEOUT, send_signal, wait_for_exit, wait_for_exit_blocking, write_file};

/// How long a daemon gets to exit after SIGTERM before it is SIGKILLed on drop.
const EXIT_GRACE: Duration = Duration::from_secs(5);

/// The lazytunnel binary, if this is an integration test of the lazytunnel crate (cargo sets
/// `CARGO_BIN_EXE_<name>` only there).
pub fn lazytunnel_bin() -> Option<PathBuf> {
    option_env!("CARGO_BIN_EXE_lazytunnel").map(PathBuf::from)
}

fn bin() -> PathBuf {
    lazytunnel_bin().expect("CARGO_BIN_EXE_lazytunnel is set only in the lazytunnel crate's tests")
}

/// A private HOME, XDG dirs and runtime dir inside `root`, plus the caller's own variables.
pub struct Sandbox {
    home: PathBuf,
    runtime_dir: PathBuf,
    env: Vec<(OsString, OsString)>,
}

impl Sandbox {
    pub fn new(root: &Path, env: Vec<(OsString, OsString)>) -> Sandbox {
        let home = root.join("home");
        let runtime_dir = root.join("run");
        for dir in [&home, &runtime_dir] {
            std::fs::create_dir_all(dir).expect("could not create the sandbox dirs");
            // XDG_RUNTIME_DIR must be private to its user.
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .expect("could not restrict the sandbox dirs");
        }
        Sandbox {
            home,
            runtime_dir,
            env,
        }
    }

    /// The lazytunnel binary with the sandbox's environment (stdin from /dev/null).
    pub fn command(&self) -> Command {
        self.command_running(bin())
    }

    /// `program` with the sandbox's environment (stdin from /dev/null).
    pub fn command_running(&self, program: impl AsRef<OsStr>) -> Command {
        let mut command = Command::new(program);
        command
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("XDG_STATE_HOME", self.home.join(".local/state"))
            .env("XDG_DATA_HOME", self.home.join(".local/share"))
            .env("XDG_CACHE_HOME", self.home.join(".cache"))
            .env("XDG_RUNTIME_DIR", &self.runtime_dir)
            .env("RUST_LOG", "lazytunnel=debug")
            .env("RUST_BACKTRACE", "1")
            // Colour codes would split the words tests search the log for.
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_AGENT_PID")
            .envs(self.env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null());
        command
    }
}

impl Sandbox {
    /// The environment [`Sandbox::command`] sets, as `(name, value)` pairs, for launchers that
    /// do not pass their own environment on (systemd-socket-activate).
    pub fn vars(&self) -> Vec<(OsString, OsString)> {
        self.command()
            .get_envs()
            .filter_map(|(key, value)| Some((key.to_owned(), value?.to_owned())))
            .collect()
    }

    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn runtime_dir(&self) -> &Path {
        &self.runtime_dir
    }
}

#[derive(Default)]
pub struct TestDaemonBuilder {
    config_text: Option<String>,
    env: Vec<(OsString, OsString)>,
    args: Vec<OsString>,
    nofile: Option<u64>,
    netns: Option<NsHandle>,
    inherited: Vec<TcpListener>,
}

impl TestDaemonBuilder {
    /// The TOML config to run with (required).
    pub fn config_text(mut self, text: impl Into<String>) -> Self {
        self.config_text = Some(text.into());
        self
    }

    /// Sets an environment variable, overriding the sandbox's (e.g. `SSH_AUTH_SOCK`, `RUST_LOG`).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Appends an argument after `run --foreground --config FILE`.
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }

    /// Limits the daemon to `limit` open file descriptors (RLIMIT_NOFILE), to make accept fail
    /// with EMFILE.
    pub fn nofile_limit(mut self, limit: u64) -> Self {
        self.nofile = Some(limit);
        self
    }

    /// Hands the daemon `listener` as systemd would (`LISTEN_FDS`); it serves the forward that
    /// listens on its address. Tests give every listen port this way, so that no other process
    /// can take it first. Our copy is closed once the daemon has started.
    pub fn inherit(mut self, listener: TcpListener) -> Self {
        self.inherited.push(listener);
        self
    }

    /// Runs the daemon inside a network namespace ([`super::netns::NetNs::handle`]).
    pub fn netns(mut self, netns: NsHandle) -> Self {
        self.netns = Some(netns);
        self
    }

    /// Spawns the daemon and returns at once: await readiness with `wait_for_log("listening", ..)`.
    pub fn start(self) -> TestDaemon {
        let config_text = self.config_text.expect("TestDaemon needs config_text");
        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-daemon-")
            .tempdir()
            .expect("could not create a temp dir for the daemon");
        let config_path = dir.path().join("lazytunnel.toml");
        write_file(&config_path, &config_text);
        let sandbox = Sandbox::new(dir.path(), self.env);
        let log = LogFile::new(dir.path().join("daemon.log"));
        let mut command = if self.inherited.is_empty() {
            sandbox.command()
        } else {
            let mut shell = sandbox.command_running("sh");
            shell
                .args(EXEC_WITH_LISTEN_PID)
                .arg(bin())
                .env("LISTEN_FDS", self.inherited.len().to_string());
            shell
        };
        // Enter the namespace first: passing the listeners moves descriptors onto 3, 4, ...,
        // which may be where the namespace's own descriptor is.
        if let Some(netns) = &self.netns {
            netns.wrap(&mut command);
        }
        let inherited: Vec<&TcpListener> = self.inherited.iter().collect();
        let copies = pass_listeners(&mut command, &inherited);
        if let Some(limit) = self.nofile {
            use std::os::unix::process::CommandExt;
            let rlimit = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            // SAFETY: setrlimit is async-signal-safe and touches no memory of the parent.
            unsafe {
                command.pre_exec(move || {
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit) == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error())
                    }
                });
            }
        }
        let child = command
            .args(["run", "--foreground", "--config"])
            .arg(&config_path)
            .args(&self.args)
            .stdout(log.stdio())
            .stderr(log.stdio())
            .spawn()
            .unwrap_or_else(|err| panic!("could not run {}: {err}", bin().display()));
        drop(copies);
        drop(self.inherited);
        TestDaemon {
            child,
            exited: None,
            log,
            config_path,
            sandbox,
            dir,
        }
    }
}

/// How often [`TestDaemon::wait_for_sole_host`] reads the status: each read runs the CLI, a
/// process of its own, so less often than a file is re-read.
const STATUS_POLL: Duration = Duration::from_millis(100);

/// A running lazytunnel daemon; SIGTERMed (then SIGKILLed after 5 s) on drop.
pub struct TestDaemon {
    child: Child,
    exited: Option<ExitStatus>,
    log: LogFile,
    config_path: PathBuf,
    sandbox: Sandbox,
    dir: TempDir,
}

impl TestDaemon {
    pub fn builder() -> TestDaemonBuilder {
        TestDaemonBuilder::default()
    }

    /// Runs the daemon with `config_text` and the default environment.
    pub fn start(config_text: impl Into<String>) -> TestDaemon {
        TestDaemon::builder().config_text(config_text).start()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Replaces the config file's contents, e.g. before sending SIGHUP.
    pub fn write_config(&self, text: &str) {
        write_file(&self.config_path, text);
    }

    /// The daemon's `HOME`.
    pub fn home(&self) -> &Path {
        &self.sandbox.home
    }

    /// The daemon's `XDG_RUNTIME_DIR`.
    pub fn runtime_dir(&self) -> &Path {
        &self.sandbox.runtime_dir
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Everything the daemon wrote to stdout and stderr.
    pub fn log(&self) -> String {
        self.log.contents()
    }

    pub fn log_file(&self) -> &LogFile {
        &self.log
    }

    /// Waits until the log contains `needle`; panics with the log after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.log.wait_for_count("daemon", needle, 1, timeout).await
    }

    /// Waits until the log contains `needle` at least `count` times (e.g. the second
    /// `session up` after a reconnect); panics with the log after `timeout`.
    pub async fn wait_for_log_count(
        &self,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> String {
        self.log
            .wait_for_count("daemon", needle, count, timeout)
            .await
    }

    /// `lazytunnel status --json` against this daemon, parsed; panics unless it succeeds.
    pub fn status_json(&self) -> serde_json::Value {
        let output = self.cli(["status", "--json"]);
        assert!(
            output.status.success(),
            "status --json: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
    }

    /// The status document's entry for this daemon's one host (panics unless there is one).
    pub fn sole_host_status(&self) -> serde_json::Value {
        let status = self.status_json();
        match status["hosts"].as_array().map(Vec::as_slice) {
            Some([host]) => host.clone(),
            _ => panic!("expected one host in {status}"),
        }
    }

    /// Re-reads [`Self::sole_host_status`] until `fact` holds of it, and returns that entry;
    /// panics naming `what`, with the last entry read, after `timeout`. For a state the host
    /// reaches by itself (a failed attempt, an idle session retired), which no log line need
    /// say.
    pub async fn wait_for_sole_host(
        &self,
        what: &str,
        timeout: Duration,
        fact: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let host = self.sole_host_status();
            if fact(&host) {
                return host;
            }
            if std::time::Instant::now() >= deadline {
                panic!("host not {what} within {timeout:?}: {host}");
            }
            tokio::time::sleep(STATUS_POLL).await;
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, ...).
    pub fn signal(&self, signal: &str) -> bool {
        send_signal(self.child.id(), signal)
    }

    /// The exit status, if the daemon has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().ok().flatten();
        }
        self.exited
    }

    /// Waits until the daemon exits or `timeout` passes.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = wait_for_exit(&mut self.child, timeout).await;
        }
        self.exited
    }

    /// SIGTERM, then wait up to `timeout` for a graceful exit, which the test may need to drive
    /// (hence async); SIGKILL if it does not come. Returns the exit status.
    pub async fn shutdown(&mut self, timeout: Duration) -> ExitStatus {
        if self.try_status().is_none() {
            self.signal("TERM");
        }
        match self.wait_for_exit(timeout).await {
            Some(status) => status,
            None => {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait for the killed daemon");
                self.exited = Some(status);
                panic!("daemon did not exit within {timeout:?} of SIGTERM; killed it");
            }
        }
    }

    /// Runs a one-shot `lazytunnel ARGS` in this daemon's environment (same HOME and runtime
    /// dir, so it reaches this daemon's control socket).
    pub fn cli<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        output_of(self.sandbox.command().args(args))
    }
}

impl Drop for TestDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail("lazytunnel daemon");
        }
        if self.try_status().is_some() {
            return;
        }
        self.signal("TERM");
        if wait_for_exit_blocking(&mut self.child, EXIT_GRACE).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs a one-shot `lazytunnel ARGS` (e.g. `check --config FILE`) in a fresh sandbox and
/// returns its output. Blocks: for commands that need nothing from the test's own runtime.
pub fn run_cli<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let dir = tempfile::Builder::new()
        .prefix("lazytunnel-cli-")
        .tempdir()
        .expect("could not create a temp dir for the cli");
    let sandbox = Sandbox::new(dir.path(), Vec::new());
    output_of(sandbox.command().args(args))
}

/// Runs `command` to completion, killing it if it takes longer than [`TIMEOUT`].
pub fn output_of(command: &mut Command) -> Output {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("could not run {}: {err}", bin().display()));
    let pid = child.id();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(child.wait_with_output());
    });
    match receiver.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("could not collect lazytunnel's output"),
        Err(_) => {
            send_signal(pid, "KILL");
            panic!("lazytunnel cli did not finish within {TIMEOUT:?}; killed it");
        }
    }
}
