//! SSH key pairs made with the real `ssh-keygen`, so every key format is exactly what users have.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::path_str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ed25519,
    /// ECDSA on NIST P-256.
    Ecdsa,
    /// 2048-bit RSA: the smallest size OpenSSH accepts without complaint, and quick to generate.
    Rsa,
}

impl KeyType {
    /// The short name used in file names, e.g. `ed25519`.
    pub fn name(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ed25519",
            KeyType::Ecdsa => "ecdsa",
            KeyType::Rsa => "rsa",
        }
    }

    /// The host key algorithm a client names to ask for this key type, e.g. in
    /// `ssh -o HostKeyAlgorithms=...`.
    pub fn host_key_algorithm(self) -> &'static str {
        match self {
            KeyType::Ed25519 => "ssh-ed25519",
            KeyType::Ecdsa => "ecdsa-sha2-nistp256",
            KeyType::Rsa => "rsa-sha2-256",
        }
    }

    fn keygen_args(self) -> &'static [&'static str] {
        match self {
            KeyType::Ed25519 => &["-t", "ed25519"],
            KeyType::Ecdsa => &["-t", "ecdsa", "-b", "256"],
            KeyType::Rsa => &["-t", "rsa", "-b", "2048"],
        }
    }
}

/// A private key file and its public half.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub kind: KeyType,
    pub private_path: PathBuf,
    pub public_path: PathBuf,
    /// `TYPE BASE64` without the comment: the form used in known_hosts and authorized_keys.
    pub public_line: String,
}

/// Generates a key pair at `dir/file_name` (and `dir/file_name.pub`), encrypted with
/// `passphrase` if one is given.
pub fn generate(dir: &Path, file_name: &str, kind: KeyType, passphrase: Option<&str>) -> KeyPair {
    let private_path = dir.join(file_name);
    let output = Command::new("ssh-keygen")
        .arg("-q")
        .args(kind.keygen_args())
        .args(["-N", passphrase.unwrap_or("")])
        .args(["-C", &format!("lazytunnel-test-{file_name}")])
        .arg("-f")
        .arg(&private_path)
        .stdin(Stdio::null())
        .output()
        .expect("could not run ssh-keygen: is openssh-client installed?");
    assert!(
        output.status.success(),
        "ssh-keygen for {} failed: {}",
        private_path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let public_path = dir.join(format!("{file_name}.pub"));
    let public_line = read_public_line(&public_path);
    KeyPair {
        kind,
        private_path,
        public_path,
        public_line,
    }
}

/// The `TYPE BASE64` part of an OpenSSH public key file.
pub fn read_public_line(path: &Path) -> String {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|err| panic!("could not read {}: {err}", path.display()));
    let fields: Vec<&str> = text.split_whitespace().take(2).collect();
    assert_eq!(
        fields.len(),
        2,
        "not an OpenSSH public key: {}",
        path.display()
    );
    fields.join(" ")
}

/// Rewrites a known_hosts file in place with hashed host names (`ssh-keygen -H`), as Debian's
/// default `HashKnownHosts yes` leaves them. Removes the `.old` backup ssh-keygen makes.
pub fn hash_known_hosts(path: &Path) {
    let output = Command::new("ssh-keygen")
        .args(["-H", "-f", path_str(path)])
        .stdin(Stdio::null())
        .output()
        .expect("could not run ssh-keygen -H");
    assert!(
        output.status.success(),
        "ssh-keygen -H -f {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let _ = std::fs::remove_file(format!("{}.old", path.display()));
}
