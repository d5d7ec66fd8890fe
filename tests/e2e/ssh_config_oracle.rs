//! ssh_config resolution checked against OpenSSH itself: for each config, `ssh -G -F FILE srv`
//! prints what OpenSSH resolved for `srv`, and `lazytunnel check` must show the same HostName,
//! Port, User, UserKnownHostsFile and StrictHostKeyChecking. The configs are the places where a
//! parser can go wrong: first value within a block, pattern case and negation, options before
//! any Host, Include inside a block, a Match block after a Host block, quoting and `=`, Include
//! of several files, HostKeyAlias case, numeric host names. Random files are compared in
//! `ssh_config_differential.rs`.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::{path_str, run_cli, write_file};

/// What both tools print, as `option -> value` in `ssh -G`'s words.
fn openssh_view(ssh_config: &Path) -> BTreeMap<String, String> {
    let output = Command::new("ssh")
        .args(["-G", "-F", path_str(ssh_config), "srv"])
        .output()
        .expect("could not run ssh -G");
    assert!(
        output.status.success(),
        "ssh -G failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| line.split_once(' '))
        .filter(|(key, _)| {
            [
                "hostname",
                "port",
                "user",
                "userknownhostsfile",
                "stricthostkeychecking",
            ]
            .contains(key)
        })
        .map(|(key, value)| {
            // ssh -G prints yes/no as true/false; `ask` (OpenSSH's default) is `yes` for a
            // daemon, which cannot ask.
            let value = match (key, value) {
                ("stricthostkeychecking", "true" | "ask") => "yes",
                ("stricthostkeychecking", "false") => "no",
                (_, v) => v,
            };
            (key.to_string(), value.to_string())
        })
        .collect()
}

fn lazytunnel_view(dir: &Path, ssh_config: &Path) -> BTreeMap<String, String> {
    let config = dir.join("config.toml");
    write_file(
        &config,
        &format!(
            "ssh_config = \"{}\"\n[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"srv\"\ntarget = \"x:1\"\n",
            path_str(ssh_config)
        ),
    );
    let output = run_cli(["check", "--config", path_str(&config)]);
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "check failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let mut view = BTreeMap::new();
    for line in out.lines() {
        let Some((label, value)) = line.trim().split_once(": ") else {
            continue;
        };
        let key = match label {
            "hostname" => "hostname",
            "port" => "port",
            "user" => "user",
            "known_hosts" => "userknownhostsfile",
            "strict host key checking" => "stricthostkeychecking",
            _ => continue,
        };
        view.insert(key.to_string(), value.replace(", ", " "));
    }
    view
}

#[test]
fn resolution_matches_ssh_dash_g() {
    if Command::new("ssh").arg("-V").output().is_err() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ssh (OpenSSH's client) is missing; scripts/test installs it"
        );
        eprintln!("skipping: no `ssh` here (install openssh-client to run this test)");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let d = path_str(dir.path()).to_string();
    write_file(&dir.path().join("inc.conf"), "Port 2203\nUser included\n");
    write_file(&dir.path().join("wrong.conf"), "Port 1\nUser wrong\n");
    std::fs::create_dir_all(dir.path().join("multi")).expect("mkdir");
    write_file(&dir.path().join("multi/1.conf"), "Host other\n  User bob\n");
    write_file(&dir.path().join("multi/2.conf"), "User alice\nPort 2204\n");
    let kh = format!("UserKnownHostsFile {d}/kh1 {d}/kh2\n");
    let cases = [
        (
            "first-in-block",
            format!("Host srv\n  Port 2200\n  Port 2300\n  User a\n  User b\n  {kh}"),
        ),
        (
            "case",
            format!("Host SRV\n  Port 1111\nHost srv\n  Port 2222\n  {kh}"),
        ),
        (
            "negation",
            format!("Host * !srv\n  User nope\nHost *\n  User yes\n  {kh}"),
        ),
        (
            "before-any-host",
            format!("Port 2201\n{kh}Host srv\n  Port 2202\n"),
        ),
        (
            "include-in-block",
            format!(
                "Host other\n  Include {d}/wrong.conf\nHost srv\n  Include {d}/inc.conf\n  Port 2\n  {kh}"
            ),
        ),
        (
            "match-after-host",
            format!(
                "Host srv\n  Port 2222\n  {kh}Match host other\n  Port 1\n  User root\n  StrictHostKeyChecking no\n"
            ),
        ),
        (
            "quotes-and-equals",
            format!(
                "Host srv\n  HostName = \"%h.example\" # comment\n  Port=2200\n  User \"al ice\"\n  {kh}  StrictHostKeyChecking=accept-new\n"
            ),
        ),
        (
            "include-several-files",
            format!("Include {d}/multi/*.conf\n{kh}"),
        ),
        (
            "host-key-alias-case",
            format!("Host srv\n  HostKeyAlias MyBox\n  UserKnownHostsFile {d}/kh_%k\n"),
        ),
        (
            "numeric-host-name",
            format!("Host srv\n  HostName 10.0.0.010\n  StrictHostKeyChecking false\n  {kh}"),
        ),
        (
            "strict-off",
            format!("Host srv\n  StrictHostKeyChecking off\n  {kh}"),
        ),
    ];
    for (name, text) in cases {
        let ssh_config = dir.path().join(format!("ssh_config.{name}"));
        write_file(&ssh_config, &text);

        let openssh = openssh_view(&ssh_config);
        let ours = lazytunnel_view(dir.path(), &ssh_config);

        assert_eq!(
            ours, openssh,
            "{name}: lazytunnel differs from ssh -G on:\n{text}"
        );
    }
}

/// Issue 13 item 2: values beyond OpenSSH's ranges are refused as OpenSSH refuses them, naming
/// file:line, whichever block they are in; none makes anything panic.
#[test]
fn out_of_range_values_are_refused_naming_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (line, error) in [
        (
            "ServerAliveInterval 10000000000000000000",
            "invalid time value",
        ),
        ("ConnectTimeout 99999999999", "invalid time value"),
        ("ServerAliveCountMax 2147483648", "integer value too large"),
        ("Port 70000", "Bad port"),
    ] {
        let ssh_config = dir.path().join("ssh_config");
        write_file(
            &ssh_config,
            &format!("Host other\n  {line}\nHost srv\n  Port 22\n"),
        );
        let config = dir.path().join("config.toml");
        write_file(
            &config,
            &format!(
                "ssh_config = \"{}\"\n[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"srv\"\ntarget = \"x:1\"\n",
                path_str(&ssh_config)
            ),
        );
        let output = run_cli(["check", "--config", path_str(&config)]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{line}: accepted");
        assert!(
            stderr.contains(&format!("{}:2: {error}", path_str(&ssh_config))),
            "{line}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
