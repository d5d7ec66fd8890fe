//! The russh event handler of one session: host key verification before authentication,
//! refusal of every channel the server tries to open, and the end-of-session signal.

use std::sync::{Arc, Mutex};

use russh::client::{self, DisconnectReason, Msg, Session};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::{HashAlg, PublicKey};
use russh::{Channel, ChannelOpenFailure};
use tokio_util::sync::DropGuard;
use tracing::{info, warn};

use crate::known_hosts::{self, Verdict};
use crate::ssh_config::{HostConfig, StrictHostKeyChecking};

/// The russh event handler for one session.
pub struct Client {
    pub(super) host: Arc<HostConfig>,
    pub(super) host_key_problem: Arc<Mutex<Option<String>>>,
    pub(super) end_reason: Arc<Mutex<Option<String>>>,
    /// Dropped with the handler when russh's session task ends, on every path.
    pub(super) _dead: DropGuard,
}

impl Client {
    /// Records an unknown host's key in the first UserKnownHostsFile and accepts it. With
    /// `must_record`, failing to record it refuses the host (accept-new); otherwise it warns.
    async fn learn(
        &self,
        key: &PublicKeyOrCertificate,
        name: &str,
        fingerprint: &str,
        mode: &str,
        must_record: bool,
    ) -> Result<bool, russh::Error> {
        let host = &self.host;
        let plain = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            PublicKeyOrCertificate::Certificate(cert) => PublicKey::from(cert.public_key().clone()),
        };
        let recorded = match host.user_known_hosts_files.first().cloned() {
            Some(file) => {
                let (key_host, key_port) = host.host_key_name();
                let (key_host, hash) = (key_host.to_owned(), host.hash_known_hosts);
                // Off the async worker, like every file access: the file may be on a hung
                // file system (or be a FIFO nobody reads).
                let appended = tokio::task::spawn_blocking({
                    let file = file.clone();
                    move || known_hosts::append(&file, &key_host, key_port, &plain, hash)
                })
                .await
                .unwrap_or_else(|e| Err(std::io::Error::other(e)));
                appended
                    .map(|()| file.display().to_string())
                    .map_err(|e| format!("cannot record it in {}: {e}", file.display()))
            }
            None => Err("no UserKnownHostsFile to record it in".to_string()),
        };
        match recorded {
            Ok(file) => {
                warn!(host = %name, %fingerprint, %file, "learned new host key (StrictHostKeyChecking {mode})");
                Ok(true)
            }
            Err(problem) if must_record => {
                self.refuse(format!("host key for {name} is not known and {problem}"))
            }
            Err(problem) => {
                warn!(host = %name, %fingerprint, "accepting unknown host key (StrictHostKeyChecking {mode}); {problem}");
                Ok(true)
            }
        }
    }

    fn refuse(&self, problem: String) -> Result<bool, russh::Error> {
        if let Ok(mut slot) = self.host_key_problem.lock() {
            *slot = Some(problem);
        }
        Ok(false)
    }
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let host = &self.host;
        let (key_host, key_port) = host.host_key_name();
        let name = known_hosts::lookup_name(key_host, key_port);
        let files = host.known_hosts_files();
        let fingerprint = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                key.fingerprint(HashAlg::Sha256).to_string()
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                cert.public_key().fingerprint(HashAlg::Sha256).to_string()
            }
        };
        let verifying = {
            let (key_host, key) = (key_host.to_owned(), owned(key));
            // Off the async worker: see `learn`.
            tokio::task::spawn_blocking(move || {
                known_hosts::verify(&files, &key_host, key_port, &key)
            })
        };
        let verdict = match verifying.await {
            Ok(Ok(verdict)) => verdict,
            // Out of descriptors says nothing about the key: fail the handshake, not the host.
            Ok(Err(known_hosts::KnownHostsError::Read { error, .. }))
                if crate::limits::is_out_of_descriptors(&error) =>
            {
                return Err(russh::Error::IO(error));
            }
            Ok(Err(e)) => return self.refuse(format!("host key check for {name} failed: {e}")),
            Err(e) => return self.refuse(format!("host key check for {name} failed: {e}")),
        };
        match verdict {
            Verdict::Trusted { .. } => Ok(true),
            Verdict::Revoked { at } => self.refuse(format!(
                "host key {fingerprint} of {name} is marked @revoked at {}:{}; refusing to connect",
                at.path.display(),
                at.line
            )),
            Verdict::Changed { at, known_fingerprint } => self.refuse(format!(
                "REMOTE HOST IDENTIFICATION HAS CHANGED for {name}: it offered {fingerprint}, but {}:{} \
                 records {known_fingerprint}. Someone could be eavesdropping (man-in-the-middle), or the \
                 host key was replaced. If you know why, remove the old line with `ssh-keygen -R '{name}'`",
                at.path.display(),
                at.line
            )),
            Verdict::Unknown => match host.strict_host_key_checking {
                StrictHostKeyChecking::Yes => {
                    let file = host.user_known_hosts_files.first().map(|f| f.display().to_string()).unwrap_or_else(|| "~/.ssh/known_hosts".into());
                    self.refuse(format!(
                        "host key for {name} is not known (StrictHostKeyChecking yes; a daemon cannot ask). \
                         It offered {fingerprint}. After verifying that fingerprint, add the key with \
                         `ssh-keyscan -p {} {} >> {file}` or by connecting once with `ssh {}`",
                        host.port, host.host_name, host.spec
                    ))
                }
                StrictHostKeyChecking::AcceptNew => self.learn(key, &name, &fingerprint, "accept-new", true).await,
                // As OpenSSH: accept, warn, and remember the key for next time.
                StrictHostKeyChecking::No => self.learn(key, &name, &fingerprint, "no", false).await,
            },
        }
    }

    // russh's defaults accept every channel a server opens; a forwarder must not.
    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _connected_address: &str,
        _connected_port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "forwarded-tcpip").await;
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "forwarded-streamlocal").await;
        Ok(())
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "agent forwarding").await;
        Ok(())
    }

    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "session").await;
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "direct-tcpip").await;
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "direct-streamlocal").await;
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        _channel: Channel<Msg>,
        _originator_address: &str,
        _originator_port: u32,
        reply: client::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        reject(reply, "x11").await;
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let text = match &reason {
            DisconnectReason::ReceivedDisconnect(info) => {
                format!(
                    "server disconnected: {:?} {}",
                    info.reason_code,
                    crate::printable::printable(&info.message)
                )
            }
            DisconnectReason::Error(e) => e.to_string(),
        };
        if let Ok(mut slot) = self.end_reason.lock() {
            slot.get_or_insert(text);
        }
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}

async fn reject(reply: client::ChannelOpenHandle, kind: &str) {
    info!(kind, "rejected a channel opened by the server");
    reply
        .reject(ChannelOpenFailure::AdministrativelyProhibited)
        .await;
}

/// A copy of `key` to move to another thread (russh's type is not `Clone`).
fn owned(key: &PublicKeyOrCertificate) -> PublicKeyOrCertificate {
    match key {
        PublicKeyOrCertificate::PublicKey { key, hash_alg } => PublicKeyOrCertificate::PublicKey {
            key: key.clone(),
            hash_alg: *hash_alg,
        },
        PublicKeyOrCertificate::Certificate(cert) => {
            PublicKeyOrCertificate::Certificate(cert.clone())
        }
    }
}
