//! Reading ssh_config text with ssh2-config, plus what it lacks: `Match` blocks kept inert,
//! case-insensitive Host patterns, and line numbers for parse errors.

use std::io::BufReader;
use std::path::Path;

use ssh2_config::{ParseRule, SshConfig};

/// Host names in `Match` lines are replaced by this: a reserved `.invalid` name no real host has.
const NEUTRALISED_MATCH: &str = "Host lazytunnel-match-not-applied.invalid";

pub(super) fn parse_text(text: &str, home: &Path) -> Result<SshConfig, String> {
    let mut reader = BufReader::new(text.as_bytes());
    SshConfig::default()
        .home_dir(home)
        .parse(
            &mut reader,
            ParseRule::ALLOW_UNKNOWN_FIELDS | ParseRule::ALLOW_UNSUPPORTED_FIELDS,
        )
        .map_err(|e| e.to_string())
}

/// ssh2-config reports errors without a line: find the first prefix of the file that fails.
pub(super) fn first_failing_line(text: &str, home: &Path) -> Option<usize> {
    let lines: Vec<&str> = text.lines().collect();
    (1..=lines.len()).find(|&n| parse_text(&lines[..n].join("\n"), home).is_err())
}

/// ssh2-config does not support `Match`, and would merge a Match block's options into the
/// preceding `Host` block. Turn each `Match` line into a Host line that matches nothing, so
/// the block's options stay inert, and warn that they are not applied. Host patterns are
/// lowercased, since OpenSSH matches them case-insensitively.
pub(super) fn neutralise_match_blocks(path: &Path, text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.lines().enumerate() {
        let keyword = line
            .trim_start()
            .split(|c: char| c.is_whitespace() || c == '=')
            .next();
        if keyword.is_some_and(|k| k.eq_ignore_ascii_case("match")) {
            tracing::warn!(
                "{}:{}: Match blocks are not applied by lazytunnel; their options are ignored",
                path.display(),
                index + 1
            );
            out.push_str(NEUTRALISED_MATCH);
        } else if keyword.is_some_and(|k| k.eq_ignore_ascii_case("host")) {
            // OpenSSH matches Host patterns case-insensitively; ssh2-config does not.
            out.push_str(&line.to_ascii_lowercase());
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}
