//! Connection set-up: a new connection plus a 1-byte echo, through a warm forward, through a
//! lazytunnel that has no session yet (the lazy handshake), and through a fresh `ssh -W` per
//! connection (the seed's ProxyCommand-style design).

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::ssh_client::ssh_command;

/// Milliseconds from connect() to the echoed byte, the connection then closed.
pub async fn connect_echo_ms(port: u16) -> f64 {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    let _ = stream.set_nodelay(true);
    stream.write_all(b"x").await.expect("echo write");
    let mut back = [0; 1];
    stream.read_exact(&mut back).await.expect("echo read");
    let elapsed = start.elapsed();
    assert_eq!(&back, b"x");
    elapsed.as_secs_f64() * 1e3
}

/// Milliseconds from starting `ssh -W echo test` to the echoed byte on its stdout.
pub async fn ssh_w_echo_ms(ssh_config: &Path, echo: SocketAddr) -> f64 {
    let ssh_config = ssh_config.to_owned();
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let mut child = ssh_command(&ssh_config)
            .arg("-W")
            .arg(echo.to_string())
            .arg("test")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run ssh -W");
        let mut stdin = child.stdin.take().expect("ssh stdin");
        let mut stdout = child.stdout.take().expect("ssh stdout");
        stdin.write_all(b"x").expect("write to ssh -W");
        let mut back = [0; 1];
        stdout.read_exact(&mut back).expect("read from ssh -W");
        let elapsed = start.elapsed();
        assert_eq!(&back, b"x");
        drop(stdin);
        let _ = child.wait();
        elapsed.as_secs_f64() * 1e3
    })
    .await
    .expect("ssh -W task")
}
