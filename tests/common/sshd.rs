//! [`TestSshd`]: a real OpenSSH `sshd` on an ephemeral loopback port, with its own keys,
//! `authorized_keys`, `sshd_config`, and client-side `known_hosts` and `ssh_config` files, all in
//! a temp dir that goes away with it. The files written for clients are in [`super::sshd_files`].

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use super::certs::{self, CertKind};
use super::keys::{self, KeyPair, KeyType};
use super::log::LogFile;
use super::net::free_port;
use super::netns::NsHandle;
use super::sshd_files::sshd_config;
use super::{TIMEOUT, current_user, path_str, procfs, send_signal, wait_for_count, write_file};

pub(super) const SSHD: &str = "/usr/sbin/sshd";
/// The privilege separation directory sshd insists on; packages create it at boot, containers
/// often lack it.
const PRIVSEP_DIR: &str = "/run/sshd";
/// Start attempts on fresh ports when another process takes the port between our probe bind
/// and sshd's bind.
const START_ATTEMPTS: usize = 5;

/// Options for [`TestSshd`]; [`TestSshd::start`] uses the defaults.
#[derive(Debug, Default, Clone)]
pub struct TestSshdBuilder {
    extra_host_keys: Vec<KeyType>,
    encrypted_key_passphrase: Option<String>,
    rsa_user_key: bool,
    host_certificate: bool,
    user_certificate: bool,
    config_lines: Vec<String>,
    listen: Option<IpAddr>,
    netns: Option<NsHandle>,
}

impl TestSshdBuilder {
    /// Also give the server a host key of this type (it always has an ed25519 one). The
    /// generated known_hosts trusts all of them.
    pub fn host_key(mut self, kind: KeyType) -> Self {
        if kind != KeyType::Ed25519 && !self.extra_host_keys.contains(&kind) {
            self.extra_host_keys.push(kind);
        }
        self
    }

    /// Also create an authorized ed25519 user key encrypted with `passphrase`
    /// ([`TestSshd::encrypted_key_path`]).
    pub fn encrypted_user_key(mut self, passphrase: &str) -> Self {
        self.encrypted_key_passphrase = Some(passphrase.to_string());
        self
    }

    /// Also create an authorized, unencrypted RSA user key ([`TestSshd::rsa_key_path`]).
    pub fn rsa_user_key(mut self) -> Self {
        self.rsa_user_key = true;
        self
    }

    /// Also present a host certificate for the ed25519 host key, signed by a test CA
    /// ([`TestSshd::host_ca`]) for the principal `127.0.0.1` (`HostCertificate`).
    pub fn host_certificate(mut self) -> Self {
        self.host_certificate = true;
        self
    }

    /// Also trust a test user CA (`TrustedUserCAKeys`) and create an ed25519 user key that is
    /// *not* in authorized_keys, with a certificate from that CA for the test user
    /// ([`TestSshd::certified_user_key`]).
    pub fn user_certificate(mut self) -> Self {
        self.user_certificate = true;
        self
    }

    /// Adds a line to `sshd_config`, e.g. `ClientAliveInterval 1`. Lines are written *before*
    /// the harness defaults, and sshd keeps the first value it reads, so they override them.
    pub fn config_line(mut self, line: &str) -> Self {
        self.config_lines.push(line.to_string());
        self
    }

    /// Listens on `ip` instead of 127.0.0.1 (the generated client files name it too).
    pub fn listen_address(mut self, ip: IpAddr) -> Self {
        self.listen = Some(ip);
        self
    }

    /// Runs sshd inside a network namespace ([`super::netns::NetNs::handle`]); combine with
    /// [`Self::listen_address`] for an address added there.
    pub fn netns(mut self, netns: NsHandle) -> Self {
        self.netns = Some(netns);
        self
    }

    pub fn start(self) -> TestSshd {
        TestSshd::start_with(self)
    }
}

/// A running OpenSSH server; killed, with its sessions, on drop.
pub struct TestSshd {
    port: u16,
    listen: IpAddr,
    netns: Option<NsHandle>,
    user: &'static str,
    host_keys: Vec<KeyPair>,
    user_key: KeyPair,
    encrypted_key: Option<(KeyPair, String)>,
    rsa_key: Option<KeyPair>,
    host_ca: Option<KeyPair>,
    /// The key and its certificate path.
    certified_user_key: Option<(KeyPair, PathBuf)>,
    config_path: PathBuf,
    log: LogFile,
    child: Option<Child>,
    // Declared last so it is removed after everything above has been dropped.
    dir: TempDir,
}

impl TestSshd {
    /// Starts a server with the default options: see [`TestSshd::builder`] for the others.
    pub fn start() -> TestSshd {
        TestSshdBuilder::default().start()
    }

    pub fn builder() -> TestSshdBuilder {
        TestSshdBuilder::default()
    }

    fn start_with(options: TestSshdBuilder) -> TestSshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} not found: the end-to-end tests need openssh-server installed"
        );
        // Fails when not root; sshd's own error then names the directory.
        let _ = std::fs::create_dir_all(PRIVSEP_DIR);

        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-sshd-")
            .tempdir()
            .expect("could not create a temp dir for sshd");
        let host_keys: Vec<KeyPair> = std::iter::once(KeyType::Ed25519)
            .chain(options.extra_host_keys.iter().copied())
            .map(|kind| keys::generate(dir.path(), &format!("host_{}", kind.name()), kind, None))
            .collect();
        let user_key = keys::generate(dir.path(), "id_ed25519", KeyType::Ed25519, None);
        let encrypted_key = options.encrypted_key_passphrase.map(|passphrase| {
            let pair = keys::generate(
                dir.path(),
                "id_encrypted",
                KeyType::Ed25519,
                Some(&passphrase),
            );
            (pair, passphrase)
        });
        let rsa_key = options
            .rsa_user_key
            .then(|| keys::generate(dir.path(), "id_rsa", KeyType::Rsa, None));

        let authorized: Vec<&str> = std::iter::once(&user_key)
            .chain(encrypted_key.as_ref().map(|(pair, _)| pair))
            .chain(rsa_key.as_ref())
            .map(|pair| pair.public_line.as_str())
            .collect();
        write_file(
            &dir.path().join("authorized_keys"),
            &(authorized.join("\n") + "\n"),
        );

        let user = current_user();
        let listen = options.listen.unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let mut config_lines = options.config_lines.clone();
        let host_ca = options.host_certificate.then(|| {
            let ca = keys::generate(dir.path(), "host_ca", KeyType::Ed25519, None);
            let cert = certs::sign(&ca, &host_keys[0], CertKind::Host, &listen.to_string());
            config_lines.push(format!("HostCertificate {}", path_str(&cert)));
            ca
        });
        let certified_user_key = options.user_certificate.then(|| {
            let ca = keys::generate(dir.path(), "user_ca", KeyType::Ed25519, None);
            let key = keys::generate(dir.path(), "id_certified", KeyType::Ed25519, None);
            let cert = certs::sign(&ca, &key, CertKind::User, user);
            config_lines.push(format!("TrustedUserCAKeys {}", path_str(&ca.public_path)));
            (key, cert)
        });

        let config_path = dir.path().join("sshd_config");
        write_file(
            &config_path,
            &sshd_config(dir.path(), user, listen, &host_keys, &config_lines),
        );

        let mut sshd = TestSshd {
            port: 0,
            listen,
            netns: options.netns,
            user,
            host_keys,
            user_key,
            encrypted_key,
            rsa_key,
            host_ca,
            certified_user_key,
            config_path,
            log: LogFile::new(dir.path().join("sshd.log")),
            child: None,
            dir,
        };
        for attempt in 1..=START_ATTEMPTS {
            // Free a moment ago; if another process binds it first, sshd fails and we retry.
            let port = free_port();
            match sshd.spawn(port) {
                Ok(child) => {
                    sshd.port = port;
                    sshd.child = Some(child);
                    break;
                }
                Err(Spawn::PortTaken) if attempt < START_ATTEMPTS => continue,
                Err(err) => panic!("sshd did not start on port {port}: {err:?}"),
            }
        }
        sshd.write_client_files();
        sshd
    }

    /// Runs sshd on `port` and waits until it says it is listening.
    fn spawn(&self, port: u16) -> Result<Child, Spawn> {
        let offset = self.log.end_offset();
        let mut command = Command::new(SSHD);
        if let Some(netns) = &self.netns {
            netns.wrap(&mut command);
        }
        let mut child = command
            .args([
                "-D",
                "-e",
                "-f",
                path_str(&self.config_path),
                "-p",
                &port.to_string(),
            ])
            .stdin(Stdio::null())
            .stdout(self.log.stdio())
            .stderr(self.log.stdio())
            .spawn()
            .map_err(|err| Spawn::Failed(format!("could not run {SSHD}: {err}")))?;
        let ready = format!("Server listening on {} port {port}.", self.listen);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let said = self.log.contents_since(offset);
            if said.contains(&ready) {
                return Ok(child);
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(if said.contains("Address already in use") {
                    Spawn::PortTaken
                } else {
                    Spawn::Failed(format!("sshd exited ({status}) before listening:\n{said}"))
                });
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Spawn::Failed(format!(
                    "sshd not listening after {TIMEOUT:?}:\n{said}"
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.listen, self.port)
    }

    /// The address sshd listens on: 127.0.0.1 unless the builder chose another.
    pub fn listen_ip(&self) -> IpAddr {
        self.listen
    }

    /// The temp dir holding every file of this server.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The user clients log in as: the one running the tests.
    pub fn user(&self) -> &str {
        self.user
    }

    /// The unencrypted ed25519 user key, authorized on the server.
    pub fn user_key_path(&self) -> &Path {
        &self.user_key.private_path
    }

    pub fn user_public_key(&self) -> &str {
        &self.user_key.public_line
    }

    /// The passphrase-protected key, if the builder asked for one.
    pub fn encrypted_key_path(&self) -> Option<&Path> {
        self.encrypted_key
            .as_ref()
            .map(|(pair, _)| pair.private_path.as_path())
    }

    pub fn passphrase(&self) -> Option<&str> {
        self.encrypted_key
            .as_ref()
            .map(|(_, passphrase)| passphrase.as_str())
    }

    /// The RSA user key, if the builder asked for one.
    pub fn rsa_key_path(&self) -> Option<&Path> {
        self.rsa_key
            .as_ref()
            .map(|pair| pair.private_path.as_path())
    }

    /// The CA that signed the host certificate ([`TestSshdBuilder::host_certificate`]).
    pub fn host_ca(&self) -> &KeyPair {
        self.host_ca
            .as_ref()
            .expect("the server was built without host_certificate()")
    }

    /// The user key that only a certificate authorizes, and the certificate's path
    /// ([`TestSshdBuilder::user_certificate`]).
    pub fn certified_user_key(&self) -> (&KeyPair, &Path) {
        let (key, cert) = self
            .certified_user_key
            .as_ref()
            .expect("the server was built without user_certificate()");
        (key, cert)
    }

    pub fn sshd_config_path(&self) -> &Path {
        &self.config_path
    }

    /// The ed25519 host key as an OpenSSH public key line, `ssh-ed25519 BASE64`.
    pub fn host_public_key(&self) -> &str {
        &self.host_keys[0].public_line
    }

    pub fn host_keys(&self) -> &[KeyPair] {
        &self.host_keys
    }

    /// Everything sshd logged (LogLevel DEBUG1), across restarts.
    pub fn log(&self) -> String {
        self.log.contents()
    }

    pub fn log_file(&self) -> &LogFile {
        &self.log
    }

    /// The listener's pid. Panics if the server is stopped.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("sshd is stopped").id()
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// ESTABLISHED TCP connections to the server's port held by this sshd's processes: the
    /// number of SSH connections clients hold right now. (Read through `/proc/PID`, so sockets
    /// of other processes never count, and a namespace is sshd's own.)
    pub fn established_connections(&self) -> usize {
        let Some(child) = &self.child else { return 0 };
        let pids: Vec<u32> = std::iter::once(child.id())
            .chain(procfs::descendants(child.id()))
            .collect();
        procfs::established_connections_held_by(&pids, self.port)
    }

    /// Re-checks [`Self::established_connections`] until it equals `expected` or `timeout`
    /// passes; returns the last count.
    pub async fn wait_for_connections(&self, expected: usize, timeout: Duration) -> usize {
        wait_for_count(expected, timeout, || self.established_connections()).await
    }

    /// Pids of the per-connection sshd processes: the listener forks one per accepted
    /// connection (each has children of its own: privsep, and the user's commands).
    pub fn session_processes(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|child| procfs::children(child.id()))
            .unwrap_or_default()
    }

    /// Re-checks the number of [`Self::session_processes`] until it equals `expected` or
    /// `timeout` passes; returns the last count.
    pub async fn wait_for_session_processes(&self, expected: usize, timeout: Duration) -> usize {
        wait_for_count(expected, timeout, || self.session_processes().len()).await
    }

    /// SIGKILLs every process under the listener, so each connection dies abruptly as if the
    /// server crashed, while the listener keeps accepting new ones. Returns the killed pids.
    pub fn kill_session_processes(&self) -> Vec<u32> {
        self.child
            .as_ref()
            .map(|child| kill_descendants(child.id()))
            .unwrap_or_default()
    }

    /// Takes the server down abruptly: the listener stops accepting and every session process
    /// is SIGKILLed, so clients see their connections drop. Files and port are kept for
    /// [`Self::start_again`]. Does nothing if already stopped.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // Freeze the listener first so it cannot fork a session we would miss; once it dies its
        // children are re-parented and can no longer be found through it.
        send_signal(child.id(), "STOP");
        kill_descendants(child.id());
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the stopped server again on the same port with the same keys and files. Retries
    /// while something else briefly holds the port.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "sshd is already running");
        let deadline = Instant::now() + TIMEOUT;
        loop {
            match self.spawn(self.port) {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(Spawn::PortTaken) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(err) => panic!("sshd did not restart on port {}: {err:?}", self.port),
            }
        }
    }

    /// [`Self::stop`] then [`Self::start_again`]: same port, same host keys.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }
}

impl Drop for TestSshd {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail(&format!("sshd (port {})", self.port));
        }
        self.stop();
    }
}

#[derive(Debug)]
enum Spawn {
    /// Someone else bound the port first: retry on another one.
    PortTaken,
    Failed(String),
}

/// SIGKILLs every process below `ancestor`; returns their pids.
fn kill_descendants(ancestor: u32) -> Vec<u32> {
    let doomed = procfs::descendants(ancestor);
    for &pid in &doomed {
        send_signal(pid, "KILL");
    }
    doomed
}
