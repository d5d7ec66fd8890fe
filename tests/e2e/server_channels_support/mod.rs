//! [`RusshServer`]: an in-process SSH server built on `russh::server`, for behaviour a real
//! OpenSSH sshd never shows, such as opening channels toward a client that asked for none.
//!
//! It listens on 127.0.0.1 with an ephemeral port and a throwaway ed25519 host key, accepts
//! one throwaway user key, and serves every `direct-tcpip` channel as an echo itself (so no
//! target needs to exist). Each such channel is reported to the test with the session's
//! [`Handle`], from which the test can open channels toward the client.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use russh::Channel;
use russh::keys::ssh_key::LineEnding;
use russh::keys::{Algorithm, PrivateKey, PublicKey};
use russh::server::{self, Auth, ChannelOpenHandle, Handle, Msg, Session, VerifiedPublicKey};
use tempfile::TempDir;
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::common::{TIMEOUT, path_str, write_file};

/// The ssh_config host alias that reaches the server.
pub const HOST: &str = "russhd";

/// The only user the server lets in.
const USER: &str = "tunnel";

/// A `direct-tcpip` channel the server accepted (and echoes).
pub struct DirectTcpip {
    pub host: String,
    pub port: u32,
    /// The handle of the SSH session the channel belongs to.
    pub handle: Handle,
}

/// A running in-process SSH server; stops accepting on drop.
pub struct RusshServer {
    dir: TempDir,
    connections: Arc<AtomicUsize>,
    direct_tcpip: mpsc::UnboundedReceiver<DirectTcpip>,
    task: JoinHandle<()>,
}

impl RusshServer {
    /// Generates the keys, writes the client's files (see [`Self::ssh_config_path`]) and starts
    /// serving on the current tokio runtime.
    pub async fn start() -> RusshServer {
        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-russhd-")
            .tempdir()
            .expect("could not create a temp dir for the russh server");
        let host_key = random_ed25519();
        let user_key = random_ed25519();
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("could not bind 127.0.0.1:0 for the russh server");
        let addr = listener.local_addr().expect("russh server address");
        write_client_files(dir.path(), addr.port(), &host_key, &user_key);

        let config = Arc::new(server::Config {
            keys: vec![host_key],
            auth_rejection_time: std::time::Duration::ZERO,
            auth_rejection_time_initial: Some(std::time::Duration::ZERO),
            inactivity_timeout: None,
            ..Default::default()
        });
        let connections = Arc::new(AtomicUsize::new(0));
        let (events, direct_tcpip) = mpsc::unbounded_channel();
        let task = tokio::spawn(serve(
            listener,
            config,
            user_key.public_key().clone(),
            events,
            connections.clone(),
        ));
        RusshServer {
            dir,
            connections,
            direct_tcpip,
            task,
        }
    }

    /// An ssh_config defining `Host russhd` with the user key, a known_hosts file trusting the
    /// host key as `[127.0.0.1]:PORT`, `IdentitiesOnly yes` and `StrictHostKeyChecking yes`.
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir.path().join("ssh_config")
    }

    /// How many TCP connections the server has accepted.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Waits for the next `direct-tcpip` channel; panics after [`TIMEOUT`].
    pub async fn next_direct_tcpip(&mut self) -> DirectTcpip {
        tokio::time::timeout(TIMEOUT, self.direct_tcpip.recv())
            .await
            .unwrap_or_else(|_| panic!("no direct-tcpip channel within {TIMEOUT:?}"))
            .expect("the russh server stopped")
    }
}

impl Drop for RusshServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn random_ed25519() -> PrivateKey {
    PrivateKey::random(&mut russh::keys::key::safe_rng(), Algorithm::Ed25519)
        .expect("could not generate an ed25519 key")
}

fn write_client_files(dir: &Path, port: u16, host_key: &PrivateKey, user_key: &PrivateKey) {
    let known_hosts = dir.join("known_hosts");
    let host_public = host_key
        .public_key()
        .to_openssh()
        .expect("encode the host key");
    write_file(&known_hosts, &format!("[127.0.0.1]:{port} {host_public}\n"));

    let identity = dir.join("id_ed25519");
    let pem = user_key
        .to_openssh(LineEnding::LF)
        .expect("encode the user key");
    // Private keys readable by others are refused by OpenSSH, so never write one.
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&identity)
        .and_then(|mut file| file.write_all(pem.as_bytes()))
        .unwrap_or_else(|err| panic!("could not write {}: {err}", identity.display()));

    let ssh_config = format!(
        "Host {HOST}\n    HostName 127.0.0.1\n    Port {port}\n    User {USER}\n    \
         IdentityFile {}\n    UserKnownHostsFile {}\n    IdentitiesOnly yes\n    \
         StrictHostKeyChecking yes\n",
        path_str(&identity),
        path_str(&known_hosts),
    );
    write_file(&dir.join("ssh_config"), &ssh_config);
}

async fn serve(
    listener: TcpListener,
    config: Arc<server::Config>,
    authorized: PublicKey,
    events: mpsc::UnboundedSender<DirectTcpip>,
    connections: Arc<AtomicUsize>,
) {
    loop {
        let Ok((stream, peer)) = listener.accept().await else {
            return;
        };
        connections.fetch_add(1, Ordering::SeqCst);
        let handler = SessionHandler {
            authorized: authorized.clone(),
            events: events.clone(),
        };
        let config = config.clone();
        tokio::spawn(async move {
            let ended = match server::run_stream(config, stream, handler).await {
                Ok(session) => session.await,
                Err(err) => Err(err),
            };
            // Shown with the test's output if it fails; a daemon hanging up is normal.
            if let Err(err) = ended {
                eprintln!("russh server: session from {peer} ended: {err}");
            }
        });
    }
}

/// The server side of one SSH connection.
struct SessionHandler {
    authorized: PublicKey,
    events: mpsc::UnboundedSender<DirectTcpip>,
}

impl server::Handler for SessionHandler {
    type Error = russh::Error;

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        if user == USER && key.public_key.key_data() == self.authorized.key_data() {
            Ok(Auth::Accept)
        } else {
            Ok(Auth::reject())
        }
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        reply.accept().await;
        tokio::spawn(echo(channel));
        let _ = self.events.send(DirectTcpip {
            host: host_to_connect.to_string(),
            port: port_to_connect,
            handle: session.handle(),
        });
        Ok(())
    }
}

/// Echoes every byte until EOF, then sends EOF back.
async fn echo(channel: Channel<Msg>) {
    let (mut reader, mut writer) = tokio::io::split(channel.into_stream());
    if tokio::io::copy(&mut reader, &mut writer).await.is_ok() {
        let _ = writer.shutdown().await;
    }
}
