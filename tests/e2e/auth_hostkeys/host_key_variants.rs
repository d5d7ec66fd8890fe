//! Every known_hosts form, decided by the daemon and by OpenSSH on the same files: comma lists,
//! `*` and `?` patterns, `!` negation vetoing a line, `@revoked`, several keys for one host,
//! the global file, and accept-new writing a hashed line (HashKnownHosts yes) that OpenSSH then
//! trusts.

use crate::common::path_str;
use crate::common::sshd_files::SSH_CONFIG_TEMPLATE;

use super::*;

/// A client config trusting `user_lines` in its UserKnownHostsFile and `global_lines` in its
/// GlobalKnownHostsFile; `extra` options are added to `Host test`.
fn variant_config(
    sshd: &TestSshd,
    name: &str,
    user_lines: &str,
    global_lines: &str,
    extra: &str,
) -> PathBuf {
    let user = sshd.write_file(&format!("known_hosts.{name}"), user_lines);
    let global = sshd.write_file(&format!("global_known_hosts.{name}"), global_lines);
    let template = SSH_CONFIG_TEMPLATE.replace("{known_hosts}", path_str(&user));
    let text = format!(
        "{template}    GlobalKnownHostsFile {}\n{extra}",
        path_str(&global)
    );
    sshd.write_ssh_config(&format!("ssh_config.{name}"), &text)
}

/// OpenSSH and the daemon, on `config`, both connect (`trusted`) or both refuse.
async fn assert_both_decide(config: &Path, case: &str, trusted: bool) {
    let tunnel = Tunnel::start(config, None).await;

    let accepted = tunnel.accepts().await;

    let (logged_in, said) = openssh(config, None, &[]);
    assert_eq!(
        logged_in, trusted,
        "{case}: ssh decided {logged_in}: {said}"
    );
    assert_eq!(accepted, trusted, "{case}: lazytunnel decided {accepted}");
}

#[tokio::test]
async fn known_hosts_forms_are_decided_as_openssh_decides_them() {
    let sshd = TestSshd::start();
    let key = sshd.host_public_key().to_string();
    let name = sshd.known_hosts_pattern();
    let impostor = read(&sshd.write_known_hosts_changed_key());
    let port = sshd.port();
    let cases: Vec<(&str, String, String, bool)> = vec![
        (
            "comma-list",
            format!("other.example,{name} {key}\n"),
            String::new(),
            true,
        ),
        (
            "question-mark",
            format!("[127.0.0.?]:{port} {key}\n"),
            String::new(),
            true,
        ),
        ("star", format!("* {key}\n"), String::new(), true),
        (
            "negated",
            format!("*,!*127.0.0.1* {key}\n"),
            String::new(),
            false,
        ),
        // Vetoed for `[127.0.0.1]:PORT` only: OpenSSH then checks the bare name and accepts.
        (
            "negated-port-only",
            format!("*,!{name} {key}\n"),
            String::new(),
            true,
        ),
        (
            "revoked",
            format!("{name} {key}\n@revoked * {key}\n"),
            String::new(),
            false,
        ),
        (
            "several-keys",
            format!("{impostor}{name} {key}\n"),
            String::new(),
            true,
        ),
        (
            "global-file",
            String::new(),
            format!("{name} {key}\n"),
            true,
        ),
        (
            "revoked-in-global",
            format!("{name} {key}\n"),
            format!("@revoked {name} {key}\n"),
            false,
        ),
    ];
    for (case, user_lines, global_lines, trusted) in cases {
        let config = variant_config(&sshd, case, &user_lines, &global_lines, "");
        assert_both_decide(&config, case, trusted).await;
    }
}

#[tokio::test]
async fn accept_new_with_hash_known_hosts_writes_a_hashed_line_openssh_trusts() {
    let sshd = TestSshd::start();
    let config = variant_config(
        &sshd,
        "hashed-accept-new",
        "",
        "",
        "    HashKnownHosts yes\n",
    );
    let text = read(&config).replace(
        "StrictHostKeyChecking yes",
        "StrictHostKeyChecking accept-new",
    );
    let config = sshd.write_file("ssh_config.hashed-accept-new", &text);
    let known_hosts = sshd.dir().join("known_hosts.hashed-accept-new");

    let tunnel = Tunnel::start(&config, None).await;
    tunnel.assert_works().await;

    let learned = read(&known_hosts);
    assert!(learned.starts_with("|1|"), "not hashed: {learned}");
    assert!(
        !learned.contains("127.0.0.1"),
        "the name is in clear: {learned}"
    );
    let (logged_in, said) = openssh(&config, None, &["-o", "StrictHostKeyChecking=yes"]);
    assert!(logged_in, "ssh does not trust the learned line: {said}");
}

#[tokio::test]
async fn host_key_alias_looks_the_key_up_under_the_alias_as_openssh_does() {
    let sshd = TestSshd::start();
    let key = sshd.host_public_key().to_string();
    let alias = "    HostKeyAlias box.example\n";
    for (case, lines, trusted) in [
        ("alias-known", format!("box.example {key}\n"), true),
        // The real name and port no longer count.
        (
            "alias-unknown",
            format!("{} {key}\n", sshd.known_hosts_pattern()),
            false,
        ),
    ] {
        let config = variant_config(&sshd, case, &lines, "", alias);
        assert_both_decide(&config, case, trusted).await;
    }
}
