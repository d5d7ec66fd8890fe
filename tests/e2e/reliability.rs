//! End-to-end spec: faults on the path to the server go unnoticed by local clients as far as
//! possible. A fault-injecting proxy sits between the daemon and the real sshd: a blackholed
//! session (a network migration: no FIN, no RST, just silence) is found out by a probe when a
//! connection needs it, or by keepalives within interval x (max + 1); the connection that
//! arrived meanwhile is held and served on a new session, not refused. A slow path is not
//! mistaken for a dead one, and a server that restarts serves the client held across it.

use crate::{common, control_support, forwarding_support};

use std::time::Duration;

use common::proxy::FaultProxy;
use common::{DataServer, TIMEOUT, TestSshd, write_file};
use control_support::{assert_window_follows, entry, status_json};
use forwarding_support::{Forward, assert_reset, drain, echo_once, start_daemon_with};
use tokio::time::Instant;

/// An ssh_config like the test sshd's, but reaching it through `proxy`, with a known_hosts
/// that lists the server's keys under the proxy's port.
fn ssh_config_via(sshd: &TestSshd, proxy: &FaultProxy) -> std::path::PathBuf {
    let via_port = |path: &std::path::Path, from: String, to: String| {
        let original = std::fs::read_to_string(path).expect("read the sshd's client files");
        let text = original.replace(&from, &to);
        assert_ne!(text, original, "{} does not mention {from}", path.display());
        text
    };
    let known_hosts = sshd.dir().join(format!("known_hosts.via_{}", proxy.port()));
    let (sshd_port, proxy_port) = (sshd.port(), proxy.port());
    write_file(
        &known_hosts,
        &via_port(
            &sshd.known_hosts_path(),
            format!("]:{sshd_port} "),
            format!("]:{proxy_port} "),
        ),
    );
    let config = via_port(
        &sshd.ssh_config_path(),
        format!("Port {sshd_port}"),
        format!("Port {proxy_port}"),
    )
    .replace(
        common::path_str(&sshd.known_hosts_path()),
        common::path_str(&known_hosts),
    );
    let path = sshd.dir().join(format!("ssh_config.via_{proxy_port}"));
    write_file(&path, &config);
    path
}

struct Setup {
    sshd: TestSshd,
    proxy: FaultProxy,
    echo: DataServer,
    forward: Forward,
    daemon: common::TestDaemon,
}

async fn setup(settings: &str) -> Setup {
    let sshd = TestSshd::start();
    let proxy = FaultProxy::start(sshd.addr()).await;
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon_with(&ssh_config_via(&sshd, &proxy), settings, &[&forward]).await;
    Setup {
        sshd,
        proxy,
        echo,
        forward,
        daemon,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_arriving_on_a_blackholed_session_is_held_and_served_on_a_new_one() {
    // Keepalives every 15 s would take a minute: only the probe can find this out in time.
    let s = setup("").await;
    let mut before = s.forward.connect().await;
    echo_once(&mut before, b"before the migration").await;

    s.proxy.blackhole();
    let started = Instant::now();
    let mut held = s.forward.connect().await;
    echo_once(&mut held, b"after the migration").await;
    let served_after = started.elapsed();

    eprintln!("client held across a blackholed session, served after {served_after:?}");
    let line = s.daemon.wait_for_log("session down", TIMEOUT).await;
    assert!(line.contains("no reply to a probe"), "{line}");
    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut before))
        .await
        .expect("the connection on the dead session was not cut");
    assert_reset(ended, "connection on the blackholed session");
    assert_eq!(s.daemon.sole_host_status()["sessions_opened"], 2);
    assert_eq!(s.daemon.log_file().count("connection refused"), 0);
    assert_eq!(s.proxy.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalives_find_a_blackholed_session_within_interval_times_max_plus_one() {
    let s = setup("keepalive_interval = \"1s\"\nkeepalive_max = 2").await;
    let mut open = s.forward.connect().await;
    echo_once(&mut open, b"before the migration").await;

    s.proxy.blackhole();
    let started = Instant::now();
    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut open))
        .await
        .expect("the connection on the dead session was not cut");
    let detected = started.elapsed();

    eprintln!("blackholed session declared dead after {detected:?} (bound 3 s)");
    assert_reset(ended, "connection on the blackholed session");
    // Nothing was in flight, so only the keepalives could tell: not before two intervals.
    assert!(
        detected >= Duration::from_secs(2),
        "declared dead after {detected:?}, before the keepalives could have"
    );
    assert!(
        detected < Duration::from_secs(3) + Duration::from_millis(1500),
        "declared dead only after {detected:?}; the bound is interval x (max + 1) = 3 s"
    );
    // The next client gets a new session at once.
    let mut next = s.forward.connect().await;
    echo_once(&mut next, b"on a new session").await;
    assert_eq!(s.daemon.sole_host_status()["sessions_opened"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_path_is_not_mistaken_for_a_dead_one() {
    let s = setup("").await;
    let mut open = s.forward.connect().await;
    echo_once(&mut open, b"fast").await;

    // Each direction delayed 700 ms: a channel open takes 1.4 s, longer than the 1 s after
    // which the session is probed; the probe's reply comes within its 2 s deadline.
    s.proxy.set_delay(Duration::from_millis(700));
    let mut slow = s.forward.connect().await;
    echo_once(&mut slow, b"slow but alive").await;
    echo_once(&mut open, b"still there").await;

    s.daemon
        .wait_for_log("probing session: a channel open got no reply", TIMEOUT)
        .await;
    let host = s.daemon.sole_host_status();
    assert_eq!(host["state"], "up", "{host}");
    assert_eq!(host["sessions_opened"], 1, "{host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_session_is_replaced_for_the_next_client() {
    let s = setup("").await;
    let mut open = s.forward.connect().await;
    echo_once(&mut open, b"before").await;

    s.proxy.reset_all();
    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut open))
        .await
        .expect("the connection on the reset session was not cut");
    assert_reset(ended, "connection on a reset session");
    s.daemon.wait_for_log("session down", TIMEOUT).await;

    let mut next = s.forward.connect().await;
    echo_once(&mut next, b"after").await;
    assert_eq!(s.daemon.sole_host_status()["reconnects"], 1);
    assert_eq!(s.echo.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_held_across_an_sshd_restart_is_served_when_it_is_back() {
    let mut s = setup("").await;
    let mut open = s.forward.connect().await;
    echo_once(&mut open, b"before").await;

    s.sshd.stop();
    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut open))
        .await
        .expect("the connection was not cut when sshd died");
    assert_reset(ended, "connection through a crashed sshd");
    s.daemon.wait_for_log("session down", TIMEOUT).await;

    // The server is down: the first attempt fails, the client is held for the retry.
    let mut held = s.forward.connect().await;
    let line = s
        .daemon
        .wait_for_log("session failed (transient)", TIMEOUT)
        .await;
    assert!(line.contains("next attempt"), "{line}");
    s.sshd.start_again();
    echo_once(&mut held, b"served after the restart").await;

    assert_eq!(s.daemon.sole_host_status()["sessions_opened"], 2);
    assert_eq!(s.daemon.log_file().count("connection refused"), 0);
}

/// An ssh_config where `jump` reaches the sshd through `proxy`, and `test` is reached over a
/// channel of `jump`'s session (ProxyJump).
fn ssh_config_jump_via(sshd: &TestSshd, proxy: &FaultProxy) -> std::path::PathBuf {
    let jump = std::fs::read_to_string(ssh_config_via(sshd, proxy))
        .expect("read the proxied ssh_config")
        .replace("Host test", "Host jump");
    let carried = std::fs::read_to_string(sshd.ssh_config_path()).expect("read the ssh_config")
        + "    ProxyJump jump\n";
    let ssh_config = sshd.dir().join("ssh_config.jump_via_proxy");
    write_file(&ssh_config, &format!("{carried}{jump}"));
    ssh_config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_behind_a_slow_jump_link_gets_a_window_for_its_round_trip() {
    let sshd = TestSshd::start();
    let proxy = FaultProxy::start(sshd.addr()).await;
    let echo = DataServer::echo().await;
    // 15 ms each way between the daemon and the jump host: the channel to `test` takes a
    // 30 ms round trip to open, which is `test`'s path. (`jump`'s own TCP connect ends at the
    // proxy, so it sees loopback's round trip: a proxy hides the path from a TCP connect.)
    proxy.set_delay(Duration::from_millis(15));
    let through_jump = Forward::via("test", "carried", echo.addr());
    let daemon = start_daemon_with(&ssh_config_jump_via(&sshd, &proxy), "", &[&through_jump]).await;
    let mut client = through_jump.connect().await;
    echo_once(&mut client, b"over a long path").await;

    let status = status_json(&daemon);
    let window_and_rtt = |host: &str| {
        let entry = entry(&status["hosts"], "host", host);
        let rtt = Duration::from_micros(entry["path_rtt_us"].as_u64().expect("up: a round trip"));
        (entry["window"].as_u64().expect("up: a window"), rtt)
    };
    let (window, rtt) = window_and_rtt("test");
    assert!(rtt >= Duration::from_millis(30), "{rtt:?}");
    assert_window_follows(window, rtt);
    assert!(
        window >= 7_500_000,
        "1 Gbit/s over 30 ms, topped up at half, needs 7.5 MB; got {window}"
    );
    // Every byte of `test`'s session passes through a channel of `jump`'s session, whose own
    // round trip says nothing of the paths it carries: it grants the largest automatic window.
    let (jump_window, _) = window_and_rtt("jump");
    assert_eq!(jump_window, u64::from(lazytunnel::client::WINDOW_MAX));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jump_hosts_death_ends_the_sessions_it_carries_at_once() {
    let sshd = TestSshd::start();
    let proxy = FaultProxy::start(sshd.addr()).await;
    let echo = DataServer::echo().await;
    let through_jump = Forward::via("test", "carried", echo.addr());
    let on_jump = Forward::via("jump", "direct", echo.addr());
    let daemon = start_daemon_with(
        &ssh_config_jump_via(&sshd, &proxy),
        "",
        &[&through_jump, &on_jump],
    )
    .await;
    let mut carried_client = through_jump.connect().await;
    echo_once(&mut carried_client, b"through the jump host").await;

    blackhole_then_serve(&proxy, &on_jump).await;
    let started = Instant::now();
    let (_, ended) = tokio::time::timeout(TIMEOUT, drain(&mut carried_client))
        .await
        .expect("the carried session outlived its jump host's session");
    eprintln!(
        "carried connection reset {:?} after the jump host's replacement",
        started.elapsed()
    );
    assert_reset(ended, "connection on a session carried by a dead jump host");
    let line = daemon
        .wait_for_log("its jump host's session ended", TIMEOUT)
        .await;
    assert!(line.contains("session down"), "{line}");
}

/// Blackholes the path and serves a new client of `forward` (on the proxied host), which finds
/// the session dead by its probe and opens a new one.
async fn blackhole_then_serve(proxy: &FaultProxy, forward: &Forward) {
    proxy.blackhole();
    let mut held = forward.connect().await;
    echo_once(&mut held, b"on a new jump session").await;
}
