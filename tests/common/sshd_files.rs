//! The files in a [`TestSshd`]'s dir: the server's `sshd_config`, and for clients a
//! `known_hosts` and an `ssh_config`, plus deliberately wrong variants of them.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::keys::{self, KeyPair, KeyType};
use super::sshd::{SSHD, TestSshd};
use super::{path_str, write_file};

/// The host alias the generated `ssh_config` defines.
pub const HOST_ALIAS: &str = "test";

/// The generated client config. [`TestSshd::render`] replaces `{host}`, `{port}`, `{user}`,
/// `{user_key}`, `{known_hosts}` and `{dir}`.
pub const SSH_CONFIG_TEMPLATE: &str = "Host test
    HostName {host}
    Port {port}
    User {user}
    IdentityFile {user_key}
    UserKnownHostsFile {known_hosts}
    IdentitiesOnly yes
    StrictHostKeyChecking yes
";

impl TestSshd {
    /// Trusts every host key of the running server.
    pub fn known_hosts_path(&self) -> PathBuf {
        self.dir().join("known_hosts")
    }

    /// Defines `Host test` (see [`SSH_CONFIG_TEMPLATE`]).
    pub fn ssh_config_path(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    /// The file sshd reads on every login: rewrite it (e.g. empty) to revoke keys mid-test.
    pub fn authorized_keys_path(&self) -> PathBuf {
        self.dir().join("authorized_keys")
    }

    /// A fresh key pair in this server's dir, *not* authorized: for auth-rejected tests.
    pub fn generate_key(
        &self,
        file_name: &str,
        kind: KeyType,
        passphrase: Option<&str>,
    ) -> KeyPair {
        keys::generate(self.dir(), file_name, kind, passphrase)
    }

    /// How known_hosts names this server: `[127.0.0.1]:PORT` (or its listen address).
    pub fn known_hosts_pattern(&self) -> String {
        format!("[{}]:{}", self.listen_ip(), self.port())
    }

    pub(super) fn write_client_files(&self) {
        let lines: Vec<String> = self
            .host_keys()
            .iter()
            .map(|key| format!("{} {}\n", self.known_hosts_pattern(), key.public_line))
            .collect();
        write_file(&self.known_hosts_path(), &lines.concat());
        self.write_ssh_config("ssh_config", SSH_CONFIG_TEMPLATE);
    }

    /// `template` with this server's `{host}`, `{port}`, `{user}`, `{user_key}`,
    /// `{known_hosts}` and `{dir}` filled in.
    pub fn render(&self, template: &str) -> String {
        template
            .replace("{host}", &self.listen_ip().to_string())
            .replace("{port}", &self.port().to_string())
            .replace("{user}", self.user())
            .replace("{user_key}", path_str(self.user_key_path()))
            .replace("{known_hosts}", path_str(&self.known_hosts_path()))
            .replace("{dir}", path_str(self.dir()))
    }

    /// Writes `contents` to `name` in this server's dir; returns the path.
    pub fn write_file(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        write_file(&path, contents);
        path
    }

    /// Renders `template` (see [`Self::render`]) into `name` in this server's dir.
    pub fn write_ssh_config(&self, name: &str, template: &str) -> PathBuf {
        self.write_file(name, &self.render(template))
    }

    /// The standard client config, but trusting `known_hosts` instead (e.g. one from
    /// [`Self::write_known_hosts_changed_key`]).
    pub fn ssh_config_with_known_hosts(&self, known_hosts: &Path) -> PathBuf {
        let name = known_hosts
            .file_name()
            .and_then(|name| name.to_str())
            .unwrap_or("custom");
        let template = SSH_CONFIG_TEMPLATE.replace("{known_hosts}", path_str(known_hosts));
        self.write_ssh_config(&format!("ssh_config.{name}"), &template)
    }

    /// A known_hosts that lists this server's name with *different* keys, one of each type the
    /// server has, as after a server reinstall or in an attack: strict clients must refuse.
    pub fn write_known_hosts_changed_key(&self) -> PathBuf {
        let lines: Vec<String> = self
            .impostor_keys()
            .iter()
            .map(|key| format!("{} {}\n", self.known_hosts_pattern(), key.public_line))
            .collect();
        self.write_file("known_hosts_changed", &lines.concat())
    }

    /// A non-empty known_hosts that does not mention this server at all.
    pub fn write_known_hosts_without_host(&self) -> PathBuf {
        let lines: Vec<String> = self
            .impostor_keys()
            .iter()
            .map(|key| format!("unrelated.invalid {}\n", key.public_line))
            .collect();
        self.write_file("known_hosts_without_host", &lines.concat())
    }

    /// The correct known_hosts with hashed host names (`|1|salt|hash`), as Debian's
    /// `HashKnownHosts yes` writes them.
    pub fn write_known_hosts_hashed(&self) -> PathBuf {
        let contents = std::fs::read_to_string(self.known_hosts_path()).expect("read known_hosts");
        let path = self.write_file("known_hosts_hashed", &contents);
        keys::hash_known_hosts(&path);
        path
    }

    /// One key per host key type, none of them the server's. Generated once, then reused.
    fn impostor_keys(&self) -> Vec<KeyPair> {
        self.host_keys()
            .iter()
            .map(|real| {
                let name = format!("impostor_{}", real.kind.name());
                let path = self.dir().join(&name);
                if path.exists() {
                    KeyPair {
                        kind: real.kind,
                        public_line: keys::read_public_line(&path.with_extension("pub")),
                        public_path: path.with_extension("pub"),
                        private_path: path,
                    }
                } else {
                    keys::generate(self.dir(), &name, real.kind, None)
                }
            })
            .collect()
    }
}

/// The server configuration. sshd keeps the first value it reads for a keyword, so the
/// caller's `extra` lines go first and override the defaults below them.
pub(super) fn sshd_config(
    dir: &Path,
    user: &str,
    listen: IpAddr,
    host_keys: &[KeyPair],
    extra: &[String],
) -> String {
    let mut config =
        String::from("# Written by the lazytunnel test harness (tests/common/sshd.rs).\n");
    for line in extra {
        config.push_str(line);
        config.push('\n');
    }
    config.push_str(&format!("ListenAddress {listen}\n"));
    for key in host_keys {
        config.push_str(&format!("HostKey {}\n", path_str(&key.private_path)));
    }
    let authorized_keys = dir.join("authorized_keys");
    config.push_str(&format!(
        "AuthorizedKeysFile {authorized_keys}
PidFile none
# The temp dir and key files are not laid out the way StrictModes demands.
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AllowTcpForwarding yes
# CI runs the tests as root.
PermitRootLogin prohibit-password
AllowUsers {user}
X11Forwarding no
PrintMotd no
LogLevel DEBUG1
# MaxSessions caps session channels (shell, exec, subsystem) per connection, not direct-tcpip
# channels; raised anyway for tests that mix them.
MaxSessions 1000
# Many tests connect at once; the default 10:30:100 drops connections at random past 10.
MaxStartups 200
",
        authorized_keys = path_str(&authorized_keys),
    ));
    if sshd_version() >= (9, 8) {
        // Newer servers penalise source addresses that fail auth or drop connections; the
        // tests do both on purpose, all from 127.0.0.1.
        config.push_str("PerSourcePenalties no\n");
    }
    config
}

/// The installed sshd's (major, minor) version, from `sshd -V`; (0, 0) if unknown.
fn sshd_version() -> (u32, u32) {
    static VERSION: std::sync::OnceLock<(u32, u32)> = std::sync::OnceLock::new();
    *VERSION.get_or_init(|| {
        let Ok(output) = Command::new(SSHD).arg("-V").stdin(Stdio::null()).output() else {
            return (0, 0);
        };
        let text = String::from_utf8_lossy(&output.stderr);
        let parsed = text.split("OpenSSH_").nth(1).and_then(|rest| {
            let mut numbers = rest.split(|c: char| !c.is_ascii_digit());
            Some((numbers.next()?.parse().ok()?, numbers.next()?.parse().ok()?))
        });
        parsed.unwrap_or((0, 0))
    })
}
