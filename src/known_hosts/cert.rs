//! Checks a host certificate whose signing key matched an `@cert-authority` line, as OpenSSH's
//! `sshkey_cert_check_host` does with its default `CASignatureAlgorithms`.

use russh::keys::ssh_key::certificate::CertType;
use russh::keys::ssh_key::public::KeyData;
use russh::keys::ssh_key::{Algorithm, Certificate, HashAlg};

/// `Err` carries a reason for the log.
///
/// `host` is the lowercased host name, without port brackets: OpenSSH compares principals to
/// the host name it connects to, byte for byte.
pub(super) fn check_host_cert(
    cert: &Certificate,
    ca: &KeyData,
    host: &str,
    now: u64,
) -> Result<(), String> {
    // Time is checked first, separately, only so that the reason can say which bound failed;
    // `validate_at` repeats it along with the signature and CA checks.
    if now < cert.valid_after() {
        return Err("certificate is not yet valid".into());
    }
    if now >= cert.valid_before() {
        return Err("certificate has expired".into());
    }
    cert.validate_at(now, [&ca.fingerprint(HashAlg::Sha256)])
        .map_err(|_| "certificate signature does not verify against its CA key")?;
    if cert.cert_type() != CertType::Host {
        return Err("certificate is a user certificate, not a host certificate".into());
    }
    // Stricter than OpenSSH, which accepts a host certificate without principals for any host:
    // such a certificate would let any holder of a signed key impersonate every host the CA
    // line covers.
    if cert.valid_principals().is_empty() {
        return Err("host certificate lists no principals".into());
    }
    if !cert.valid_principals().iter().any(|p| p == host) {
        return Err(format!(
            "{host} is not among the certificate's principals ({})",
            cert.valid_principals().join(", ")
        ));
    }
    if !cert.critical_options().is_empty() {
        return Err("host certificate carries critical options".into());
    }
    let signed_with = cert.signature().algorithm();
    if !allowed_ca_signature(&signed_with) {
        return Err(format!(
            "certificate is signed with {}, which OpenSSH no longer accepts from a CA",
            signed_with.as_str()
        ));
    }
    Ok(())
}

/// OpenSSH's default `CASignatureAlgorithms`: everything but SHA-1 RSA (`ssh-rsa`) and DSA.
fn allowed_ca_signature(algorithm: &Algorithm) -> bool {
    matches!(
        algorithm,
        Algorithm::Ed25519
            | Algorithm::Ecdsa { .. }
            | Algorithm::SkEd25519
            | Algorithm::SkEcdsaSha2NistP256
            | Algorithm::Rsa {
                hash: Some(HashAlg::Sha256 | HashAlg::Sha512)
            }
    )
}
