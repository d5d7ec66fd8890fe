//! Whether a server's host key or host certificate is trusted, decided from known_hosts files
//! the way OpenSSH's `ssh` decides it, and [`append`] to record a new key.
//!
//! The rules, checked against OpenSSH 9.2 (`ssh` talking to a local `sshd -i`) and its sources:
//! - The lookup name is the lowercased host for port 22 and `[host]:port` otherwise. For another
//!   port, when nothing matches `[host]:port`, the bare host is tried too, but only to *accept*
//!   the same key found there: a different key under the bare name is not a change.
//! - Host fields are comma-separated patterns (`*`, `?`, `!` to veto the line) or one hashed
//!   name `|1|salt|hash` (see [`host_matches`]).
//! - `@revoked`: a revoked key, or a revoked CA that signed the presented certificate, is
//!   refused whatever else matches. Stricter than OpenSSH, which heeds the line only when its
//!   host field matches: a revoked key is refused for every host.
//! - `@cert-authority`: a certificate is trusted when a CA line matching the host holds the
//!   key that signed it and it is a valid host certificate for the host: a host (not user)
//!   certificate, inside its validity window, naming the host among its principals, without
//!   critical options, signed with an algorithm of OpenSSH's default `CASignatureAlgorithms`
//!   (not SHA-1 `ssh-rsa`), with a signature that verifies. Stricter than OpenSSH: a
//!   certificate with no principals is refused (OpenSSH takes it as valid for any host).
//!   A certificate that fails is, as in OpenSSH, checked by its own key like a plain key.
//! - A plain key is trusted if an unmarked line matching the host holds it. If matching lines
//!   hold only other keys, it has *changed*, even when those keys are of another type: OpenSSH
//!   reports "REMOTE HOST IDENTIFICATION HAS CHANGED" then as well, and accepting would let a
//!   man in the middle pick a key type the user never pinned.
//! - Files are read in order and all count. A missing file is skipped; an unreadable one is an
//!   error. Malformed lines are skipped with a warning naming file:line.
//!
//! Not covered: CheckHostIP (off by default since OpenSSH 8.5), KnownHostsCommand and
//! RevokedHostKeys. For HostKeyAlias, pass the alias as `host` with port 22: OpenSSH looks the
//! alias up without a port and checks certificate principals against it.

mod append;
mod cert;
mod hints;
mod parse;
mod pattern;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::HashAlg;
use russh::keys::ssh_key::public::KeyData;
use tracing::warn;

pub use append::append;
pub use hints::{HostKeyHints, hints};
pub(crate) use pattern::glob;
pub use pattern::{Match, host_matches};

use parse::{Entry, Marker};

/// A line of a known_hosts file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub path: PathBuf,
    /// 1-based.
    pub line: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line for this host holds the key; for a certificate, the `@cert-authority` line of the
    /// CA that signed it.
    Trusted { at: Location },
    /// The key, or the CA that signed the certificate, is revoked. Never connect.
    Revoked { at: Location },
    /// Lines for this host hold other keys and none holds this one: possibly a man in the
    /// middle. Never connect. `at` is a known key of the same type if there is one, else of
    /// another type; `known_fingerprint` is its `SHA256:…` fingerprint.
    Changed {
        at: Location,
        known_fingerprint: String,
    },
    /// No line for this host: StrictHostKeyChecking decides (`accept-new` may [`append`]).
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum KnownHostsError {
    // The cause is in the message: it reaches `status`, which shows no chain.
    #[error("cannot read known_hosts file {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
}

/// The name OpenSSH looks up and records: `host` for port 22, `[host]:port` otherwise,
/// lowercased. Port 0 counts as the default, as in OpenSSH.
pub fn lookup_name(host: &str, port: u16) -> String {
    let host = host.to_ascii_lowercase();
    if is_default_port(port) {
        host
    } else {
        format!("[{host}]:{port}")
    }
}

fn is_default_port(port: u16) -> bool {
    port == 22 || port == 0
}

/// Decides whether `key`, presented by `host` on `port`, is trusted by the known_hosts
/// `files` (typically the user's files, then the global ones).
pub fn verify(
    files: &[PathBuf],
    host: &str,
    port: u16,
    key: &PublicKeyOrCertificate,
) -> Result<Verdict, KnownHostsError> {
    let known = load(files)?;
    // A clock before 1970 makes every certificate "not yet valid": fails closed.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs());
    Ok(decide(&known, host, port, key, now))
}

/// Reads and parses `files`, warning about malformed lines.
fn load(files: &[PathBuf]) -> Result<Vec<KnownFile>, KnownHostsError> {
    let mut known = Vec::with_capacity(files.len());
    for path in files {
        let Some(bytes) = parse::read(path)? else {
            continue;
        };
        let (entries, malformed) = parse::parse(&bytes);
        for bad in malformed {
            let at = Location {
                path: path.clone(),
                line: bad.line,
            };
            warn!(%at, reason = %bad.reason, "ignoring malformed known_hosts line");
        }
        known.push(KnownFile {
            path: path.clone(),
            entries,
        });
    }
    Ok(known)
}

struct KnownFile {
    path: PathBuf,
    entries: Vec<Entry>,
}

fn lines(files: &[KnownFile]) -> impl Iterator<Item = (&Path, &Entry)> {
    files.iter().flat_map(|file| {
        file.entries
            .iter()
            .map(|entry| (file.path.as_path(), entry))
    })
}

fn location(path: &Path, entry: &Entry) -> Location {
    Location {
        path: path.to_owned(),
        line: entry.line,
    }
}

fn decide(
    files: &[KnownFile],
    host: &str,
    port: u16,
    key: &PublicKeyOrCertificate,
    now: u64,
) -> Verdict {
    let host = host.to_ascii_lowercase();
    let primary = lookup_name(&host, port);
    let bare = (!is_default_port(port)).then_some(host.as_str());
    let (plain, cert) = match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => (key.key_data(), None),
        PublicKeyOrCertificate::Certificate(cert) => (cert.public_key(), Some(cert)),
    };

    // OpenSSH's order: revocation, then the CA, then the key itself.
    let revoked = lines(files).find(|(_, entry)| {
        entry.marker == Some(Marker::Revoked)
            && (entry.key.key_data() == plain
                || cert.is_some_and(|cert| entry.key.key_data() == cert.signature_key()))
    });
    if let Some((path, entry)) = revoked {
        return Verdict::Revoked {
            at: location(path, entry),
        };
    }

    if let Some(cert) = cert {
        // The bare name too: OpenSSH's retry for other ports also covers CA lines.
        let ca_line = std::iter::once(primary.as_str())
            .chain(bare)
            .find_map(|name| {
                lines(files).find(|(_, entry)| {
                    entry.marker == Some(Marker::CertAuthority)
                        && entry.key.key_data() == cert.signature_key()
                        && entry.hosts.matches(name) == Match::Yes
                })
            });
        if let Some((path, entry)) = ca_line {
            let at = location(path, entry);
            match cert::check_host_cert(cert, entry.key.key_data(), &host, now) {
                Ok(()) => return Verdict::Trusted { at },
                Err(reason) => warn!(
                    ca = %at,
                    %host,
                    %reason,
                    "host certificate not accepted; checking its key as a plain host key"
                ),
            }
        }
    }

    match plain_verdict(files, &primary, plain) {
        // The retry under the bare name may only accept: a different key there is no change.
        Verdict::Unknown => match bare.map(|name| plain_verdict(files, name, plain)) {
            Some(trusted @ Verdict::Trusted { .. }) => trusted,
            _ => Verdict::Unknown,
        },
        verdict => verdict,
    }
}

/// Trusted, Changed or Unknown from the unmarked lines matching `name`.
fn plain_verdict(files: &[KnownFile], name: &str, key: &KeyData) -> Verdict {
    let mut same_type = None;
    let mut other_type = None;
    let matching = lines(files)
        .filter(|(_, entry)| entry.marker.is_none() && entry.hosts.matches(name) == Match::Yes);
    for (path, entry) in matching {
        let known = entry.key.key_data();
        if known == key {
            return Verdict::Trusted {
                at: location(path, entry),
            };
        }
        let slot = if known.algorithm() == key.algorithm() {
            &mut same_type
        } else {
            &mut other_type
        };
        slot.get_or_insert((path, entry));
    }
    match same_type.or(other_type) {
        Some((path, entry)) => Verdict::Changed {
            at: location(path, entry),
            known_fingerprint: entry.key.fingerprint(HashAlg::Sha256).to_string(),
        },
        None => Verdict::Unknown,
    }
}
