//! OpenSSH certificates for the tests, made by the real `ssh-keygen -s`: host certificates
//! for sshd's `HostCertificate` (checked under `@cert-authority`), user certificates for
//! `TrustedUserCAKeys`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::keys::KeyPair;

/// Whom a certificate is for.
#[derive(Debug, Clone, Copy)]
pub enum CertKind {
    Host,
    User,
}

/// Signs `key`'s public half with `ca`, valid for `principals`; returns the certificate's path
/// (`KEY-cert.pub`, where OpenSSH looks for it next to the key).
pub fn sign(ca: &KeyPair, key: &KeyPair, kind: CertKind, principals: &str) -> PathBuf {
    let mut command = Command::new("ssh-keygen");
    command.arg("-q").arg("-s").arg(&ca.private_path).args([
        "-I",
        "lazytunnel-test",
        "-n",
        principals,
    ]);
    if let CertKind::Host = kind {
        command.arg("-h");
    }
    let output = command
        .arg(&key.public_path)
        .stdin(Stdio::null())
        .output()
        .expect("could not run ssh-keygen -s");
    assert!(
        output.status.success(),
        "ssh-keygen -s for {} failed: {}",
        key.public_path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    cert_path(&key.private_path)
}

/// Where `ssh-keygen -s` writes the certificate of the key at `private_path`.
pub fn cert_path(private_path: &Path) -> PathBuf {
    let mut name = private_path.as_os_str().to_owned();
    name.push("-cert.pub");
    PathBuf::from(name)
}
