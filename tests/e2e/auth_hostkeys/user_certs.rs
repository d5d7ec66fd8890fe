//! User certificates: a key that is in no authorized_keys logs in with a certificate from the
//! CA the server trusts (`TrustedUserCAKeys`): from CertificateFile, from `KEY-cert.pub` next to
//! the identity file, or held by the agent. OpenSSH decides the same on the same files.

use crate::common::path_str;

use super::*;

/// The sshd log line of the certificate login, once it happened.
async fn certificate_login(sshd: &TestSshd) -> String {
    let accepted = format!("Accepted publickey for {}", sshd.user());
    let log = sshd
        .log_file()
        .wait_for_count("sshd", &accepted, 1, TIMEOUT)
        .await;
    log_line(&log, &accepted)
}

#[tokio::test]
async fn certificate_file_and_certificate_beside_the_key_log_in_as_with_openssh() {
    let sshd = TestSshd::builder().user_certificate().start();
    let (key, cert) = sshd.certified_user_key();
    let elsewhere = sshd.dir().join("certs");
    std::fs::create_dir_all(&elsewhere).expect("mkdir certs");
    std::fs::copy(cert, elsewhere.join("mine-cert.pub")).expect("copy cert");
    let beside = client_config(
        &sshd,
        "ssh_config.cert_beside",
        &[("IdentityFile", Some(path_str(&key.private_path)))],
    );
    // The same config naming the certificate in another directory with CertificateFile.
    let named = sshd.write_file(
        "ssh_config.cert_named",
        &format!(
            "{}    CertificateFile {}/certs/mine-cert.pub\n",
            read(&beside),
            path_str(sshd.dir())
        ),
    );
    std::fs::remove_file(cert).expect("remove the cert beside the key");

    let tunnel = Tunnel::start(&named, None).await;
    tunnel.assert_works().await;
    let line = certificate_login(&sshd).await;
    assert!(
        line.contains("ED25519-CERT"),
        "not a certificate login: {line}"
    );
    let (logged_in, said) = openssh(&named, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");

    // Without CertificateFile, and the certificate gone from beside the key: the bare key is
    // not authorized.
    let tunnel = Tunnel::start(&beside, None).await;
    tunnel.assert_refused("rejected").await;
    let (logged_in, said) = openssh(&beside, None, &[]);
    assert!(!logged_in, "ssh logged in without the certificate: {said}");

    // Back beside the key, it is found there, as OpenSSH finds it.
    std::fs::copy(elsewhere.join("mine-cert.pub"), cert).expect("copy cert back");
    let tunnel = Tunnel::start(&beside, None).await;
    tunnel.assert_works().await;
    let (logged_in, said) = openssh(&beside, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn certificate_held_by_the_agent_logs_in_as_with_openssh() {
    let sshd = TestSshd::builder().user_certificate().start();
    let (key, _) = sshd.certified_user_key();
    let agent = TestAgent::start();
    // ssh-add loads KEY-cert.pub along with the key.
    agent.add(&key.private_path);
    assert!(
        agent
            .public_keys()
            .iter()
            .any(|k| k.contains("-cert-v01@openssh.com")),
        "the agent holds no certificate: {:?}",
        agent.public_keys()
    );
    let config = client_config(
        &sshd,
        "ssh_config.agent_cert",
        &[("IdentityFile", None), ("IdentitiesOnly", Some("no"))],
    );

    let tunnel = Tunnel::start(&config, Some(&agent)).await;

    tunnel.assert_works().await;
    let line = certificate_login(&sshd).await;
    assert!(
        line.contains("ED25519-CERT"),
        "not a certificate login: {line}"
    );
    let (logged_in, said) = openssh(&config, Some(&agent), &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}
