//! Specs of `lazytunnel install` and `uninstall`: the launchd plist read back by a real plist
//! parser (Python's plistlib), the systemd units checked key by key and by `systemd-analyze
//! verify`, and files written and removed where launchd or systemd look for them.

use crate::{common, service_support};

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::daemon::lazytunnel_bin;
use common::{path_str, write_file};
use service_support::Setup;

/// Three forwards, one IPv6, one SOCKS (a TCP listener like the others), in a directory whose
/// name needs escaping in XML and quoting in units.
const CONFIG: &str = "ssh_config = \"/dev/null\"\nexit_when_idle = \"10m\"\n\
    [[forward]]\nname = \"smb\"\nlisten = \"127.0.0.1:4445\"\nhost = \"srv\"\ntarget = \"localhost:445\"\n\
    [[forward]]\nlisten = \"[::1]:5432\"\nhost = \"srv\"\ntarget = \"db:5432\"\n\
    [[forward]]\nname = \"proxy\"\nlisten = \"1080\"\nhost = \"srv\"\nsocks = true\n\
    [[forward]]\nname = \"docker\"\nlisten = \"/tmp/lt docker.sock\"\nlisten_mode = \"0660\"\n\
    host = \"srv\"\ntarget = \"/var/run/docker.sock\"\n";

/// A setup whose config sits in a directory named `a b&c<d>%h$x`.
fn setup() -> (Setup, std::path::PathBuf) {
    let setup = Setup::new(CONFIG);
    let odd = setup.dir().join("a b&c<d>%h$x");
    std::fs::create_dir_all(&odd).expect("create the odd directory");
    let config = odd.join("config.toml");
    write_file(&config, CONFIG);
    (setup, config)
}

fn lazytunnel(setup: &Setup, args: &[&str]) -> Output {
    let output = setup
        .sandbox
        .command()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("run lazytunnel");
    assert!(
        output.status.success(),
        "lazytunnel {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

/// `lazytunnel install ARGS --config CONFIG`, which must succeed.
fn install(setup: &Setup, config: &Path, args: &[&str]) -> Output {
    let mut all = vec!["install"];
    all.extend_from_slice(args);
    all.extend(["--config", path_str(config)]);
    lazytunnel(setup, &all)
}

/// Flattens the plist through plistlib (a parse error fails the test) into `key.path -> value`
/// pairs: `Label`, `ProgramArguments.0`, `Sockets.smb.SockNodeName`, `KeepAlive` = `True`.
const FLATTEN: &str = r#"
import plistlib, sys
def walk(prefix, value):
    if isinstance(value, dict):
        for key, item in value.items():
            walk(prefix + [str(key)], item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            walk(prefix + [str(i)], item)
    else:
        print(".".join(prefix) + "\t" + str(value))
walk([], plistlib.loads(sys.stdin.buffer.read()))
"#;

fn parse_plist(xml: &[u8]) -> BTreeMap<String, String> {
    let mut python = Command::new("python3")
        .args(["-c", FLATTEN])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with plistlib) must be installed");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(xml)
        .expect("write the plist");
    let out = python.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "plistlib refused the plist: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(xml)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn launchd_keepalive_plist_runs_the_absolute_binary_in_the_foreground() {
    let (setup, config) = setup();
    let out = install(&setup, &config, &["launchd", "--print"]);
    let plist = parse_plist(&out.stdout);
    let bin = std::fs::canonicalize(lazytunnel_bin().unwrap()).unwrap();
    let program: Vec<&str> = (0..)
        .map_while(|i| plist.get(&format!("ProgramArguments.{i}")))
        .map(String::as_str)
        .collect();
    assert_eq!(
        program,
        [
            path_str(&bin),
            "run",
            "--foreground",
            "--config",
            path_str(&config)
        ]
    );
    assert_eq!(plist["Label"], "io.lazytunnel.agent");
    assert_eq!(plist["KeepAlive"], "True");
    assert_eq!(plist["RunAtLoad"], "True");
    assert!(plist["StandardErrorPath"].starts_with('/'));
    assert!(!plist.keys().any(|k| k.starts_with("Sockets")), "{plist:?}");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("launchctl bootstrap gui/"), "{said}");
    assert!(said.contains("SSH_AUTH_SOCK"), "{said}");
}

#[test]
fn launchd_socket_activated_plist_has_a_socket_per_forward_named_after_it() {
    let (setup, config) = setup();
    let out = install(
        &setup,
        &config,
        &[
            "launchd",
            "--socket-activated",
            "--label",
            "net.example.tunnels",
            "--print",
        ],
    );
    let plist = parse_plist(&out.stdout);
    assert_eq!(plist["Label"], "net.example.tunnels");
    assert!(
        !plist.contains_key("KeepAlive"),
        "launchd must start it on demand"
    );
    assert!(
        !plist.contains_key("RunAtLoad"),
        "launchd must start it on demand"
    );
    let sockets: BTreeMap<&str, &str> = plist
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("Sockets.")?, v.as_str())))
        .collect();
    let expected = BTreeMap::from([
        ("smb.SockNodeName", "127.0.0.1"),
        ("smb.SockServiceName", "4445"),
        ("smb.SockFamily", "IPv4"),
        ("smb.SockType", "stream"),
        ("--1_5432.SockNodeName", "::1"),
        ("--1_5432.SockServiceName", "5432"),
        ("--1_5432.SockFamily", "IPv6"),
        ("--1_5432.SockType", "stream"),
        ("proxy.SockNodeName", "127.0.0.1"),
        ("proxy.SockServiceName", "1080"),
        ("proxy.SockFamily", "IPv4"),
        ("proxy.SockType", "stream"),
        ("docker.SockPathName", "/tmp/lt docker.sock"),
        ("docker.SockPathMode", "432"),
        ("docker.SockType", "stream"),
    ]);
    assert_eq!(sockets, expected);
}

#[test]
fn install_launchd_writes_the_agent_and_uninstall_removes_it() {
    let (setup, config) = setup();
    install(&setup, &config, &["launchd"]);
    let plist = setup
        .sandbox
        .home()
        .join("Library/LaunchAgents/io.lazytunnel.agent.plist");
    let text = std::fs::read(&plist).expect("the plist was written");
    parse_plist(&text);

    let out = lazytunnel(&setup, &["uninstall", "launchd"]);
    assert!(!plist.exists(), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Splits `--print` output into `(path, content)` at its `==> PATH <==` headers.
fn printed_files(out: &str) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = Vec::new();
    for line in out.lines() {
        if let Some(path) = line
            .strip_prefix("==> ")
            .and_then(|l| l.strip_suffix(" <=="))
        {
            files.push((path.to_string(), String::new()));
        } else if let Some((_, text)) = files.last_mut() {
            text.push_str(line);
            text.push('\n');
        }
    }
    files
}

fn keys<'a>(unit: &'a str, key: &str) -> Vec<&'a str> {
    unit.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn systemd_socket_activated_units_list_every_forward_and_pass_verification() {
    let (setup, config) = setup();
    let out = install(
        &setup,
        &config,
        &["systemd", "--socket-activated", "--print"],
    );
    let files = printed_files(&String::from_utf8_lossy(&out.stdout));
    let unit_dir = setup.sandbox.home().join(".config/systemd/user");
    let names: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        names,
        [
            path_str(&unit_dir.join("lazytunnel.service")),
            path_str(&unit_dir.join("lazytunnel.socket"))
        ]
    );
    let (service, socket) = (&files[0].1, &files[1].1);
    assert_eq!(keys(service, "Type"), ["notify"]);
    let exec = keys(service, "ExecStart");
    assert_eq!(exec.len(), 1);
    assert!(
        exec[0].contains("\"run\" \"--foreground\" \"--config\""),
        "{service}"
    );
    assert!(exec[0].contains("%%h$$x/config.toml"), "{service}");
    assert!(
        keys(service, "WantedBy").is_empty(),
        "the socket starts the service"
    );
    assert_eq!(
        keys(socket, "ListenStream"),
        [
            "127.0.0.1:4445",
            "[::1]:5432",
            "127.0.0.1:1080",
            "/tmp/lt docker.sock"
        ]
    );
    assert_eq!(keys(socket, "SocketMode"), ["0660"]);
    assert_eq!(keys(socket, "WantedBy"), ["sockets.target"]);
    assert_eq!(
        keys(socket, "FileDescriptorName"),
        ["lazytunnel+by-address"]
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("systemctl --user enable --now lazytunnel.socket"),
        "{said}"
    );
    assert!(said.contains("import-environment SSH_AUTH_SOCK"), "{said}");

    verify(setup.dir(), &files);
}

#[test]
fn systemd_service_alone_is_enabled_for_the_login_session_and_passes_verification() {
    let (setup, config) = setup();
    let out = install(&setup, &config, &["systemd", "--print"]);
    let files = printed_files(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(files.len(), 1);
    let service = &files[0].1;
    assert_eq!(keys(service, "WantedBy"), ["default.target"]);
    assert_eq!(keys(service, "Restart"), ["on-failure"]);
    verify(setup.dir(), &files);
}

/// `systemd-analyze verify` on the units, written to `dir`. It needs no running systemd;
/// where it is missing the check is skipped with a message, except under `CI=true`, where
/// that fails (scripts/test installs it).
fn verify(dir: &Path, files: &[(String, String)]) {
    let units = dir.join("units");
    std::fs::create_dir_all(&units).unwrap();
    let mut paths = Vec::new();
    for (path, text) in files {
        let name = Path::new(path).file_name().unwrap();
        let written = units.join(name);
        write_file(&written, text);
        paths.push(written);
    }
    let output = match Command::new("systemd-analyze")
        .arg("verify")
        .args(&paths)
        .output()
    {
        Ok(output) => output,
        Err(e) => {
            common::prerequisite_missing(&format!(
                "cannot run systemd-analyze verify: {e} (install the systemd package)"
            ));
            return;
        }
    };
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "systemd-analyze verify failed: {said}"
    );
    assert!(
        !said.contains("lazytunnel."),
        "systemd-analyze complained: {said}"
    );
}

#[test]
fn a_config_path_with_a_newline_is_refused_instead_of_injecting_directives() {
    let setup = Setup::new(CONFIG);
    let odd = setup.dir().join("x\nExecStartPre=touch pwned\n");
    std::fs::create_dir_all(&odd).expect("create the directory");
    let config = odd.join("config.toml");
    write_file(&config, CONFIG);
    for manager in ["systemd", "launchd"] {
        let output = setup
            .sandbox
            .command()
            .args(["install", manager, "--print", "--config"])
            .arg(&config)
            .output()
            .expect("run lazytunnel");
        assert!(!output.status.success(), "{manager}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("control character"), "{manager}: {stderr}");
        assert!(!String::from_utf8_lossy(&output.stdout).contains("ExecStartPre"));
    }
}
