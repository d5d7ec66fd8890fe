//! The command line: `lazytunnel check` shows what a configuration resolves to, or fails
//! naming the file, line and value at fault.
//! Each command runs the real binary in a sandbox whose HOME is an empty temp dir.

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::run_cli;
use tempfile::TempDir;

/// A client config for the host `srv`, with every value `check` shows set to a non-default.
const SSH_CONFIG: &str = "Host srv
    HostName srv.example.net
    Port 2222
    User alice
    IdentityFile /keys/id_a
    IdentityFile /keys/id_b
    UserKnownHostsFile /known/one /known/two
    ServerAliveInterval 20
    ServerAliveCountMax 5
    ConnectTimeout 7
";

/// Three forwards: through the alias `srv`, through a `user@host:port` spec, and Unix socket
/// to Unix socket.
const CONFIG: &str = r#"ssh_config = "ssh_config"
idle_timeout = "90s"

[[forward]]
name = "web"
listen = "127.0.0.1:8080"
host = "srv"
target = "localhost:80"

[[forward]]
listen = "5432"
host = "bob@db.example.org:2200"
target = "db.internal:5432"

[[forward]]
name = "docker"
listen = "/tmp/lt-docker.sock"
listen_mode = "0660"
host = "srv"
target = "/var/run/docker.sock"
"#;

#[test]
fn check_prints_each_resolved_host_and_each_forward_as_listen_host_target() {
    let files = Files::new(CONFIG, SSH_CONFIG);

    let output = files.check();

    assert!(output.status.success(), "check failed: {}", stderr(&output));
    let out = stdout(&output);
    let srv = section(&out, "host srv");
    for line in [
        "  hostname: srv.example.net",
        "  port: 2222",
        "  user: alice",
        "  identity files: /keys/id_a, /keys/id_b",
        "  known_hosts: /known/one, /known/two",
        "  timers: connect 7s, keepalive 20s x 5, idle 1m 30s",
    ] {
        assert_has_line(&srv, line);
    }
    let db = section(&out, "host bob@db.example.org:2200");
    for line in ["  hostname: db.example.org", "  port: 2200", "  user: bob"] {
        assert_has_line(&db, line);
    }
    assert_has_line(&db, "  timers: connect 10s, keepalive 15s x 3, idle 1m 30s");
    let forwards = section(&out, "forwards");
    assert_has_line(&forwards, "  web: 127.0.0.1:8080 -> srv -> localhost:80");
    assert_has_line(
        &forwards,
        "  5432: 127.0.0.1:5432 -> bob@db.example.org:2200 -> db.internal:5432",
    );
    assert_has_line(
        &forwards,
        "  docker: /tmp/lt-docker.sock -> srv -> /var/run/docker.sock",
    );
}

#[test]
fn check_rejects_an_unknown_key_naming_file_line_and_key() {
    let config = CONFIG.replace("idle_timeout", "colour = \"blue\"\nidle_timeout");
    let files = Files::new(&config, SSH_CONFIG);

    let said = files.check_fails();

    assert!(said.contains(&files.at(&config, "colour")), "{said}");
    assert!(said.contains("unknown field `colour`"), "{said}");
}

#[test]
fn check_rejects_a_bad_duration_naming_file_line_and_value() {
    let config = CONFIG.replace("\"90s\"", "\"5 parsecs\"");
    let files = Files::new(&config, SSH_CONFIG);

    let said = files.check_fails();

    assert!(said.contains(&files.at(&config, "parsecs")), "{said}");
    assert!(said.contains("idle_timeout = \"5 parsecs\""), "{said}");
}

#[test]
fn check_rejects_duplicate_forward_names_naming_both_lines() {
    let config = CONFIG.replace("listen = \"5432\"", "name = \"web\"\nlisten = \"5432\"");
    let files = Files::new(&config, SSH_CONFIG);

    let said = files.check_fails();

    let second = line_of(&config, "listen = \"5432\"") - 1;
    let first = line_of(&config, "name = \"web\"");
    let at = format!("{}:{second}:", files.config.display());
    assert!(said.contains(&at), "not at the second name, {at}: {said}");
    assert!(said.contains("duplicate forward name"), "{said}");
    assert!(said.contains(&format!("\"web\" at line {first}")), "{said}");
}

#[test]
fn check_rejects_a_non_loopback_listen_unless_allowed() {
    let exposed = CONFIG.replace("127.0.0.1:8080", "0.0.0.0:8080");
    let files = Files::new(&exposed, SSH_CONFIG);

    let said = files.check_fails();

    assert!(said.contains(&files.at(&exposed, "0.0.0.0:8080")), "{said}");
    assert!(said.contains("listen = \"0.0.0.0:8080\""), "{said}");
    assert!(said.contains("allow_non_loopback"), "{said}");

    let allowed = exposed.replace(
        "target = \"localhost:80\"",
        "target = \"localhost:80\"\nallow_non_loopback = true",
    );
    let output = Files::new(&allowed, SSH_CONFIG).check();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_has_line(
        &stdout(&output),
        "  web: 0.0.0.0:8080 -> srv -> localhost:80",
    );
}

#[test]
fn check_fails_naming_a_missing_config_file() {
    let dir = temp_dir();
    let missing = dir.path().join("absent.toml");

    let output = run_cli(["check", "--config", common::path_str(&missing)]);

    let said = assert_failed(&output);
    assert!(said.contains(common::path_str(&missing)), "{said}");
}

#[test]
fn check_rejects_a_bad_ssh_config_naming_its_file_and_line() {
    let ssh_config = SSH_CONFIG.replace("Port 2222", "Port notaport");
    let files = Files::new(CONFIG, &ssh_config);

    let said = files.check_fails();

    let at = format!(
        "{}:{}:",
        files.ssh_config.display(),
        line_of(&ssh_config, "notaport")
    );
    assert!(said.contains(&at), "no {at:?} in: {said}");
}

#[test]
fn check_rejects_a_host_with_proxy_command() {
    let ssh_config = format!("{SSH_CONFIG}    ProxyCommand nc %h %p\n");
    let files = Files::new(CONFIG, &ssh_config);

    let said = files.check_fails();

    assert!(said.contains("ProxyCommand"), "{said}");
    assert!(said.contains("host srv"), "the host is not named: {said}");
}

#[test]
fn check_rejects_an_algorithm_list_with_nothing_usable_naming_option_value_and_line() {
    let ssh_config = format!("{SSH_CONFIG}    KexAlgorithms sntrup761x25519-sha512@openssh.com\n");
    let files = Files::new(CONFIG, &ssh_config);

    let said = files.check_fails();

    let at = format!(
        "{}:{}:",
        files.ssh_config.display(),
        line_of(&ssh_config, "KexAlgorithms")
    );
    for needed in [
        at.as_str(),
        "KexAlgorithms",
        "sntrup761x25519-sha512@openssh.com",
    ] {
        assert!(said.contains(needed), "no {needed:?} in: {said}");
    }
}

#[test]
fn check_prints_the_jump_chain_and_algorithms() {
    let ssh_config = format!(
        "{SSH_CONFIG}    Ciphers aes128-ctr,3des-cbc\n    ProxyJump carol@hop1:2201,hop2\n\
         Host hop2\n    HostName hop2.example.net\n"
    );
    let files = Files::new(CONFIG, &ssh_config);

    let output = files.check();

    assert!(output.status.success(), "check failed: {}", stderr(&output));
    let srv = section(&stdout(&output), "host srv");
    assert_has_line(
        &srv,
        &format!(
            "  jump hosts: carol@hop1:2201 -> {}@hop2.example.net:22",
            common::current_user()
        ),
    );
    assert_has_line(&srv, "  algorithms: ciphers aes128-ctr");
}

/// The example names `~/.ssh/config`, which, as for OpenSSH, may be missing.
#[test]
fn example_config_checks_with_an_empty_home() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/example.toml");

    let output = run_cli(["check", "--config", common::path_str(&example)]);

    assert!(output.status.success(), "example: {}", stderr(&output));
    let out = stdout(&output);
    assert!(
        out.lines()
            .any(|line| line.starts_with("ssh_config: ") && line.ends_with("/.ssh/config")),
        "{out}"
    );
    let srv11 = section(&out, "host srv11");
    assert_has_line(&srv11, "  hostname: srv11.example.net");
    assert_has_line(&srv11, "  strict host key checking: accept-new");
    let forwards = section(&out, "forwards");
    assert_has_line(&forwards, "  smb: 127.0.0.1:4445 -> srv11 -> localhost:445");
    assert_has_line(&forwards, "  office: 127.0.0.1:1080 -> srv11 -> socks");
    assert_has_line(
        &forwards,
        "    SOCKS4/4a/5 proxy: each client names its destination, which srv11 resolves",
    );
}

/// A config file and the ssh_config it names, side by side in a temp dir.
struct Files {
    config: PathBuf,
    ssh_config: PathBuf,
    _dir: TempDir,
}

impl Files {
    fn new(config: &str, ssh_config: &str) -> Files {
        let dir = temp_dir();
        let files = Files {
            config: dir.path().join("lazytunnel.toml"),
            ssh_config: dir.path().join("ssh_config"),
            _dir: dir,
        };
        common::write_file(&files.config, config);
        common::write_file(&files.ssh_config, ssh_config);
        files
    }

    /// `lazytunnel check --config CONFIG`.
    fn check(&self) -> Output {
        run_cli(["check", "--config", common::path_str(&self.config)])
    }

    /// Runs `check`, asserts it fails, and returns what it said.
    fn check_fails(&self) -> String {
        assert_failed(&self.check())
    }

    /// `CONFIG:LINE:` for the line of `text` (the config's) holding `needle`.
    fn at(&self, text: &str, needle: &str) -> String {
        format!("{}:{}:", self.config.display(), line_of(text, needle))
    }
}

fn temp_dir() -> TempDir {
    tempfile::Builder::new()
        .prefix("lazytunnel-cli-test-")
        .tempdir()
        .expect("could not create a temp dir")
}

/// Asserts a clean failure (non-zero exit, no panic); returns stderr.
fn assert_failed(output: &Output) -> String {
    let said = stderr(output);
    assert!(!output.status.success(), "succeeded: {}", stdout(output));
    assert!(!said.contains("panicked"), "{said}");
    said
}

/// The 1-based number of the first line of `text` holding `needle`.
fn line_of(text: &str, needle: &str) -> usize {
    let index = text.lines().position(|line| line.contains(needle));
    index.unwrap_or_else(|| panic!("no {needle:?} in:\n{text}")) + 1
}

/// The blank-line-separated block of `out` whose first line is `heading`.
fn section(out: &str, heading: &str) -> String {
    out.split("\n\n")
        .find(|block| block.lines().next() == Some(heading))
        .unwrap_or_else(|| panic!("no {heading:?} section in:\n{out}"))
        .to_string()
}

fn assert_has_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "no line {line:?} in:\n{text}"
    );
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
