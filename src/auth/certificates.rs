//! User certificates to offer: every CertificateFile, then `KEY-cert.pub` next to each identity
//! file (OpenSSH looks there too). Each is paired with the private key, from a file or the
//! agent, whose public half it certifies.

use std::path::{Path, PathBuf};

use russh::keys::Certificate;
use russh::keys::ssh_key::public::KeyData;
use tracing::warn;

use crate::ssh_config::HostConfig;

/// A certificate and the file it came from.
pub(super) struct CertFile {
    pub(super) path: PathBuf,
    pub(super) cert: Certificate,
}

impl CertFile {
    /// Whether this certifies `key`.
    pub(super) fn certifies(&self, key: &KeyData) -> bool {
        self.cert.public_key() == key
    }
}

/// Fails only when the process is out of descriptors (see `load_identity_files`).
pub(super) fn load(host: &HostConfig) -> std::io::Result<Vec<CertFile>> {
    let explicit = host.certificate_files.iter().map(|p| (p.clone(), true));
    let beside = host.identity_files.iter().map(|p| (cert_beside(p), false));
    let mut certs: Vec<CertFile> = Vec::new();
    for (path, explicit) in explicit.chain(beside) {
        if certs.iter().any(|c| c.path == path) {
            continue;
        }
        if !path.exists() {
            if explicit {
                warn!(file = %path.display(), "certificate file does not exist");
            }
            continue;
        }
        let read = match crate::files::read_capped_string(&path, crate::files::MAX_SMALL_FILE) {
            Err(e) if crate::limits::is_out_of_descriptors(&e) => return Err(e),
            read => read
                .map_err(russh::keys::ssh_key::Error::from)
                .and_then(|text| Certificate::from_openssh(&text)),
        };
        match read {
            Ok(cert) => certs.push(CertFile { path, cert }),
            Err(e) => warn!(file = %path.display(), "cannot use certificate file: {e}"),
        }
    }
    Ok(certs)
}

fn cert_beside(identity: &Path) -> PathBuf {
    let mut name = identity.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}
