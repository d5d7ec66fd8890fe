//! Command line: argument types, logging and exit codes. Everything else is the library's.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, CommandFactory, Parser, Subcommand};
use lazytunnel::config::Config;
use lazytunnel::control::client;
use lazytunnel::install::{self, Manager};
use lazytunnel::{check, daemon, manual};
use tracing::error;
use tracing_subscriber::EnvFilter;

/// Lazy, multiplexed, self-healing SSH port forwarding.
#[derive(Parser)]
#[command(name = "lazytunnel", version, about, long_about = manual::LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Listen on the configured ports and forward connections over SSH.
    Run(RunArgs),
    /// Validate the configuration and print what it resolves to.
    Check(CheckArgs),
    /// Show the running daemon's hosts and forwards.
    Status {
        #[command(flatten)]
        control: ControlArgs,
        /// The documented JSON document (schema version 1) instead of the table.
        #[arg(long)]
        json: bool,
    },
    /// Stop the running daemon gracefully; returns once it has exited.
    Stop(ControlArgs),
    /// Make the running daemon re-read its config file (as SIGHUP does).
    Reload(ControlArgs),
    /// Make the running daemon open HOST's session now (and forget its backoff).
    Connect {
        #[command(flatten)]
        control: ControlArgs,
        /// A host as the config's forwards name it.
        host: String,
    },
    /// Install a launchd agent or systemd user units that run lazytunnel.
    Install {
        #[command(subcommand)]
        manager: InstallManager,
    },
    /// Stop and remove what `install` set up.
    Uninstall {
        #[command(subcommand)]
        manager: UninstallManager,
    },
    /// Print the shell completion script for SHELL.
    Completions { shell: clap_complete::Shell },
    /// Write the man pages (lazytunnel.1, lazytunnel-run.1, ...) into DIR.
    Man {
        #[arg(value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum InstallManager {
    /// ~/Library/LaunchAgents/LABEL.plist, loaded with launchctl (on macOS).
    Launchd {
        #[command(flatten)]
        common: InstallArgs,
        /// The job's launchd label, also the plist's file name.
        #[arg(long, default_value = install::launchd::DEFAULT_LABEL)]
        label: String,
    },
    /// ~/.config/systemd/user/lazytunnel.service (and .socket), enabled with systemctl --user.
    Systemd {
        #[command(flatten)]
        common: InstallArgs,
    },
}

#[derive(Args)]
struct InstallArgs {
    /// Let the service manager hold the ports and start lazytunnel on the first connection
    /// (pair it with `exit_when_idle` in the config).
    #[arg(long)]
    socket_activated: bool,
    /// Write the files to stdout instead, and show the commands without running them.
    #[arg(long)]
    print: bool,
    /// Configuration file [default: $XDG_CONFIG_HOME/lazytunnel/config.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum UninstallManager {
    /// Unload and remove ~/Library/LaunchAgents/LABEL.plist.
    Launchd {
        #[arg(long, default_value = install::launchd::DEFAULT_LABEL)]
        label: String,
    },
    /// Disable and remove the systemd user units.
    Systemd,
}

#[derive(Args)]
#[command(group(
    clap::ArgGroup::new("forwards")
        .multiple(true)
        .args(["local_forwards", "dynamic_forwards"])
))]
struct RunArgs {
    /// Stay in the foreground and log to stderr (else detach and log to
    /// $XDG_STATE_HOME/lazytunnel/lazytunnel.log).
    #[arg(long)]
    foreground: bool,
    /// Configuration file [default: $XDG_CONFIG_HOME/lazytunnel/config.toml].
    #[arg(long, value_name = "FILE", conflicts_with_all = ["forwards", "destination"])]
    config: Option<PathBuf>,
    /// Ad hoc forward in OpenSSH syntax, instead of a config file: a local port or socket path
    /// to a host:port or a socket path on the server ([BIND:]PORT:HOST:HOSTPORT,
    /// [BIND:]PORT:/REMOTE, /LOCAL:HOST:HOSTPORT or /LOCAL:/REMOTE).
    #[arg(
        short = 'L',
        value_name = "[BIND:]PORT:HOST:HOSTPORT",
        requires = "destination"
    )]
    local_forwards: Vec<String>,
    /// Ad hoc SOCKS4/5 proxy in OpenSSH syntax (like ssh -D), on a local port or socket path,
    /// instead of a config file.
    #[arg(short = 'D', value_name = "[BIND:]PORT", requires = "destination")]
    dynamic_forwards: Vec<String>,
    /// The control socket, instead of the config's `control_socket`.
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Host for the -L and -D forwards: an ssh_config alias or [user@]host[:port].
    #[arg(requires = "forwards")]
    destination: Option<String>,
    /// More log output (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    verbose: u8,
    /// Only warnings and errors.
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Configuration file [default: $XDG_CONFIG_HOME/lazytunnel/config.toml].
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Then open a session to each host (handshake, host key, authentication) and report.
    #[arg(long)]
    connect: bool,
}

/// Which daemon a control command talks to.
#[derive(Args)]
struct ControlArgs {
    /// The daemon's control socket [default: the config's `control_socket`, else
    /// $XDG_RUNTIME_DIR/lazytunnel/control.sock].
    #[arg(long, value_name = "PATH")]
    control_socket: Option<PathBuf>,
    /// Configuration file whose `control_socket` to use.
    #[arg(long, value_name = "FILE", conflicts_with = "control_socket")]
    config: Option<PathBuf>,
}

/// Whether errors go to the log (set up by `run`) rather than plainly to stderr.
static LOGGING: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(args),
        Command::Check(args) => check::run(args.config.as_deref(), args.connect),
        Command::Status { control, json } => {
            control_socket(control).and_then(|s| client::status(&s, json).map(|t| print!("{t}")))
        }
        Command::Stop(control) => control_socket(control).and_then(|s| client::stop(&s)),
        Command::Reload(control) => {
            control_socket(control).and_then(|s| client::reload(&s).map(|m| println!("{m}")))
        }
        Command::Connect { control, host } => control_socket(control)
            .and_then(|s| client::connect(&s, &host).map(|m| println!("{m}"))),
        Command::Install { manager } => install(manager),
        Command::Uninstall { manager } => match manager {
            UninstallManager::Launchd { label } => install::uninstall(Manager::Launchd, &label),
            UninstallManager::Systemd => install::uninstall(Manager::Systemd, ""),
        },
        Command::Completions { shell } => {
            manual::completions(Cli::command(), shell, &mut std::io::stdout());
            Ok(())
        }
        Command::Man { dir } => manual::man_pages(Cli::command(), &dir)
            .map(|pages| pages.iter().for_each(|p| println!("{}", p.display()))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole cause chain on one line.
            if LOGGING.load(Ordering::Relaxed) {
                error!("{err:#}");
            } else {
                eprintln!("lazytunnel: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

fn control_socket(args: ControlArgs) -> anyhow::Result<PathBuf> {
    client::locate(args.control_socket, args.config)
}

fn install(manager: InstallManager) -> anyhow::Result<()> {
    let (manager, common, label) = match manager {
        InstallManager::Launchd { common, label } => (Manager::Launchd, common, label),
        InstallManager::Systemd { common } => (Manager::Systemd, common, String::new()),
    };
    install::install(&install::Request {
        manager,
        socket_activated: common.socket_activated,
        label,
        print: common.print,
        config: match common.config {
            Some(path) => path,
            None => Config::default_path()?,
        },
    })
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging(args.verbose, args.quiet, args.foreground);
    daemon::run_process(daemon::RunOptions {
        config: match args.destination {
            Some(destination) => daemon::ConfigSource::AdHoc {
                local_forwards: args.local_forwards,
                dynamic_forwards: args.dynamic_forwards,
                destination,
            },
            None => daemon::ConfigSource::File(args.config),
        },
        control_socket: args.control_socket,
        foreground: args.foreground,
    })
}

fn init_logging(verbose: u8, quiet: bool, foreground: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "lazytunnel=debug,info",
        (false, _) => "lazytunnel=trace,debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour only for a person at a terminal, never in log files (where a background
    // daemon's stderr goes once it has detached).
    let ansi = foreground
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .init();
    LOGGING.store(true, Ordering::Relaxed);
}
