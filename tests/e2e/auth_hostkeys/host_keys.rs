//! Host keys: the server's key is checked against the known_hosts files the ssh_config names
//! (UserKnownHostsFile), before any authentication, as OpenSSH checks it; StrictHostKeyChecking
//! decides about unknown hosts, and a changed key is refused whatever it says.

use crate::common::path_str;

use super::*;

#[tokio::test]
async fn known_host_key_under_bracketed_host_and_port_is_trusted() {
    let sshd = TestSshd::start();
    let listed = format!(
        "{} {}\n",
        sshd.known_hosts_pattern(),
        sshd.host_public_key()
    );
    assert_eq!(read(&sshd.known_hosts_path()), listed);

    let tunnel = Tunnel::start(&sshd.ssh_config_path(), None).await;

    tunnel.assert_works().await;
    let (logged_in, said) = openssh(&sshd.ssh_config_path(), None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn hashed_known_hosts_line_is_trusted() {
    let sshd = TestSshd::start();
    let hashed = sshd.write_known_hosts_hashed();
    assert!(
        read(&hashed).starts_with("|1|"),
        "not hashed: {}",
        read(&hashed)
    );
    let config = sshd.ssh_config_with_known_hosts(&hashed);

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn unknown_host_is_refused_by_default_and_under_yes_and_ask_saying_how_to_add_it() {
    let sshd = TestSshd::start();
    let known_hosts = sshd.write_known_hosts_without_host();
    let before = read(&known_hosts);
    let offered = fingerprint(&sshd.host_keys()[0].public_path);

    // No StrictHostKeyChecking line means OpenSSH's default, which a daemon cannot ask about.
    for strict in [None, Some("yes"), Some("ask")] {
        let config = client_config(
            &sshd,
            &format!("ssh_config.unknown.{}", strict.unwrap_or("default")),
            &[
                ("UserKnownHostsFile", Some(path_str(&known_hosts))),
                ("StrictHostKeyChecking", strict),
            ],
        );
        let tunnel = Tunnel::start(&config, None).await;

        let line = tunnel.assert_refused("is not known").await;

        for needed in [
            sshd.known_hosts_pattern().as_str(),
            offered.as_str(),
            "ssh-keyscan",
            path_str(&known_hosts),
        ] {
            assert!(
                line.contains(needed),
                "{strict:?}: no {needed:?} in: {line}"
            );
        }
        let (logged_in, said) = openssh(&config, None, &[]);
        assert!(!logged_in, "{strict:?}: ssh logged in: {said}");
        assert!(said.contains("Host key verification failed"), "{said}");
    }
    assert_eq!(read(&known_hosts), before, "an unknown key was recorded");
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "authenticated anyway"
    );
}

#[tokio::test]
async fn changed_host_key_is_refused_naming_the_line_under_yes_ask_and_accept_new() {
    let sshd = TestSshd::start();
    let known_hosts = sshd.write_known_hosts_changed_key();
    let before = read(&known_hosts);

    for strict in ["yes", "ask", "accept-new"] {
        let config = changed_key_config(&sshd, &known_hosts, strict);
        let tunnel = Tunnel::start(&config, None).await;

        let line = tunnel.assert_refused("CHANGED").await;

        assert_names_the_changed_line(&sshd, &known_hosts, &line);
        let (logged_in, said) = openssh(&config, None, &[]);
        assert!(!logged_in, "{strict}: ssh logged in: {said}");
        assert!(
            said.contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
            "{said}"
        );
    }
    assert_eq!(read(&known_hosts), before, "the changed key was recorded");
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "authenticated anyway"
    );
}

/// OpenSSH logs in under `no`, but then refuses every port forward (to avoid a
/// man-in-the-middle): for a forwarder that is refusing too.
#[tokio::test]
async fn changed_host_key_is_refused_even_under_strict_checking_no() {
    let sshd = TestSshd::start();
    let known_hosts = sshd.write_known_hosts_changed_key();
    let before = read(&known_hosts);
    let config = changed_key_config(&sshd, &known_hosts, "no");
    let tunnel = Tunnel::start(&config, None).await;

    let line = tunnel.assert_refused("CHANGED").await;

    assert_names_the_changed_line(&sshd, &known_hosts, &line);
    assert_eq!(read(&known_hosts), before, "the changed key was recorded");
    assert!(
        !sshd.log().contains("Accepted publickey"),
        "authenticated anyway"
    );
    let (_held, port) = refusing_port();
    let forward = format!("127.0.0.1:{port}:127.0.0.1:9");
    let (_, said) = openssh(&config, None, &["-L", &forward]);
    assert!(
        said.contains("Port forwarding is disabled to avoid man-in-the-middle attacks"),
        "ssh forwards over a changed key: {said}"
    );
}

#[tokio::test]
async fn accept_new_learns_an_unknown_host_in_a_line_openssh_trusts() {
    let sshd = TestSshd::start();
    let known_hosts = sshd.write_known_hosts_without_host();
    let before = read(&known_hosts);
    let config = client_config(
        &sshd,
        "ssh_config.accept_new",
        &[
            ("UserKnownHostsFile", Some(path_str(&known_hosts))),
            ("StrictHostKeyChecking", Some("accept-new")),
        ],
    );
    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;

    let after = read(&known_hosts);
    let added = after
        .strip_prefix(&before)
        .expect("known_hosts was rewritten, not appended");
    let expected = format!(
        "{} {}\n",
        sshd.known_hosts_pattern(),
        sshd.host_public_key()
    );
    assert_eq!(added, expected);
    let (logged_in, said) = openssh(&config, None, &["-o", "StrictHostKeyChecking=yes"]);
    assert!(logged_in, "ssh does not trust the learned line: {said}");
    // And so does lazytunnel itself, strictly, in a fresh daemon.
    let strict = sshd.ssh_config_with_known_hosts(&known_hosts);
    Tunnel::start(&strict, None).await.assert_works().await;
    assert_eq!(read(&known_hosts), after, "the key was learned twice");
}

#[tokio::test]
async fn strict_checking_no_accepts_an_unknown_host_with_a_warning_and_records_it_as_openssh_does()
{
    let sshd = TestSshd::start();
    let known_hosts = sshd.write_known_hosts_without_host();
    let offered = fingerprint(&sshd.host_keys()[0].public_path);
    let config = client_config(
        &sshd,
        "ssh_config.no",
        &[
            ("UserKnownHostsFile", Some(path_str(&known_hosts))),
            ("StrictHostKeyChecking", Some("no")),
        ],
    );
    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;

    let log = tunnel.daemon.wait_for_log(&offered, TIMEOUT).await;
    let warning = log_line(&log, &offered);
    assert!(warning.contains("WARN"), "not a warning: {warning}");
    assert!(warning.contains(&sshd.known_hosts_pattern()), "{warning}");
    // OpenSSH adds the key under `no` ("Permanently added"); so do we, so that a later change
    // of key is noticed.
    let recorded = std::fs::read_to_string(&known_hosts).expect("known_hosts readable");
    let key_base64 = sshd
        .host_public_key()
        .split_whitespace()
        .nth(1)
        .expect("key field");
    assert!(
        recorded
            .lines()
            .any(|l| l.starts_with(&sshd.known_hosts_pattern()) && l.contains(key_base64)),
        "key not recorded: {recorded}"
    );
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

/// known_hosts.rs (checked against OpenSSH 9.2): for a port other than 22, when nothing is
/// listed under `[host]:port`, the same key under the bare host name is trusted.
#[tokio::test]
async fn same_key_under_the_bare_host_name_is_trusted_for_another_port_as_by_openssh() {
    let sshd = TestSshd::start();
    let known_hosts = sshd.write_file(
        "known_hosts_bare",
        &format!("127.0.0.1 {}\n", sshd.host_public_key()),
    );
    let config = sshd.ssh_config_with_known_hosts(&known_hosts);
    let tunnel = Tunnel::start(&config, None).await;

    let daemon_accepts = tunnel.accepts().await;

    let (openssh_accepts, said) = openssh(&config, None, &[]);
    assert_eq!(
        daemon_accepts,
        openssh_accepts,
        "lazytunnel and OpenSSH disagree; ssh said: {said}\ndaemon log:\n{}",
        tunnel.daemon.log()
    );
    assert!(daemon_accepts, "documented as trusted");
}

/// The bare name may only vouch: another key there is not a change, so the host is unknown.
#[tokio::test]
async fn other_key_under_the_bare_host_name_leaves_another_port_unknown_as_in_openssh() {
    let sshd = TestSshd::start();
    let impostor_known_hosts = sshd.write_known_hosts_changed_key();
    let impostor = read(&impostor_known_hosts).replace(&sshd.known_hosts_pattern(), "127.0.0.1");
    let known_hosts = sshd.write_file("known_hosts_bare_other", &impostor);
    let config = sshd.ssh_config_with_known_hosts(&known_hosts);
    let tunnel = Tunnel::start(&config, None).await;

    let line = tunnel.assert_refused("is not known").await;

    assert!(!line.contains("CHANGED"), "{line}");
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(!logged_in, "ssh logged in: {said}");
    assert!(
        !said.contains("HAS CHANGED"),
        "ssh calls it a change: {said}"
    );
    assert!(said.contains("Host key verification failed"), "{said}");
}

/// The harness's client config trusting `known_hosts` (with a changed key), under `strict`.
fn changed_key_config(sshd: &TestSshd, known_hosts: &Path, strict: &str) -> PathBuf {
    client_config(
        sshd,
        &format!("ssh_config.changed.{strict}"),
        &[
            ("UserKnownHostsFile", Some(path_str(known_hosts))),
            ("StrictHostKeyChecking", Some(strict)),
        ],
    )
}

/// A "changed" refusal must say where the old key is pinned, and both fingerprints.
fn assert_names_the_changed_line(sshd: &TestSshd, known_hosts: &Path, line: &str) {
    let pinned_at = format!("{}:1", known_hosts.display());
    let offered = fingerprint(&sshd.host_keys()[0].public_path);
    let pinned = fingerprint(known_hosts);
    for needed in [&pinned_at, &offered, &pinned, &sshd.known_hosts_pattern()] {
        assert!(line.contains(needed.as_str()), "no {needed:?} in: {line}");
    }
}
