//! Differential property test of ssh_config reading: random files (see `generate`) resolved
//! by lazytunnel's library and by the real `ssh -G` (OpenSSH 9.2 in CI) must agree on
//! hostname, port, user, identity and certificate files, IdentitiesOnly, known_hosts files
//! (user and global), StrictHostKeyChecking, keepalive, connect timeout, jump hosts,
//! HostKeyAlias, and on whether the file is refused (at the same file:line where both name
//! one), up to the documented differences in [`DIFFERENCES`].
//!
//! CI runs `CASES` cases from `SEED`; `LAZYTUNNEL_DIFF_SEED` (decimal) and
//! `LAZYTUNNEL_DIFF_CASES` run others locally, e.g.
//! `LAZYTUNNEL_DIFF_SEED=7 LAZYTUNNEL_DIFF_CASES=5000 cargo test --test ssh_config_differential`.
//! Without `ssh` the test is skipped with a message, except under `CI=true`, where it fails.

mod generate;
mod openssh;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use lazytunnel::config::Config;
use lazytunnel::ssh_config::{HostConfig, SshConfigFile};

const SEED: u64 = 0x16_5eed;
const CASES: usize = 300;

/// Where lazytunnel differs from OpenSSH on purpose, each with the README sentence that says
/// so. [`expected`] turns OpenSSH's answer into lazytunnel's along exactly these lines.
const DIFFERENCES: &[(&str, &str)] = &[
    (
        "Match",
        "`Match` blocks are not applied: they are neutralised, in included files too (so they \
         cannot leak into the preceding `Host` block), and a warning names their file:line.",
    ),
    (
        "keepalive default",
        "Keepalives stay on even when ssh_config sets none (`ServerAliveInterval 0` keeps our \
         default): a daemon must notice dead links.",
    ),
    (
        "connect timeout default",
        "Precedence for a host's settings: the forward's own `user@`/`:port` > `[host.NAME]` > \
         ssh_config > the top-level defaults above > built-in defaults (5m, 10s, 15s × 3).",
    ),
    (
        "ask",
        "An unknown host is refused under StrictHostKeyChecking `yes` (the default) or `ask` \
         (a daemon cannot ask; the message says how to add the key)",
    ),
    (
        "unknown keywords",
        "A keyword lazytunnel does not know is a warning naming file:line, not an error as in \
         OpenSSH (your `ssh` may be newer, or Apple's), unless `IgnoreUnknown` lists it.",
    ),
];

/// Each documented difference is documented: its sentence is in the README (line breaks and
/// indentation aside), so the README cannot drop one while the test still applies it.
#[test]
fn every_difference_is_stated_in_the_readme() {
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let readme = words(include_str!("../../README.md"));
    for (name, sentence) in DIFFERENCES {
        assert!(
            readme.contains(&words(sentence)),
            "the README no longer says, for {name}: {sentence}"
        );
    }
}

/// One resolution in `ssh -G`'s terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct View {
    pub host_name: String,
    pub port: u16,
    pub user: String,
    pub identity_files: Vec<String>,
    pub certificate_files: Vec<String>,
    pub identities_only: bool,
    pub user_known_hosts: Vec<String>,
    pub global_known_hosts: Vec<String>,
    pub strict: String,
    pub keepalive_interval: u64,
    pub keepalive_max: u64,
    pub connect_timeout: u64,
    /// Every hop, first to last, as `user@host:port`.
    pub jumps: Vec<String>,
    pub host_key_alias: Option<String>,
}

/// What lazytunnel must show, given what OpenSSH resolved: paths with `~` expanded (`ssh -G`
/// leaves it in key files and global known_hosts files), `none` as no files, and the
/// documented differences applied.
fn expected(mut view: View, home: &Path) -> View {
    let paths = |list: Vec<String>| -> Vec<String> {
        list.into_iter()
            .filter(|p| !p.eq_ignore_ascii_case("none"))
            .map(|p| match p.strip_prefix('~') {
                Some(rest) => format!("{}{rest}", home.display()),
                None => p,
            })
            .collect()
    };
    view.identity_files = paths(view.identity_files);
    view.certificate_files = paths(view.certificate_files);
    view.user_known_hosts = paths(view.user_known_hosts);
    view.global_known_hosts = paths(view.global_known_hosts);
    let defaults = Config::from_str(&toml("x"), Path::new("/t.toml")).expect("config");
    // "ask" (and true/false, which are yes/no).
    view.strict = match view.strict.as_str() {
        "true" | "ask" => "yes".into(),
        "false" => "no".into(),
        other => other.into(),
    };
    // "keepalive default" and "connect timeout default".
    if view.keepalive_interval == 0 {
        view.keepalive_interval = defaults.defaults.effective_keepalive_interval().as_secs();
    }
    if view.connect_timeout == 0 {
        view.connect_timeout = defaults.defaults.effective_connect_timeout().as_secs();
    }
    view
}

fn ours_view(host: &HostConfig) -> View {
    let paths = |list: &[PathBuf]| list.iter().map(|p| p.display().to_string()).collect();
    let mut jumps = Vec::new();
    let mut next = host.jump.as_deref();
    while let Some(hop) = next {
        jumps.insert(0, format!("{}@{}:{}", hop.user, hop.host_name, hop.port));
        next = hop.jump.as_deref();
    }
    View {
        host_name: host.host_name.clone(),
        port: host.port,
        user: host.user.clone(),
        identity_files: paths(&host.identity_files),
        certificate_files: paths(&host.certificate_files),
        identities_only: host.identities_only,
        user_known_hosts: paths(&host.user_known_hosts_files),
        global_known_hosts: paths(&host.global_known_hosts_files),
        strict: host.strict_host_key_checking.to_string(),
        keepalive_interval: host.keepalive_interval.as_secs(),
        keepalive_max: u64::from(host.keepalive_max),
        connect_timeout: host.connect_timeout.as_secs(),
        jumps,
        host_key_alias: host.host_key_alias.clone(),
    }
}

fn toml(host: &str) -> String {
    format!("[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"{host}\"\ntarget = \"x:1\"\n")
}

fn ours(file: &Path, case: &generate::Case, home: &Path) -> Result<View, String> {
    let user = case
        .user
        .as_ref()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let port = case.port.map(|p| format!(":{p}")).unwrap_or_default();
    let spec = format!("{user}{}{port}", case.host);
    let config = Config::from_str(&toml(&spec), Path::new("/t.toml")).expect("test config");
    let text = &case.main;
    let ssh = SshConfigFile::parse(file, text, home.to_owned()).map_err(|e| e.to_string())?;
    let resolved = ssh
        .resolve(&config, &config.forwards[0].host)
        .map_err(|e| e.to_string())?;
    Ok(ours_view(&resolved))
}

/// `ssh`'s answer; when it refuses only keywords it does not know, asked again with them in
/// IgnoreUnknown ("unknown keywords"), so the rest of the file is still compared.
fn theirs(file: &Path, case: &generate::Case) -> Result<View, String> {
    let port = case.port.map(|p| p.to_string());
    let hop = openssh::Hop {
        host: &case.host,
        user: case.user.as_deref(),
        port: port.as_deref(),
        jump: None,
    };
    match openssh::resolve(file, &hop, &[], 0) {
        Err(e) if e.contains("Bad configuration option: frobnicateall") => {
            openssh::resolve(file, &hop, &["-oIgnoreUnknown=frobnicateall".into()], 0)
        }
        other => other,
    }
}

/// Whether two refusals name the same file:line, when both name one (`PATH:LINE` in ours,
/// `PATH line LINE` in OpenSSH's, the first one it reports).
fn agree_on_line(ours: &str, theirs: &str, dir: &str) -> bool {
    match (location(ours, dir), location(theirs, dir)) {
        (Some(a), Some(b)) => a == b,
        _ => true,
    }
}

fn location(text: &str, dir: &str) -> Option<(String, usize)> {
    let start = text.find(dir)?;
    let rest = &text[start..];
    let end = rest.find([' ', ':'])?;
    let after = rest[end..]
        .strip_prefix(':')
        .or_else(|| rest[end..].strip_prefix(" line "))?;
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    Some((rest[..end].to_string(), digits.parse().ok()?))
}

/// OpenSSH's home directory for `~`, as `ssh -G` expands it in UserKnownHostsFile.
fn openssh_home() -> Option<PathBuf> {
    let output = Command::new("ssh")
        .args(["-G", "-F", "/dev/null", "probe"])
        .stdin(Stdio::null())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let files = text
        .lines()
        .find_map(|l| l.strip_prefix("userknownhostsfile "))?;
    let first = files.split(' ').next()?;
    Some(PathBuf::from(first.strip_suffix("/.ssh/known_hosts")?))
}

#[test]
fn random_ssh_configs_resolve_as_ssh_dash_g_does() {
    let Some(home) = openssh_home() else {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "ssh (OpenSSH's client) is missing; scripts/test installs it"
        );
        eprintln!("skipping: no `ssh -G` here (install openssh-client to run this test)");
        return;
    };
    let env = |name: &str| std::env::var(name).ok().and_then(|v| v.parse().ok());
    let seed: u64 = env("LAZYTUNNEL_DIFF_SEED").unwrap_or(SEED);
    let cases: u64 = env("LAZYTUNNEL_DIFF_CASES").unwrap_or(CASES as u64);

    let mut rng = generate::Rng::new(seed);
    let (mut agreed_ok, mut agreed_refused, mut failures) = (0, 0, Vec::new());
    for index in 0..cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path().display().to_string();
        let case = generate::case(&mut rng, &d);
        let main = dir.path().join("config");
        std::fs::write(&main, &case.main).expect("write config");
        for (name, text) in &case.included {
            std::fs::write(dir.path().join(name), text).expect("write include");
        }
        let ours = ours(&main, &case, &home);
        let theirs = theirs(&main, &case).map(|v| expected(v, &home));
        match (&ours, &theirs) {
            (Ok(a), Ok(b)) if a == b => agreed_ok += 1,
            // Both refuse; where both name the line, it is the same one.
            (Err(a), Err(b)) if agree_on_line(a, b, &d) => agreed_refused += 1,
            _ => failures.push(format!(
                "case {index} (seed {seed:#x}), host {} (user {:?}, port {:?}):\n--- config\n{}{}\n--- lazytunnel\n{ours:#?}\n--- ssh -G\n{theirs:#?}",
                case.host,
                case.user,
                case.port,
                case.main,
                case.included
                    .iter()
                    .map(|(n, t)| format!("--- {n}\n{t}"))
                    .collect::<String>(),
            )),
        }
    }
    eprintln!(
        "{cases} cases from seed {seed:#x}: {agreed_ok} resolved alike, {agreed_refused} refused by both, {} differ",
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ; the first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(5)].join("\n\n")
    );
}
