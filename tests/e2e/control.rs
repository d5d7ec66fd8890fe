//! End-to-end specs of the control socket: `status` (table and JSON schema), `stop`, the
//! socket's permissions and the one-instance rule, malformed requests, `connect HOST`, and
//! `check --connect`.

use crate::{common, control_support, forwarding_support};

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{DataServer, TIMEOUT, TestSshd, path_str, run_cli, write_file};
use control_support::{
    assert_success, assert_window_follows, control_socket, entry, raw_request, status_json, stderr,
    stdout,
};
use forwarding_support::{Forward, PROMPTLY, config_text, daemon_builder, echo_once, start_daemon};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_the_live_session_its_channels_and_bytes_per_host_and_forward() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let busy = Forward::new("busy", echo.addr());
    let quiet = Forward::new("quiet", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&busy, &quiet]).await;
    let mut first = busy.connect().await;
    let mut second = busy.connect().await;
    echo_once(&mut first, &[7; 1000]).await;
    echo_once(&mut second, &[8; 24]).await;

    let status = status_json(&daemon);

    assert_eq!(status["version"], 1);
    assert_eq!(status["pid"], daemon.pid());
    let host = entry(&status["hosts"], "host", "test");
    assert_eq!(host["state"], "up");
    assert_eq!(host["channels"], 2);
    assert_eq!(host["remote_addr"], sshd.addr().to_string());
    let local: std::net::SocketAddr = host["local_addr"].as_str().unwrap().parse().unwrap();
    assert!(local.ip().is_loopback(), "{host}");
    assert_eq!(host["reconnects"], 0);
    assert_eq!(host["failures"], 0);
    // Both connections were served by one attempt's session.
    assert_eq!(host["attempts"], 1, "{host}");
    assert_eq!(host["sessions_opened"], 1, "{host}");
    let rtt = Duration::from_micros(host["path_rtt_us"].as_u64().expect("a round trip"));
    assert_window_follows(host["window"].as_u64().expect("a window"), rtt);
    assert_eq!(host["bytes_up"], 1024);
    assert_eq!(host["bytes_down"], 1024);
    assert!(
        host["next_attempt"].is_null() && host["error"].is_null(),
        "{host}"
    );
    let since = host["since"].as_str().unwrap();
    assert!(
        since.ends_with('Z') && since.len() == 20,
        "not RFC 3339: {since}"
    );

    let forward = entry(&status["forwards"], "name", "busy");
    assert_eq!(
        forward["listen"],
        serde_json::json!([format!("127.0.0.1:{}", busy.port)])
    );
    assert_eq!(forward["host"], "test");
    assert_eq!(forward["target"], echo.addr().to_string());
    assert_eq!(forward["connections_open"], 2);
    assert_eq!(forward["connections_total"], 2);
    assert_eq!(forward["bytes_up"], 1024);
    assert_eq!(forward["bytes_down"], 1024);
    assert!(forward["last_error"].is_null());
    let idle = entry(&status["forwards"], "name", "quiet");
    assert_eq!(idle["connections_total"], 0);

    drop(first);
    let table = daemon.cli(["status"]);
    assert_success(&table, "status");
    let table = stdout(&table);
    let host_line = table
        .lines()
        .find(|l| l.starts_with("test "))
        .expect(&table);
    assert!(
        host_line.contains(" up ") && host_line.contains(&sshd.addr().to_string()),
        "{table}"
    );
    assert!(table.lines().any(|l| l.starts_with("HOST ")), "{table}");
    assert!(table.lines().any(|l| l.starts_with("busy ")), "{table}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_window_is_what_the_session_grants_and_a_host_table_wins() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    for (settings, window) in [
        ("window_size = \"1MiB\"", 1 << 20),
        (
            "window_size = \"1MiB\"\n[host.test]\nwindow_size = \"24MiB\"",
            24 << 20,
        ),
    ] {
        let daemon = start_daemon(&sshd, settings, &[&forward]).await;
        echo_once(&mut forward.connect().await, b"x").await;
        let status = status_json(&daemon);
        let host = entry(&status["hosts"], "host", "test");
        assert_eq!(host["window"], window, "{settings}");
        let line = daemon.wait_for_log("session up", TIMEOUT).await;
        assert!(line.contains(&format!("window={window}")), "{line}");
    }
}

#[test]
fn status_without_a_daemon_fails_with_one_line_saying_so() {
    let output = run_cli(["status"]);

    assert!(!output.status.success());
    let said = stderr(&output);
    assert_eq!(said.lines().count(), 1, "{said}");
    assert!(said.contains("lazytunnel is not running"), "{said}");
    assert!(said.contains("control.sock"), "names the socket: {said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_returns_once_the_daemon_has_exited_and_its_socket_is_gone() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let mut daemon = start_daemon(&sshd, "", &[&forward]).await;
    let socket = control_socket(&daemon);
    assert!(socket.exists());
    // An open connection keeps the daemon draining for its drain period before it exits, so
    // a `stop` that returned before the exit would find it still running.
    let mut held = forward.connect().await;
    echo_once(&mut held, b"open").await;

    let output = daemon.cli(["stop"]);

    assert_success(&output, "stop");
    // `stop` has returned, so the daemon is ending already: no waiting for that. `stop` sees
    // the instance lock freed, which the kernel does while the process exits, a moment
    // before the process can be reaped: hence "exiting", then a wait for its status.
    assert!(
        common::procfs::is_exiting(daemon.pid()),
        "stop returned while the daemon still runs"
    );
    assert!(!socket.exists(), "control socket left behind");
    let exited = daemon.wait_for_exit(PROMPTLY).await;
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
    daemon
        .wait_for_log("stop requested on the control socket", PROMPTLY)
        .await;
    assert!(!stderr(&daemon.cli(["status"])).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_control_socket_is_private_and_a_second_daemon_is_refused() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&forward]).await;
    let socket = control_socket(&daemon);
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    assert_eq!(mode(&socket), 0o600);
    assert_eq!(mode(socket.parent().unwrap()), 0o700);

    let second_config = daemon.dir().join("second.toml");
    let other = Forward::new("other", echo.addr());
    write_file(
        &second_config,
        &config_text(&sshd.ssh_config_path(), "", &[&other]),
    );
    let second = daemon.cli(["run", "--foreground", "--config", path_str(&second_config)]);
    assert!(!second.status.success());
    let said = stderr(&second);
    assert!(
        said.contains("already running") && said.contains(&daemon.pid().to_string()),
        "{said}"
    );
    // The first one is undisturbed: its socket still answers.
    assert_eq!(status_json(&daemon)["pid"], daemon.pid());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_requests_are_answered_with_errors_and_the_daemon_keeps_serving() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&forward]).await;

    let cases: [(&[u8], &str); 4] = [
        (b"hello\n", "malformed request"),
        (b"{\"command\":\"launch\"}\n", "unknown variant"),
        (b"{\"command\":\"connect\"}\n", "missing field `host`"),
        (&[b'x'; 70 * 1024], "longer than 65536 bytes"),
    ];
    for (request, expected) in cases {
        let answer = raw_request(&daemon, request);
        assert_eq!(answer["ok"], false, "{answer}");
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(error.contains(expected), "expected {expected:?}: {answer}");
    }

    let answer = raw_request(&daemon, b"{\"command\":\"status\"}\n");
    assert_eq!(answer["ok"], true, "{answer}");
    assert_eq!(answer["status"]["version"], 1);
    let mut client = forward.connect().await;
    echo_once(&mut client, b"still serving").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_opens_the_hosts_session_without_a_client() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&forward]).await;
    assert_eq!(sshd.established_connections(), 0);

    let output = daemon.cli(["connect", "test"]);

    assert_success(&output, "connect test");
    assert!(
        stdout(&output).contains("test: session up"),
        "{}",
        stdout(&output)
    );
    assert_eq!(sshd.wait_for_connections(1, TIMEOUT).await, 1);
    assert_eq!(
        entry(&status_json(&daemon)["hosts"], "host", "test")["state"],
        "up"
    );
    // The connection that follows uses that session.
    let mut client = forward.connect().await;
    echo_once(&mut client, b"prewarmed").await;
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
    let again = daemon.cli(["connect", "test"]);
    assert!(stdout(&again).contains("already up"), "{}", stdout(&again));

    let unknown = daemon.cli(["connect", "nowhere"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("no forward uses host \"nowhere\""),
        "{}",
        stderr(&unknown)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_reports_a_refused_host_key_as_such_and_status_shows_the_failure() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let ssh_config = sshd.ssh_config_with_known_hosts(&sshd.write_known_hosts_changed_key());
    let daemon = forwarding_support::start_daemon_with(&ssh_config, "", &[&forward]).await;

    let output = daemon.cli(["connect", "test"]);

    assert!(!output.status.success(), "{}", stdout(&output));
    let said = stderr(&output);
    assert!(said.contains("test: host key failure"), "{said}");
    assert!(said.contains("CHANGED"), "{said}");
    let host = entry(&status_json(&daemon)["hosts"], "host", "test").clone();
    assert_eq!(host["state"], "failed", "{host}");
    assert!(
        host["error"].as_str().unwrap().contains("CHANGED"),
        "{host}"
    );
    assert!(host["next_attempt"].is_string(), "{host}");
    // `connect` retries at once despite the permanent failure's backoff.
    let again = daemon.cli(["connect", "test"]);
    assert!(
        stderr(&again).contains("host key failure"),
        "{}",
        stderr(&again)
    );
    let host = entry(&status_json(&daemon)["hosts"], "host", "test").clone();
    assert_eq!(host["attempts"], 2, "{host}");
    assert_eq!(host["state"], "failed", "{host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_connect_reports_each_host_and_fails_when_one_cannot_be_reached() {
    let sshd = TestSshd::start();
    let dir = tempfile::tempdir().unwrap();
    let good = Forward::new("echo", "127.0.0.1:9".parse().unwrap());
    let good_config = dir.path().join("good.toml");
    write_file(
        &good_config,
        &config_text(&sshd.ssh_config_path(), "", &[&good]),
    );
    let bad_ssh = sshd.ssh_config_with_known_hosts(&sshd.write_known_hosts_changed_key());
    let bad_config = dir.path().join("bad.toml");
    write_file(&bad_config, &config_text(&bad_ssh, "", &[&good]));

    let ok = run_cli(["check", "--connect", "--config", path_str(&good_config)]);
    let refused = run_cli(["check", "--connect", "--config", path_str(&bad_config)]);

    assert_success(&ok, "check --connect");
    assert!(stdout(&ok).contains("  test: ok ("), "{}", stdout(&ok));
    assert!(!refused.status.success());
    let out = stdout(&refused);
    assert!(out.contains("  test: FAILED: host key failure"), "{out}");
    assert!(
        stderr(&refused).contains("could not be reached"),
        "{}",
        stderr(&refused)
    );
    // No daemon was involved, and nothing stays connected.
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_socket_on_the_command_line_is_where_the_daemon_listens() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let private = tempfile::tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let socket = private.path().join("ctl.sock");
    let daemon = daemon_builder(&sshd.ssh_config_path(), "", &[&forward])
        .arg("--control-socket")
        .arg(&socket)
        .start();
    daemon.wait_for_log("listening", TIMEOUT).await;

    let output = daemon.cli(["status", "--json", "--control-socket", path_str(&socket)]);

    assert_success(&output, "status --control-socket");
    assert!(
        !control_socket(&daemon).exists(),
        "the default socket was bound too"
    );
    let default = daemon.cli(["status"]);
    assert!(
        stderr(&default).contains("not running"),
        "{}",
        stderr(&default)
    );
    // A reload keeps the socket given on the command line.
    let reload = daemon.cli(["reload", "--control-socket", path_str(&socket)]);
    assert_success(&reload, "reload");
    assert!(
        !stdout(&reload).contains("not applied"),
        "{}",
        stdout(&reload)
    );
}
