//! Host certificates: a server presenting a certificate signed by a CA that a
//! `@cert-authority` line trusts for the host is accepted, which only works if the daemon asks
//! for certificate host keys; a certificate the CA line does not cover is refused. OpenSSH
//! decides the same on the same files.

use crate::common::path_str;

use super::*;

/// A known_hosts trusting `ca_line` (a `TYPE BASE64` public key) as CA for `pattern`, plus
/// `extra` lines, and a client config using it, with `HostName` set to `host_name`.
fn ca_config(
    sshd: &TestSshd,
    name: &str,
    host_name: &str,
    pattern: &str,
    ca_line: &str,
    extra: &str,
) -> PathBuf {
    let known_hosts = sshd.write_file(
        &format!("known_hosts.{name}"),
        &format!("@cert-authority {pattern} {ca_line}\n{extra}"),
    );
    let config = client_config(
        sshd,
        &format!("ssh_config.{name}"),
        &[("UserKnownHostsFile", Some(path_str(&known_hosts)))],
    );
    let text = read(&config).replace("HostName 127.0.0.1", &format!("HostName {host_name}"));
    sshd.write_file(&format!("ssh_config.{name}"), &text)
}

#[tokio::test]
async fn host_certificate_signed_by_a_trusted_ca_is_accepted_as_openssh_accepts_it() {
    let sshd = TestSshd::builder().host_certificate().start();
    let pattern = sshd.known_hosts_pattern();
    let config = ca_config(
        &sshd,
        "ca",
        "127.0.0.1",
        &pattern,
        &sshd.host_ca().public_line,
        "",
    );

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    // Only the certificate can be checked here: the bare host key is in no known_hosts line.
    sshd.log_file()
        .wait_for_count(
            "sshd",
            "host key algorithm: ssh-ed25519-cert-v01@openssh.com",
            1,
            TIMEOUT,
        )
        .await;
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn host_certificate_from_an_untrusted_or_revoked_ca_is_refused_as_openssh_refuses_it() {
    let sshd = TestSshd::builder().host_certificate().start();
    let pattern = sshd.known_hosts_pattern();
    let other_ca = sshd.generate_key("other_ca", common::keys::KeyType::Ed25519, None);
    let revoked = format!("@revoked * {}\n", sshd.host_ca().public_line);
    for (name, ca_line, extra) in [
        ("other-ca", other_ca.public_line.as_str(), ""),
        (
            "revoked-ca",
            sshd.host_ca().public_line.as_str(),
            revoked.as_str(),
        ),
    ] {
        let config = ca_config(&sshd, name, "127.0.0.1", &pattern, ca_line, extra);
        let tunnel = Tunnel::start(&config, None).await;

        let reason = if extra.is_empty() {
            "is not known"
        } else {
            "@revoked"
        };
        tunnel.assert_refused(reason).await;

        let (logged_in, said) = openssh(&config, None, &[]);
        assert!(!logged_in, "{name}: ssh logged in: {said}");
    }
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "authenticated anyway"
    );
}

#[tokio::test]
async fn host_certificate_for_another_name_is_refused_as_openssh_refuses_it() {
    let sshd = TestSshd::builder().host_certificate().start();
    // The certificate names 127.0.0.1 only; reached as `localhost`, the CA line matches but the
    // certificate does not cover the name.
    let pattern = format!("[localhost]:{}", sshd.port());
    let config = ca_config(
        &sshd,
        "name",
        "localhost",
        &pattern,
        &sshd.host_ca().public_line,
        "",
    );

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_refused("is not known").await;
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(!logged_in, "ssh logged in: {said}");
}
