//! End-to-end spec: resources stay bounded. Many sequential connections leave descriptors,
//! threads, memory and server-side channels where they were; a burst of clients beyond the
//! open-file limit waits in the backlog while the session still opens; the daemon-wide
//! connection limit holds new clients in the backlog, with a log line, until a connection
//! closes.

use crate::{common, forwarding_support};

use common::procfs::{self, fd_count, open_tcp_sockets, status_field};
use common::{DataServer, TIMEOUT, TestSshd, wait_for_count};
use forwarding_support::{Forward, daemon_builder, echo_once, start_daemon};
use tokio::io::AsyncReadExt;

const CHURN: usize = 10_000;

/// Connections of `forward` whose descriptors the daemon holds, plus connections to the echo
/// server whose descriptors an sshd session process holds.
fn open_connections(daemon: u32, sshd_child: u32, forward: &Forward, echo: &DataServer) -> usize {
    let sshd_side: usize = procfs::children(sshd_child)
        .into_iter()
        .chain(std::iter::once(sshd_child))
        .map(|pid| open_tcp_sockets(pid, None, Some(echo.port())))
        .sum();
    open_tcp_sockets(daemon, Some(forward.port), None) + sshd_side
}

/// Waits until every connection so far is closed on both sides.
async fn settle(daemon: u32, sshd_child: u32, forward: &Forward, echo: &DataServer) {
    let open = || open_connections(daemon, sshd_child, forward, echo);
    assert_eq!(
        wait_for_count(0, TIMEOUT, open).await,
        0,
        "connections left open"
    );
}

/// Opens a connection through `forward`, checks one echo, and closes it.
async fn one_echo(forward: &Forward, i: usize) {
    let mut client = forward.connect().await;
    echo_once(&mut client, format!("connection {i}").as_bytes()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_sequential_connections_leave_descriptors_threads_memory_and_channels_at_baseline()
 {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("churn", echo.addr());
    let daemon = start_daemon(&sshd, "", &[&forward]).await;
    let pid = daemon.pid();
    // Warm up: the session, the runtime's threads and allocator pools exist from here on.
    for i in 0..200 {
        one_echo(&forward, i).await;
    }
    echo.wait_for_finished(200, TIMEOUT).await;
    let sshd_child = *sshd
        .session_processes()
        .first()
        .expect("an sshd session process");
    // The baseline is taken once the warm-up connections are closed on both sides (an open
    // one is seen on both).
    let mut held = forward.connect().await;
    echo_once(&mut held, b"held").await;
    assert_eq!(open_connections(pid, sshd_child, &forward, &echo), 2);
    drop(held);
    settle(pid, sshd_child, &forward, &echo).await;
    let before = (
        fd_count(pid),
        status_field(pid, "Threads"),
        status_field(pid, "VmRSS"),
        fd_count(sshd_child),
    );

    for i in 0..CHURN {
        one_echo(&forward, i).await;
    }
    let finished = echo.wait_for_finished(201 + CHURN, TIMEOUT).await;
    settle(pid, sshd_child, &forward, &echo).await;
    // The last connection's sockets close just after its echo: wait for them, not longer.
    let fds = wait_for_count(before.0, TIMEOUT, || fd_count(pid)).await;
    let sshd_fds = wait_for_count(before.3, TIMEOUT, || fd_count(sshd_child)).await;
    let after = (
        fds,
        status_field(pid, "Threads"),
        status_field(pid, "VmRSS"),
        sshd_fds,
    );

    eprintln!("before (fds, threads, RSS kB, sshd fds): {before:?}; after {CHURN}: {after:?}");
    assert_eq!(finished.len(), 201 + CHURN);
    assert!(finished.iter().all(|report| report.error.is_none()));
    assert_eq!(echo.active(), 0, "target connections left open by sshd");
    assert_eq!(after.0, before.0, "daemon descriptors");
    // Files are read on the blocking pool, whose idle threads leave after a while: the count
    // may fall, never grow.
    assert!(
        after.1 <= before.1,
        "daemon threads grew from {} to {}",
        before.1,
        after.1
    );
    assert!(
        after.2 < before.2 + 4096,
        "RSS grew from {} kB to {} kB",
        before.2,
        after.2
    );
    assert_eq!(
        after.3, before.3,
        "sshd session descriptors (its channels' sockets)"
    );
    assert_eq!(sshd.established_connections(), 1);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_beyond_the_descriptor_limit_waits_in_the_backlog_and_the_host_never_fails() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("burst", echo.addr());
    let daemon = daemon_builder(&sshd.ssh_config_path(), "", &[&forward])
        .nofile_limit(48)
        .start();
    daemon.wait_for_log("listening", TIMEOUT).await;

    // More clients than the daemon has descriptors, all before its session exists: the
    // session's own socket and file reads must still find descriptors.
    let mut burst = Vec::new();
    for _ in 0..64 {
        burst.push(forward.connect().await);
    }
    // Each is served in turn as earlier ones leave: those beyond the share wait in the backlog.
    for (i, mut client) in burst.into_iter().enumerate() {
        echo_once(&mut client, format!("burst client {i}").as_bytes()).await;
    }
    let mut after = forward.connect().await;
    echo_once(&mut after, b"served after the burst").await;
    let log = daemon.log();
    let host = daemon.sole_host_status();
    assert_eq!(host["sessions_opened"], 1, "{log}");
    assert_eq!(host["attempts"], 1, "{log}");
    assert_eq!(daemon.log_file().count("Too many open files"), 0, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_new_clients_in_the_backlog_until_one_closes() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("limited", echo.addr());
    let daemon = start_daemon(&sshd, "max_connections = 3", &[&forward]).await;

    let mut open = Vec::new();
    for i in 0..3 {
        let mut client = forward.connect().await;
        echo_once(&mut client, format!("client {i}").as_bytes()).await;
        open.push(client);
    }
    let mut fourth = forward.connect().await;
    let line = daemon
        .wait_for_log("connection limit reached", TIMEOUT)
        .await;
    assert!(line.contains("limit=3"), "{line}");
    tokio::io::AsyncWriteExt::write_all(&mut fourth, b"waiting")
        .await
        .expect("write while in the backlog");
    // The daemon took no fourth connection: the target saw only three.
    assert_eq!(echo.accepted(), 3);

    drop(open.pop());
    let mut back = [0; 7];
    tokio::time::timeout(TIMEOUT, fourth.read_exact(&mut back))
        .await
        .expect("the fourth client was not served after one closed")
        .expect("read the echo");
    assert_eq!(&back, b"waiting");
    assert_eq!(echo.accepted(), 4);
}
