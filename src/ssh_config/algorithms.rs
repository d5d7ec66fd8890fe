//! Ciphers, KexAlgorithms, MACs and HostKeyAlgorithms: OpenSSH's list syntax (a list replaces
//! the default; `+list` appends to it, `-patterns` removes from it, `^list` puts first), then
//! filtered to the names russh implements. A list that leaves nothing russh can use is an error
//! naming the option and its value, never a silent fallback to the defaults.

use russh::keys::ssh_key::Algorithm;
use russh::{cipher, kex, mac};

/// OpenSSH 9.2's default lists (`ssh -G -F /dev/null x`), the base of `+`, `-` and `^`.
const DEFAULT_CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,\
     aes128-gcm@openssh.com,aes256-gcm@openssh.com";
const DEFAULT_KEX: &str = "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,\
     curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,\
     ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,\
     diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
const DEFAULT_MACS: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,\
     hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,\
     umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";
const DEFAULT_HOST_KEYS: &str = "ssh-ed25519-cert-v01@openssh.com,\
     ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,\
     ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,\
     sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com,\
     rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,\
     ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,\
     rsa-sha2-512,rsa-sha2-256";

/// The four algorithm options. Each is `None` when ssh_config leaves it unset (lazytunnel's
/// own preferences apply), else the names in order, all implemented by russh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Algorithms {
    pub ciphers: Option<Vec<String>>,
    pub kex: Option<Vec<String>>,
    pub macs: Option<Vec<String>>,
    pub host_keys: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Ciphers,
    Kex,
    Macs,
    HostKeys,
}

impl Kind {
    pub(super) fn option(self) -> &'static str {
        match self {
            Kind::Ciphers => "Ciphers",
            Kind::Kex => "KexAlgorithms",
            Kind::Macs => "MACs",
            Kind::HostKeys => "HostKeyAlgorithms",
        }
    }

    fn default_list(self) -> &'static str {
        match self {
            Kind::Ciphers => DEFAULT_CIPHERS,
            Kind::Kex => DEFAULT_KEX,
            Kind::Macs => DEFAULT_MACS,
            Kind::HostKeys => DEFAULT_HOST_KEYS,
        }
    }

    fn is_supported(self, name: &str) -> bool {
        match self {
            // `none` is never a choice a config should get by accident.
            Kind::Ciphers => name != "none" && cipher::Name::try_from(name).is_ok(),
            Kind::Kex => name != "none" && kex::Name::try_from(name).is_ok(),
            Kind::Macs => name != "none" && mac::Name::try_from(name).is_ok(),
            Kind::HostKeys => host_key_algorithm(name).is_some(),
        }
    }
}

/// A HostKeyAlgorithms name as russh takes it: the plain algorithm, and whether the name asks
/// for a certificate (`*-cert-v01@openssh.com`).
pub fn host_key_algorithm(name: &str) -> Option<(Algorithm, bool)> {
    // `Algorithm::new` maps unknown names (certificate names too) to `Other`.
    let (algorithm, certificate) = if name.ends_with("-cert-v01@openssh.com") {
        (Algorithm::new_certificate(name).ok()?, true)
    } else {
        (Algorithm::new(name).ok()?, false)
    };
    // russh verifies these; security-key (sk-*) host keys and DSA it does not.
    let supported = matches!(
        algorithm,
        Algorithm::Ed25519 | Algorithm::Ecdsa { .. } | Algorithm::Rsa { hash: Some(_) }
    );
    supported.then_some((algorithm, certificate))
}

/// Applies OpenSSH's list syntax in `value` to `kind`'s default and keeps what russh supports.
/// Returns the names kept and the names dropped; `Err` when nothing is kept.
pub(super) fn resolve(kind: Kind, value: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let names = |list: &str| -> Vec<String> {
        list.split(',')
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect()
    };
    let default = names(kind.default_list());
    let list = match value.chars().next() {
        Some('+') => {
            let mut list = default;
            for name in names(&value[1..]) {
                if !list.contains(&name) {
                    list.push(name);
                }
            }
            list
        }
        Some('-') => {
            let patterns = names(&value[1..]);
            default
                .into_iter()
                .filter(|name| !patterns.iter().any(|p| pattern_matches(p, name)))
                .collect()
        }
        Some('^') => {
            let mut list = names(&value[1..]);
            list.extend(
                default
                    .into_iter()
                    .filter(|n| !list.contains(n))
                    .collect::<Vec<_>>(),
            );
            list
        }
        _ => names(value),
    };
    let (kept, dropped): (Vec<String>, Vec<String>) =
        list.into_iter().partition(|name| kind.is_supported(name));
    if kept.is_empty() {
        return Err(format!(
            "none of these is supported by lazytunnel; it supports: {}",
            supported_names(kind).join(",")
        ));
    }
    Ok((kept, dropped))
}

/// `-` lists take patterns (`*`, `?`), matched exactly as OpenSSH's `match_pattern_list` does.
fn pattern_matches(pattern: &str, name: &str) -> bool {
    crate::known_hosts::glob(pattern.as_bytes(), name.as_bytes(), false)
}

fn supported_names(kind: Kind) -> Vec<&'static str> {
    let names: Vec<&'static str> = match kind {
        Kind::Ciphers => cipher::ALL_CIPHERS.iter().map(|n| n.as_ref()).collect(),
        Kind::Kex => kex::ALL_KEX_ALGORITHMS.iter().map(|n| n.as_ref()).collect(),
        Kind::Macs => mac::ALL_MAC_ALGORITHMS.iter().map(|n| n.as_ref()).collect(),
        Kind::HostKeys => DEFAULT_HOST_KEYS.split(',').collect(),
    };
    names
        .into_iter()
        .filter(|n| {
            kind.is_supported(n) && !n.starts_with("ext-info") && !n.starts_with("kex-strict")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(kind: Kind, value: &str) -> Vec<String> {
        resolve(kind, value).expect("resolves").0
    }

    #[test]
    fn explicit_list_is_filtered_in_order() {
        let (kept, dropped) = resolve(
            Kind::Ciphers,
            "aes128-cbc,3des-cbc,aes256-ctr,chacha20-poly1305@openssh.com",
        )
        .unwrap();
        assert_eq!(
            kept,
            ["aes128-cbc", "aes256-ctr", "chacha20-poly1305@openssh.com"]
        );
        assert_eq!(dropped, ["3des-cbc"]);
    }

    #[test]
    fn plus_appends_to_openssh_default() {
        let list = kept(Kind::Kex, "+diffie-hellman-group1-sha1");
        assert_eq!(
            list.last().map(String::as_str),
            Some("diffie-hellman-group1-sha1")
        );
        assert!(list.contains(&"curve25519-sha256".to_string()));
        assert!(
            !list.iter().any(|n| n.starts_with("sntrup")),
            "russh lacks sntrup"
        );
    }

    #[test]
    fn minus_removes_by_pattern_and_caret_puts_first() {
        assert_eq!(
            kept(Kind::Ciphers, "-aes*"),
            ["chacha20-poly1305@openssh.com"]
        );
        let macs = kept(Kind::Macs, "^hmac-sha1");
        assert_eq!(macs[0], "hmac-sha1");
        assert_eq!(macs.iter().filter(|n| *n == "hmac-sha1").count(), 1);
        assert!(
            !macs.iter().any(|n| n.starts_with("umac")),
            "russh lacks umac"
        );
    }

    #[test]
    fn host_key_names_keep_certificates_and_drop_sk_and_dsa() {
        let list = kept(
            Kind::HostKeys,
            "ssh-ed25519-cert-v01@openssh.com,ssh-dss,sk-ssh-ed25519@openssh.com,rsa-sha2-256",
        );
        assert_eq!(list, ["ssh-ed25519-cert-v01@openssh.com", "rsa-sha2-256"]);
        assert_eq!(
            host_key_algorithm("ssh-ed25519-cert-v01@openssh.com"),
            Some((Algorithm::Ed25519, true))
        );
    }

    #[test]
    fn nothing_supported_is_an_error_listing_what_is() {
        let err = resolve(Kind::Ciphers, "3des-cbc,blowfish-cbc").unwrap_err();
        assert!(err.contains("aes256-gcm@openssh.com"), "{err}");
        assert!(resolve(Kind::Kex, "-*").is_err());
    }
}
