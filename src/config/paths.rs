//! Path handling: `~` expansion, relative paths and the default config location.
//!
//! The environment is read only by the thin public wrappers, so the logic is tested with
//! explicit values instead of mutating process-wide variables.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// Expands a leading `~` or `~/` to `$HOME`. Other paths are returned unchanged; `~user` is
/// refused. An unset or empty `HOME` is an error only if the path starts with `~`.
pub fn expand_tilde(p: &str) -> Result<PathBuf, ConfigError> {
    expand_tilde_with(p, std::env::var_os("HOME").as_deref())
}

pub(crate) fn expand_tilde_with(p: &str, home: Option<&OsStr>) -> Result<PathBuf, ConfigError> {
    let Some(rest) = p.strip_prefix('~') else {
        return Ok(PathBuf::from(p));
    };
    let error = |message: &str| ConfigError::Path {
        path: p.to_owned(),
        message: message.to_owned(),
    };
    if !rest.is_empty() && !rest.starts_with('/') {
        return Err(error("only `~` and `~/…` are supported, not `~user`"));
    }
    let home = home
        .filter(|h| !h.is_empty())
        .ok_or_else(|| error("HOME is not set"))?;
    // Without trimming, "~//x" would push an absolute "/x" and replace HOME.
    let rest = rest.trim_start_matches('/');
    let mut path = PathBuf::from(home);
    if !rest.is_empty() {
        path.push(rest);
    }
    Ok(path)
}

/// Expands `~`, then makes a relative path relative to `base` (the config file's directory),
/// since a daemon's working directory means nothing to the user.
pub(crate) fn resolve(raw: &str, base: &Path, home: Option<&OsStr>) -> Result<PathBuf, String> {
    if raw.is_empty() {
        return Err("the path is empty".into());
    }
    let path = expand_tilde_with(raw, home).map_err(|e| match e {
        ConfigError::Path { message, .. } => message,
        other => other.to_string(),
    })?;
    Ok(if path.is_relative() {
        base.join(path)
    } else {
        path
    })
}

/// `$XDG_CONFIG_HOME/lazytunnel/config.toml`, else `$HOME/.config/lazytunnel/config.toml`.
/// As the XDG spec says, a relative or empty `XDG_CONFIG_HOME` is ignored.
pub(crate) fn default_path_from(
    xdg_config_home: Option<&OsStr>,
    home: Option<&OsStr>,
) -> Result<PathBuf, ConfigError> {
    let dir = match (xdg_config_home.map(Path::new), home) {
        (Some(xdg), _) if xdg.is_absolute() => xdg.to_path_buf(),
        (_, Some(home)) if !home.is_empty() => Path::new(home).join(".config"),
        _ => return Err(ConfigError::NoConfigDir),
    };
    Ok(dir.join("lazytunnel").join("config.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home() -> Option<&'static OsStr> {
        Some(OsStr::new("/home/vit"))
    }

    #[test]
    fn tilde_expands_to_home() {
        let expand = |p| expand_tilde_with(p, home()).unwrap();
        assert_eq!(expand("~"), Path::new("/home/vit"));
        assert_eq!(expand("~/"), Path::new("/home/vit"));
        assert_eq!(expand("~/.ssh/config"), Path::new("/home/vit/.ssh/config"));
        assert_eq!(expand("~//x"), Path::new("/home/vit/x"));
        assert_eq!(expand("/etc/x~"), Path::new("/etc/x~"));
        assert_eq!(expand("rel/~"), Path::new("rel/~"));
    }

    #[test]
    fn tilde_needs_home_and_refuses_other_users() {
        let err = expand_tilde_with("~/x", None).unwrap_err().to_string();
        assert!(
            err.contains("HOME is not set") && err.contains("~/x"),
            "{err}"
        );
        assert!(expand_tilde_with("~/x", Some(OsStr::new(""))).is_err());
        let err = expand_tilde_with("~root/x", home())
            .unwrap_err()
            .to_string();
        assert!(err.contains("~user"), "{err}");
        assert_eq!(expand_tilde_with("/abs", None).unwrap(), Path::new("/abs"));
    }

    #[test]
    fn relative_paths_resolve_against_the_config_directory() {
        let base = Path::new("/etc/lazytunnel");
        assert_eq!(resolve("ssh", base, home()).unwrap(), base.join("ssh"));
        assert_eq!(resolve("/x", base, home()).unwrap(), Path::new("/x"));
        assert_eq!(
            resolve("~/x", base, home()).unwrap(),
            Path::new("/home/vit/x")
        );
        assert!(resolve("", base, home()).is_err());
    }

    #[test]
    fn default_path_prefers_an_absolute_xdg_config_home() {
        let path = default_path_from(Some(OsStr::new("/xdg")), home()).unwrap();
        assert_eq!(path, Path::new("/xdg/lazytunnel/config.toml"));
        let expected = Path::new("/home/vit/.config/lazytunnel/config.toml");
        assert_eq!(default_path_from(None, home()).unwrap(), expected);
        assert_eq!(
            default_path_from(Some(OsStr::new("")), home()).unwrap(),
            expected
        );
        assert_eq!(
            default_path_from(Some(OsStr::new("rel")), home()).unwrap(),
            expected
        );
        assert!(matches!(
            default_path_from(None, None),
            Err(ConfigError::NoConfigDir)
        ));
    }
}
