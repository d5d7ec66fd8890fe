//! User authentication on a fresh SSH session: ssh-agent first, then key files, the order
//! OpenSSH uses, with `IdentitiesOnly` restricting agent keys to the configured files. A key
//! with a certificate ([`certificates`]) is offered with the certificate first, then bare.

mod certificates;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::{AuthResult, Handle, Handler};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::{Certificate, HashAlg, PrivateKeyWithHashAlg};
use tracing::{debug, warn};

use crate::ssh_config::{HostConfig, IdentityAgent};

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(
        "authentication as {user}@{host} rejected by the server (tried: {tried}); \
         check that one of these keys is in the server's authorized_keys"
    )]
    Rejected {
        user: String,
        host: String,
        tried: String,
    },
    #[error(
        "authentication as {user}@{host} failed: key {} is encrypted and no ssh-agent holds it; \
         add it to the agent (`ssh-add {}`) and make sure SSH_AUTH_SOCK reaches lazytunnel",
        path.display(), path.display()
    )]
    EncryptedKey {
        user: String,
        host: String,
        path: PathBuf,
    },
    #[error(
        "authentication as {user}@{host} failed: no identities to try (no agent keys, no key files found)"
    )]
    NoIdentities { user: String, host: String },
    /// Out of file descriptors while reading keys: a local condition, retried soon.
    #[error("cannot read the key files for {user}@{host}: {error}")]
    Files {
        user: String,
        host: String,
        error: std::io::Error,
    },
    #[error("ssh protocol error during authentication: {0}")]
    Ssh(#[from] russh::Error),
}

/// Authenticates `handle` as `host.user`. Returns a precise error saying what was tried.
pub async fn authenticate<H: Handler>(
    handle: &mut Handle<H>,
    host: &HostConfig,
) -> Result<(), AuthError> {
    let mut tried: Vec<String> = Vec::new();
    // Files are read on the blocking pool: a key on a hung file system must not stop the
    // daemon's only worker.
    let (files, certs) = {
        let owned = host.clone();
        tokio::task::spawn_blocking(move || {
            Ok::<_, std::io::Error>((load_identity_files(&owned)?, certificates::load(&owned)?))
        })
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
        .map_err(|error| AuthError::Files {
            user: host.user.clone(),
            host: host.host_name.clone(),
            error,
        })?
    };

    let agent_socket = match &host.identity_agent {
        IdentityAgent::Disabled => None,
        IdentityAgent::Env(var) => std::env::var_os(var).map(PathBuf::from),
        IdentityAgent::Socket(path) => Some(path.clone()),
    };
    if let Some(socket) = agent_socket
        && try_agent(handle, host, &socket, &files, &certs, &mut tried).await?
    {
        return Ok(());
    }

    let mut encrypted: Option<PathBuf> = None;
    for file in &files {
        match &file.secret {
            KeyFile::Loaded(key) => {
                for cert in certs
                    .iter()
                    .filter(|c| c.certifies(key.public_key().key_data()))
                {
                    tried.push(format!("certificate {}", cert.path.display()));
                    if handle
                        .authenticate_openssh_cert(&host.user, key.clone(), cert.cert.clone())
                        .await?
                        .success()
                    {
                        debug!(file = %cert.path.display(), "authenticated with certificate");
                        return Ok(());
                    }
                }
                let hash = rsa_hash(handle, key.public_key()).await?;
                let attempt = PrivateKeyWithHashAlg::new(key.clone(), hash);
                tried.push(format!("key file {}", file.path.display()));
                if handle
                    .authenticate_publickey(&host.user, attempt)
                    .await?
                    .success()
                {
                    debug!(file = %file.path.display(), "authenticated with key file");
                    return Ok(());
                }
            }
            KeyFile::Encrypted => {
                encrypted.get_or_insert_with(|| file.path.clone());
            }
            KeyFile::Unusable => {}
        }
    }

    if let Some(path) = encrypted {
        return Err(AuthError::EncryptedKey {
            user: host.user.clone(),
            host: host.host_name.clone(),
            path,
        });
    }
    if tried.is_empty() {
        return Err(AuthError::NoIdentities {
            user: host.user.clone(),
            host: host.host_name.clone(),
        });
    }
    Err(AuthError::Rejected {
        user: host.user.clone(),
        host: host.host_name.clone(),
        tried: tried.join(", "),
    })
}

/// Tries every agent key (or, with IdentitiesOnly, those matching a configured file).
/// Returns Ok(true) on success. An unreachable agent is logged and skipped, as OpenSSH does.
async fn try_agent<H: Handler>(
    handle: &mut Handle<H>,
    host: &HostConfig,
    socket: &Path,
    files: &[IdentityFile],
    certs: &[certificates::CertFile],
    tried: &mut Vec<String>,
) -> Result<bool, AuthError> {
    let mut agent = match AgentClient::connect_uds(socket).await {
        Ok(agent) => agent,
        Err(e) => {
            warn!(socket = %socket.display(), "cannot reach ssh-agent: {e}");
            return Ok(false);
        }
    };
    let identities = match agent.request_identities().await {
        Ok(ids) => ids,
        Err(e) => {
            warn!(socket = %socket.display(), "ssh-agent did not list its keys: {e}");
            return Ok(false);
        }
    };
    // Under IdentitiesOnly, only keys that a configured identity or certificate file names.
    let configured = |key: &KeyData| {
        !host.identities_only
            || files
                .iter()
                .any(|f| f.public.as_ref().is_some_and(|p| p.key_data() == key))
            || certs.iter().any(|c| c.certifies(key))
    };
    for identity in identities {
        let (key, comment) = match identity {
            AgentIdentity::PublicKey { key, comment } => (key, comment),
            AgentIdentity::Certificate {
                certificate,
                comment,
            } => {
                if !configured(certificate.public_key()) {
                    continue;
                }
                let what = format!("agent certificate ({comment})");
                if try_agent_cert(handle, host, certificate, &mut agent, what, tried).await? {
                    return Ok(true);
                }
                continue;
            }
        };
        if !configured(key.key_data()) {
            continue;
        }
        for cert in certs.iter().filter(|c| c.certifies(key.key_data())) {
            let what = format!("certificate {} with agent key", cert.path.display());
            if try_agent_cert(handle, host, cert.cert.clone(), &mut agent, what, tried).await? {
                return Ok(true);
            }
        }
        let hash = rsa_hash(handle, &key).await?;
        tried.push(format!(
            "agent key {} ({comment})",
            key.fingerprint(HashAlg::Sha256)
        ));
        match handle
            .authenticate_publickey_with(&host.user, key, hash, &mut agent)
            .await
        {
            Ok(result) if result.success() => {
                debug!(%comment, "authenticated with agent key");
                return Ok(true);
            }
            Ok(AuthResult::Failure { .. }) | Ok(AuthResult::Success) => {}
            Err(e) => warn!(%comment, "ssh-agent could not sign: {e}"),
        }
    }
    Ok(false)
}

/// Offers `cert`, signed by the agent. Ok(true) on success.
async fn try_agent_cert<H: Handler>(
    handle: &mut Handle<H>,
    host: &HostConfig,
    cert: Certificate,
    agent: &mut AgentClient<tokio::net::UnixStream>,
    what: String,
    tried: &mut Vec<String>,
) -> Result<bool, AuthError> {
    let hash = rsa_hash(handle, &PublicKey::from(cert.public_key().clone())).await?;
    tried.push(what.clone());
    match handle
        .authenticate_certificate_with(&host.user, cert, hash, agent)
        .await
    {
        Ok(result) if result.success() => {
            debug!(%what, "authenticated with certificate");
            Ok(true)
        }
        Ok(_) => Ok(false),
        Err(e) => {
            warn!(%what, "ssh-agent could not sign: {e}");
            Ok(false)
        }
    }
}

/// RSA keys need the server's preferred SHA-2 signature; asking may wait for the server's
/// extension info, so only RSA keys pay for it.
async fn rsa_hash<H: Handler>(
    handle: &Handle<H>,
    key: &PublicKey,
) -> Result<Option<HashAlg>, AuthError> {
    if !key.algorithm().is_rsa() {
        return Ok(None);
    }
    Ok(handle
        .best_supported_rsa_hash()
        .await?
        .flatten()
        .or(Some(HashAlg::Sha256)))
}

enum KeyFile {
    Loaded(Arc<russh::keys::PrivateKey>),
    Encrypted,
    Unusable,
}

struct IdentityFile {
    path: PathBuf,
    /// From `PATH.pub` or the private key itself; matches agent keys under IdentitiesOnly.
    public: Option<PublicKey>,
    secret: KeyFile,
}

/// Every identity file there is. Fails only when the process is out of descriptors: a key
/// that could not be opened for that reason must not turn into "no identities".
fn load_identity_files(host: &HostConfig) -> std::io::Result<Vec<IdentityFile>> {
    let mut loaded = Vec::new();
    for path in &host.identity_files {
        if !path.exists() {
            if host.identity_files_explicit {
                warn!(file = %path.display(), "identity file does not exist");
            }
            continue;
        }
        let public = read_public_key(&pub_path(path));
        let secret = match crate::files::read_capped_string(path, crate::files::MAX_SMALL_FILE) {
            Err(e) if crate::limits::is_out_of_descriptors(&e) => return Err(e),
            read => read
                .map_err(russh::keys::Error::from)
                .and_then(|text| russh::keys::decode_secret_key(&text, None)),
        };
        {
            let (secret, public) = match secret {
                Ok(key) => {
                    let public = public.or_else(|| Some(key.public_key().clone()));
                    (KeyFile::Loaded(Arc::new(key)), public)
                }
                Err(russh::keys::Error::KeyIsEncrypted) => (KeyFile::Encrypted, public),
                Err(e) => {
                    warn!(file = %path.display(), "cannot use identity file: {e}");
                    (KeyFile::Unusable, public)
                }
            };
            loaded.push(IdentityFile {
                path: path.clone(),
                public,
                secret,
            });
        }
    }
    Ok(loaded)
}

/// The public key in an OpenSSH `.pub` file, if it holds one.
fn read_public_key(path: &Path) -> Option<PublicKey> {
    let text = crate::files::read_capped_string(path, crate::files::MAX_SMALL_FILE).ok()?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))?;
    PublicKey::from_openssh(line).ok()
}

fn pub_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}
