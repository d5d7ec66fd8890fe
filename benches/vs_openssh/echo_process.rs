//! The echo target of the many-connections part, in a process of its own: N connections cost
//! N descriptors here and N at the target, and a non-root user's hard limit (often 20,000)
//! must hold only one of the two for 10,000 connections. The benchmark runs itself again
//! with [`CHILD_VAR`] set; the child prints its port and echoes until its stdin closes.

use std::io::{BufRead, BufReader, Read};
use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};

use tokio::net::TcpListener;

/// Set in the child's environment: serve as the echo target instead of benchmarking.
pub const CHILD_VAR: &str = "LAZYTUNNEL_BENCH_ECHO_PROCESS";

/// The running child; killed on drop.
pub struct EchoProcess {
    child: Child,
    pub addr: SocketAddr,
}

impl EchoProcess {
    pub fn start() -> EchoProcess {
        let exe = std::env::current_exe().expect("the benchmark's own path");
        let mut child = Command::new(exe)
            .env(CHILD_VAR, "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the echo process");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("its stdout"))
            .read_line(&mut line)
            .expect("read the echo process's port");
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("the echo process said {line:?}, not a port"));
        EchoProcess {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        }
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's whole life: listen, say the port, echo every connection; exit when the
/// parent closes our stdin (also when it dies).
pub fn serve() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the echo target");
        println!("{}", listener.local_addr().expect("its address").port());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut from, mut to) = socket.split();
                    let _ = tokio::io::copy(&mut from, &mut to).await;
                });
            }
        });
        tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new()))
            .await
            .ok();
    });
}
