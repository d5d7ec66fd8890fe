//! Every reply path of the handshake, over an in-memory stream: what the client sends, what it
//! gets back, and the request or error the daemon ends up with.

use std::sync::Arc;
use std::time::Duration;

use russh::ChannelOpenFailure;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream, duplex};

use super::*;
use crate::client::ConnectError;

const GREETING: &[u8] = &[5, 1, 0];
const CHOSE_NO_AUTH: &[u8] = &[5, 0];

fn socks5_reply(code: u8) -> Vec<u8> {
    vec![5, code, 0, 1, 0, 0, 0, 0, 0, 0]
}

fn socks4_reply(code: u8) -> Vec<u8> {
    vec![0, code, 0, 0, 0, 0, 0, 0]
}

/// Sends `sent` (then keeps the stream open), runs the handshake, and returns its outcome with
/// everything the daemon wrote, read until the daemon's end is dropped.
async fn handshake(sent: &[u8]) -> (Result<Request, HandshakeError>, Vec<u8>) {
    let (mut client, mut server) = duplex(4096);
    client.write_all(sent).await.unwrap();
    let outcome = accept(&mut server).await;
    drop(server);
    let mut replies = Vec::new();
    client.read_to_end(&mut replies).await.unwrap();
    (outcome, replies)
}

fn target(host: &str, port: u16) -> Target {
    Target {
        host: host.into(),
        port,
    }
}

#[tokio::test]
async fn socks5_connect_to_a_name_passes_the_name_on_unresolved() {
    let mut sent = GREETING.to_vec();
    sent.extend([5, 1, 0, 3, 9]);
    sent.extend(b"localhost");
    sent.extend(8080u16.to_be_bytes());
    let (outcome, replies) = handshake(&sent).await;
    let request = outcome.unwrap();
    assert_eq!(request.version, Version::Socks5);
    assert_eq!(request.target, target("localhost", 8080));
    assert_eq!(
        replies, CHOSE_NO_AUTH,
        "only the method choice before the channel opens"
    );
}

#[tokio::test]
async fn socks5_connect_to_ipv4_and_ipv6_addresses() {
    let mut sent = vec![5, 2, 2, 0, 5, 1, 0, 1, 192, 0, 2, 7, 0, 22];
    let (outcome, replies) = handshake(&sent).await;
    assert_eq!(outcome.unwrap().target, target("192.0.2.7", 22));
    assert_eq!(replies, CHOSE_NO_AUTH);

    sent = GREETING.to_vec();
    sent.extend([5, 1, 0, 4]);
    sent.extend(std::net::Ipv6Addr::LOCALHOST.octets());
    sent.extend(443u16.to_be_bytes());
    let request = handshake(&sent).await.0.unwrap();
    assert_eq!(request.target, target("::1", 443));
    assert_eq!(request.target.to_string(), "[::1]:443");
}

#[tokio::test]
async fn socks5_grant_and_refusal_replies() {
    let request = Request {
        version: Version::Socks5,
        target: target("db", 5432),
    };
    let mut out = Vec::new();
    request.grant(&mut out).await.unwrap();
    assert_eq!(out, socks5_reply(0));
    for (failure, code) in [
        (Failure::General, 1),
        (Failure::NotAllowed, 2),
        (Failure::NetworkUnreachable, 3),
        (Failure::HostUnreachable, 4),
        (Failure::ConnectionRefused, 5),
        (Failure::CommandNotSupported, 7),
        (Failure::AddressTypeNotSupported, 8),
    ] {
        let mut out = Vec::new();
        request.refuse(&mut out, failure).await.unwrap();
        assert_eq!(out, socks5_reply(code), "{failure:?}");
    }
}

#[tokio::test]
async fn socks4_grant_is_0x5a_and_every_refusal_0x5b() {
    let request = Request {
        version: Version::Socks4,
        target: target("db", 5432),
    };
    let mut out = Vec::new();
    request.grant(&mut out).await.unwrap();
    assert_eq!(out, socks4_reply(0x5a));
    for failure in [
        Failure::ConnectionRefused,
        Failure::NotAllowed,
        Failure::General,
    ] {
        let mut out = Vec::new();
        request.refuse(&mut out, failure).await.unwrap();
        assert_eq!(out, socks4_reply(0x5b));
    }
}

#[tokio::test]
async fn socks4_connect_to_an_address_skips_the_user_id() {
    let mut sent = vec![4, 1, 0x1f, 0x90, 10, 0, 0, 1];
    sent.extend(b"vit\0");
    let (outcome, replies) = handshake(&sent).await;
    let request = outcome.unwrap();
    assert_eq!(request.version, Version::Socks4);
    assert_eq!(request.target, target("10.0.0.1", 8080));
    assert!(replies.is_empty(), "{replies:?}");
}

#[tokio::test]
async fn socks4a_connect_to_a_name() {
    let mut sent = vec![4, 1, 0, 80, 0, 0, 0, 1, 0];
    sent.extend(b"intranet.example\0");
    let request = handshake(&sent).await.0.unwrap();
    assert_eq!(request.target, target("intranet.example", 80));
}

#[tokio::test]
async fn bind_and_udp_associate_get_command_not_supported() {
    for command in [2, 3] {
        let mut sent = GREETING.to_vec();
        sent.extend([5, command, 0, 1, 127, 0, 0, 1, 0, 80]);
        let (outcome, replies) = handshake(&sent).await;
        assert!(
            matches!(outcome, Err(HandshakeError::UnsupportedCommand { command: c, .. }) if c == command),
            "{outcome:?}"
        );
        assert_eq!(replies, [CHOSE_NO_AUTH, &socks5_reply(7)].concat());
    }
    let (outcome, replies) = handshake(&[4, 2, 0, 80, 127, 0, 0, 1, 0]).await;
    let error = outcome.unwrap_err().to_string();
    assert_eq!(
        error,
        "SOCKS4 command 0x02 is not supported: only CONNECT (0x01) is"
    );
    assert_eq!(replies, socks4_reply(0x5b));
}

#[tokio::test]
async fn a_client_without_no_auth_gets_no_acceptable_methods() {
    // Username/password (0x02) and GSSAPI (0x01) only.
    let (outcome, replies) = handshake(&[5, 2, 2, 1]).await;
    assert!(
        matches!(&outcome, Err(HandshakeError::NoAcceptableMethod(m)) if m == &[2, 1]),
        "{outcome:?}"
    );
    assert_eq!(replies, [5, 0xff]);
    let (outcome, replies) = handshake(&[5, 0]).await;
    assert!(matches!(
        outcome,
        Err(HandshakeError::NoAcceptableMethod(_))
    ));
    assert_eq!(replies, [5, 0xff]);
}

#[tokio::test]
async fn an_unknown_address_type_gets_address_type_not_supported() {
    let mut sent = GREETING.to_vec();
    sent.extend([5, 1, 0, 9, 1, 2, 3, 4]);
    let (outcome, replies) = handshake(&sent).await;
    assert!(matches!(
        outcome,
        Err(HandshakeError::UnsupportedAddressType(9))
    ));
    assert_eq!(replies, [CHOSE_NO_AUTH, &socks5_reply(8)].concat());
}

#[tokio::test]
async fn a_request_of_another_version_gets_general_failure() {
    let mut sent = GREETING.to_vec();
    sent.extend([4, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
    let (outcome, replies) = handshake(&sent).await;
    assert!(matches!(outcome, Err(HandshakeError::Malformed { .. })));
    assert_eq!(replies, [CHOSE_NO_AUTH, &socks5_reply(1)].concat());
}

#[tokio::test]
async fn impossible_names_get_host_unreachable() {
    for name in [
        &b""[..],
        b"bad name",
        b"-oProxyCommand",
        b"\xff\xfe",
        b"a\0b",
    ] {
        let mut sent = GREETING.to_vec();
        sent.extend([5, 1, 0, 3, name.len() as u8]);
        sent.extend(name);
        sent.extend([0, 80]);
        let (outcome, replies) = handshake(&sent).await;
        assert!(
            matches!(outcome, Err(HandshakeError::BadName { .. })),
            "{name:?}: {outcome:?}"
        );
        assert_eq!(replies, [CHOSE_NO_AUTH, &socks5_reply(4)].concat());
    }
    let (outcome, replies) = handshake(b"\x04\x01\x00\x50\x00\x00\x00\x01\x00a b\x00").await;
    assert!(matches!(outcome, Err(HandshakeError::BadName { .. })));
    assert_eq!(replies, socks4_reply(0x5b));
}

#[tokio::test]
async fn an_endless_socks4_user_id_is_refused() {
    let mut sent = vec![4, 1, 0, 80, 127, 0, 0, 1];
    sent.extend([b'u'; 300]);
    let (outcome, replies) = handshake(&sent).await;
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.contains("user id is longer than 255 bytes"),
        "{error}"
    );
    assert_eq!(replies, socks4_reply(0x5b));
}

#[tokio::test]
async fn something_else_than_socks_gets_no_reply_and_a_hint_for_http() {
    let (outcome, replies) = handshake(b"GET http://example.com/ HTTP/1.1\r\n\r\n").await;
    let error = outcome.unwrap_err().to_string();
    assert!(
        error.contains("first byte 0x47") && error.contains("not its HTTP proxy"),
        "{error}"
    );
    assert!(replies.is_empty());
    let (outcome, _) = handshake(&[0x16, 3, 1]).await;
    assert_eq!(
        outcome.unwrap_err().to_string(),
        "not a SOCKS request (first byte 0x16)"
    );
}

#[tokio::test]
async fn a_client_that_closes_mid_request_is_a_local_error() {
    let (mut client, mut server) = duplex(64);
    // Two methods announced, one sent.
    client.write_all(&[5, 2, 0]).await.unwrap();
    drop(client);
    let outcome = accept(&mut server).await;
    assert!(
        matches!(&outcome, Err(HandshakeError::Local(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn nothing_past_the_request_is_read() {
    let (mut client, mut server) = duplex(4096);
    let mut sent = GREETING.to_vec();
    sent.extend([5, 1, 0, 1, 127, 0, 0, 1, 0, 80]);
    sent.extend(b"early data");
    client.write_all(&sent).await.unwrap();
    accept(&mut server).await.unwrap();
    let mut early = [0; 10];
    server.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"early data");
}

#[tokio::test(start_paused = true)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    for sent in [&b""[..], &[5, 1]] {
        let (mut client, mut server): (DuplexStream, DuplexStream) = duplex(64);
        client.write_all(sent).await.unwrap();
        let started = tokio::time::Instant::now();
        let outcome = accept(&mut server).await;
        assert!(
            matches!(outcome, Err(HandshakeError::TimedOut(t)) if t == HANDSHAKE_TIMEOUT),
            "{outcome:?}"
        );
        assert_eq!(started.elapsed(), HANDSHAKE_TIMEOUT);
        assert_eq!(
            outcome.unwrap_err().to_string(),
            "no SOCKS request within 10s"
        );
    }
}

#[test]
fn channel_open_failures_map_to_their_replies() {
    let refused = |failure| OpenError::Refused {
        host: "srv".into(),
        target: "db:1".into(),
        reason: String::new(),
        failure,
    };
    let cases = [
        (
            refused(ChannelOpenFailure::ConnectFailed),
            Failure::ConnectionRefused,
        ),
        (
            refused(ChannelOpenFailure::AdministrativelyProhibited),
            Failure::NotAllowed,
        ),
        (
            refused(ChannelOpenFailure::ResourceShortage),
            Failure::General,
        ),
        (
            refused(ChannelOpenFailure::UnknownChannelType),
            Failure::General,
        ),
        (
            OpenError::Connect {
                host: "srv".into(),
                error: Arc::new(ConnectError::Timeout {
                    addr: "srv:22".into(),
                    timeout: Duration::from_secs(1),
                }),
            },
            Failure::NetworkUnreachable,
        ),
        (
            OpenError::SessionLost {
                host: "srv".into(),
                target: "db:1".into(),
            },
            Failure::General,
        ),
        (OpenError::ShuttingDown, Failure::General),
    ];
    for (error, failure) in cases {
        assert_eq!(Failure::of(&error), failure, "{error}");
    }
}
