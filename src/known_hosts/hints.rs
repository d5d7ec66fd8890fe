//! What the known_hosts files say about a host *before* connecting, so the client can ask the
//! server for a key it will be able to check, as OpenSSH's `order_hostkeyalgs` does: the types
//! of keys already pinned for the host first, and host certificates when an `@cert-authority`
//! line applies to it. Only an ordering: [`super::verify`] still decides.

use std::path::PathBuf;

use russh::keys::ssh_key::Algorithm;

use super::parse::Marker;
use super::{KnownHostsError, Match, is_default_port, lines, load, lookup_name};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostKeyHints {
    /// Algorithms of the plain keys pinned for the host, in file order, without repeats.
    pub known: Vec<Algorithm>,
    /// An `@cert-authority` line matches the host (its lookup name, or the bare name for
    /// another port, as [`super::verify`] looks them up).
    pub cert_authority: bool,
}

pub fn hints(files: &[PathBuf], host: &str, port: u16) -> Result<HostKeyHints, KnownHostsError> {
    let known_files = load(files)?;
    let host = host.to_ascii_lowercase();
    let primary = lookup_name(&host, port);
    let names: Vec<&str> = std::iter::once(primary.as_str())
        .chain((!is_default_port(port)).then_some(host.as_str()))
        .collect();
    let mut hints = HostKeyHints::default();
    for (_, entry) in lines(&known_files) {
        if !names
            .iter()
            .any(|name| entry.hosts.matches(name) == Match::Yes)
        {
            continue;
        }
        match entry.marker {
            Some(Marker::CertAuthority) => hints.cert_authority = true,
            Some(Marker::Revoked) => {}
            None => {
                let algorithm = entry.key.algorithm();
                if !hints.known.contains(&algorithm) {
                    hints.known.push(algorithm);
                }
            }
        }
    }
    Ok(hints)
}
