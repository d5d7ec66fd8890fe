//! End-to-end specs of the core forwarding path, through a real OpenSSH server: sessions are
//! opened lazily and shared, bytes arrive exactly, half-close travels both ways, and every
//! finished connection closes its channel on the server.
//!
//! Session lifetime (idle teardown, session death, refusals, bind failure, shutdown, ad-hoc
//! runs) is specified in `forwarding_lifecycle.rs`.

use crate::{common, forwarding_support};

use std::time::Duration;

use common::net::ByteGenerator;
use common::sshd_files::SSH_CONFIG_TEMPLATE;
use common::{DataServer, Mode, TIMEOUT, TestSshd, deterministic_bytes, path_str, sha256};
use forwarding_support::{
    Forward, assert_same_bytes, connect, echo_once, read_to_end, round_trip, start_daemon,
    start_daemon_with,
};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinSet;

/// Large enough to need many SSH packets and several window adjustments both ways; odd, so
/// the last packet is a short one.
const BIG: usize = (32 << 20) + 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_ssh_connection_is_opened_before_the_first_client_of_its_host() {
    let sshd = TestSshd::start();
    let other_sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let lazy = Forward::via("test", "lazy", echo.addr());
    let other = Forward::via("other", "other", echo.addr());
    let daemon = start_daemon_with(
        &two_hosts_ssh_config(&sshd, &other_sshd),
        "",
        &[&lazy, &other],
    )
    .await;

    assert_eq!(
        sshd.established_connections(),
        0,
        "connected before any client, at start"
    );
    let check = daemon.cli(["check", "--config", path_str(daemon.config_path())]);
    assert!(check.status.success(), "lazytunnel check: {check:?}");
    assert_eq!(
        sshd.established_connections(),
        0,
        "connected before any client, after `check`"
    );
    // A whole session to another host: time for an eager connection to show up, had there
    // been one, and proof that using one host opens no session to the others.
    let (reply, ended) = round_trip(other.connect().await, b"other".to_vec()).await;
    ended.expect("clean EOF from the other host's echo");
    assert_eq!(reply, b"other");
    assert_eq!(other_sshd.established_connections(), 1);
    assert_eq!(
        sshd.established_connections(),
        0,
        "connected before any client of its host"
    );
    assert!(
        !sshd.log().contains("Connection from"),
        "sshd saw a connection:\n{}",
        sshd.log()
    );

    let mut client = lazy.connect().await;
    echo_once(&mut client, b"first client").await;

    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(sshd.log().matches("Connection from").count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_of_two_forwards_to_one_host_share_one_ssh_connection() {
    const MAIN_CLIENTS: usize = 64;
    const SECOND_CLIENTS: usize = 8;
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let second_echo = DataServer::echo().await;
    let main = Forward::new("main", echo.addr());
    let second = Forward::new("second", second_echo.addr());
    let daemon = start_daemon(&sshd, "", &[&main, &second]).await;

    // All at once, so that the first clients race each other for the session being opened.
    let mut connecting = JoinSet::new();
    for seed in 0..MAIN_CLIENTS + SECOND_CLIENTS {
        let port = if seed < MAIN_CLIENTS {
            main.port
        } else {
            second.port
        };
        connecting.spawn(async move { (seed, connect(port).await) });
    }
    let clients = connecting.join_all().await;
    // Every channel is open once sshd has connected it to its target.
    assert_eq!(
        echo.wait_for_active(MAIN_CLIENTS, TIMEOUT).await,
        MAIN_CLIENTS
    );
    assert_eq!(
        second_echo.wait_for_active(SECOND_CLIENTS, TIMEOUT).await,
        SECOND_CLIENTS
    );

    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(
        sshd.log().matches("Connection from").count(),
        1,
        "more than one SSH connection"
    );
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
    let mut transfers = JoinSet::new();
    for (seed, client) in clients {
        let data = deterministic_bytes(seed as u64, 20_000 + seed);
        transfers.spawn(async move { (seed, round_trip(client, data.clone()).await, data) });
    }
    for (seed, (received, ended), sent) in transfers.join_all().await {
        ended.unwrap_or_else(|err| panic!("client {seed}: {err}"));
        assert_same_bytes(&received, &sent, &format!("client {seed}"));
    }
    assert_eq!(echo.accepted(), MAIN_CLIENTS);
    assert_eq!(second_echo.accepted(), SECOND_CLIENTS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_of_32_mib_arrives_byte_exact() {
    let sshd = TestSshd::start();
    let server = DataServer::start(Mode::HashUpload).await;
    let forward = Forward::new("upload", server.addr());
    let _daemon = start_daemon(&sshd, "", &[&forward]).await;
    let data = deterministic_bytes(31, BIG);

    let (digest, ended) = round_trip(forward.connect().await, data.clone()).await;

    ended.expect("clean EOF after the digest");
    assert_eq!(digest, sha256(&data), "the server hashed different bytes");
    let reports = server.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(
        (reports[0].bytes_read, reports[0].error),
        (BIG as u64, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_of_32_mib_arrives_byte_exact() {
    let sshd = TestSshd::start();
    let server = DataServer::start(Mode::Download {
        seed: 32,
        len: BIG as u64,
    })
    .await;
    let forward = Forward::new("download", server.addr());
    let _daemon = start_daemon(&sshd, "", &[&forward]).await;

    let mut client = forward.connect().await;
    let (received, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("download not finished within TIMEOUT");
    drop(client);

    ended.expect("clean EOF after the download");
    assert_same_bytes(&received, &deterministic_bytes(32, BIG), "download");
    let reports = server.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(
        (reports[0].bytes_written, reports[0].error),
        (BIG as u64, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_of_32_mib_written_and_read_at_once_is_byte_exact() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let _daemon = start_daemon(&sshd, "", &[&forward]).await;
    let data = deterministic_bytes(33, BIG);

    let (received, ended) = round_trip(forward.connect().await, data.clone()).await;

    ended.expect("clean EOF after the echo");
    assert_same_bytes(&received, &data, "echo");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_half_close_still_receives_what_the_server_sends_after_eof() {
    let sshd = TestSshd::start();
    // Replies only once it has read EOF, then closes.
    let server = DataServer::start(Mode::HashUpload).await;
    let forward = Forward::new("upload", server.addr());
    let _daemon = start_daemon(&sshd, "", &[&forward]).await;
    let data = deterministic_bytes(41, 1 << 20);
    let mut client = forward.connect().await;

    client.write_all(&data).await.expect("upload");
    client.shutdown().await.expect("half-close");

    let reports = server.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(reports.len(), 1, "the server never saw EOF");
    assert_eq!(
        (reports[0].bytes_read, reports[0].error),
        (data.len() as u64, None)
    );
    let (digest, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no reply within TIMEOUT");
    ended.expect("clean EOF after the reply");
    assert_eq!(digest, sha256(&data));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_half_close_reaches_the_client_as_eof_and_the_client_can_still_send() {
    const DOWN: usize = 1 << 20;
    const UP: usize = 300_001;
    let sshd = TestSshd::start();
    // Sends DOWN bytes, shuts down its write side, then reads until the client's EOF.
    let server = DataServer::start(Mode::Download {
        seed: 42,
        len: DOWN as u64,
    })
    .await;
    let forward = Forward::new("download", server.addr());
    let daemon = start_daemon(&sshd, "", &[&forward]).await;
    let mut client = forward.connect().await;

    let (received, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no EOF within TIMEOUT");
    ended.expect("a clean EOF, not a reset");
    assert_same_bytes(&received, &deterministic_bytes(42, DOWN), "download");
    assert!(
        server.stats().finished.is_empty(),
        "server closed before the client's EOF"
    );

    let mut generator = ByteGenerator::new(43);
    let mut upload = vec![0; UP];
    generator.fill(&mut upload);
    client
        .write_all(&upload)
        .await
        .expect("send after the server's EOF");
    client.shutdown().await.expect("half-close");

    let reports = server.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(reports.len(), 1, "the server never saw the client's EOF");
    assert_eq!(
        (reports[0].bytes_read, reports[0].error),
        (UP as u64, None),
        "the server should read what was sent after its own EOF"
    );
    daemon
        .wait_for_log(&format!("closed up={UP} down={DOWN}"), TIMEOUT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_finished_connection_closes_its_channel_on_the_server() {
    const CONNECTIONS: usize = 50;
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&forward]).await;

    // Half end cleanly (EOF both ways); half are reset by the client mid-connection.
    for seed in 0..CONNECTIONS {
        let data = deterministic_bytes(seed as u64, 1000 + seed);
        let mut client = forward.connect().await;
        if seed % 2 == 0 {
            let (received, ended) = round_trip(client, data.clone()).await;
            ended.unwrap_or_else(|err| panic!("connection {seed}: {err}"));
            assert_same_bytes(&received, &data, &format!("connection {seed}"));
        } else {
            echo_once(&mut client, &data).await;
            socket2::SockRef::from(&client)
                .set_linger(Some(Duration::ZERO))
                .expect("SO_LINGER 0, to reset on close");
            drop(client);
        }
    }

    // sshd frees a channel once it has both sent and received CHANNEL_CLOSE.
    let log = sshd
        .log_file()
        .wait_for_count("sshd", "free: direct-tcpip", CONNECTIONS, TIMEOUT)
        .await;
    assert_eq!(
        log.matches("server_request_direct_tcpip").count(),
        CONNECTIONS
    );
    assert_eq!(log.matches("free: direct-tcpip").count(), CONNECTIONS);
    assert_eq!(
        echo.wait_for_active(0, TIMEOUT).await,
        0,
        "sshd kept target connections open"
    );
    let mut client = forward.connect().await;
    echo_once(&mut client, b"after the churn").await;
    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}

/// An ssh_config defining `test` for `test_sshd` and `other` for `other_sshd`.
fn two_hosts_ssh_config(test_sshd: &TestSshd, other_sshd: &TestSshd) -> std::path::PathBuf {
    let other = SSH_CONFIG_TEMPLATE.replace("Host test", "Host other");
    let text = test_sshd.render(SSH_CONFIG_TEMPLATE) + &other_sshd.render(&other);
    test_sshd.write_file("ssh_config.two_hosts", &text)
}
