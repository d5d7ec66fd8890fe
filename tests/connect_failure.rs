//! End-to-end spec: clients that arrive while their host's session is being opened share that
//! one attempt, its failure included. A host that fails costs one connection attempt for all
//! of them, not one attempt each in turn (which would make the last client wait
//! clients × connect_timeout).

mod common;
mod forwarding_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{TIMEOUT, TestDaemon, write_file};
use forwarding_support::{Forward, assert_reset, config_text, drain};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc};

const CLIENTS: usize = 16;

/// A TCP server that accepts connections and says nothing (no SSH banner) until released,
/// then closes them all: a handshake that hangs, then fails.
struct MuteServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    release: Arc<Notify>,
    first_accept: mpsc::Receiver<()>,
}

impl MuteServer {
    async fn start() -> MuteServer {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind mute server");
        let port = listener.local_addr().expect("local address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let (tx, first_accept) = mpsc::channel(1);
        let (count, released) = (accepted.clone(), release.clone());
        tokio::spawn(async move {
            let mut held = Vec::new();
            loop {
                tokio::select! {
                    Ok((socket, _)) = listener.accept() => {
                        held.push(socket);
                        count.fetch_add(1, Ordering::SeqCst);
                        let _ = tx.try_send(());
                    }
                    () = released.notified() => held.clear(),
                }
            }
        });
        MuteServer {
            port,
            accepted,
            release,
            first_accept,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_waiting_for_a_failing_handshake_share_its_failure() {
    let mut mute = MuteServer::start().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let ssh_config = dir.path().join("ssh_config");
    write_file(
        &ssh_config,
        &format!(
            "Host mute\n  HostName 127.0.0.1\n  Port {}\n  User nobody\n  IdentityFile {}/none\n",
            mute.port,
            dir.path().display()
        ),
    );
    let forward = Forward::via("mute", "mute", SocketAddr::from((Ipv4Addr::LOCALHOST, 9)));
    // A long connect timeout: only the shared failure can end all clients promptly.
    let daemon = TestDaemon::start(config_text(
        &ssh_config,
        r#"connect_timeout = "5m""#,
        &[&forward],
    ));
    daemon.wait_for_log("listening", TIMEOUT).await;

    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let mut client = forward.connect().await;
        clients.push(tokio::spawn(async move { drain(&mut client).await.1 }));
    }
    // Every client is waiting for the session once the daemon has accepted it.
    daemon
        .wait_for_log_count("accepted", CLIENTS, TIMEOUT)
        .await;
    tokio::time::timeout(TIMEOUT, mute.first_accept.recv())
        .await
        .expect("the daemon never connected to the host");

    mute.release.notify_one();
    for client in clients {
        let ended = tokio::time::timeout(TIMEOUT, client)
            .await
            .expect("a client was neither served nor reset within TIMEOUT")
            .expect("client task");
        assert_reset(ended, "client of a host whose handshake failed");
    }

    assert_eq!(
        mute.accepted.load(Ordering::SeqCst),
        1,
        "one attempt for all clients"
    );
    assert_eq!(daemon.log_file().count("session failed"), 1);
}
