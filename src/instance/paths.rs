//! Where the daemon keeps its runtime files: the log of a background daemon, the control
//! socket's default location and the instance lock next to it.
//!
//! The environment is read only by the thin public wrappers; the rules are tested with
//! explicit values.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use anyhow::anyhow;

use crate::config::Config;

/// `$XDG_STATE_HOME/lazytunnel`, else `~/.local/state/lazytunnel`.
pub fn state_dir() -> anyhow::Result<PathBuf> {
    state_dir_from(
        std::env::var_os("XDG_STATE_HOME").as_deref(),
        std::env::var_os("HOME").as_deref(),
    )
}

/// The log file of a background daemon.
pub fn log_file() -> anyhow::Result<PathBuf> {
    Ok(state_dir()?.join("lazytunnel.log"))
}

/// The config's `control_socket`, else `$XDG_RUNTIME_DIR/lazytunnel/control.sock`, else
/// `control.sock` in the state directory.
pub fn control_socket(config: &Config) -> anyhow::Result<PathBuf> {
    match &config.control_socket {
        Some(path) => Ok(path.clone()),
        None => default_control_socket(),
    }
}

/// `$XDG_RUNTIME_DIR/lazytunnel/control.sock`, else `control.sock` in the state directory.
pub fn default_control_socket() -> anyhow::Result<PathBuf> {
    let runtime = std::env::var_os("XDG_RUNTIME_DIR");
    match absolute(runtime.as_deref()) {
        Some(dir) => Ok(dir.join("lazytunnel").join("control.sock")),
        None => Ok(state_dir()?.join("control.sock")),
    }
}

/// The lock file that makes one daemon per control socket: `control.sock.lock`. Separate from
/// the socket, which a daemon may remove and recreate.
pub fn lock_file(control_socket: &Path) -> PathBuf {
    let mut name = control_socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// As the XDG spec says, a relative or empty directory variable is ignored.
fn absolute(dir: Option<&OsStr>) -> Option<&Path> {
    dir.map(Path::new).filter(|p| p.is_absolute())
}

pub(crate) fn state_dir_from(
    xdg_state_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> anyhow::Result<PathBuf> {
    let base = match (absolute(xdg_state_home), home) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(home)) if !home.is_empty() => Path::new(home).join(".local/state"),
        _ => return Err(anyhow!("neither XDG_STATE_HOME nor HOME is set")),
    };
    Ok(base.join("lazytunnel"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_dir_prefers_an_absolute_xdg_state_home() {
        let home = Some(OsStr::new("/home/vit"));
        let at = |xdg: Option<&str>| state_dir_from(xdg.map(OsStr::new), home).unwrap();
        assert_eq!(at(Some("/xdg")), Path::new("/xdg/lazytunnel"));
        let fallback = Path::new("/home/vit/.local/state/lazytunnel");
        assert_eq!(at(None), fallback);
        assert_eq!(at(Some("rel")), fallback);
        assert_eq!(at(Some("")), fallback);
        assert!(state_dir_from(None, None).is_err());
    }

    #[test]
    fn the_lock_sits_next_to_the_control_socket() {
        assert_eq!(
            lock_file(Path::new("/run/user/1/lazytunnel/control.sock")),
            Path::new("/run/user/1/lazytunnel/control.sock.lock")
        );
    }
}
