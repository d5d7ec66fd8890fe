//! How ssh_config is read, decided as OpenSSH decides on the same file: a `Match` block after
//! `Host test` leaves its settings intact, `Include` brings in a host's block (and an Include in
//! another host's block brings in nothing for it), and algorithm lists are honoured, filtered
//! to what lazytunnel implements.

use crate::common::sshd_files::SSH_CONFIG_TEMPLATE;

use super::*;

#[tokio::test]
async fn match_block_after_the_host_block_leaves_it_intact() {
    let sshd = TestSshd::start();
    // ssh2-config-style merging would take this Port and known_hosts and fail to connect.
    let text = format!(
        "{SSH_CONFIG_TEMPLATE}Match all\n    Port 1\n    UserKnownHostsFile /nonexistent\n    \
         StrictHostKeyChecking no\n"
    );
    let config = sshd.write_ssh_config("ssh_config.match", &text);

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    let warned = tunnel
        .daemon
        .wait_for_log("Match blocks are not applied", TIMEOUT)
        .await;
    let line = log_line(&warned, "Match blocks are not applied");
    let match_line = SSH_CONFIG_TEMPLATE.lines().count() + 1;
    assert!(
        line.contains(&format!("{}:{match_line}:", config.display())),
        "{line}"
    );
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn include_brings_in_the_host_block_and_only_where_its_block_matches() {
    let sshd = TestSshd::start();
    let conf_d = sshd.dir().join("conf.d");
    std::fs::create_dir_all(&conf_d).expect("mkdir conf.d");
    sshd.write_ssh_config("conf.d/10-test.conf", SSH_CONFIG_TEMPLATE);
    sshd.write_file("conf.d/20-wrong.conf", "Host *\n    Port 1\n");
    let text = format!(
        "Host elsewhere\n    Include {dir}/conf.d/20-wrong.conf\nHost *\n    Include {dir}/conf.d/10-test.conf\n",
        dir = crate::common::path_str(sshd.dir())
    );
    let config = sshd.write_file("ssh_config.include", &text);

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}

#[tokio::test]
async fn algorithm_lists_are_offered_filtered_to_what_lazytunnel_implements() {
    let sshd = TestSshd::start();
    // 3des-cbc is OpenSSH's, not russh's: dropped with a warning. umac is dropped from MACs.
    let text = format!(
        "{SSH_CONFIG_TEMPLATE}    Ciphers 3des-cbc,aes128-ctr\n    MACs umac-64@openssh.com,hmac-sha2-256\n    \
         KexAlgorithms -sntrup*,mlkem*,curve25519-sha256@libssh.org\n    HostKeyAlgorithms ssh-ed25519\n"
    );
    let config = sshd.write_ssh_config("ssh_config.algorithms", &text);

    let tunnel = Tunnel::start(&config, None).await;

    tunnel.assert_works().await;
    let log = sshd
        .log_file()
        .wait_for_count("sshd", "cipher: aes128-ctr MAC: hmac-sha2-256", 2, TIMEOUT)
        .await;
    assert!(log.contains("kex: algorithm: curve25519-sha256 "), "{log}");
    tunnel
        .daemon
        .wait_for_log("does not support 3des-cbc", TIMEOUT)
        .await;
    let (logged_in, said) = openssh(&config, None, &[]);
    assert!(logged_in, "ssh disagrees: {said}");
}
