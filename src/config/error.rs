//! `ConfigError` and the translation of byte offsets into `line:column` positions.

use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Why a configuration could not be loaded. Every variant names the input it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read (`error.kind()` tells a missing file apart).
    #[error("could not read config file {}: {error}", .path.display())]
    Read { path: PathBuf, error: io::Error },

    /// The file was read but is not a valid config; `position` is the offending value's.
    #[error("{}{}: {message}", .file.display(), at(.position))]
    Invalid {
        file: PathBuf,
        position: Option<Position>,
        message: String,
    },

    /// A `-L` argument of an ad-hoc run is malformed or not allowed.
    #[error("invalid -L {spec:?}: {message}")]
    LocalForward { spec: String, message: String },

    /// A `-D` argument of an ad-hoc run is malformed or not allowed.
    #[error("invalid -D {spec:?}: {message}")]
    DynamicForward { spec: String, message: String },

    /// An ad-hoc run was given no `-L` or `-D` argument.
    #[error("no forwards given: add at least one -L [BIND:]PORT:HOST:HOSTPORT or -D [BIND:]PORT")]
    NoLocalForwards,

    /// The destination of an ad-hoc run is not `[user@]host[:port]`.
    #[error("invalid destination {spec:?}: {message}")]
    Destination { spec: String, message: String },

    /// A path starting with `~` could not be expanded.
    #[error("cannot expand path {path:?}: {message}")]
    Path { path: String, message: String },

    /// Neither `$XDG_CONFIG_HOME` nor `$HOME` is usable to locate the default config file.
    #[error(
        "cannot locate the default config file: neither XDG_CONFIG_HOME nor HOME is set; \
         give the config file's path explicitly"
    )]
    NoConfigDir,
}

/// A 1-based line and column (in characters) within a config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`; offsets past the end or inside a character are
    /// clamped rather than trusted.
    pub(crate) fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = text.get(..offset).unwrap_or_default();
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).unwrap_or_default().chars().count() + 1;
        Position {
            line: before.matches('\n').count() + 1,
            column,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// The trimmed line holding byte `offset`, shortened to 80 characters; `None` if blank.
fn line_at(text: &str, offset: usize) -> Option<String> {
    let start = text.get(..offset)?.rfind('\n').map_or(0, |i| i + 1);
    let rest = text.get(start..)?;
    let line = rest.split('\n').next()?.trim();
    match line.char_indices().nth(80) {
        _ if line.is_empty() => None,
        Some((cut, _)) => Some(format!("{}…", line.get(..cut)?)),
        None => Some(line.to_owned()),
    }
}

fn at(position: &Option<Position>) -> String {
    position.map(|p| format!(":{p}")).unwrap_or_default()
}

impl ConfigError {
    /// An error about the value at byte range `span` of the config file `text`.
    pub(crate) fn at_span(file: &Path, text: &str, span: Range<usize>, message: String) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            position: Some(Position::of(text, span.start)),
            message,
        }
    }

    /// An error about the config file as a whole.
    pub(crate) fn in_file(file: &Path, message: String) -> Self {
        ConfigError::Invalid {
            file: file.to_path_buf(),
            position: None,
            message,
        }
    }

    /// Converts a syntax or type error from the TOML deserializer, keeping its position and
    /// adding the dotted key it was about, which `toml` knows but only prints without a span.
    pub(crate) fn from_toml(err: &toml::de::Error, file: &Path, text: &str) -> Self {
        // Our raw integers are i64; users should not need to know that.
        let mut message = err.message().replace("expected i64", "expected an integer");
        if let Some(span) = err.span() {
            // toml says only "duplicate key"; the span covers the key itself.
            let key = text.get(span.clone()).filter(|k| !k.contains('\n'));
            if let (true, Some(key)) = (message == "duplicate key", key) {
                message = format!("duplicate key `{key}`");
            }
        }
        let mut bare = err.clone();
        bare.set_input(None);
        let rendered = bare.to_string();
        let keys = rendered
            .lines()
            .find_map(|l| l.strip_prefix("in `").and_then(|l| l.strip_suffix('`')));
        if let Some(keys) = keys {
            message = format!("{message} (in `{keys}`)");
        } else if let Some(line) = err.span().and_then(|s| line_at(text, s.start)) {
            // Syntax errors name neither key nor value: quote the line instead.
            message = format!("{message} (in `{line}`)");
        }
        ConfigError::Invalid {
            file: file.to_path_buf(),
            position: err.span().map(|s| Position::of(text, s.start)),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based_and_count_characters() {
        let text = "a = 1\nbé = \"x\"\n";
        assert_eq!(Position::of(text, 0), Position { line: 1, column: 1 });
        assert_eq!(Position::of(text, 6), Position { line: 2, column: 1 });
        // "bé = " is 6 bytes but 5 characters.
        assert_eq!(Position::of(text, 12), Position { line: 2, column: 6 });
    }

    #[test]
    fn out_of_range_offsets_are_clamped() {
        assert_eq!(Position::of("ab\nc", 99), Position { line: 2, column: 2 });
        // Byte 1 is inside 'é'.
        assert_eq!(Position::of("é", 1), Position { line: 1, column: 1 });
        assert_eq!(Position::of("", 5), Position { line: 1, column: 1 });
    }

    #[test]
    fn invalid_displays_file_line_and_column() {
        let err = ConfigError::at_span(Path::new("c.toml"), "\n  x", 3..4, "bad".into());
        assert_eq!(err.to_string(), "c.toml:2:3: bad");
        let err = ConfigError::in_file(Path::new("c.toml"), "empty".into());
        assert_eq!(err.to_string(), "c.toml: empty");
    }
}
