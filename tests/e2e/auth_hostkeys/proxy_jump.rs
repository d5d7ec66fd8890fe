//! ProxyJump: the daemon reaches `Host test` through one or two jump hosts (the same sshd,
//! which allows direct-tcpip to itself on loopback), each hop authenticated and its host key
//! checked under its own alias's settings, and a jump host shared by two targets is one
//! session. OpenSSH, on the same ssh_config, decides the same.

use crate::common::path_str;

use super::*;

/// `Host NAME` for the test server, with `extra` lines, e.g. a ProxyJump.
fn host_block(sshd: &TestSshd, name: &str, known_hosts: &Path, extra: &str) -> String {
    format!(
        "Host {name}\n    HostName 127.0.0.1\n    Port {port}\n    User {user}\n    \
         IdentityFile {key}\n    UserKnownHostsFile {kh}\n    IdentitiesOnly yes\n    \
         StrictHostKeyChecking yes\n{extra}",
        port = sshd.port(),
        user = sshd.user(),
        key = path_str(sshd.user_key_path()),
        kh = path_str(known_hosts),
    )
}

/// How many logins sshd has accepted so far.
fn logins(sshd: &TestSshd) -> usize {
    sshd.log().matches("Accepted publickey").count()
}

#[tokio::test]
async fn one_hop_reaches_the_target_through_a_channel_of_the_jump_session() {
    let sshd = TestSshd::start();
    let kh = sshd.known_hosts_path();
    let text = host_block(&sshd, "test", &kh, "    ProxyJump jump\n")
        + &host_block(&sshd, "jump", &kh, "");
    let config = sshd.write_file("ssh_config.jump1", &text);

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    // The target's session arrived as a direct-tcpip channel of the jump session.
    let hop = format!("target 127.0.0.1 port {}", sshd.port());
    let log = sshd
        .log_file()
        .wait_for_count("sshd", &hop, 1, TIMEOUT)
        .await;
    assert_eq!(log.matches("Accepted publickey").count(), 2, "{log}");
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn two_hops_with_user_at_host_port_forms_reach_the_target() {
    let sshd = TestSshd::start();
    let kh = sshd.known_hosts_path();
    let jumps = format!(
        "    ProxyJump {user}@jump1:{port},ssh://jump2\n",
        user = sshd.user(),
        port = sshd.port()
    );
    let text = host_block(&sshd, "test", &kh, &jumps)
        // A wrong Port: the hop's own `:port` must win over it, as with `ssh -J`.
        + &host_block(&sshd, "jump1", &kh, "").replace(&format!("Port {}\n", sshd.port()), "Port 1\n")
        + &host_block(&sshd, "jump2", &kh, "");
    let config = sshd.write_file("ssh_config.jump2", &text);

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    let hop = format!("target 127.0.0.1 port {}", sshd.port());
    let log = sshd
        .log_file()
        .wait_for_count("sshd", &hop, 2, TIMEOUT)
        .await;
    assert_eq!(log.matches("Accepted publickey").count(), 3, "{log}");
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn a_hop_with_an_unknown_host_key_is_refused_under_its_own_settings() {
    let sshd = TestSshd::start();
    let kh = sshd.known_hosts_path();
    let empty = sshd.write_known_hosts_without_host();
    let text = host_block(&sshd, "test", &kh, "    ProxyJump jump\n")
        + &host_block(&sshd, "jump", &empty, "");
    let config = sshd.write_file("ssh_config.jump_unknown", &text);

    let tunnel = Tunnel::start(&config, None).await;

    let line = tunnel.assert_refused("is not known").await;
    assert!(line.contains("jump"), "the hop is not named: {line}");
    assert_eq!(logins(&sshd), 0, "authenticated anyway");
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(!logged_in, "ssh logged in: {said}");
}

#[tokio::test]
async fn a_jump_host_shared_by_two_targets_is_one_session() {
    let sshd = TestSshd::start();
    let kh = sshd.known_hosts_path();
    let text = host_block(&sshd, "one", &kh, "    ProxyJump jump\n")
        + &host_block(&sshd, "two", &kh, "    ProxyJump jump\n")
        + &host_block(&sshd, "jump", &kh, "");
    let config = sshd.write_file("ssh_config.shared", &text);
    let echo = DataServer::echo().await;
    let (one, two) = (bind_loopback(), bind_loopback());
    let (port_one, port_two) = (port_of(&one), port_of(&two));
    let config = format!(
        "ssh_config = \"{}\"\n\n[[forward]]\nlisten = \"127.0.0.1:{port_one}\"\nhost = \"one\"\n\
         target = \"{echo}\"\n\n[[forward]]\nlisten = \"127.0.0.1:{port_two}\"\nhost = \"two\"\n\
         target = \"{echo}\"\n",
        path_str(&config),
        echo = echo.addr()
    );
    let daemon = TestDaemon::builder()
        .config_text(config)
        .inherit(one)
        .inherit(two)
        .start();
    daemon.wait_for_log("listening", TIMEOUT).await;

    for port in [port_one, port_two] {
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.write_all(PAYLOAD).await.expect("write");
        stream.shutdown().await.expect("shutdown");
        let (echoed, ended) = tokio::time::timeout(TIMEOUT, read_until_closed(&mut stream))
            .await
            .expect("echo in time");
        ended.expect("clean end");
        assert_eq!(echoed, PAYLOAD);
    }

    // One login for the jump host, one per target: the jump session was shared.
    assert_eq!(logins(&sshd), 3, "{}", sshd.log());
}

/// Killing the server's sessions ends the jump session and the one it carried: a connection
/// held through them is reset (not a clean EOF), and the next one gets fresh sessions on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lost_sessions_reset_held_connections_and_the_next_connection_reconnects_through_the_jump()
{
    let sshd = TestSshd::start();
    let kh = sshd.known_hosts_path();
    let text = host_block(&sshd, "test", &kh, "    ProxyJump jump\n")
        + &host_block(&sshd, "jump", &kh, "");
    let config = sshd.write_file("ssh_config.jump_lost", &text);
    let tunnel = Tunnel::start(&config, None).await;
    let mut held = TcpStream::connect(("127.0.0.1", tunnel.port))
        .await
        .expect("connect");
    held.write_all(PAYLOAD).await.expect("write");
    let mut echoed = vec![0; PAYLOAD.len()];
    tokio::time::timeout(
        TIMEOUT,
        tokio::io::AsyncReadExt::read_exact(&mut held, &mut echoed),
    )
    .await
    .expect("echo in time")
    .expect("echo");
    assert_eq!(logins(&sshd), 2);

    assert!(
        !sshd.kill_session_processes().is_empty(),
        "no session to kill"
    );

    let (_, ended) = tokio::time::timeout(TIMEOUT, read_until_closed(&mut held))
        .await
        .expect("neither EOF nor reset in time");
    let err = ended.expect_err("a cut connection ended cleanly");
    assert!(is_reset(&err), "expected a reset, got {err}");
    tunnel
        .daemon
        .wait_for_log_count("session down", 2, TIMEOUT)
        .await;
    tunnel.assert_works().await;
    assert_eq!(logins(&sshd), 4, "both sessions opened again");
}
