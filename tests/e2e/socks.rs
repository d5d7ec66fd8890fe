//! End-to-end specs of SOCKS forwards (`socks = true`, like `ssh -D`), through a real OpenSSH
//! server and the real curl: SOCKS5 with a name the server resolves, SOCKS5 with an address,
//! SOCKS4a, all byte-exact over one lazily opened session; a refused destination answered with
//! SOCKS's "connection refused"; bad requests answered with their error reply; a silent client
//! dropped after the handshake timeout. How a client's session begins and ends: [`lifecycle`].

mod lifecycle;

use crate::{common, forwarding_support};

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{
    DataServer, TIMEOUT, TestDaemon, TestSshd, bind_loopback, deterministic_bytes, path_str,
    port_of, prerequisite_missing, refusing_port,
};
use forwarding_support::{PROMPTLY, assert_same_bytes, echo_once, read_to_end, socks5_connect};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Several MiB, odd, so the transfer takes many packets and window adjustments.
const BODY_LEN: usize = (4 << 20) + 7;

/// A daemon with one SOCKS forward named `proxy` through the sshd's `test` host, on a port it
/// inherits already listening; and that port.
async fn start_socks_daemon(sshd: &TestSshd) -> (TestDaemon, u16) {
    start_socks_daemon_with(sshd, "").await
}

/// [`start_socks_daemon`] with `settings` (top-level TOML lines such as `idle_timeout = "1s"`).
async fn start_socks_daemon_with(sshd: &TestSshd, settings: &str) -> (TestDaemon, u16) {
    let socket = bind_loopback();
    let port = port_of(&socket);
    let text = format!(
        "ssh_config = {:?}\n{settings}\n\n[[forward]]\nname = \"proxy\"\n\
         listen = \"127.0.0.1:{port}\"\nhost = \"test\"\nsocks = true\n",
        path_str(&sshd.ssh_config_path())
    );
    let daemon = TestDaemon::builder()
        .config_text(text)
        .inherit(socket)
        .start();
    daemon.wait_for_log("listening", TIMEOUT).await;
    (daemon, port)
}

/// Serves `body` as the answer to every HTTP request, counting requests.
struct HttpServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl HttpServer {
    async fn start(body: Arc<Vec<u8>>) -> HttpServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        let addr = listener.local_addr().expect("HTTP address");
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(respond(stream, body.clone()));
            }
        });
        HttpServer {
            addr,
            requests,
            task,
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads the request head (up to its blank line), then sends `body` with its length and closes.
async fn respond(mut stream: TcpStream, body: Arc<Vec<u8>>) {
    let mut head = Vec::new();
    let mut buf = [0; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 << 10 {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let header = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    if stream.write_all(header.as_bytes()).await.is_ok() && stream.write_all(&body).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

/// Whether curl runs here; under CI=true its absence fails the test (scripts/test installs it).
fn curl_available() -> bool {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        prerequisite_missing("curl is not installed (apt-get install curl)");
    }
    found
}

/// Runs `curl --silent --show-error ARGS` on the blocking pool, with no proxy settings from the
/// environment (a `no_proxy=localhost` would send curl around the proxy).
async fn curl(args: Vec<String>) -> (Output, Duration) {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let output = Command::new("curl")
            .args(["--silent", "--show-error", "--max-time", "20"])
            .args(&args)
            .env_remove("no_proxy")
            .env_remove("NO_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            .env_remove("http_proxy")
            .output()
            .expect("run curl");
        (output, started.elapsed())
    })
    .await
    .expect("curl task")
}

/// Fetches `url` through the proxy with `proxy_flag` into a file and returns its bytes.
async fn fetch(dir: &Path, proxy_flag: &str, proxy_port: u16, url: String) -> Vec<u8> {
    let out = dir.join(proxy_flag.trim_start_matches('-'));
    let args = vec![
        proxy_flag.to_string(),
        format!("127.0.0.1:{proxy_port}"),
        "--output".into(),
        path_str(&out).to_string(),
        url,
    ];
    let (output, _) = curl(args).await;
    assert!(
        output.status.success(),
        "curl {proxy_flag}: {output:?}, stderr {}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::read(&out).expect("curl's output file")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_fetches_byte_exact_through_socks5_with_names_socks5_with_addresses_and_socks4a() {
    if !curl_available() {
        return;
    }
    let sshd = TestSshd::start();
    let body = Arc::new(deterministic_bytes(14, BODY_LEN));
    let http = HttpServer::start(body.clone()).await;
    let (daemon, port) = start_socks_daemon(&sshd).await;
    assert_eq!(
        sshd.established_connections(),
        0,
        "connected before a request"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let http_port = http.addr.port();

    // The name travels unresolved: sshd resolves `localhost` (see its log below).
    let by_name = fetch(
        dir.path(),
        "--socks5-hostname",
        port,
        format!("http://localhost:{http_port}/by-name"),
    )
    .await;
    assert_same_bytes(&by_name, &body, "--socks5-hostname");
    let by_address = fetch(
        dir.path(),
        "--socks5",
        port,
        format!("http://127.0.0.1:{http_port}/by-address"),
    )
    .await;
    assert_same_bytes(&by_address, &body, "--socks5");
    let socks4a = fetch(
        dir.path(),
        "--socks4a",
        port,
        format!("http://localhost:{http_port}/socks4a"),
    )
    .await;
    assert_same_bytes(&socks4a, &body, "--socks4a");

    assert_eq!(http.requests.load(Ordering::SeqCst), 3);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
    assert!(sshd.established_connections() <= 1, "one session for all");
    let sshd_log = sshd.log();
    assert_eq!(
        sshd_log
            .matches(&format!("target localhost port {http_port}"))
            .count(),
        2,
        "sshd was not asked for `localhost` twice:\n{sshd_log}"
    );
    let status = daemon.status_json();
    let forward = &status["forwards"][0];
    assert_eq!(forward["target"], "socks");
    assert_eq!(forward["socks"], true);
    assert_eq!(forward["connections_total"], 3);
    // Three bodies and their HTTP heads.
    let down = forward["bytes_down"].as_u64().unwrap_or(0);
    assert!(down > 3 * BODY_LEN as u64, "bytes_down {down}");
    assert!(forward["last_error"].is_null(), "{forward}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_destination_gets_socks_connection_refused_promptly() {
    let sshd = TestSshd::start();
    let (daemon, port) = start_socks_daemon(&sshd).await;
    let (_refusing, closed) = refusing_port();

    // Byte-exact: the method choice, then reply 0x05 (connection refused), then the end.
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    request.extend(closed.to_be_bytes());
    client.write_all(&request).await.unwrap();
    let (replies, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no reply within TIMEOUT");
    ended.expect("a clean close after the reply");
    assert_eq!(replies, [5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0]);

    if curl_available() {
        let args = vec![
            "--socks5-hostname".into(),
            format!("127.0.0.1:{port}"),
            format!("http://localhost:{closed}/"),
        ];
        let (output, took) = curl(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        // 97: CURLE_PROXY, a proxy handshake error; curl quotes the reply code (7.x) or
        // names it (newer).
        assert_eq!(output.status.code(), Some(97), "curl: {stderr}");
        assert!(
            stderr.contains("SOCKS5 connection to localhost. (5)")
                || stderr.contains("onnection refused"),
            "curl: {stderr}"
        );
        assert!(took < PROMPTLY, "curl took {took:?}");
    }
    // A destination the client chose is not the forward's failure.
    let status = daemon.status_json();
    assert!(status["forwards"][0]["last_error"].is_null(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_greetings_and_unsupported_commands_get_error_replies_and_open_no_session() {
    let sshd = TestSshd::start();
    let (daemon, port) = start_socks_daemon(&sshd).await;
    let cases: [(&str, &[u8], &[u8]); 4] = [
        ("no acceptable method", &[5, 1, 2], &[5, 0xff]),
        (
            "BIND",
            &[5, 1, 0, 5, 2, 0, 1, 127, 0, 0, 1, 0, 80],
            &[5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0],
        ),
        (
            "UDP ASSOCIATE",
            &[5, 1, 0, 5, 3, 0, 1, 127, 0, 0, 1, 0, 80],
            &[5, 0, 5, 7, 0, 1, 0, 0, 0, 0, 0, 0],
        ),
        (
            "SOCKS4 BIND",
            &[4, 2, 0, 80, 127, 0, 0, 1, 0],
            &[0, 0x5b, 0, 0, 0, 0, 0, 0],
        ),
    ];
    for (what, sent, expected) in cases {
        let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        client.write_all(sent).await.unwrap();
        let (replies, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
            .await
            .unwrap_or_else(|_| panic!("{what}: no reply within TIMEOUT"));
        assert_eq!(replies, expected, "{what}");
        ended.unwrap_or_else(|e| panic!("{what}: not closed cleanly: {e}"));
    }
    daemon
        .wait_for_log_count("socks handshake failed", cases.len(), TIMEOUT)
        .await;
    let log = daemon.log();
    assert!(log.contains("0x02 is not supported"), "{log}");
    assert_eq!(sshd.established_connections(), 0);
    assert_eq!(daemon.sole_host_status()["attempts"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_dropped_after_the_handshake_timeout() {
    let sshd = TestSshd::start();
    let (daemon, port) = start_socks_daemon(&sshd).await;
    let started = Instant::now();
    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    // Half a greeting, then silence.
    client.write_all(&[5]).await.unwrap();
    let (replies, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("still open after TIMEOUT");
    let took = started.elapsed();
    assert!(replies.is_empty(), "{replies:?}");
    ended.expect("closed cleanly");
    // The handshake timeout is 10 s.
    assert!(
        (Duration::from_secs(9)..TIMEOUT).contains(&took),
        "dropped after {took:?}"
    );
    daemon
        .wait_for_log("no SOCKS request within 10s", PROMPTLY)
        .await;
    assert_eq!(sshd.established_connections(), 0);
}

/// A destination the server's rules forbid (sshd `PermitOpen`) gets "connection not allowed by
/// ruleset" (0x02), and the session goes on serving what is allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_destination_the_server_forbids_gets_not_allowed_by_ruleset() {
    let echo = DataServer::echo().await;
    let sshd = TestSshd::builder()
        .config_line(&format!("PermitOpen {}", echo.addr()))
        .start();
    let (daemon, port) = start_socks_daemon(&sshd).await;
    let (_refusing, elsewhere) = refusing_port();

    let mut client = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let mut request = vec![5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1];
    request.extend(elsewhere.to_be_bytes());
    client.write_all(&request).await.unwrap();
    let (replies, ended) = tokio::time::timeout(TIMEOUT, read_to_end(&mut client))
        .await
        .expect("no reply within TIMEOUT");
    ended.expect("a clean close after the reply");
    assert_eq!(replies, [5, 0, 5, 2, 0, 1, 0, 0, 0, 0, 0, 0]);

    let mut allowed = socks5_connect(port, echo.addr()).await;
    echo_once(&mut allowed, b"the permitted destination").await;
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}
