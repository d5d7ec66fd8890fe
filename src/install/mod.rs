//! `lazytunnel install launchd|systemd` and `uninstall`: writing a launchd agent or systemd
//! user units that run this binary with an absolute config path, and loading them with
//! launchctl (on macOS) or `systemctl --user`.
//!
//! `--print` writes nothing: the files go to stdout (systemd's each under a `==> PATH <==`
//! header) and what would be run, and the notes, to stderr.

pub mod launchd;
pub mod systemd;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, anyhow, bail};

use crate::config::{Config, Listen};

/// Which service manager to install for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Launchd,
    Systemd,
}

/// What `install` was asked for.
#[derive(Debug, Clone)]
pub struct Request {
    pub manager: Manager,
    pub socket_activated: bool,
    /// launchd's `Label`; ignored for systemd.
    pub label: String,
    pub print: bool,
    pub config: PathBuf,
}

/// What a unit or plist runs.
#[derive(Debug, Clone)]
pub struct Job {
    pub program: PathBuf,
    pub config: PathBuf,
    /// Where launchd writes the daemon's stderr.
    pub log: PathBuf,
    /// `(forward name, listen address or socket path)` when socket-activated.
    pub sockets: Option<Vec<(String, Listen)>>,
}

impl Job {
    /// `PROGRAM run --foreground --config CONFIG`: the service manager does the supervising.
    pub fn command(&self) -> Vec<String> {
        vec![
            self.program.to_string_lossy().into_owned(),
            "run".into(),
            "--foreground".into(),
            "--config".into(),
            self.config.to_string_lossy().into_owned(),
        ]
    }
}

/// The host part of a listen address as socket managers take it: a scoped IPv6 address keeps
/// its zone (`fe80::1%lo`), by interface name where the index has one.
pub fn node_name(listen: &SocketAddr) -> String {
    match listen {
        SocketAddr::V6(v6) if v6.scope_id() != 0 => {
            format!("{}%{}", v6.ip(), interface_name(v6.scope_id()))
        }
        _ => listen.ip().to_string(),
    }
}

fn interface_name(index: u32) -> String {
    let mut buf = [0 as libc::c_char; libc::IF_NAMESIZE];
    // SAFETY: `buf` has the IF_NAMESIZE bytes if_indextoname may write.
    let name = unsafe { libc::if_indextoname(index, buf.as_mut_ptr()) };
    if name.is_null() {
        return index.to_string();
    }
    // SAFETY: on success if_indextoname wrote a NUL-terminated name into `buf`.
    unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// A command to run (or show); `may_fail` for undoing what may not be there.
struct Step {
    argv: Vec<String>,
    may_fail: bool,
}

/// Files to write and commands that load them.
struct Plan {
    files: Vec<(PathBuf, String)>,
    steps: Vec<Step>,
    /// Whether the commands can run here (launchctl exists only on macOS).
    runnable: bool,
    notes: Vec<String>,
}

pub fn install(request: &Request) -> anyhow::Result<()> {
    let config_path = std::fs::canonicalize(&request.config)
        .with_context(|| format!("cannot find config file {}", request.config.display()))?;
    let config = Config::load(&config_path)?;
    let program = std::env::current_exe()
        .and_then(std::fs::canonicalize)
        .context("cannot find the lazytunnel binary's path")?;
    for path in [&program, &config_path] {
        let Some(text) = path.to_str() else {
            bail!(
                "{} is not valid UTF-8, which a unit or plist cannot hold",
                path.display()
            );
        };
        // A newline would end the ExecStart= line and start a directive of the path's choosing.
        if text.chars().any(char::is_control) {
            bail!(
                "{text:?} contains a control character, which a unit or plist cannot hold \
                 safely: rename it"
            );
        }
    }
    let home = home()?;
    let sockets = request.socket_activated.then(|| {
        config
            .forwards
            .iter()
            .map(|f| (f.name.clone(), f.listen.clone()))
            .collect()
    });
    let job = Job {
        program,
        config: config_path.clone(),
        log: home.join("Library/Logs/lazytunnel.log"),
        sockets,
    };
    let mut plan = match request.manager {
        Manager::Launchd => launchd_plan(&job, &request.label, &home)?,
        Manager::Systemd => systemd_plan(&job)?,
    };
    if request.socket_activated && config.exit_when_idle.is_none() {
        plan.notes.push(format!(
            "{} sets no exit_when_idle: once the first connection starts lazytunnel, it keeps \
             running. Add e.g. exit_when_idle = \"10m\" to let it exit when idle; the socket \
             manager keeps the ports and starts it again on demand.",
            config_path.display()
        ));
    }
    if !request.socket_activated && config.exit_when_idle.is_some() {
        plan.notes.push(format!(
            "{} sets exit_when_idle, which only suits --socket-activated: without it the ports \
             close whenever lazytunnel exits, until the service manager restarts it.",
            config_path.display()
        ));
    }
    if request.print {
        print_plan(&plan, request.manager);
        return Ok(());
    }
    for (path, text) in &plan.files {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
        println!("wrote {}", path.display());
    }
    run_steps(&plan.steps, plan.runnable)?;
    for note in &plan.notes {
        println!("\n{note}");
    }
    Ok(())
}

pub fn uninstall(manager: Manager, label: &str) -> anyhow::Result<()> {
    match manager {
        Manager::Launchd => {
            launchd::check_label(label).map_err(|e| anyhow!(e))?;
            run_steps(&[launchctl_bootout(label)], cfg!(target_os = "macos"))?;
            remove(&plist_path(&home()?, label))
        }
        Manager::Systemd => {
            let dir = systemd_dir()?;
            // Stop and disable while the unit files still exist.
            let mut disable = systemctl(&["disable", "--now", systemd::SOCKET, systemd::SERVICE]);
            disable.may_fail = true;
            run_steps(&[disable], true)?;
            for unit in [systemd::SOCKET, systemd::SERVICE] {
                remove(&dir.join(unit))?;
            }
            let mut reload = systemctl(&["daemon-reload"]);
            reload.may_fail = true;
            run_steps(&[reload], true)
        }
    }
}

fn remove(path: &Path) -> anyhow::Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => println!("removed {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not installed: {}", path.display());
        }
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
    }
    Ok(())
}

fn launchd_plan(job: &Job, label: &str, home: &Path) -> anyhow::Result<Plan> {
    launchd::check_label(label).map_err(|e| anyhow!(e))?;
    let path = plist_path(home, label);
    let domain = gui_domain();
    let bootstrap = Step {
        argv: ["launchctl", "bootstrap", &domain, &path.to_string_lossy()]
            .map(String::from)
            .to_vec(),
        may_fail: false,
    };
    Ok(Plan {
        files: vec![(path, launchd::render_plist(label, job))],
        steps: vec![launchctl_bootout(label), bootstrap],
        runnable: cfg!(target_os = "macos"),
        notes: vec![format!(
            "SSH agent: agents in your login session inherit SSH_AUTH_SOCK from macOS's \
             ssh-agent (com.openssh.ssh-agent); for another agent set IdentityAgent in \
             ~/.ssh/config. Logs: {}. Status: launchctl print {domain}/{label}",
            job.log.display()
        )],
    })
}

fn systemd_plan(job: &Job) -> anyhow::Result<Plan> {
    systemd::socket_mode(job).map_err(|e| anyhow!(e))?;
    let dir = systemd_dir()?;
    let mut files = vec![(dir.join(systemd::SERVICE), systemd::render_service(job))];
    let unit = match job.sockets {
        Some(_) => {
            files.push((dir.join(systemd::SOCKET), systemd::render_socket(job)));
            systemd::SOCKET
        }
        None => systemd::SERVICE,
    };
    Ok(Plan {
        files,
        steps: vec![
            systemctl(&["daemon-reload"]),
            systemctl(&["enable", "--now", unit]),
        ],
        runnable: true,
        notes: vec![
            "SSH agent: the systemd user manager does not see your shell's SSH_AUTH_SOCK. Run \
             `systemctl --user import-environment SSH_AUTH_SOCK` in each login session (e.g. \
             from ~/.profile) before lazytunnel first connects, or set IdentityAgent in \
             ~/.ssh/config. Logs: journalctl --user -u lazytunnel"
                .into(),
        ],
    })
}

fn print_plan(plan: &Plan, manager: Manager) {
    for (i, (path, text)) in plan.files.iter().enumerate() {
        if manager == Manager::Systemd {
            let gap = if i == 0 { "" } else { "\n" };
            println!("{gap}==> {} <==", path.display());
        }
        print!("{text}");
    }
    eprintln!("# to install, write the above to {}", names(&plan.files));
    eprintln!("# then run:");
    for step in &plan.steps {
        eprintln!("{}", shell_words(&step.argv));
    }
    for note in &plan.notes {
        eprintln!("# {note}");
    }
}

fn names(files: &[(PathBuf, String)]) -> String {
    let names: Vec<String> = files.iter().map(|(p, _)| p.display().to_string()).collect();
    names.join(" and ")
}

/// Runs the commands, or shows them where they cannot run (launchctl, off macOS).
fn run_steps(steps: &[Step], runnable: bool) -> anyhow::Result<()> {
    if !runnable {
        if !steps.is_empty() {
            println!("on macOS, run:");
        }
        for step in steps {
            println!("  {}", shell_words(&step.argv));
        }
        return Ok(());
    }
    for step in steps {
        let shown = shell_words(&step.argv);
        let (program, args) = step.argv.split_first().expect("a step has a program");
        let status = Command::new(program).args(args).status();
        match status {
            Ok(status) if status.success() => println!("ran: {shown}"),
            _ if step.may_fail => println!("(ignored failure of: {shown})"),
            Ok(status) => bail!("`{shown}` failed ({status}); fix that and run it again"),
            Err(e) => bail!("cannot run `{shown}`: {e}"),
        }
    }
    Ok(())
}

/// A command as a person would type it: words with anything but safe characters single-quoted.
fn shell_words(argv: &[String]) -> String {
    let safe = |c: char| c.is_ascii_alphanumeric() || "/._-=@:%+,".contains(c);
    let words: Vec<String> = argv
        .iter()
        .map(|word| match word.chars().all(safe) && !word.is_empty() {
            true => word.clone(),
            false => format!("'{}'", word.replace('\'', r"'\''")),
        })
        .collect();
    words.join(" ")
}

fn launchctl_bootout(label: &str) -> Step {
    Step {
        argv: vec![
            "launchctl".into(),
            "bootout".into(),
            format!("{}/{label}", gui_domain()),
        ],
        // Not loaded yet is fine.
        may_fail: true,
    }
}

fn systemctl(args: &[&str]) -> Step {
    let mut argv = vec!["systemctl".to_string(), "--user".to_string()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Step {
        argv,
        may_fail: false,
    }
}

fn gui_domain() -> String {
    // SAFETY: getuid cannot fail.
    format!("gui/{}", unsafe { libc::getuid() })
}

fn plist_path(home: &Path, label: &str) -> PathBuf {
    home.join("Library/LaunchAgents")
        .join(format!("{label}.plist"))
}

fn home() -> anyhow::Result<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or_else(|| anyhow!("HOME is not set"))
}

/// `$XDG_CONFIG_HOME/systemd/user`, else `~/.config/systemd/user`: both on the user
/// manager's search path.
fn systemd_dir() -> anyhow::Result<PathBuf> {
    let xdg = std::env::var_os("XDG_CONFIG_HOME").map(PathBuf::from);
    match xdg.filter(|p| p.is_absolute()) {
        Some(dir) => Ok(dir.join("systemd/user")),
        None => Ok(home()?.join(".config/systemd/user")),
    }
}
