//! Reading ssh_config files into their blocks, as OpenSSH's `readconf.c` reads them: `Host`
//! lines, `Match` lines, options, and `Include` (globs; relative paths under `~/.ssh` for the
//! user's file and `/etc/ssh` for the system file; at most 16 levels deep), and walking them for
//! one host name.
//!
//! Every option line is checked as OpenSSH checks it while reading, whichever block it is in
//! ([`keywords`](super::keywords)): OpenSSH refuses the whole file for one bad line.
//!
//! `Match` is not evaluated: a `Match` line starts a block that applies to no host, and a
//! warning names its file:line once, when the file is read. That is the only safe reading short
//! of implementing Match: its options must never leak into the preceding `Host` block.

use std::path::{Path, PathBuf};

use super::SshConfigError;
use super::keywords::{self, Known};
use super::lexer::{self, Directive};

/// OpenSSH's READCONF_MAX_DEPTH.
const MAX_INCLUDE_DEPTH: usize = 16;

/// Where a directive was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) path: PathBuf,
    pub(super) line: usize,
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.path.display(), self.line)
    }
}

#[derive(Debug)]
enum Item {
    Host(Vec<String>),
    Match,
    Include(Vec<ConfigFile>),
    Option(Directive),
}

/// One file read, with its includes read too.
#[derive(Debug)]
pub(super) struct ConfigFile {
    path: PathBuf,
    items: Vec<(usize, Item)>,
}

/// What `Include` needs to find files.
pub(super) struct IncludeBase<'a> {
    pub(super) home: &'a Path,
    /// `~/.ssh` for the user's file, `/etc/ssh` for the system file.
    pub(super) dir: &'a Path,
}

impl ConfigFile {
    /// Parses `text` as the content of `path`, reading the files it includes.
    pub(super) fn parse(
        path: &Path,
        text: &str,
        base: &IncludeBase,
    ) -> Result<ConfigFile, SshConfigError> {
        Self::parse_at_depth(path, text, base, 0, &mut Vec::new())
    }

    fn parse_at_depth(
        path: &Path,
        text: &str,
        base: &IncludeBase,
        depth: usize,
        ignore_unknown: &mut Vec<String>,
    ) -> Result<ConfigFile, SshConfigError> {
        let mut items = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |message: String| SshConfigError::Parse {
                path: path.to_owned(),
                line,
                message,
                content: raw.trim().to_string(),
            };
            let Some(directive) = lexer::split(raw).map_err(error)? else {
                continue;
            };
            let item = match directive.keyword.as_str() {
                "host" if directive.args.is_empty() => {
                    return Err(error("Host needs at least one pattern".into()));
                }
                "host" => Item::Host(directive.args),
                "match" => {
                    tracing::warn!(
                        "{}:{line}: Match blocks are not applied by lazytunnel; their options are ignored",
                        path.display()
                    );
                    Item::Match
                }
                "include" if directive.args.is_empty() => {
                    return Err(error("Include needs at least one file".into()));
                }
                "include" if depth >= MAX_INCLUDE_DEPTH => {
                    return Err(error(format!(
                        "more than {MAX_INCLUDE_DEPTH} levels of Include (a loop?)"
                    )));
                }
                "include" => {
                    let mut files = Vec::new();
                    for pattern in &directive.args {
                        for included in include_paths(pattern, base).map_err(&error)? {
                            let Some(text) = read_included(&included).map_err(&error)? else {
                                continue;
                            };
                            files.push(Self::parse_at_depth(
                                &included,
                                &text,
                                base,
                                depth + 1,
                                ignore_unknown,
                            )?);
                        }
                    }
                    Item::Include(files)
                }
                _ => {
                    if keywords::check(&directive).map_err(&error)? == Known::No {
                        warn_unknown(path, line, &directive.keyword, ignore_unknown);
                    }
                    if directive.keyword == "ignoreunknown" {
                        ignore_unknown.extend(directive.args.iter().cloned());
                    }
                    Item::Option(directive)
                }
            };
            items.push((line, item));
        }
        Ok(ConfigFile {
            path: path.to_owned(),
            items,
        })
    }

    /// Calls `visit` with every option that applies to `host`, in file order (includes in
    /// place), as OpenSSH reads them: lines before the first `Host` apply to every host.
    pub(super) fn walk(&self, host: &str, visit: &mut dyn FnMut(&Location, &Directive)) {
        let mut active = true;
        self.walk_inner(host, &mut active, false, visit);
    }

    fn walk_inner(
        &self,
        host: &str,
        active: &mut bool,
        never_match: bool,
        visit: &mut dyn FnMut(&Location, &Directive),
    ) {
        for (line, item) in &self.items {
            match item {
                Item::Host(patterns) => {
                    *active = !never_match && host_block_matches(patterns, host)
                }
                Item::Match => *active = false,
                Item::Include(files) => {
                    // An Include inside an inactive block still reads its files, but none of
                    // their Host lines may match (OpenSSH's SSHCONF_NEVERMATCH). Each file
                    // starts in the state of the Include line, not where the previous one ended.
                    let outer = *active;
                    for file in files {
                        *active = outer;
                        file.walk_inner(host, active, never_match || !outer, visit);
                    }
                    *active = outer;
                }
                Item::Option(directive) if *active => {
                    let at = Location {
                        path: self.path.clone(),
                        line: *line,
                    };
                    visit(&at, directive);
                }
                Item::Option(_) => {}
            }
        }
    }
}

/// A keyword OpenSSH 9.2 does not know would make it refuse the file; lazytunnel warns instead
/// (the user's `ssh` may know it), unless an `IgnoreUnknown` line read before covers it.
fn warn_unknown(path: &Path, line: usize, keyword: &str, ignore_unknown: &[String]) {
    if ignore_unknown
        .iter()
        .any(|patterns| keywords::ignored(patterns, keyword))
    {
        return;
    }
    tracing::warn!(
        "{}:{line}: unknown ssh_config keyword {keyword:?}, ignored (list it in IgnoreUnknown to silence this)",
        path.display()
    );
}

/// A `Host` line applies when one of its patterns matches and no `!pattern` does. Patterns are
/// compared exactly (OpenSSH 9.2 matches `Host` case-sensitively against the name as given).
fn host_block_matches(patterns: &[String], host: &str) -> bool {
    let mut matched = false;
    for pattern in patterns {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern.as_str()),
        };
        if crate::known_hosts::glob(pattern.as_bytes(), host.as_bytes(), false) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

/// The files an `Include` argument names, in glob order.
pub(super) fn include_paths(pattern: &str, base: &IncludeBase) -> Result<Vec<PathBuf>, String> {
    let path = if pattern.starts_with('~') {
        // OpenSSH's glob finds nothing under an unknown user's `~user`: no file, no error.
        match super::tokens::expand_tilde(pattern, base.home) {
            Ok(path) => path,
            Err(_) => return Ok(Vec::new()),
        }
    } else if Path::new(pattern).is_absolute() {
        PathBuf::from(pattern)
    } else {
        base.dir.join(pattern)
    };
    let text = path
        .to_str()
        .ok_or_else(|| format!("Include {pattern}: path is not UTF-8"))?;
    let paths = glob::glob(text).map_err(|e| format!("Include {pattern}: {e}"))?;
    paths
        .map(|p| p.map_err(|e| format!("Include {pattern}: {e}")))
        .collect()
}

/// An included file's text; `None` if it vanished (OpenSSH skips such files). Its owner and
/// mode are checked as OpenSSH checks them for included files.
fn read_included(path: &Path) -> Result<Option<String>, String> {
    match crate::files::read_capped_string(path, crate::files::MAX_SMALL_FILE) {
        Ok(text) => {
            check_permissions(path)?;
            Ok(Some(text))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read included file {}: {e}", path.display())),
    }
}

/// OpenSSH refuses a config file (the default user file and included ones) that someone else
/// could have written: owned by another user than us or root, or writable by group or others.
/// Such a file could point host key checking anywhere. Debian's OpenSSH also accepts a
/// group-writable file whose group has the owner as only member; we keep upstream's stricter
/// rule and say how to fix the mode.
pub(super) fn check_permissions(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: getuid has no preconditions and cannot fail.
    let me = unsafe { libc::getuid() };
    if meta.uid() != 0 && meta.uid() != me {
        return Err(format!(
            "bad owner of {}: owned by uid {}, not by you or root (OpenSSH refuses it too)",
            path.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(format!(
            "bad permissions on {}: writable by group or others (mode {:o}), so someone else \
             could change how hosts are checked; `chmod go-w` it",
            path.display(),
            meta.mode() & 0o777
        ));
    }
    Ok(())
}
