//! End-to-end specs of how forwarded connections and their SSH session begin and end: idle
//! teardown and reopening, session death, refused targets, bind failures, shutdown, and an
//! ad-hoc `run -L` with no config file.

use crate::{common, forwarding_support};

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::inherit::{EXEC_WITH_LISTEN_PID, bind_loopback, pass_listeners, port_of};
use common::log::LogFile;
use common::sshd_files::SSH_CONFIG_TEMPLATE;
use common::{
    DataServer, Mode, TIMEOUT, TestDaemon, TestSshd, deterministic_bytes, holds_throughout,
    path_str, refusing_port, send_signal, wait_for_exit, wait_for_exit_blocking, write_file,
};
use forwarding_support::{
    Forward, IDLE, IDLE_SETTING, PROMPTLY, assert_reset, assert_retired_idle, assert_same_bytes,
    config_text, connect, connect_and_drain, drain, echo_once, round_trip, socks5_connect,
    start_daemon,
};
use lazytunnel::daemon::DRAIN_PERIOD;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_session_closes_after_the_idle_timeout_and_the_next_client_opens_a_fresh_one() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, IDLE_SETTING, &[&forward]).await;
    let (reply, ended) = round_trip(forward.connect().await, b"first".to_vec()).await;
    let last_closed = Instant::now();
    ended.expect("clean EOF from the echo");
    assert_eq!(reply, b"first");
    assert_eq!(sshd.established_connections(), 1);

    assert_retired_idle(&daemon, &sshd, last_closed).await;

    let mut client = forward.connect().await;
    echo_once(&mut client, b"second").await;
    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(sshd.log().matches("Connection from").count(), 2);
    let host = daemon.sole_host_status();
    assert_eq!(host["sessions_opened"], 2, "{host}");
    assert_eq!(host["attempts"], 2, "{host}");
    // A session retired for idleness is not "lost": the next one is no reconnect.
    assert_eq!(host["reconnects"], 0, "{host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_carrying_an_idle_connection_outlives_the_idle_timeout() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, IDLE_SETTING, &[&forward]).await;
    let mut held = forward.connect().await;
    echo_once(&mut held, b"open").await;

    // Were the held connection not counted, the idle timer would close the session IDLE after
    // it opened; three periods give that timer room to fire late on a loaded machine. The
    // session is watched throughout, not once at the end: the same one stays up (no second
    // session opened) and sshd keeps exactly one connection.
    holds_throughout(3 * IDLE, || {
        let host = daemon.sole_host_status();
        let connections = sshd.established_connections();
        if host["state"] != "up" || host["sessions_opened"] != 1 || connections != 1 {
            return Err(format!("session not kept: {host} ({connections} at sshd)"));
        }
        Ok(())
    })
    .await;
    echo_once(&mut held, b"still open").await;
    // The same session does go once the connection is gone, so the timer above was live.
    drop(held);
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
    daemon
        .wait_for_log("session closed after idle timeout", TIMEOUT)
        .await;
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_death_resets_its_clients_and_the_next_client_gets_a_fresh_session() {
    const SEEN: usize = 1 << 20;
    let sshd = TestSshd::start();
    // Far more than can be sent before the session is killed.
    let endless = DataServer::start(Mode::Download {
        seed: 7,
        len: 1 << 40,
    })
    .await;
    let echo = DataServer::echo().await;
    let download = Forward::new("download", endless.addr());
    let after = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&download, &after]).await;
    let mut client = download.connect().await;
    let mut start = vec![0; SEEN];
    tokio::time::timeout(TIMEOUT, client.read_exact(&mut start))
        .await
        .expect("no download within TIMEOUT")
        .expect("read the start of the download");
    assert_same_bytes(
        &start,
        &deterministic_bytes(7, SEEN),
        "start of the download",
    );

    assert!(
        !sshd.kill_session_processes().is_empty(),
        "no session to kill"
    );

    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut client))
        .await
        .expect("the download neither ended nor was reset within TIMEOUT");
    assert_reset(ended, "download through a killed session");
    daemon.wait_for_log("session down", TIMEOUT).await;
    let mut client = after.connect().await;
    echo_once(&mut client, b"after the session died").await;
    let host = daemon.sole_host_status();
    assert_eq!(host["sessions_opened"], 2, "{host}");
    assert_eq!(host["reconnects"], 1, "{host}");
    assert_eq!(sshd.established_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_target_resets_its_client_promptly_and_spares_the_other_channels() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let (_held, refusing) = refusing_port();
    let closed_port = SocketAddr::from((Ipv4Addr::LOCALHOST, refusing));
    let live = Forward::new("live", echo.addr());
    let dead_end = Forward::new("dead-end", closed_port);
    let daemon = start_daemon(&sshd, "", &[&live, &dead_end]).await;
    let mut held = live.connect().await;
    echo_once(&mut held, b"before").await;

    let started = Instant::now();
    let (_, ended) = tokio::time::timeout(TIMEOUT, connect_and_drain(dead_end.port))
        .await
        .expect("neither EOF nor reset within TIMEOUT");
    let took = started.elapsed();

    assert_reset(ended, "connection to a refused target");
    assert!(took < PROMPTLY, "the reset took {took:?}");
    daemon
        .wait_for_log(
            &format!("refused to open a channel to {closed_port}"),
            TIMEOUT,
        )
        .await;
    echo_once(&mut held, b"after").await;
    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_address_in_use_makes_the_daemon_exit_non_zero_naming_address_and_error() {
    let sshd = TestSshd::start();
    let taken = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind port 0");
    let addr = taken.local_addr().expect("local address");
    let forward = Forward::on_port(
        addr.port(),
        "taken",
        SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
    );

    let mut daemon = TestDaemon::start(config_text(&sshd.ssh_config_path(), "", &[&forward]));

    let status = daemon
        .wait_for_exit(TIMEOUT)
        .await
        .expect("the daemon kept running");
    assert!(!status.success(), "exited with {status}");
    let log = daemon.log();
    let message = log
        .lines()
        .find(|line| line.contains("cannot listen on"))
        .unwrap_or_else(|| panic!("no error message on stderr:\n{log}"));
    assert!(
        message.contains(&addr.to_string()) && message.contains("Address already in use"),
        "{message}"
    );
    assert_eq!(sshd.established_connections(), 0);
    assert_eq!(
        message.matches("Address already in use").count(),
        1,
        "the cause is repeated: {message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_without_open_connections_exits_zero_at_once_and_disconnects_the_session() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let mut daemon = start_daemon(&sshd, "", &[&forward]).await;
    let (reply, ended) = round_trip(forward.connect().await, b"one".to_vec()).await;
    ended.expect("clean EOF from the echo");
    assert_eq!(reply, b"one");
    // The connection task is done; the session stays up (default idle timeout).
    daemon.wait_for_log("closed up=3 down=3", TIMEOUT).await;
    assert_eq!(sshd.established_connections(), 1);

    let started = Instant::now();
    let status = daemon.shutdown(TIMEOUT).await;
    let took = started.elapsed();

    assert!(status.success(), "exited with {status}");
    assert!(
        took < DRAIN_PERIOD,
        "took {took:?}, as if draining connections"
    );
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
    // A clean SSH disconnect, not just a dropped TCP connection.
    sshd.log_file()
        .wait_for_count("sshd", "lazytunnel is shutting down", 1, TIMEOUT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_open_connections_run_for_the_drain_period_then_resets_them() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let mut daemon = start_daemon(&sshd, "", &[&forward]).await;
    let mut held = forward.connect().await;
    echo_once(&mut held, b"open").await;

    let started = Instant::now();
    assert!(daemon.signal("TERM"));
    daemon
        .wait_for_log("shutting down: waiting up to", TIMEOUT)
        .await;

    let refused = TcpStream::connect(("127.0.0.1", forward.port)).await;
    let refused = refused.expect_err("accepted a new connection while shutting down");
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    echo_once(&mut held, b"draining").await;
    let (_, ended) = tokio::time::timeout(DRAIN_PERIOD + TIMEOUT, drain(&mut held))
        .await
        .expect("the open connection was never cut");
    let cut_after = started.elapsed();
    assert_reset(ended, "connection open at the end of the drain period");
    assert!(cut_after >= DRAIN_PERIOD, "cut {cut_after:?} after SIGTERM");
    let status = daemon
        .wait_for_exit(TIMEOUT)
        .await
        .expect("no exit after the drain");
    assert!(status.success(), "exited with {status}");
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_run_forwards_through_a_host_alias_of_the_users_ssh_config() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let listener = bind_loopback();
    let port = port_of(&listener);
    let spec = format!("127.0.0.1:{port}:{}", echo.addr());
    let mut daemon = AdHocDaemon::start(
        &sshd.render(SSH_CONFIG_TEMPLATE),
        &["-L", &spec, "test"],
        &[listener],
    );
    daemon
        .log
        .wait_for_count("daemon", "listening", 1, TIMEOUT)
        .await;
    let data = deterministic_bytes(51, 100_000);

    let (received, ended) = round_trip(connect(port).await, data.clone()).await;

    ended.expect("clean EOF from the echo");
    assert_same_bytes(&received, &data, "echo");
    assert_eq!(sshd.established_connections(), 1);
    assert!(send_signal(daemon.child.id(), "TERM"));
    let status = wait_for_exit(&mut daemon.child, TIMEOUT).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "exit after SIGTERM: {status:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_run_serves_dash_l_and_dash_d_forwards_together() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let listeners = [bind_loopback(), bind_loopback()];
    let (local, socks) = (port_of(&listeners[0]), port_of(&listeners[1]));
    let spec = format!("127.0.0.1:{local}:{}", echo.addr());
    let socks_spec = format!("127.0.0.1:{socks}");
    let args = ["-D", &socks_spec, "-L", &spec, "test"];
    let daemon = AdHocDaemon::start(&sshd.render(SSH_CONFIG_TEMPLATE), &args, &listeners);
    drop(listeners);
    daemon
        .log
        .wait_for_count("daemon", "listening", 2, TIMEOUT)
        .await;
    assert_eq!(sshd.established_connections(), 0);

    let mut through_socks = socks5_connect(socks, echo.addr()).await;
    echo_once(&mut through_socks, b"through -D").await;
    let mut through_local = connect(local).await;
    echo_once(&mut through_local, b"through -L").await;

    assert_eq!(sshd.established_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ad_hoc_run_serves_the_three_socket_path_forms_of_dash_l() {
    let sshd = TestSshd::start();
    let tcp_echo = DataServer::echo().await;
    let dir = tempfile::Builder::new()
        .prefix("lt-adhoc-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let remote = dir.path().join("remote.sock");
    let server = tokio::net::UnixListener::bind(&remote).expect("bind the remote socket");
    let echo = tokio::spawn(async move {
        while let Ok((mut stream, _)) = server.accept().await {
            tokio::spawn(async move {
                let (mut read, mut write) = stream.split();
                let _ = tokio::io::copy(&mut read, &mut write).await;
            });
        }
    });
    let (to_socket, to_port) = (dir.path().join("a.sock"), dir.path().join("b.sock"));
    let listener = bind_loopback();
    let port = port_of(&listener);
    // /LOCAL:/REMOTE, PORT:/REMOTE and /LOCAL:HOST:PORT, as `ssh -L` takes them.
    let socket_to_socket = format!("{}:{}", path_str(&to_socket), path_str(&remote));
    let port_to_socket = format!("127.0.0.1:{port}:{}", path_str(&remote));
    let socket_to_port = format!("{}:{}", path_str(&to_port), tcp_echo.addr());
    let daemon = AdHocDaemon::start(
        &sshd.render(SSH_CONFIG_TEMPLATE),
        &[
            "-L",
            &socket_to_socket,
            "-L",
            &port_to_socket,
            "-L",
            &socket_to_port,
            "test",
        ],
        &[listener],
    );
    daemon
        .log
        .wait_for_count("daemon", "listening", 3, TIMEOUT)
        .await;

    let unix = |path| tokio::net::UnixStream::connect(path);
    echo_once(&mut unix(&to_socket).await.unwrap(), b"socket to socket").await;
    echo_once(&mut connect(port).await, b"port to socket").await;
    echo_once(&mut unix(&to_port).await.unwrap(), b"socket to port").await;
    assert_eq!(sshd.established_connections(), 1);
    echo.abort();
}

/// `lazytunnel run --foreground ARGS` with no config file, its `HOME` a temp dir whose
/// `~/.ssh/config` holds the given text, inheriting `listeners` for its `-L` and `-D`. (TestDaemon always
/// passes `--config`, which `-L` excludes.) SIGTERMed, then SIGKILLed, on drop.
struct AdHocDaemon {
    child: Child,
    log: LogFile,
    _dir: tempfile::TempDir,
}

impl AdHocDaemon {
    fn start(ssh_config: &str, args: &[&str], listeners: &[TcpListener]) -> AdHocDaemon {
        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-adhoc-")
            .tempdir()
            .expect("could not create a temp dir for the daemon");
        let home = dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("could not create ~/.ssh");
        write_file(&home.join(".ssh/config"), ssh_config);
        let log = LogFile::new(dir.path().join("daemon.log"));
        let bin = common::daemon::lazytunnel_bin().expect("the lazytunnel binary");
        let mut command = Command::new("sh");
        let passed: Vec<&TcpListener> = listeners.iter().collect();
        let copies = pass_listeners(&mut command, &passed);
        let child = command
            .args(EXEC_WITH_LISTEN_PID)
            .arg(&bin)
            .env("LISTEN_FDS", listeners.len().to_string())
            .args(["run", "--foreground"])
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_STATE_HOME", home.join(".local/state"))
            .env("XDG_RUNTIME_DIR", dir.path())
            .env("RUST_LOG", "lazytunnel=debug")
            .env("NO_COLOR", "1")
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(log.stdio())
            .stderr(log.stdio())
            .spawn()
            .unwrap_or_else(|err| panic!("could not run {}: {err}", bin.display()));
        drop(copies);
        AdHocDaemon {
            child,
            log,
            _dir: dir,
        }
    }
}

impl Drop for AdHocDaemon {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail("ad-hoc lazytunnel daemon");
        }
        if let Ok(None) = self.child.try_wait() {
            send_signal(self.child.id(), "TERM");
            if wait_for_exit_blocking(&mut self.child, Duration::from_secs(5)).is_none() {
                let _ = self.child.kill();
                let _ = self.child.wait();
            }
        }
    }
}
