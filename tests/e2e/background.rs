//! End-to-end specs of `lazytunnel run` without `--foreground`: it detaches, logs to the state
//! directory, serves, stops on SIGTERM, refuses a second instance for the same control socket,
//! and reports errors found before detaching on the terminal with a non-zero exit.

use crate::{common, forwarding_support, service_support};

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use common::daemon::{lazytunnel_bin, output_of};
use common::inherit::{EXEC_WITH_LISTEN_PID, pass_listeners};
use common::log::LogFile;
use common::{DataServer, POLL_INTERVAL, TIMEOUT, TestSshd, path_str, send_signal};
use forwarding_support::{Forward, config_text, round_trip};
use service_support::Setup;

/// A process the test did not spawn (the detached daemon); SIGKILLed on drop if still alive.
struct Detached(u32);

impl Detached {
    /// Alive and not a zombie (the daemon's parent is init, which may be slow to reap).
    fn is_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.0))
            .ok()
            .and_then(|stat| {
                stat.rsplit_once(')')
                    .map(|(_, rest)| rest.trim().to_string())
            })
            .is_some_and(|rest| !rest.starts_with('Z'))
    }

    /// Field 6 of /proc/PID/stat: the session id.
    fn session(&self) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.0)).expect("stat");
        let (_, rest) = stat.rsplit_once(')').expect("stat format");
        rest.split_whitespace()
            .nth(3)
            .and_then(|s| s.parse().ok())
            .expect("session id")
    }

    async fn wait_for_exit(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while self.is_alive() {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
        true
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if self.is_alive() {
            send_signal(self.0, "KILL");
        }
    }
}

fn run_in_background(setup: &Setup) -> Output {
    output_of(
        setup
            .sandbox
            .command()
            .args(["run", "--config", path_str(&setup.config)]),
    )
}

/// `run` handed `listener` as a socket manager would, so that the port stays the test's
/// between daemons.
fn run_in_background_on(setup: &Setup, listener: &TcpListener) -> Output {
    let mut command = setup.sandbox.command_running("sh");
    command
        .args(EXEC_WITH_LISTEN_PID)
        .arg(lazytunnel_bin().expect("the lazytunnel binary"))
        .args(["run", "--config", path_str(&setup.config)])
        .env("LISTEN_FDS", "1");
    let copies = pass_listeners(&mut command, &[listener]);
    let output = output_of(&mut command);
    drop(copies);
    output
}

/// `run` in the background on `listener`, which must succeed; the daemon is the pid in its
/// lock file.
fn start_in_background(setup: &Setup, listener: &TcpListener) -> Detached {
    let started = run_in_background_on(setup, listener);
    assert!(started.status.success(), "{}", stderr(&started));
    let pid = std::fs::read_to_string(lock_file(setup))
        .expect("the lock file")
        .trim()
        .parse()
        .expect("a pid in the lock file");
    Detached(pid)
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn log_of(setup: &Setup) -> LogFile {
    LogFile::new(
        setup
            .sandbox
            .home()
            .join(".local/state/lazytunnel/lazytunnel.log"),
    )
}

fn lock_file(setup: &Setup) -> PathBuf {
    setup
        .sandbox
        .runtime_dir()
        .join("lazytunnel/control.sock.lock")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detached_daemon_serves_refuses_a_second_instance_and_stops_on_sigterm() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let listener = forward.take_socket().expect("a new forward's socket");
    let setup = Setup::new(&config_text(&sshd.ssh_config_path(), "", &[&forward]));

    let started = run_in_background_on(&setup, &listener);
    let said = stderr(&started);
    assert!(started.status.success(), "{said}");
    let pid: u32 = said
        .split("(pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid in: {said}"));
    let daemon = Detached(pid);
    let log = log_of(&setup);
    assert!(
        said.contains(path_str(log.path())),
        "the log is not named: {said}"
    );
    // The ports are bound before the command returns: a client needs no wait.
    let (reply, ended) = round_trip(forward.connect().await, b"through the agent".to_vec()).await;
    ended.expect("clean end");
    assert_eq!(reply, b"through the agent");
    log.wait_for_count("daemon", "listening", 1, TIMEOUT).await;
    let in_lock = std::fs::read_to_string(lock_file(&setup)).expect("the lock file");
    assert_eq!(in_lock.trim(), pid.to_string());
    assert!(daemon.is_alive());
    assert_ne!(
        daemon.session(),
        pid,
        "a session leader could regain a terminal"
    );
    let stdin = std::fs::read_link(format!("/proc/{pid}/fd/0")).expect("the daemon's stdin");
    assert_eq!(stdin, PathBuf::from("/dev/null"));

    for args in [&["run"][..], &["run", "--foreground"]] {
        let second = output_of(
            setup
                .sandbox
                .command()
                .args(args)
                .args(["--config", path_str(&setup.config)]),
        );
        let said = stderr(&second);
        assert!(!second.status.success(), "{args:?}: {said}");
        assert!(
            said.contains(&format!("already running (pid {pid})")),
            "{said}"
        );
    }
    assert!(
        daemon.is_alive(),
        "a refused second instance disturbed the first"
    );

    send_signal(pid, "TERM");
    assert!(
        daemon.wait_for_exit(TIMEOUT).await,
        "still running after SIGTERM"
    );
    log.wait_for_count("daemon", "stopped", 1, TIMEOUT).await;
    // The lock dies with its holder: a new daemon may start at once.
    let again = start_in_background(&setup, &listener);
    send_signal(again.0, "TERM");
    assert!(again.wait_for_exit(TIMEOUT).await);
}

#[test]
fn a_port_in_use_is_reported_on_the_terminal_before_detaching() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("local_addr").port();
    let config = format!(
        "ssh_config = \"/dev/null\"\n[[forward]]\nname = \"busy\"\nlisten = \"127.0.0.1:{port}\"\n\
         host = \"srv\"\ntarget = \"localhost:1\"\n"
    );
    let setup = Setup::new(&config);

    let output = run_in_background(&setup);

    let said = stderr(&output);
    assert!(!output.status.success(), "{said}");
    assert!(said.contains(&format!("127.0.0.1:{port}")), "{said}");
    assert!(said.contains("\"busy\""), "{said}");
    assert!(!said.contains("running in the background"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detached_daemon_answers_status_and_stop_ends_it() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let listener = forward.take_socket().expect("a new forward's socket");
    let setup = Setup::new(&config_text(&sshd.ssh_config_path(), "", &[&forward]));
    let daemon = start_in_background(&setup, &listener);
    let pid = daemon.0;
    let command = |verb: &str| {
        output_of(
            setup
                .sandbox
                .command()
                .args([verb, "--config", path_str(&setup.config)]),
        )
    };

    let status = command("status");
    assert!(status.status.success(), "{}", stderr(&status));
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(table.contains(&format!("lazytunnel pid {pid}")), "{table}");
    let stopped = command("stop");

    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert!(
        daemon.wait_for_exit(Duration::ZERO).await,
        "stop returned before the exit"
    );
    let after = command("status");
    assert!(stderr(&after).contains("not running"), "{}", stderr(&after));
}
