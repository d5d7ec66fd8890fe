//! `lazytunnel completions` and `lazytunnel man`: shell completion scripts and man pages,
//! generated from the command line's own clap definition so that they cannot drift from it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap_complete::Shell;

/// What `lazytunnel --help` and the man page say about the program as a whole.
pub const LONG_ABOUT: &str = "\
Listens on local ports and forwards each accepted connection over SSH, as `ssh -L` would: one \
session per host, opened on the first connection, shared by every connection, closed after \
idle_timeout and reopened on demand. Reads ~/.ssh/config, keys, ssh-agent and known_hosts as \
OpenSSH does.

The forwards come from $XDG_CONFIG_HOME/lazytunnel/config.toml (else \
~/.config/lazytunnel/config.toml, or --config FILE), or from -L on the command line. \
`lazytunnel check` shows what a config resolves to; `lazytunnel install systemd|launchd` runs \
the daemon as a service.";

/// Writes the completion script for `shell` to `out`.
pub fn completions(mut cli: clap::Command, shell: Shell, out: &mut dyn Write) {
    let name = cli.get_name().to_string();
    clap_complete::generate(shell, &mut cli, name, out);
}

/// Writes one man page per command into `dir` (created if missing): `lazytunnel.1`, then
/// `lazytunnel-run.1` and so on for every subcommand, as `git` ships them. Returns the paths.
pub fn man_pages(cli: clap::Command, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the directory {}", dir.display()))?;
    // Building sets every subcommand's display name (`lazytunnel-install-systemd`), which
    // names its page; `help` is clap's own and needs no page.
    let mut cli = cli.disable_help_subcommand(true);
    cli.build();
    // Every page's footer names the program and its version, not the subcommand.
    let source = format!("lazytunnel {}", cli.get_version().unwrap_or_default());
    let mut written = Vec::new();
    write_pages(cli, &source, dir, &mut written)?;
    Ok(written)
}

fn write_pages(
    cmd: clap::Command,
    source: &str,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    let page = clap_mangen::Man::new(cmd.clone()).source(source);
    let path = dir.join(page.get_filename());
    let mut file =
        std::fs::File::create(&path).with_context(|| format!("cannot write {}", path.display()))?;
    page.render(&mut file)
        .and_then(|()| file.flush())
        .with_context(|| format!("cannot write {}", path.display()))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_pages(sub.clone(), source, dir, written)?;
    }
    Ok(())
}
