//! Spec: the daemon's SSH client refuses every channel the server opens toward it. A forwarder
//! asked for none, and russh's default handlers would accept them all (a server could then
//! reach the client's agent, or push a session or a "remote forward" nobody asked for).
//!
//! A real sshd never opens such channels unasked, so the server here is an in-process russh
//! server ([`RusshServer`]) that tries, once the daemon's session is authenticated and
//! forwarding.

use crate::{common, forwarding_support, server_channels_support};

use std::future::Future;
use std::net::SocketAddr;

use common::TIMEOUT;
use forwarding_support::{Forward, echo_once, start_daemon_with};
use russh::server::Msg;
use russh::{Channel, ChannelOpenFailure};
use server_channels_support::{HOST, RusshServer};

/// The log line the daemon writes for each refused channel.
const REJECTED: &str = "rejected a channel opened by the server";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_the_server_opens_is_refused_and_forwarding_goes_on() {
    let mut server = RusshServer::start().await;
    // The server echoes direct-tcpip channels itself; the discard port is never dialled.
    let forward = Forward::via(HOST, "russh", SocketAddr::from(([127, 0, 0, 1], 9)));
    let daemon = start_daemon_with(&server.ssh_config_path(), "", &[&forward]).await;
    let mut client = forward.connect().await;
    echo_once(&mut client, b"before the server opens anything").await;
    let forwarded = server.next_direct_tcpip().await;
    assert_eq!(
        (forwarded.host.as_str(), forwarded.port),
        ("127.0.0.1", 9),
        "the daemon asked for another target"
    );

    let handle = &forwarded.handle;
    let attempts = [
        (
            "forwarded-tcpip",
            answer(handle.channel_open_forwarded_tcpip("127.0.0.1", 2222, "198.51.100.7", 40000))
                .await,
        ),
        (
            "forwarded-streamlocal",
            answer(handle.channel_open_forwarded_streamlocal("/tmp/remote.sock")).await,
        ),
        (
            "auth-agent@openssh.com",
            answer(handle.channel_open_agent()).await,
        ),
        ("session", answer(handle.channel_open_session()).await),
        (
            "direct-tcpip",
            answer(handle.channel_open_direct_tcpip("127.0.0.1", 22, "198.51.100.7", 40001)).await,
        ),
        (
            "direct-streamlocal",
            answer(handle.channel_open_direct_streamlocal("/run/user/0/agent.sock")).await,
        ),
        (
            "x11",
            answer(handle.channel_open_x11("198.51.100.7", 6000)).await,
        ),
    ];

    let wrong: Vec<String> = attempts
        .iter()
        .filter_map(|(kind, outcome)| match outcome {
            Err(russh::Error::ChannelOpenFailure(
                ChannelOpenFailure::AdministrativelyProhibited,
            )) => None,
            Ok(channel) => Some(format!("{kind}: ACCEPTED as {:?}", channel.id())),
            Err(other) => Some(format!(
                "{kind}: {other:?} instead of an administratively-prohibited refusal"
            )),
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "channels opened by the server were not refused:\n{}",
        wrong.join("\n")
    );
    let log = daemon
        .wait_for_log_count(REJECTED, attempts.len(), TIMEOUT)
        .await;
    assert_eq!(
        log.matches(REJECTED).count(),
        attempts.len(),
        "one log line per refused channel"
    );

    // The refusals cost neither the open connection nor the session.
    echo_once(&mut client, b"after the refusals").await;
    let mut second = forward.connect().await;
    echo_once(&mut second, b"a new client after the refusals").await;
    server.next_direct_tcpip().await;
    assert_eq!(server.connections(), 1, "the daemon reconnected");
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}

/// The client's answer to one channel the server opens; panics if none comes in [`TIMEOUT`].
async fn answer(
    open: impl Future<Output = Result<Channel<Msg>, russh::Error>>,
) -> Result<Channel<Msg>, russh::Error> {
    tokio::time::timeout(TIMEOUT, open)
        .await
        .unwrap_or_else(|_| panic!("the daemon did not answer a channel open within {TIMEOUT:?}"))
}

/// Issue 13: a server's DISCONNECT text reaches the daemon's log escaped, so a server cannot
/// forge log lines (or drive the terminal of whoever reads the log).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_message_cannot_forge_a_log_line() {
    const FORGED: &str = "1999-01-01T00:00:00Z  INFO lazytunnel: forged by the server";
    let mut server = RusshServer::start().await;
    let forward = Forward::via(HOST, "russh", SocketAddr::from(([127, 0, 0, 1], 9)));
    let daemon = start_daemon_with(&server.ssh_config_path(), "", &[&forward]).await;
    let mut client = forward.connect().await;
    echo_once(&mut client, b"session up").await;
    let forwarded = server.next_direct_tcpip().await;

    forwarded
        .handle
        .disconnect(
            russh::Disconnect::ByApplication,
            format!("bye\n{FORGED}\r\u{1b}[2J"),
            "en".into(),
        )
        .await
        .expect("send DISCONNECT");
    daemon.wait_for_log("session down", TIMEOUT).await;
    let whole = daemon.log();
    // The text is reported, on the "session down" line itself.
    let down = whole
        .lines()
        .find(|line| line.contains("session down"))
        .expect("the awaited line");
    assert!(down.contains(FORGED), "{down}");
    assert!(
        !whole.lines().any(|line| line.starts_with(FORGED)),
        "a forged line reached the log:\n{whole}"
    );
    assert!(
        !whole.contains('\u{1b}'),
        "an escape sequence reached the log"
    );
}
