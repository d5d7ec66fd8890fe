//! Self-checks of the test harness (`tests/common`) against the real OpenSSH client and plain
//! sockets. Every end-to-end test trusts these helpers, so when one of these fails, fix the
//! harness first.

use crate::common;

use std::path::Path;
use std::process::Output;

use common::keys::KeyType;
use common::net::{ByteGenerator, read_until_closed};
use common::ssh_client::{SshProcess, ssh_command};
use common::{
    DataServer, Mode, TIMEOUT, TestAgent, TestSshd, deterministic_bytes, free_port, sha256,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `ssh -F CONFIG test true`, the smallest complete login.
fn ssh_true(config: &Path) -> Output {
    ssh_command(config)
        .args(["test", "true"])
        .output()
        .expect("run ssh")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `ssh -v -N` holding one connection open, returned once it has logged in.
async fn connected_ssh(sshd: &TestSshd) -> SshProcess {
    let mut command = ssh_command(&sshd.ssh_config_path());
    command.args(["-v", "-N", "test"]);
    let ssh = SshProcess::spawn(command);
    ssh.wait_for_log("Authenticated to", TIMEOUT).await;
    ssh
}

/// An `ssh -N -L` forwarding `127.0.0.1:PORT` to `target`, returned once it listens. ssh binds
/// the port itself, so another process may take it first: ssh then says the address is in
/// use and exits, and a new port is tried.
async fn ssh_forward(sshd: &TestSshd, target: std::net::SocketAddr) -> (SshProcess, u16) {
    for _ in 0..3 {
        let port = free_port();
        let mut command = ssh_command(&sshd.ssh_config_path());
        command
            .args(["-v", "-N", "-o", "ExitOnForwardFailure=yes", "-L"])
            .arg(format!("127.0.0.1:{port}:{target}"))
            .arg("test");
        let ssh = SshProcess::spawn(command);
        // ssh says "Local forwarding listening on" before it binds; the listener channel
        // exists only once it listens.
        let listening = "new port-listener";
        let said = ssh
            .wait_for_any(&[listening, "Address already in use"], TIMEOUT)
            .await;
        if said.contains(listening) {
            return (ssh, port);
        }
    }
    panic!("three free ports were all taken before ssh could listen on them");
}

/// Sends `data` through `stream`, half-closes, and returns everything read back until EOF.
async fn round_trip(stream: TcpStream, data: Vec<u8>) -> (Vec<u8>, std::io::Result<()>) {
    let (mut reader, mut writer) = stream.into_split();
    let sending = tokio::spawn(async move {
        writer.write_all(&data).await?;
        writer.shutdown().await
    });
    let received = read_until_closed(&mut reader).await;
    sending
        .await
        .expect("sender task")
        .expect("send and half-close");
    received
}

#[test]
fn generated_ssh_config_logs_in_with_the_user_key() {
    let sshd = TestSshd::start();

    let output = ssh_true(&sshd.ssh_config_path());

    assert!(output.status.success(), "ssh failed: {}", stderr(&output));
    assert!(
        sshd.log()
            .contains(&format!("Accepted publickey for {}", sshd.user()))
    );
}

#[test]
fn changed_host_key_is_refused() {
    let sshd = TestSshd::start();
    let config = sshd.ssh_config_with_known_hosts(&sshd.write_known_hosts_changed_key());

    let output = ssh_true(&config);

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{}",
        stderr(&output)
    );
    assert!(!sshd.log().contains("Accepted publickey"));
}

#[test]
fn unknown_host_is_refused() {
    let sshd = TestSshd::start();
    let config = sshd.ssh_config_with_known_hosts(&sshd.write_known_hosts_without_host());

    let output = ssh_true(&config);

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("Host key verification failed"),
        "{}",
        stderr(&output)
    );
    assert!(!sshd.log().contains("Accepted publickey"));
}

#[test]
fn hashed_known_hosts_is_accepted() {
    let sshd = TestSshd::start();
    let hashed = sshd.write_known_hosts_hashed();
    assert!(std::fs::read_to_string(&hashed).unwrap().starts_with("|1|"));

    let output = ssh_true(&sshd.ssh_config_with_known_hosts(&hashed));

    assert!(output.status.success(), "ssh failed: {}", stderr(&output));
}

#[test]
fn every_host_key_type_and_the_rsa_user_key_are_trusted() {
    let sshd = TestSshd::builder()
        .host_key(KeyType::Ecdsa)
        .host_key(KeyType::Rsa)
        .rsa_user_key()
        .start();

    for key in sshd.host_keys() {
        let output = ssh_command(&sshd.ssh_config_path())
            .args([
                "-o",
                &format!("HostKeyAlgorithms={}", key.kind.host_key_algorithm()),
            ])
            .args(["test", "true"])
            .output()
            .expect("run ssh");
        assert!(
            output.status.success(),
            "{:?} host key: {}",
            key.kind,
            stderr(&output)
        );
    }

    let rsa_key = sshd.rsa_key_path().unwrap().to_str().unwrap().to_string();
    let config = sshd.write_ssh_config(
        "ssh_config.rsa",
        &common::sshd_files::SSH_CONFIG_TEMPLATE.replace("{user_key}", &rsa_key),
    );
    let output = ssh_true(&config);
    assert!(output.status.success(), "rsa user key: {}", stderr(&output));
    assert!(sshd.log().contains("ssh2: RSA SHA256:"));
}

#[tokio::test]
async fn local_forward_through_sshd_reaches_the_echo_server_and_keeps_half_close() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let (_ssh, port) = ssh_forward(&sshd, echo.addr()).await;
    let data = deterministic_bytes(1, 1 << 20);

    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (received, ended) = round_trip(stream, data.clone()).await;

    ended.expect("clean EOF after the echo");
    assert!(
        received == data,
        "echo differs: {} of {} bytes",
        received.len(),
        data.len()
    );
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test]
async fn many_channels_share_one_ssh_connection() {
    const CHANNELS: usize = 200;
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let (_ssh, port) = ssh_forward(&sshd, echo.addr()).await;

    // Open all the streams first, so all the channels are open at the same time.
    let mut streams = Vec::new();
    for _ in 0..CHANNELS {
        streams.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    assert_eq!(echo.wait_for_active(CHANNELS, TIMEOUT).await, CHANNELS);
    assert_eq!(sshd.established_connections(), 1);

    let mut tasks = tokio::task::JoinSet::new();
    for (seed, stream) in streams.into_iter().enumerate() {
        let data = deterministic_bytes(seed as u64, 10_000 + seed);
        tasks.spawn(async move { (round_trip(stream, data.clone()).await, data) });
    }
    while let Some(joined) = tasks.join_next().await {
        let ((received, ended), sent) = joined.unwrap();
        ended.expect("clean EOF");
        assert!(received == sent);
    }
    assert_eq!(echo.accepted(), CHANNELS);
}

#[tokio::test]
async fn established_connections_and_session_processes_follow_an_ssh_client() {
    let sshd = TestSshd::start();
    assert_eq!(sshd.established_connections(), 0);
    assert!(sshd.session_processes().is_empty());

    let mut ssh = connected_ssh(&sshd).await;
    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(sshd.session_processes().len(), 1);

    ssh.kill();
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
    assert_eq!(sshd.wait_for_session_processes(0, TIMEOUT).await, 0);
}

#[tokio::test]
async fn killing_session_processes_drops_the_client_but_not_the_listener() {
    let sshd = TestSshd::start();
    let mut ssh = connected_ssh(&sshd).await;

    let killed = sshd.kill_session_processes();

    assert!(!killed.is_empty());
    let status = ssh.wait_for_exit(TIMEOUT).await.expect("ssh should exit");
    assert!(!status.success(), "ssh exited cleanly:\n{}", ssh.log());
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
    let output = ssh_true(&sshd.ssh_config_path());
    assert!(
        output.status.success(),
        "listener died too: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn restart_drops_sessions_and_keeps_port_and_host_key() {
    let mut sshd = TestSshd::start();
    let (port, pid) = (sshd.port(), sshd.pid());
    let mut ssh = connected_ssh(&sshd).await;

    sshd.restart();

    let status = ssh.wait_for_exit(TIMEOUT).await.expect("ssh should exit");
    assert!(!status.success());
    assert_eq!(sshd.port(), port);
    assert_ne!(sshd.pid(), pid);
    let output = ssh_true(&sshd.ssh_config_path());
    assert!(
        output.status.success(),
        "after restart: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn stopped_sshd_refuses_connections_until_started_again() {
    let mut sshd = TestSshd::start();

    sshd.stop();
    let refused = TcpStream::connect(sshd.addr()).await.unwrap_err();
    sshd.start_again();

    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(ssh_true(&sshd.ssh_config_path()).status.success());
}

/// A client config that offers no key files, so only an agent can log it in.
fn agent_only_config(sshd: &TestSshd) -> std::path::PathBuf {
    sshd.write_ssh_config(
        "ssh_config.agent",
        "Host test
    HostName {host}
    Port {port}
    User {user}
    UserKnownHostsFile {known_hosts}
    IdentitiesOnly no
    StrictHostKeyChecking yes
",
    )
}

#[test]
fn agent_holding_the_user_key_logs_ssh_in() {
    let sshd = TestSshd::start();
    let agent = TestAgent::start();
    let config = agent_only_config(&sshd);
    let login = || {
        ssh_command(&config)
            .env("SSH_AUTH_SOCK", agent.socket_path())
            .args(["test", "true"])
            .output()
            .unwrap()
    };
    assert!(!login().status.success(), "logged in with an empty agent");

    agent.add(sshd.user_key_path());

    assert_eq!(agent.public_keys().len(), 1);
    let output = login();
    assert!(
        output.status.success(),
        "ssh via agent failed: {}",
        stderr(&output)
    );
}

#[test]
fn agent_takes_a_passphrase_protected_key() {
    let sshd = TestSshd::builder()
        .encrypted_user_key("correct horse battery")
        .start();
    let agent = TestAgent::start();

    agent.add_with_passphrase(
        sshd.encrypted_key_path().unwrap(),
        sshd.passphrase().unwrap(),
    );

    let output = ssh_command(&agent_only_config(&sshd))
        .env("SSH_AUTH_SOCK", agent.socket_path())
        .args(["test", "true"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "ssh via agent failed: {}",
        stderr(&output)
    );
}

#[tokio::test]
async fn hash_upload_server_replies_with_the_sha256_of_the_upload() {
    let server = DataServer::start(Mode::HashUpload).await;
    let data = deterministic_bytes(2, 300_001);

    let stream = TcpStream::connect(server.addr()).await.unwrap();
    let (reply, ended) = round_trip(stream, data.clone()).await;

    ended.unwrap();
    assert_eq!(reply, sha256(&data));
    let reports = server.wait_for_finished(1, TIMEOUT).await;
    assert_eq!(
        (reports[0].bytes_read, reports[0].error),
        (data.len() as u64, None)
    );
}

#[tokio::test]
async fn download_server_sends_deterministic_bytes_then_eof() {
    const LEN: u64 = 1_000_003;
    let server = DataServer::start(Mode::Download { seed: 3, len: LEN }).await;

    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let (received, ended) = read_until_closed(&mut stream).await;
    drop(stream);

    ended.unwrap();
    assert!(received == deterministic_bytes(3, LEN as usize));
    let reports = server.wait_for_finished(1, TIMEOUT).await;
    assert_eq!((reports[0].bytes_written, reports[0].error), (LEN, None));
}

#[tokio::test]
async fn download_server_reports_a_client_reset() {
    let server = DataServer::start(Mode::Download {
        seed: 4,
        len: 64 << 20,
    })
    .await;
    let mut stream = TcpStream::connect(server.addr()).await.unwrap();
    let mut first = [0; 1024];
    stream.read_exact(&mut first).await.unwrap();

    // Linux answers a close with unread data in the receive buffer with RST, not FIN.
    drop(stream);

    let reports = server.wait_for_finished(1, TIMEOUT).await;
    let error = reports[0].error.expect("the server should see the reset");
    assert!(common::is_reset(&std::io::Error::from(error)), "{error:?}");
}

#[test]
fn byte_generator_gives_the_same_bytes_in_pieces() {
    let whole = deterministic_bytes(9, 100_005);
    let mut pieces = vec![0; whole.len()];
    let mut generator = ByteGenerator::new(9);
    for piece in pieces.chunks_mut(4096) {
        generator.fill(piece);
    }
    assert!(pieces == whole);
    assert_ne!(deterministic_bytes(9, 64), deterministic_bytes(10, 64));
}

#[test]
fn proc_net_tcp_rows_count_only_established_on_the_local_port() {
    let table = "  sl  local_address rem_address   st tx_queue rx_queue\n\
        0: 0100007F:1F90 00000000:0000 0A 00000000:00000000\n\
        1: 0100007F:1F90 0100007F:C350 01 00000000:00000000\n\
        2: 0100007F:C350 0100007F:1F90 01 00000000:00000000\n\
        3: 0100007F:1F90 0100007F:C351 06 00000000:00000000\n";

    assert_eq!(common::procfs::count_established(table, 0x1F90), 1);
}

#[test]
fn daemon_helper_runs_the_lazytunnel_binary() {
    // CARGO_BIN_EXE_lazytunnel exists only when this file is built as a lazytunnel test.
    if common::daemon::lazytunnel_bin().is_none() {
        common::prerequisite_missing("no lazytunnel binary in this crate");
        return;
    }

    let output = common::run_cli(["--help"]);

    assert!(
        output.status.success(),
        "lazytunnel --help: {}",
        stderr(&output)
    );
}
