//! OpenSSH's reading rules that a parser crate got wrong: first value within a block, the
//! system file after the user's, Include conditioned on its block, Match kept inert inside
//! included files too, tokens per option, algorithm lists, ProxyJump chains.

use super::*;

fn resolve_err(ssh_text: &str, host: &str) -> String {
    let config = config_for(host, "");
    ssh(ssh_text)
        .resolve(&config, &config.forwards[0].host)
        .expect_err("resolving fails")
        .to_string()
}

#[test]
fn first_value_wins_within_one_block() {
    let host = resolve(
        "Host srv11\n  Port 2200\n  Port 2300\n  StrictHostKeyChecking accept-new\n  StrictHostKeyChecking no\n",
        "srv11",
    );
    assert_eq!(host.port, 2200);
    assert_eq!(
        host.strict_host_key_checking,
        StrictHostKeyChecking::AcceptNew
    );
}

#[test]
fn negated_pattern_excludes_the_block() {
    let host = resolve("Host * !srv11\n  User other\nHost *\n  User vit\n", "srv11");
    assert_eq!(host.user, "vit");
}

#[test]
fn system_file_is_read_after_the_user_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let user = dir.path().join("config");
    let system = dir.path().join("ssh_config");
    std::fs::write(&user, "Host srv11\n  User vit\n").unwrap();
    std::fs::write(
        &system,
        "Host *\n  User root\n  Port 2222\n  HashKnownHosts yes\n",
    )
    .unwrap();
    let config = config_for("srv11", "");
    let host = SshConfigFile::load(&user, false, Some(&system))
        .expect("loads")
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves");
    assert_eq!(host.user, "vit", "the user's value came first");
    assert_eq!(host.port, 2222);
    assert!(host.hash_known_hosts);
    let without = SshConfigFile::load(&user, false, None)
        .expect("loads")
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves");
    assert_eq!(without.port, 22, "no system file, as with ssh -F");
}

#[test]
fn include_applies_only_inside_its_matching_block_and_match_stays_inert_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ssh_dir = dir.path().join(".ssh");
    std::fs::create_dir_all(ssh_dir.join("conf.d")).unwrap();
    std::fs::write(
        ssh_dir.join("conf.d/a.conf"),
        "Port 2201\nMatch user root\n  User root\nHost srv11\n  IdentityFile ~/.ssh/inc\n",
    )
    .unwrap();
    std::fs::write(ssh_dir.join("conf.d/b.conf"), "Port 2202\nUser fromb\n").unwrap();
    let text =
        "Host other\n  Include conf.d/*.conf\nHost srv11\n  Include conf.d/*.conf\n  User vit\n";
    let main = ssh_dir.join("config");
    std::fs::write(&main, text).unwrap();

    let config = config_for("srv11", "");
    let file = SshConfigFile::parse(&main, text, dir.path().to_owned()).expect("parses");
    let host = file
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves");
    assert_eq!(host.port, 2201, "glob order: a.conf first");
    assert_eq!(
        host.user, "fromb",
        "Match in a.conf set nothing; b.conf came before User vit"
    );
    assert_eq!(host.identity_files, vec![ssh_dir.join("inc")]);

    let config = config_for("elsewhere", "");
    let host = file
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves");
    assert_eq!(
        host.port, 22,
        "an Include in a block that does not match applies nothing"
    );
}

#[test]
fn include_loop_is_an_error_naming_the_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("loop.conf");
    let text = format!("Include {}\n", path.display());
    std::fs::write(&path, &text).unwrap();
    let err = SshConfigFile::parse(&path, &text, dir.path().to_owned())
        .err()
        .expect("a loop fails")
        .to_string();
    assert!(err.contains("Include") && err.contains(":1:"), "{err}");
}

#[test]
fn tokens_expand_in_path_options() {
    let text = "Host srv11\n  HostName 10.0.0.%h\n  Port 2222\n  User vit\n  \
                IdentityFile ~/.ssh/%r@%h:%p\n  CertificateFile %d/certs/%n-cert.pub\n  \
                UserKnownHostsFile ~/kh/%h %d/kh2\n  IdentityAgent ~/agent.%u\n";
    let host = resolve(text, "srv11");
    assert_eq!(host.host_name, "10.0.0.srv11");
    assert_eq!(
        host.identity_files,
        vec![PathBuf::from("/home/u/.ssh/vit@10.0.0.srv11:2222")]
    );
    assert_eq!(
        host.certificate_files,
        vec![PathBuf::from("/home/u/certs/srv11-cert.pub")]
    );
    assert_eq!(
        host.user_known_hosts_files,
        vec![
            PathBuf::from("/home/u/kh/10.0.0.srv11"),
            PathBuf::from("/home/u/kh2")
        ]
    );
    let local = openssh::local_user_name().unwrap_or_default();
    assert_eq!(
        host.identity_agent,
        IdentityAgent::Socket(PathBuf::from(format!("/home/u/agent.{local}")))
    );
}

#[test]
fn identity_agent_none_env_and_variable() {
    assert_eq!(
        resolve("Host srv11\n  IdentityAgent none\n", "srv11").identity_agent,
        IdentityAgent::Disabled
    );
    assert_eq!(
        resolve("Host srv11\n  IdentityAgent SSH_AUTH_SOCK\n", "srv11").identity_agent,
        IdentityAgent::Env("SSH_AUTH_SOCK".into())
    );
    assert_eq!(
        resolve("Host srv11\n  IdentityAgent $MY_AGENT\n", "srv11").identity_agent,
        IdentityAgent::Env("MY_AGENT".into())
    );
}

#[test]
fn unknown_token_is_an_error_naming_file_line_and_option() {
    let err = resolve_err("Host srv11\n  IdentityFile ~/.ssh/%z\n", "srv11");
    assert!(err.starts_with("/test/ssh_config:2:"), "{err}");
    assert!(err.contains("IdentityFile") && err.contains("%z"), "{err}");
}

#[test]
fn algorithm_lists_are_filtered_and_an_unusable_one_is_an_error() {
    let host = resolve(
        "Host srv11\n  Ciphers aes128-ctr,3des-cbc\n  MACs -*sha1*\n  HostKeyAlgorithms ssh-ed25519\n",
        "srv11",
    );
    assert_eq!(
        host.algorithms.ciphers,
        Some(vec!["aes128-ctr".to_string()])
    );
    let macs = host.algorithms.macs.expect("MACs set");
    assert!(!macs.iter().any(|m| m.contains("sha1")), "{macs:?}");
    assert_eq!(
        host.algorithms.host_keys,
        Some(vec!["ssh-ed25519".to_string()])
    );
    assert_eq!(host.algorithms.kex, None);

    let err = resolve_err(
        "Host srv11\n  KexAlgorithms sntrup761x25519-sha512@openssh.com\n",
        "srv11",
    );
    assert!(
        err.contains("KexAlgorithms") && err.contains("sntrup761x25519"),
        "{err}"
    );
    assert!(err.starts_with("/test/ssh_config:2:"), "{err}");
}

#[test]
fn proxy_jump_hops_resolve_by_their_own_aliases() {
    let text = "Host target\n  ProxyJump alice@bastion1:2201,bastion2\n\
                Host bastion1\n  HostName 192.0.2.1\n  User nobody\n  ProxyJump ignored-here\n\
                Host bastion2\n  HostName 192.0.2.2\n  Port 2202\n  ProxyJump ignored\n\
                Host ignored-here\n  HostName 192.0.2.9\n";
    let host = resolve(text, "target");
    let last = host.jump.as_deref().expect("a jump host");
    assert_eq!((last.host_name.as_str(), last.port), ("192.0.2.2", 2202));
    // The first hop keeps its own ProxyJump; the second is reached through the first.
    let first = last.jump.as_deref().expect("two hops");
    assert_eq!(
        (first.host_name.as_str(), first.port, first.user.as_str()),
        ("192.0.2.1", 2201, "alice")
    );
    let own = first.jump.as_deref().expect("bastion1's own ProxyJump");
    assert_eq!(own.host_name, "192.0.2.9");
    assert!(own.jump.is_none());
}

#[test]
fn proxy_jump_and_proxy_command_share_one_slot_first_wins() {
    let host = resolve(
        "Host srv11\n  ProxyJump none\n  ProxyCommand nc %h %p\n",
        "srv11",
    );
    assert!(host.jump.is_none());
    let err = resolve_err(
        "Host srv11\n  ProxyCommand nc %h %p\n  ProxyJump hop\n",
        "srv11",
    );
    assert!(
        err.contains("ProxyCommand") && err.contains("/test/ssh_config:2"),
        "{err}"
    );
}

#[test]
fn proxy_jump_loop_is_an_error() {
    let err = resolve_err("Host a\n  ProxyJump b\nHost b\n  ProxyJump a\n", "a");
    assert!(err.contains("loop") && err.contains("a -> b -> a"), "{err}");
}

#[test]
fn host_key_alias_names_the_known_hosts_entry_and_percent_k() {
    let host = resolve(
        "Host srv11\n  Port 2222\n  HostKeyAlias box\n  UserKnownHostsFile ~/kh.%k\n",
        "srv11",
    );
    assert_eq!(host.host_key_name(), ("box", 22));
    assert_eq!(
        host.user_known_hosts_files,
        vec![PathBuf::from("/home/u/kh.box")]
    );
    assert_eq!(
        resolve("Host srv11\n  Port 2222\n", "srv11").host_key_name(),
        ("srv11", 2222)
    );
}

#[test]
fn proxy_jump_expands_its_tokens() {
    let host = resolve("Host srv11\n  User vit\n  ProxyJump %r@gw-%h\n", "srv11");
    let jump = host.jump.expect("a jump host");
    assert_eq!(
        (jump.user.as_str(), jump.host_name.as_str()),
        ("vit", "gw-srv11")
    );
    let err = resolve_err("Host srv11\n  ProxyJump gw-%d\n", "srv11");
    assert!(err.contains("ProxyJump") && err.contains("%d"), "{err}");
}

#[test]
fn options_that_would_change_host_key_checking_or_the_config_read_are_refused() {
    for (line, option) in [
        ("RevokedHostKeys ~/.ssh/revoked", "RevokedHostKeys"),
        ("KnownHostsCommand /bin/true", "KnownHostsCommand"),
        ("CanonicalizeHostname yes", "CanonicalizeHostname"),
    ] {
        let err = resolve_err(&format!("Host srv11\n  {line}\n"), "srv11");
        assert!(
            err.contains(option) && err.contains("/test/ssh_config:2"),
            "{err}"
        );
    }
    resolve(
        "Host srv11\n  RevokedHostKeys none\n  CanonicalizeHostname no\n",
        "srv11",
    );
}

#[test]
fn config_files_others_could_write_are_refused_as_by_openssh() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let included = dir.path().join("inc.conf");
    std::fs::write(&included, "Port 2201\n").unwrap();
    let text = format!("Include {}\n", included.display());
    let main = dir.path().join("config");
    std::fs::write(&main, &text).unwrap();
    let parse = || SshConfigFile::parse(&main, &text, dir.path().to_owned());
    assert!(parse().is_ok());

    std::fs::set_permissions(&included, std::fs::Permissions::from_mode(0o666)).unwrap();
    let err = parse()
        .err()
        .expect("a world-writable include is refused")
        .to_string();
    assert!(
        err.contains("bad permissions") && err.contains("inc.conf"),
        "{err}"
    );

    // The default user file is checked too; a file named explicitly (like `ssh -F`) is not.
    std::fs::set_permissions(&included, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&main, std::fs::Permissions::from_mode(0o664)).unwrap();
    let err = SshConfigFile::load(&main, true, None)
        .err()
        .expect("refused")
        .to_string();
    assert!(err.contains("bad permissions"), "{err}");
    assert!(SshConfigFile::load(&main, false, None).is_ok());
}
