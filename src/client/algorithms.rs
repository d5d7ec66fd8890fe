//! The algorithms a session offers: ssh_config's Ciphers, KexAlgorithms, MACs and
//! HostKeyAlgorithms when set (already filtered to what russh implements), else our defaults;
//! host key types ordered as OpenSSH orders them, so the server presents a key or certificate
//! that known_hosts can vouch for.

use std::borrow::Cow;

use russh::keys::ssh_key::{Algorithm, EcdsaCurve, HashAlg};
use russh::{Preferred, cipher, kex, mac};
use tracing::debug;

use crate::known_hosts::{self, HostKeyHints};
use crate::ssh_config::{HostConfig, host_key_algorithm};

/// OpenSSH 9.2's default host key algorithms that russh can verify, in OpenSSH's order (no
/// SHA-1 `ssh-rsa`, which OpenSSH no longer offers by default either).
const DEFAULT_HOST_KEYS: &[Algorithm] = &[
    Algorithm::Ed25519,
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP256,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP384,
    },
    Algorithm::Ecdsa {
        curve: EcdsaCurve::NistP521,
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha512),
    },
    Algorithm::Rsa {
        hash: Some(HashAlg::Sha256),
    },
];

/// The extension pseudo-algorithms russh adds to its kex list: without them an explicit
/// KexAlgorithms would lose strict kex (the Terrapin fix) and server-sig-algs.
const KEX_EXTENSIONS: &[kex::Name] = &[
    kex::EXTENSION_SUPPORT_AS_CLIENT,
    kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT,
];

pub(super) fn preferred(host: &HostConfig) -> Preferred {
    let chosen = &host.algorithms;
    let mut preferred = Preferred {
        cipher: Cow::Owned(match &chosen.ciphers {
            Some(names) => names_of(names),
            None => cipher_preference(),
        }),
        ..Default::default()
    };
    if let Some(names) = &chosen.kex {
        let mut list: Vec<kex::Name> = names_of(names);
        list.extend(KEX_EXTENSIONS.iter().copied());
        preferred.kex = Cow::Owned(list);
    }
    if let Some(names) = &chosen.macs {
        preferred.mac = Cow::Owned(names_of::<mac::Name>(names));
    }
    let (keys, certificates) = match &chosen.host_keys {
        Some(names) => explicit_host_keys(names),
        None => {
            // Only an ordering hint: an unreadable file is reported by the host key check.
            let (key_host, key_port) = host.host_key_name();
            let hints = known_hosts::hints(&host.known_hosts_files(), key_host, key_port)
                .unwrap_or_else(|e| {
                    debug!("known_hosts not read for ordering host key types: {e}");
                    HostKeyHints::default()
                });
            default_host_keys(&hints)
        }
    };
    preferred.key = Cow::Owned(keys);
    preferred.host_key_certificates = Cow::Owned(certificates);
    preferred
}

/// Names already checked by ssh_config's filter; any that russh rejects anyway is skipped.
fn names_of<N: for<'a> TryFrom<&'a str>>(names: &[String]) -> Vec<N> {
    names
        .iter()
        .filter_map(|n| N::try_from(n.as_str()).ok())
        .collect()
}

/// HostKeyAlgorithms as given: certificate names ask for certificates (russh offers them
/// ahead of plain keys), plain names for keys.
fn explicit_host_keys(names: &[String]) -> (Vec<Algorithm>, Vec<Algorithm>) {
    let mut keys = Vec::new();
    let mut certificates = Vec::new();
    for (algorithm, is_certificate) in names.iter().filter_map(|n| host_key_algorithm(n)) {
        let list = if is_certificate {
            &mut certificates
        } else {
            &mut keys
        };
        if !list.contains(&algorithm) {
            list.push(algorithm);
        }
    }
    (keys, certificates)
}

/// OpenSSH's default order, with the types of keys pinned for the host moved first; host
/// certificates only when a CA could vouch for the host (otherwise a server with a
/// certificate would present it and we would fall back to checking its bare key anyway).
fn default_host_keys(hints: &HostKeyHints) -> (Vec<Algorithm>, Vec<Algorithm>) {
    let is_known = |a: &Algorithm| {
        hints.known.iter().any(|known| match (known, a) {
            (Algorithm::Rsa { .. }, Algorithm::Rsa { .. }) => true,
            (known, a) => known == a,
        })
    };
    let (mut keys, rest): (Vec<Algorithm>, Vec<Algorithm>) =
        DEFAULT_HOST_KEYS.iter().cloned().partition(is_known);
    keys.extend(rest);
    let certificates = if hints.cert_authority {
        DEFAULT_HOST_KEYS.to_vec()
    } else {
        Vec::new()
    };
    (keys, certificates)
}

/// AES-GCM first where the CPU has AES instructions, ChaCha20-Poly1305 otherwise.
fn cipher_preference() -> Vec<cipher::Name> {
    let aes_first = vec![
        cipher::AES_256_GCM,
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_CTR,
    ];
    let chacha_first = vec![
        cipher::CHACHA20_POLY1305,
        cipher::AES_256_GCM,
        cipher::AES_256_CTR,
    ];
    #[cfg(target_arch = "x86_64")]
    let has_aes = std::arch::is_x86_feature_detected!("aes");
    #[cfg(target_arch = "aarch64")]
    let has_aes = std::arch::is_aarch64_feature_detected!("aes");
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let has_aes = false;
    if has_aes { aes_first } else { chacha_first }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_key_types_come_first_and_certificates_only_with_a_ca() {
        let hints = HostKeyHints {
            known: vec![Algorithm::Rsa { hash: None }],
            cert_authority: false,
        };
        let (keys, certificates) = default_host_keys(&hints);
        assert_eq!(
            keys[..2],
            [
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha512)
                },
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256)
                }
            ]
        );
        assert_eq!(keys.len(), DEFAULT_HOST_KEYS.len());
        assert!(certificates.is_empty());

        let with_ca = HostKeyHints {
            known: vec![],
            cert_authority: true,
        };
        let (keys, certificates) = default_host_keys(&with_ca);
        assert_eq!(keys, DEFAULT_HOST_KEYS);
        assert_eq!(certificates, DEFAULT_HOST_KEYS);
    }

    #[test]
    fn explicit_host_key_list_splits_certificates_from_keys() {
        let names = [
            "rsa-sha2-256",
            "ssh-ed25519-cert-v01@openssh.com",
            "ssh-ed25519",
        ]
        .map(String::from);
        let (keys, certificates) = explicit_host_keys(&names);
        assert_eq!(
            keys,
            [
                Algorithm::Rsa {
                    hash: Some(HashAlg::Sha256)
                },
                Algorithm::Ed25519
            ]
        );
        assert_eq!(certificates, [Algorithm::Ed25519]);
    }

    fn host(ssh_config: &str) -> HostConfig {
        let config = crate::config::Config::from_str(
            "[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"srv\"\ntarget = \"x:1\"\n",
            std::path::Path::new("/test/config.toml"),
        )
        .expect("config");
        crate::ssh_config::SshConfigFile::parse(
            std::path::Path::new("/test/ssh_config"),
            ssh_config,
            "/nonexistent-home".into(),
        )
        .expect("parses")
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves")
    }

    #[test]
    fn explicit_lists_reach_russh_and_kex_keeps_its_extensions() {
        let preferred = preferred(&host(
            "Host srv\n  KexAlgorithms curve25519-sha256\n  Ciphers aes128-ctr\n  MACs hmac-sha2-256\n",
        ));
        assert_eq!(
            preferred.kex[..],
            [
                kex::CURVE25519,
                kex::EXTENSION_SUPPORT_AS_CLIENT,
                kex::EXTENSION_OPENSSH_STRICT_KEX_AS_CLIENT
            ]
        );
        assert_eq!(preferred.cipher[..], [cipher::AES_128_CTR]);
        assert_eq!(preferred.mac[..], [mac::HMAC_SHA256]);
    }

    #[test]
    fn defaults_offer_no_sha1_rsa_and_no_certificates_without_a_ca() {
        let preferred = preferred(&host(
            "Host srv\n  UserKnownHostsFile none\n  GlobalKnownHostsFile none\n",
        ));
        assert_eq!(preferred.key[..], DEFAULT_HOST_KEYS[..]);
        assert!(preferred.host_key_certificates.is_empty());
        assert_eq!(preferred.kex, Preferred::default().kex);
    }
}
