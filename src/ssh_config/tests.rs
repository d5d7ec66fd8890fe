use super::*;
use crate::config::Config;

mod fidelity;
mod reading;

fn config_for(hosts: &str, toml_hosts: &str) -> Config {
    let text = format!(
        "{toml_hosts}\n[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"{hosts}\"\ntarget = \"localhost:445\"\n"
    );
    Config::from_str(&text, Path::new("/test/config.toml")).expect("test config parses")
}

fn ssh(text: &str) -> SshConfigFile {
    SshConfigFile::parse(
        Path::new("/test/ssh_config"),
        text,
        PathBuf::from("/home/u"),
    )
    .expect("ssh_config parses")
}

fn resolve(ssh_text: &str, host: &str) -> HostConfig {
    let config = config_for(host, "");
    ssh(ssh_text)
        .resolve(&config, &config.forwards[0].host)
        .expect("host resolves")
}

#[test]
fn alias_hostname_port_user_come_from_ssh_config() {
    let host = resolve(
        "Host srv11\n  HostName 10.1.2.3\n  Port 2222\n  User vit\n",
        "srv11",
    );
    assert_eq!(host.host_name, "10.1.2.3");
    assert_eq!(host.port, 2222);
    assert_eq!(host.user, "vit");
}

/// OpenSSH 9.2 (`ssh -G`) matches Host patterns case-sensitively against the name as given.
#[test]
fn host_patterns_match_case_sensitively_and_first_value_wins() {
    let text = "Host SRV*\n  User upper\nHost srv*\n  User first\nHost srv11\n  User second\n  Port 2200\n";
    let host = resolve(text, "srv11");
    assert_eq!(host.user, "first");
    assert_eq!(host.port, 2200);
}

#[test]
fn hostname_expands_percent_h() {
    let host = resolve("Host *.lan\n  HostName %h.example.org\n", "box.lan");
    assert_eq!(host.host_name, "box.lan.example.org");
}

#[test]
fn raw_options_are_honoured() {
    let text = "Host srv11\n  IdentitiesOnly yes\n  StrictHostKeyChecking accept-new\n  \
                UserKnownHostsFile ~/kh1 /etc/kh2\n  ServerAliveInterval 7\n  ServerAliveCountMax 5\n  \
                ConnectTimeout 4\n  IdentityFile ~/.ssh/special\n  HashKnownHosts yes\n";
    let host = resolve(text, "srv11");
    assert!(host.identities_only);
    assert_eq!(
        host.strict_host_key_checking,
        StrictHostKeyChecking::AcceptNew
    );
    assert_eq!(
        host.user_known_hosts_files,
        vec![PathBuf::from("/home/u/kh1"), PathBuf::from("/etc/kh2")]
    );
    assert_eq!(host.keepalive_interval, Duration::from_secs(7));
    assert_eq!(host.keepalive_max, 5);
    assert_eq!(host.connect_timeout, Duration::from_secs(4));
    assert_eq!(
        host.identity_files,
        vec![PathBuf::from("/home/u/.ssh/special")]
    );
    assert!(host.identity_files_explicit);
    assert!(host.hash_known_hosts);
}

#[test]
fn openssh_defaults_apply_when_unset() {
    let host = resolve("", "vit@srv11");
    assert_eq!(host.user, "vit");
    assert_eq!(host.port, 22);
    assert_eq!(host.strict_host_key_checking, StrictHostKeyChecking::Yes);
    assert_eq!(
        host.keepalive_interval,
        crate::config::Defaults::KEEPALIVE_INTERVAL
    );
    assert_eq!(host.keepalive_max, crate::config::Defaults::KEEPALIVE_MAX);
    assert!(!host.identity_files_explicit);
    assert!(
        host.identity_files
            .contains(&PathBuf::from("/home/u/.ssh/id_ed25519"))
    );
    assert_eq!(
        host.user_known_hosts_files,
        vec![
            PathBuf::from("/home/u/.ssh/known_hosts"),
            PathBuf::from("/home/u/.ssh/known_hosts2")
        ]
    );
    assert_eq!(
        host.global_known_hosts_files[0],
        PathBuf::from("/etc/ssh/ssh_known_hosts")
    );
}

#[test]
fn spec_user_and_port_beat_ssh_config() {
    let host = resolve("Host srv11\n  User cfg\n  Port 2222\n", "cli@srv11:2200");
    assert_eq!(host.user, "cli");
    assert_eq!(host.port, 2200);
}

#[test]
fn daemon_host_table_overrides_ssh_config() {
    let config = config_for(
        "srv11",
        "idle_timeout = \"1m\"\n[host.srv11]\nuser = \"vit\"\nkeepalive_interval = \"3s\"\n",
    );
    let host = ssh("Host srv11\n  User other\n  ServerAliveInterval 9\n")
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves");
    assert_eq!(host.user, "vit");
    assert_eq!(host.keepalive_interval, Duration::from_secs(3));
    assert_eq!(host.idle_timeout, Duration::from_secs(60));
}

#[test]
fn match_block_does_not_change_the_preceding_host() {
    let text = "Host srv11\n  User vit\n  Port 2222\nMatch user root\n  User root\n  Port 1\n";
    let host = resolve(text, "srv11");
    assert_eq!(host.user, "vit");
    assert_eq!(host.port, 2222);
}

#[test]
fn proxy_command_is_a_clear_error() {
    let config = config_for("srv11", "");
    let err = ssh("Host srv11\n  ProxyCommand nc %h %p\n")
        .resolve(&config, &config.forwards[0].host)
        .unwrap_err()
        .to_string();
    assert!(err.contains("ProxyCommand"), "{err}");
    assert!(err.contains("srv11"), "{err}");
}

#[test]
fn proxy_jump_none_is_direct() {
    let host = resolve("Host srv11\n  ProxyJump none\n", "srv11");
    assert_eq!(host.host_name, "srv11");
}

fn parse_err(text: &str) -> String {
    SshConfigFile::parse(
        Path::new("/test/ssh_config"),
        text,
        PathBuf::from("/home/u"),
    )
    .err()
    .expect("the file is refused")
    .to_string()
}

#[test]
fn bad_values_name_file_line_option_and_value() {
    for (text, line, value) in [
        (
            "Host srv11\n  StrictHostKeyChecking maybe\n",
            2,
            "StrictHostKeyChecking maybe",
        ),
        (
            "Host srv11\n  IdentitiesOnly perhaps\n",
            2,
            "IdentitiesOnly perhaps",
        ),
        (
            "Host srv11\n  ServerAliveCountMax lots\n",
            2,
            "ServerAliveCountMax lots",
        ),
        (
            "Host srv11\n  User vit\n  Port notaport\n",
            3,
            "Port notaport",
        ),
    ] {
        let err = parse_err(text);
        assert!(
            err.starts_with(&format!("/test/ssh_config:{line}:")),
            "{err}"
        );
        assert!(err.contains(value), "{err}");
    }
}

/// Issue 16 item 9: OpenSSH checks every line as it reads it, so a bad value refuses the
/// file even where it would not decide the option for the host.
#[test]
fn a_bad_value_refuses_the_file_even_where_it_does_not_apply() {
    for text in [
        "Host other\n  Port 70000\nHost srv11\n  Port 22\n",
        "Host srv11\n  Port 22\n  Port 70000\n",
        "Match host x\n  ServerAliveInterval 10000000000000000000\n",
    ] {
        let err = parse_err(text);
        assert!(err.contains("/test/ssh_config:"), "{err}");
    }
}

#[test]
fn missing_default_file_is_empty_but_missing_explicit_file_is_an_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope");
    assert!(SshConfigFile::load(&missing, true, None).is_ok());
    let err = SshConfigFile::load(&missing, false, None)
        .err()
        .expect("explicit missing file fails")
        .to_string();
    assert!(err.contains("nope"), "{err}");
}
