//! End-to-end spec: how the daemon retries a host it cannot reach. Connections that arrive
//! while no session can be had share attempts (never one attempt each), a held client is reset
//! once no attempt is due within its connect_timeout, and a permanent failure (authentication
//! rejected) is not retried before backoff_max. The schedule itself (doubling, jitter, demand
//! at every moment) is specified in paused time by `src/session/tests/attempts.rs`.

use crate::{common, forwarding_support};

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{TIMEOUT, TestDaemon, TestSshd, write_file};
use forwarding_support::{Forward, assert_reset, connect_and_drain, daemon_builder, drain};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// A TCP server that closes every connection at once: an SSH handshake that fails the same
/// way each time, like a host whose sshd is down behind a port forwarder. Records when each
/// connection came.
struct ClosingServer {
    port: u16,
    accepts: Arc<Mutex<Vec<Instant>>>,
}

impl ClosingServer {
    async fn start() -> ClosingServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind closing server");
        let port = listener.local_addr().expect("local address").port();
        let accepts = Arc::new(Mutex::new(Vec::new()));
        let record = accepts.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                record.lock().expect("accept log").push(Instant::now());
                drop(socket);
            }
        });
        ClosingServer { port, accepts }
    }

    fn accepts(&self) -> Vec<Instant> {
        self.accepts.lock().expect("accept log").clone()
    }

    /// A daemon forwarding through this server as host `closing`, with `settings`.
    async fn daemon(&self, settings: &str, forward: &Forward) -> (TestDaemon, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("temp dir");
        let ssh_config = dir.path().join("ssh_config");
        write_file(
            &ssh_config,
            &format!(
                "Host closing\n  HostName 127.0.0.1\n  Port {}\n  User nobody\n  IdentityFile {}/none\n",
                self.port,
                dir.path().display()
            ),
        );
        let daemon = daemon_builder(&ssh_config, settings, &[forward]).start();
        daemon.wait_for_log("listening", TIMEOUT).await;
        (daemon, dir)
    }
}

fn unreachable_target() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 9))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_clients_share_attempts_and_are_reset_once_none_is_due_within_connect_timeout() {
    const CLIENTS: usize = 16;
    let server = ClosingServer::start().await;
    let forward = Forward::via("closing", "closing", unreachable_target());
    // The retry after the first failure comes after 1.6-2.4 s, within connect_timeout; the
    // next one after 3.2-4.8 s more, beyond it: exactly two attempts, whatever the jitter.
    let (daemon, _dir) = server
        .daemon("connect_timeout = \"3s\"\nbackoff_min = \"2s\"", &forward)
        .await;

    let started = Instant::now();
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = forward.connect().await;
        clients.push(tokio::spawn(async move { drain(&mut client).await.1 }));
    }
    for client in clients {
        let ended = tokio::time::timeout(TIMEOUT, client)
            .await
            .expect("a client was neither served nor reset within TIMEOUT")
            .expect("client task");
        assert_reset(ended, "client of a host that cannot be reached");
    }
    let took = started.elapsed();

    let accepts = server.accepts();
    assert_eq!(accepts.len(), 2, "attempts for {CLIENTS} clients");
    let gap = accepts[1] - accepts[0];
    assert!(
        gap >= Duration::from_millis(1600),
        "retried after {gap:?}, before backoff_min minus jitter"
    );
    assert!(
        took >= gap,
        "clients were reset before the retry ({took:?})"
    );
    let host = daemon.sole_host_status();
    assert_eq!(host["attempts"], 2, "{host}");
    assert_eq!(host["failures"], 2, "{host}");
    assert_eq!(host["state"], "backoff", "{host}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_authentication_is_permanent_and_not_retried_before_backoff_max() {
    let sshd = TestSshd::start();
    write_file(&sshd.authorized_keys_path(), "");
    let forward = Forward::new("rejected", unreachable_target());
    let daemon = forwarding_support::start_daemon(&sshd, "backoff_max = \"1h\"", &[&forward]).await;

    let (_, ended) = tokio::time::timeout(TIMEOUT, connect_and_drain(forward.port))
        .await
        .expect("the first client was neither served nor reset");
    assert_reset(ended, "client of a host that rejects our key");
    // The client is reset only once the attempt's outcome is recorded.
    let host = daemon.sole_host_status();
    assert_eq!(host["state"], "failed", "{host}");
    assert!(
        host["error"]
            .as_str()
            .is_some_and(|e| e.contains("rejected")),
        "{host}"
    );

    // Later clients are reset at once with the same reason, without a new attempt.
    for _ in 0..5 {
        let (_, ended) = tokio::time::timeout(TIMEOUT, connect_and_drain(forward.port))
            .await
            .expect("a later client was neither served nor reset");
        assert_reset(ended, "later client of a host that rejects our key");
    }
    daemon
        .wait_for_log_count("connection refused: no session to", 6, TIMEOUT)
        .await;
    assert_eq!(
        sshd.log_file().count("Connection from"),
        1,
        "{}",
        sshd.log()
    );
    assert_eq!(daemon.sole_host_status()["attempts"], 1);
}
