//! End-to-end specs of socket activation: the daemon started by the real
//! `systemd-socket-activate`, and by a harness that passes listeners on fds 3.. as systemd does,
//! serving the inherited sockets through a real sshd; sockets matched by name, else by address;
//! strays closed; `exit_when_idle` exiting 0 and a later start serving what queued meanwhile;
//! READY=1 and a status line on `NOTIFY_SOCKET`.

use crate::{common, forwarding_support, service_support};

use std::time::{Duration, Instant};

use common::{
    DataServer, TIMEOUT, TestSshd, bind_loopback, holds_throughout, port_of, refusing_port,
};
use forwarding_support::{
    Forward, config_text, connect, daemon_builder, echo_once, round_trip, socks5_connect,
};
use service_support::{Setup, refused};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sessions close after 1 s idle, and the daemon exits 1 s after that.
const IDLE_SETTINGS: &str = "idle_timeout = \"1s\"\nexit_when_idle = \"1s\"";
const EXIT_WHEN_IDLE: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_socket_activate_starts_it_on_the_first_connection_and_it_exits_when_idle() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let setup = Setup::new(&config_text(
        &sshd.ssh_config_path(),
        IDLE_SETTINGS,
        &[&forward],
    ));
    let socket = forward.take_socket().expect("a new forward's socket");
    // The port listens from now on: a connection made before the activator waits for one
    // queues until it does.
    let mut daemon = setup.spawn_socket_activate(&[&socket], "echo");
    drop(socket);

    let mut client = forward.connect().await;
    echo_once(&mut client, b"first connection").await;
    setup
        .log
        .wait_for_count("daemon", "inherited socket", 1, TIMEOUT)
        .await;
    // Were the open connection not counted, the session would close after idle_timeout (1 s)
    // and the daemon exit exit_when_idle (1 s) later: watching for twice that sum covers a
    // timer firing late. The daemon must stay up and its session open throughout.
    holds_throughout(4 * EXIT_WHEN_IDLE, || {
        let connections = sshd.established_connections();
        if !daemon.is_running() || connections != 1 {
            return Err(format!(
                "daemon or session gone with a connection open ({connections} at sshd)"
            ));
        }
        Ok(())
    })
    .await;
    echo_once(&mut client, b"still served").await;
    drop(client);

    let idle_from = Instant::now();
    let status = daemon.wait_for_exit(TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    assert!(idle_from.elapsed() >= EXIT_WHEN_IDLE);
    let log = setup.log.contents();
    assert!(log.contains("forward=echo"), "{log}");
    let exiting = log
        .find("exit_when_idle: exiting")
        .unwrap_or_else(|| panic!("no idle exit logged: {log}"));
    let session_closed = log
        .find("session closed after idle timeout")
        .unwrap_or_else(|| panic!("the session was not closed for idleness: {log}"));
    assert!(session_closed < exiting, "exited with a session up: {log}");
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socks_forward_is_socket_activated_like_any_other_and_exits_when_idle() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let socket = bind_loopback();
    let port = port_of(&socket);
    let setup = Setup::new(&format!(
        "ssh_config = {:?}\n{IDLE_SETTINGS}\n[[forward]]\nname = \"proxy\"\n\
         listen = \"127.0.0.1:{port}\"\nhost = \"test\"\nsocks = true\n",
        common::path_str(&sshd.ssh_config_path())
    ));
    let mut daemon = setup.spawn_socket_activate(&[&socket], "proxy");
    drop(socket);

    let mut client = socks5_connect(port, echo.addr()).await;
    echo_once(&mut client, b"through an inherited SOCKS socket").await;
    setup
        .log
        .wait_for_count("daemon", "inherited socket", 1, TIMEOUT)
        .await;
    drop(client);

    let status = daemon.wait_for_exit(TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    assert!(setup.log.contents().contains("forward=proxy"));
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passed_sockets_match_forwards_by_name_then_address_and_strays_are_closed() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    // Named "byname" but listening elsewhere than the config says: the name wins.
    let by_name = bind_loopback();
    let stray = bind_loopback();
    // Nothing may listen where the config puts it.
    let (_held, nowhere) = refusing_port();
    let named = Forward::on_port(nowhere, "byname", echo.addr());
    let addressed = Forward::new("byaddr", echo.addr());
    let by_addr = addressed.take_socket().expect("a new forward's socket");
    // The daemon binds this one itself. Its port is free only from just before the daemon
    // starts, so another process may take it first: the daemon then exits naming the address
    // in use, and is started again with a new port.
    let (setup, unpassed, _daemon) = 'start: {
        for _ in 0..3 {
            let unpassed = Forward::new("bound", echo.addr());
            unpassed.release();
            let setup = Setup::new(&config_text(
                &sshd.ssh_config_path(),
                "",
                &[&named, &addressed, &unpassed],
            ));
            let daemon = setup.spawn_with_fds(
                &[&by_name, &by_addr, &stray],
                Some("byname:lazytunnel.socket:stray"),
            );
            let bound = format!("listen=127.0.0.1:{}", unpassed.port);
            let outcome = [&bound[..], "Address already in use"];
            let said = setup
                .log
                .wait_for_any_since("daemon", 0, &outcome, TIMEOUT)
                .await;
            if said.contains(&bound) {
                break 'start (setup, unpassed, daemon);
            }
        }
        panic!("three free ports were all taken before the daemon could bind them");
    };
    setup
        .log
        .wait_for_count("daemon", "listening", 3, TIMEOUT)
        .await;

    for (port, data) in [
        (port_of(&by_name), &b"by name"[..]),
        (addressed.port, b"by address"),
        (unpassed.port, b"bound by the daemon"),
    ] {
        let (reply, ended) = round_trip(connect(port).await, data.to_vec()).await;
        ended.expect("clean end");
        assert_eq!(reply, data);
    }
    assert!(
        refused(named.port).await,
        "the forward served by its named socket was bound again at its configured address"
    );
    let log = setup.log.contents();
    assert!(log.contains("matches no forward"), "{log}");
    assert!(log.contains("name=stray"), "{log}");
    // The daemon closed its copy of the stray socket: once ours is gone, nothing listens.
    let stray_port = port_of(&stray);
    drop(stray);
    assert!(
        refused(stray_port).await,
        "the daemon kept the stray socket open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_idle_exit_a_restart_on_the_held_socket_serves_the_connection_that_queued() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let held = forward.take_socket().expect("a new forward's socket");
    let setup = Setup::new(&config_text(
        &sshd.ssh_config_path(),
        IDLE_SETTINGS,
        &[&forward],
    ));

    let mut first = setup.spawn_with_fds(&[&held], Some("echo"));
    setup
        .log
        .wait_for_count("daemon", "listening", 1, TIMEOUT)
        .await;
    let (reply, ended) = round_trip(forward.connect().await, b"before".to_vec()).await;
    ended.expect("clean end");
    assert_eq!(reply, b"before");
    let status = first.wait_for_exit(TIMEOUT).await;
    assert!(status.success(), "exit status {status}");

    // Nothing serves the port now, but the held socket queues the connection.
    let mut queued = forward.connect().await;
    queued
        .write_all(b"queued")
        .await
        .expect("write while queued");
    let _second = setup.spawn_with_fds(&[&held], Some("echo"));
    let mut back = [0; 6];
    tokio::time::timeout(TIMEOUT, queued.read_exact(&mut back))
        .await
        .expect("the queued connection was not served")
        .expect("read the echo");
    assert_eq!(&back, b"queued");
    assert_eq!(setup.log.count("inherited socket"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_systemd_it_reports_ready_with_a_status_line_once_it_listens() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let dir = tempfile::tempdir().expect("temp dir");
    let socket_path = dir.path().join("notify.sock");
    let notify = tokio::net::UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    let daemon = daemon_builder(&sshd.ssh_config_path(), "", &[&forward])
        .env("NOTIFY_SOCKET", &socket_path)
        .start();

    let mut message = vec![0; 4096];
    let len = tokio::time::timeout(TIMEOUT, notify.recv(&mut message))
        .await
        .expect("no notification within TIMEOUT")
        .expect("receive the notification");
    let message = String::from_utf8_lossy(&message[..len]).into_owned();
    let lines: Vec<&str> = message.lines().collect();
    assert!(lines.contains(&"READY=1"), "{message}");
    let status: Vec<&&str> = lines.iter().filter(|l| l.starts_with("STATUS=")).collect();
    assert_eq!(status.len(), 1, "{message}");
    assert!(status[0].contains("serving 1 forward"), "{message}");
    // Ready means listening: the port answers.
    let mut client = forward.connect().await;
    echo_once(&mut client, b"ready").await;
    drop(daemon);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_unix_socket_is_socket_activated_matched_by_its_path_and_its_file_left_to_the_manager() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let dir = tempfile::Builder::new()
        .prefix("lt-act-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let path = dir.path().join("echo.sock");
    let path_text = common::path_str(&path);
    let setup = Setup::new(&format!(
        "ssh_config = {:?}\n{IDLE_SETTINGS}\n[[forward]]\nname = \"echo\"\n\
         listen = {path_text:?}\nhost = \"test\"\ntarget = \"{}\"\n",
        common::path_str(&sshd.ssh_config_path()),
        echo.addr()
    ));
    // A name no forward has, as in the unit `install` writes: matched by path.
    let mut daemon = setup.spawn_socket_activate_on(path_text, "lazytunnel+by-address");
    setup
        .log
        .wait_for_count("activator", "Listening on", 1, TIMEOUT)
        .await;

    let mut client = tokio::net::UnixStream::connect(&path)
        .await
        .expect("connect to the activator's socket");
    echo_once(&mut client, b"through an inherited Unix socket").await;
    setup
        .log
        .wait_for_count("daemon", "inherited socket", 1, TIMEOUT)
        .await;
    drop(client);

    let status = daemon.wait_for_exit(TIMEOUT).await;
    assert!(status.success(), "exit status {status}");
    assert!(setup.log.contents().contains("forward=echo"));
    assert!(
        path.exists(),
        "the daemon removed the socket manager's file"
    );
}
