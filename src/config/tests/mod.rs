//! File-level tests: whole documents. Ad hoc (`-L`/`-D`) configs, SOCKS and socket forwards
//! are in `forwards`; refused inputs in `rejects`.

mod forwards;
mod rejects;

use std::ffi::OsStr;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::*;

const FILE: &str = "/etc/lt/config.toml";
const EXAMPLE: &str = include_str!("../../../config/example.toml");
/// A valid forward, for documents testing something else.
const FORWARD: &str =
    "[[forward]]\nlisten = \"4445\"\nhost = \"srv11\"\ntarget = \"localhost:445\"\n";

fn home() -> Option<&'static OsStr> {
    Some(OsStr::new("/home/vit"))
}

fn parse(text: &str) -> Result<Config, ConfigError> {
    file::parse(text, Path::new(FILE), home())
}

/// Asserts that `text` is refused with an error at `line` whose message has every `needle`.
#[track_caller]
fn assert_refused(text: &str, line: usize, needles: &[&str]) {
    let message = match parse(text) {
        Ok(config) => panic!("accepted: {text}\n{config:?}"),
        Err(e) => e.to_string(),
    };
    let prefix = format!("{FILE}:{line}:");
    assert!(
        message.starts_with(&prefix),
        "wanted {prefix}, got: {message}"
    );
    for needle in needles {
        assert!(message.contains(needle), "wanted {needle:?} in: {message}");
    }
}

/// A document with one forward whose keys are `body`.
fn with_forward(body: &str) -> String {
    format!("[[forward]]\n{body}")
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn example_file_parses_to_what_its_comments_say() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.ssh_config, Path::new("/home/vit/.ssh/config"));
    assert_eq!(
        config.control_socket.as_deref(),
        Some(Path::new("/home/vit/.local/state/lazytunnel/control.sock"))
    );
    assert_eq!(
        config.defaults,
        Defaults {
            idle_timeout: Some(Duration::from_secs(300)),
            connect_timeout: Some(Duration::from_secs(10)),
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: Some(3),
            window_size: Some(WindowSize::Auto),
        }
    );
    assert_eq!(
        config.limits,
        Limits {
            max_connections: 4096,
            receive_budget: 64 << 20,
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
        }
    );
    let srv11 = HostOverride {
        hostname: Some("srv11.example.net".into()),
        port: Some(22),
        user: Some("vit".into()),
        identity_file: Some(vec![
            PathBuf::from("/home/vit/.ssh/id_ed25519"),
            PathBuf::from("/home/vit/.ssh/id_rsa"),
        ]),
        identities_only: Some(true),
        user_known_hosts_file: Some(vec![PathBuf::from("/home/vit/.ssh/known_hosts")]),
        strict_host_key_checking: Some(StrictHostKeyChecking::AcceptNew),
        idle_timeout: Some(Duration::from_secs(900)),
        connect_timeout: Some(Duration::from_secs(20)),
        keepalive_interval: Some(Duration::from_secs(30)),
        keepalive_max: Some(4),
        window_size: Some(WindowSize::Fixed(8 << 20)),
    };
    assert_eq!(config.hosts.len(), 1);
    assert_eq!(config.hosts.get("srv11"), Some(&srv11));

    let [smb, postgres, office, docker] = config.forwards.as_slice() else {
        panic!("{:?}", config.forwards)
    };
    assert_eq!(smb.name, "smb");
    assert_eq!(smb.listen, sa("127.0.0.1:4445"));
    assert_eq!(smb.host.to_string(), "srv11");
    assert_eq!(smb.target.to_string(), "localhost:445");
    assert!(!smb.allow_non_loopback);
    assert_eq!(config.host_override(&smb.host), Some(&srv11));

    assert_eq!(postgres.name, "5432");
    assert_eq!(postgres.listen, sa("127.0.0.1:5432"));
    let host = &postgres.host;
    assert_eq!(host.alias, "deploy@bastion.example.net:2222");
    assert_eq!(
        (host.user.as_deref(), host.host.as_str(), host.port),
        (Some("deploy"), "bastion.example.net", Some(2222))
    );
    assert_eq!(postgres.target.to_string(), "db.internal:5432");
    assert_eq!(config.host_override(host), None);

    assert_eq!(office.name, "office");
    assert_eq!(office.listen, sa("127.0.0.1:1080"));
    assert_eq!(office.target, ForwardTarget::Socks);
    assert_eq!(office.host, smb.host);

    assert_eq!(docker.name, "docker");
    let path = PathBuf::from("/home/vit/.docker-srv11.sock");
    assert_eq!(docker.listen, Listen::Unix { path, mode: 0o600 });
    assert_eq!(docker.target.to_string(), "/var/run/docker.sock");
    assert_eq!(config.source.as_deref(), Some(Path::new(FILE)));
}

#[test]
fn exit_when_idle_is_a_duration() {
    let config = parse(&format!("exit_when_idle = \"10m\"\n{FORWARD}")).unwrap();
    assert_eq!(config.exit_when_idle, Some(Duration::from_secs(600)));
}

#[test]
fn a_minimal_file_gets_the_builtin_defaults() {
    let config = parse(FORWARD).unwrap();
    assert_eq!(config.ssh_config, Path::new("/home/vit/.ssh/config"));
    assert_eq!(config.control_socket, None);
    assert_eq!(config.defaults, Defaults::default());
    assert_eq!(config.limits, Limits::default());
    assert_eq!(
        config.exit_when_idle, None,
        "exit_when_idle is off by default"
    );
    let d = config.defaults;
    assert_eq!(d.effective_idle_timeout(), Duration::from_secs(300));
    assert_eq!(d.effective_connect_timeout(), Duration::from_secs(10));
    assert_eq!(d.effective_keepalive_interval(), Duration::from_secs(15));
    assert_eq!(d.effective_keepalive_max(), 3);
    assert!(config.hosts.is_empty());
    assert_eq!(config.forwards.len(), 1);
}

#[test]
fn set_timers_win_over_builtin_defaults() {
    let config = parse(&format!(
        "idle_timeout = \"1h30m\"\nkeepalive_max = 7\n{FORWARD}"
    ))
    .unwrap();
    assert_eq!(
        config.defaults.effective_idle_timeout(),
        Duration::from_secs(5400)
    );
    assert_eq!(config.defaults.effective_keepalive_max(), 7);
    assert_eq!(config.defaults.connect_timeout, None);
}

#[test]
fn limits_take_sizes_with_units_and_backoff_max_follows_a_larger_min() {
    let config = parse(&format!(
        "receive_budget = \"512 KiB\"\nmax_connections = 10\nbackoff_min = \"2m\"\n{FORWARD}"
    ))
    .unwrap();
    assert_eq!(config.limits.receive_budget, 512 << 10);
    assert_eq!(config.limits.max_connections, 10);
    assert_eq!(config.limits.backoff_min, Duration::from_secs(120));
    assert_eq!(config.limits.backoff_max, Duration::from_secs(120));
    assert_eq!(parse_size("1048576"), Ok(1 << 20));
    assert_eq!("auto".parse(), Ok(WindowSize::Auto));
    assert_eq!("64KiB".parse(), Ok(WindowSize::Fixed(64 << 10)));
    assert_eq!("1GiB".parse(), Ok(WindowSize::Fixed(1 << 30)));
    assert_eq!(parse_size("1GiB"), Ok(1 << 30));
}

#[test]
fn ipv6_addresses_work_everywhere() {
    let text = with_forward(
        "listen = \"[::1]:5432\"\nhost = \"vit@[2001:db8::1]:22\"\ntarget = \"[::1]:5432\"\n",
    );
    let config = parse(&text).unwrap();
    let f = &config.forwards[0];
    assert_eq!(f.listen, sa("[::1]:5432"));
    assert_eq!(f.name, "--1_5432");
    assert_eq!(f.host.host, "2001:db8::1");
    assert_eq!(f.host.to_string(), "vit@[2001:db8::1]:22");
    assert_eq!(f.target.to_string(), "[::1]:5432");
}

#[test]
fn relative_paths_are_relative_to_the_config_file() {
    let text = format!(
        "ssh_config = \"ssh/config\"\ncontrol_socket = \"run/ctl.sock\"\n\
         [host.a]\nidentity_file = [\"keys/id\", \"/abs/id\"]\n{FORWARD}"
    );
    let config = parse(&text).unwrap();
    assert_eq!(config.ssh_config, Path::new("/etc/lt/ssh/config"));
    assert_eq!(
        config.control_socket.as_deref(),
        Some(Path::new("/etc/lt/run/ctl.sock"))
    );
    let ids = config.hosts["a"].identity_file.clone().unwrap();
    assert_eq!(
        ids,
        [PathBuf::from("/etc/lt/keys/id"), PathBuf::from("/abs/id")]
    );
}

#[test]
fn tilde_without_home_is_an_error_only_when_used() {
    let no_home = |text: &str| file::parse(text, Path::new(FILE), None);
    let err = no_home(FORWARD).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{FILE}: ")) && err.contains("HOME"),
        "{err}"
    );
    let text = format!("ssh_config = \"/etc/ssh/ssh_config\"\n{FORWARD}");
    assert!(no_home(&text).is_ok());
    let text = format!("ssh_config = \"~/cfg\"\n{FORWARD}");
    let err = no_home(&text).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{FILE}:1:")) && err.contains("HOME is not set"),
        "{err}"
    );
}

#[test]
fn host_table_accepts_ip_hostnames_and_off() {
    let text =
        format!("[host.a]\nhostname = \"::1\"\nstrict_host_key_checking = \"off\"\n{FORWARD}");
    let host = &parse(&text).unwrap().hosts["a"];
    assert_eq!(host.hostname.as_deref(), Some("::1"));
    assert_eq!(
        host.strict_host_key_checking,
        Some(StrictHostKeyChecking::No)
    );
}

#[test]
fn host_override_matches_alias_then_bare_host() {
    let text =
        format!("[host.srv11]\nuser = \"a\"\n[host.\"b@srv11:2222\"]\nuser = \"b\"\n{FORWARD}");
    let config = parse(&text).unwrap();
    let user_for = |spec: &str| {
        let spec: HostSpec = spec.parse().unwrap();
        config.host_override(&spec).and_then(|h| h.user.clone())
    };
    assert_eq!(user_for("srv11").as_deref(), Some("a"));
    assert_eq!(user_for("x@srv11").as_deref(), Some("a"));
    assert_eq!(user_for("b@srv11:2222").as_deref(), Some("b"));
    assert_eq!(user_for("srv12"), None);
}

#[test]
fn load_names_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nope.toml");
    let err = Config::load(&path).unwrap_err();
    assert!(
        matches!(&err, ConfigError::Read { error, .. } if error.kind() == std::io::ErrorKind::NotFound)
    );
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
}

#[test]
fn load_refuses_huge_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "#".repeat(2 << 20)).unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.contains("larger than 1048576 bytes") && err.contains("config.toml"),
        "{err}"
    );
}

#[test]
fn load_reads_and_reports_errors_against_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, format!("ssh_config = \"ssh\"\n{FORWARD}")).unwrap();
    let config = Config::load(&path).unwrap();
    assert_eq!(config.ssh_config, dir.path().join("ssh"));
    assert_eq!(config.source.as_deref(), Some(path.as_path()));

    std::fs::write(
        &path,
        format!("ssh_config = \"/x\"\nidle_timeout = \"soon\"\n{FORWARD}"),
    )
    .unwrap();
    let err = Config::load(&path).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("{}:2:16: ", path.display())),
        "{err}"
    );
    assert!(err.contains("\"soon\""), "{err}");
}
