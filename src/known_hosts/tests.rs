//! Verdicts over real files, with keys, certificates and hashed names made by `ssh-keygen`,
//! which also serves as the oracle for host matching and for [`append`]ed lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::{Certificate, HashAlg, PublicKey};

use super::*;

/// Keys and files in a temporary directory. `None` (and a message) without `ssh-keygen`.
struct Fixture {
    dir: tempfile::TempDir,
}

macro_rules! fixture {
    () => {
        match Fixture::new() {
            Some(fixture) => fixture,
            None => return,
        }
    };
}

impl Fixture {
    fn new() -> Option<Self> {
        if Command::new("ssh-keygen").arg("-?").output().is_err() {
            eprintln!("skipping: ssh-keygen is not installed");
            return None;
        }
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ssh_keygen(&self, args: &[&str]) -> String {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new key pair `name`/`name.pub` of `key_type` (ed25519, ecdsa, rsa).
    fn key(&self, name: &str, key_type: &str) -> PublicKey {
        self.ssh_keygen(&["-q", "-t", key_type, "-N", "", "-C", name, "-f", name]);
        PublicKey::read_openssh_file(self.path(&format!("{name}.pub"))).unwrap()
    }

    /// Signs the public half of `key` with the private key `ca`, passing `args` (e.g. `-h`,
    /// `-n principals`, `-V interval`) to `ssh-keygen -s`.
    fn cert(&self, ca: &str, key: &str, args: &[&str]) -> PublicKeyOrCertificate {
        // A copy per certificate, since ssh-keygen names the output after its input.
        let copy = format!("{key}-{}", self.dir.path().read_dir().unwrap().count());
        std::fs::copy(
            self.path(&format!("{key}.pub")),
            self.path(&format!("{copy}.pub")),
        )
        .unwrap();
        let mut all = vec!["-q", "-s", ca, "-I", "test-cert"];
        all.extend_from_slice(args);
        let input = format!("{copy}.pub");
        all.push(&input);
        self.ssh_keygen(&all);
        let cert = Certificate::read_file(&self.path(&format!("{copy}-cert.pub"))).unwrap();
        PublicKeyOrCertificate::Certificate(cert)
    }

    fn file(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    /// Line numbers `ssh-keygen -F name -f file` reports as matching.
    fn keygen_matches(&self, file: &Path, name: &str) -> BTreeSet<usize> {
        let out = Command::new("ssh-keygen")
            .args(["-F", name, "-f"])
            .arg(file)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                line.strip_prefix("# Host ")?
                    .split_once(" found: line ")?
                    .1
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

/// A known_hosts line; the key's comment is left in, as users' files have them.
fn line(marker_and_hosts: &str, key: &PublicKey) -> String {
    format!("{marker_and_hosts} {}", key.to_openssh().unwrap())
}

fn plain(key: &PublicKey) -> PublicKeyOrCertificate {
    PublicKeyOrCertificate::from(key.clone())
}

fn check(files: &[&Path], host: &str, port: u16, key: &PublicKeyOrCertificate) -> Verdict {
    let files: Vec<PathBuf> = files.iter().map(|path| path.to_path_buf()).collect();
    verify(&files, host, port, key).unwrap()
}

fn trusted(path: &Path, line: usize) -> Verdict {
    Verdict::Trusted {
        at: Location {
            path: path.to_owned(),
            line,
        },
    }
}

fn revoked(path: &Path, line: usize) -> Verdict {
    Verdict::Revoked {
        at: Location {
            path: path.to_owned(),
            line,
        },
    }
}

fn changed(path: &Path, line: usize, known: &PublicKey) -> Verdict {
    Verdict::Changed {
        at: Location {
            path: path.to_owned(),
            line,
        },
        known_fingerprint: known.fingerprint(HashAlg::Sha256).to_string(),
    }
}

mod appending;
mod certificates;
mod matching;
mod verdicts;
