//! Authentication, once the host key is trusted: agent keys first, then key files, with
//! IdentitiesOnly keeping agent keys that match no configured file out, as OpenSSH does.

use crate::common::keys::KeyType;
use crate::common::path_str;

use super::*;

#[tokio::test]
async fn agent_key_logs_in_when_no_identity_file_is_configured() {
    let sshd = TestSshd::start();
    let agent = TestAgent::start();
    agent.add(sshd.user_key_path());
    let config = client_config(
        &sshd,
        "ssh_config.agent",
        &[("IdentityFile", None), ("IdentitiesOnly", Some("no"))],
    );

    assert_agent_logs_in(&sshd, &agent, &config).await;
}

#[tokio::test]
async fn agent_key_logs_in_when_the_identity_file_is_missing() {
    let sshd = TestSshd::start();
    let agent = TestAgent::start();
    agent.add(sshd.user_key_path());
    let missing = sshd.dir().join("id_missing");
    let config = client_config(
        &sshd,
        "ssh_config.agent_missing_file",
        &[
            ("IdentityFile", Some(path_str(&missing))),
            ("IdentitiesOnly", Some("no")),
        ],
    );

    assert_agent_logs_in(&sshd, &agent, &config).await;
}

#[tokio::test]
async fn encrypted_key_without_agent_is_refused_saying_to_ssh_add_it() {
    let sshd = TestSshd::builder()
        .encrypted_user_key("correct horse")
        .start();
    let key = sshd.encrypted_key_path().unwrap().to_owned();
    let config = identity_config(&sshd, "ssh_config.encrypted", &key, "yes");
    let tunnel = Tunnel::start(&config, None).await;

    let line = tunnel.assert_refused("ssh-add").await;

    assert!(
        line.contains(path_str(&key)),
        "the key file is not named: {line}"
    );
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "logged in anyway"
    );
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(!logged_in, "ssh logged in without the passphrase: {said}");
}

#[tokio::test]
async fn encrypted_key_held_by_the_agent_logs_in() {
    let sshd = TestSshd::builder()
        .encrypted_user_key("correct horse")
        .start();
    let key = sshd.encrypted_key_path().unwrap().to_owned();
    let agent = TestAgent::start();
    agent.add_with_passphrase(&key, sshd.passphrase().unwrap());
    let config = identity_config(&sshd, "ssh_config.encrypted_agent", &key, "yes");

    let tunnel = Tunnel::start(&config, Some(&agent)).await;

    tunnel.assert_works().await;
    let (logged_in, said) = openssh(&config, Some(&agent), &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn identities_only_keeps_an_authorized_agent_key_out_when_no_identity_file_matches_it() {
    let sshd = TestSshd::start();
    let agent = TestAgent::start();
    agent.add(sshd.user_key_path());
    let other = sshd.generate_key("id_unauthorized", KeyType::Ed25519, None);
    let config = identity_config(&sshd, "ssh_config.only", &other.private_path, "yes");
    let tunnel = Tunnel::start(&config, Some(&agent)).await;

    let line = tunnel.assert_refused("rejected").await;

    assert!(line.contains(path_str(&other.private_path)), "{line}");
    assert!(
        !line.contains("agent key"),
        "an agent key was offered: {line}"
    );
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "logged in anyway"
    );
    let (logged_in, said) = openssh(&config, Some(&agent), &[]);
    assert!(!logged_in, "ssh disagrees, it logged in: {said}");
}

#[tokio::test]
async fn without_identities_only_the_agent_key_logs_in_beside_an_unauthorized_identity_file() {
    let sshd = TestSshd::start();
    let agent = TestAgent::start();
    agent.add(sshd.user_key_path());
    let other = sshd.generate_key("id_unauthorized", KeyType::Ed25519, None);
    let config = identity_config(&sshd, "ssh_config.not_only", &other.private_path, "no");

    assert_agent_logs_in(&sshd, &agent, &config).await;
}

#[tokio::test]
async fn unauthorized_key_is_rejected_naming_user_host_and_the_keys_tried() {
    let sshd = TestSshd::start();
    let stranger = sshd.generate_key("id_stranger", KeyType::Ed25519, None);
    let config = identity_config(&sshd, "ssh_config.stranger", &stranger.private_path, "yes");
    let tunnel = Tunnel::start(&config, None).await;

    let line = tunnel.assert_refused("rejected").await;

    let who = format!("{}@127.0.0.1", sshd.user());
    let tried = format!("key file {}", stranger.private_path.display());
    assert!(line.contains(&who), "no {who:?} in: {line}");
    assert!(line.contains(&tried), "no {tried:?} in: {line}");
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(!logged_in, "ssh logged in: {said}");
    assert!(said.contains("Permission denied (publickey)"), "{said}");
}

/// RSA keys must sign with SHA-2: OpenSSH 8.8+ refuses SHA-1 `ssh-rsa` signatures.
#[tokio::test]
async fn rsa_user_key_logs_in_with_a_sha2_signature() {
    let sshd = TestSshd::builder().rsa_user_key().start();
    let key = sshd.rsa_key_path().unwrap().to_owned();
    let config = identity_config(&sshd, "ssh_config.rsa", &key, "yes");
    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;

    let accepted = format!("Accepted publickey for {}", sshd.user());
    let log = sshd
        .log_file()
        .wait_for_count("sshd", &accepted, 1, TIMEOUT)
        .await;
    let line = log_line(&log, &accepted);
    let rsa_key = fingerprint(&key.with_extension("pub"));
    assert!(line.contains(&format!("RSA {rsa_key}")), "{line}");
    // sshd logs the algorithm of the key offer that the signature then uses.
    let offer = log_line(&log, &format!("RSA {rsa_key}"));
    assert!(
        offer.contains("pkalg rsa-sha2-256") || offer.contains("pkalg rsa-sha2-512"),
        "not offered for a SHA-2 signature: {offer}"
    );
}

/// The harness's client config, logging in with `identity_file` under `identities_only`.
fn identity_config(sshd: &TestSshd, name: &str, identity_file: &Path, only: &str) -> PathBuf {
    client_config(
        sshd,
        name,
        &[
            ("IdentityFile", Some(path_str(identity_file))),
            ("IdentitiesOnly", Some(only)),
        ],
    )
}

/// The daemon, given `agent`, logs in with the agent's key (the server's user key); so does
/// `ssh` on the same `config`.
async fn assert_agent_logs_in(sshd: &TestSshd, agent: &TestAgent, config: &Path) {
    let tunnel = Tunnel::start(config, Some(agent)).await;

    tunnel.assert_works().await;

    let accepted = format!("Accepted publickey for {}", sshd.user());
    let log = sshd
        .log_file()
        .wait_for_count("sshd", &accepted, 1, TIMEOUT)
        .await;
    let user_key = fingerprint(&sshd.user_key_path().with_extension("pub"));
    assert!(log_line(&log, &accepted).contains(&user_key), "{log}");
    let (logged_in, said) = openssh(config, Some(agent), &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}
