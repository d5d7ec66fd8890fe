//! known_hosts file text → entries with line numbers, following OpenSSH's `hostkeys_foreach`:
//! `[marker] hosts keytype base64 [comment]`, fields separated by runs of spaces or tabs.

use std::io;
use std::path::Path;

use russh::keys::ssh_key::PublicKey;

use super::KnownHostsError;
use super::pattern::HostField;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Marker {
    CertAuthority,
    Revoked,
}

/// One usable line.
#[derive(Debug, Clone)]
pub(super) struct Entry {
    /// 1-based.
    pub line: usize,
    pub marker: Option<Marker>,
    pub hosts: HostField,
    pub key: PublicKey,
}

/// A line that was skipped, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Malformed {
    pub line: usize,
    pub reason: String,
}

/// Reads a file's bytes. A missing file is `None`, as in OpenSSH; any other failure is an error,
/// unlike OpenSSH, which skips unreadable files silently: a file we cannot read may hold an
/// `@revoked` line we must honour.
pub(super) fn read(path: &Path) -> Result<Option<Vec<u8>>, KnownHostsError> {
    match crate::files::read_capped(path, crate::files::MAX_KNOWN_HOSTS) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(KnownHostsError::Read {
            path: path.to_owned(),
            error,
        }),
    }
}

/// Parses a whole file. Bytes that are not UTF-8 (possible in comments) are replaced rather
/// than failing the file; they cannot form a valid host pattern or key anyway.
pub(super) fn parse(bytes: &[u8]) -> (Vec<Entry>, Vec<Malformed>) {
    let mut entries = Vec::new();
    let mut malformed = Vec::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let text = String::from_utf8_lossy(raw);
        let line = index + 1;
        match parse_line(text.strip_suffix('\r').unwrap_or(&text)) {
            Ok(Some((marker, hosts, key))) => entries.push(Entry {
                line,
                marker,
                hosts,
                key,
            }),
            Ok(None) => {}
            Err(reason) => malformed.push(Malformed { line, reason }),
        }
    }
    (entries, malformed)
}

type Parsed = (Option<Marker>, HostField, PublicKey);

/// `Ok(None)` for blank and comment lines.
fn parse_line(line: &str) -> Result<Option<Parsed>, String> {
    let mut fields = line.split([' ', '\t']).filter(|field| !field.is_empty());
    let Some(mut first) = fields.next() else {
        return Ok(None);
    };
    if first.starts_with('#') {
        return Ok(None);
    }

    let marker = if first.starts_with('@') {
        let marker = match first {
            "@cert-authority" => Marker::CertAuthority,
            "@revoked" => Marker::Revoked,
            other => return Err(format!("unknown marker {other}")),
        };
        first = fields.next().ok_or("nothing follows the marker")?;
        if first.starts_with('@') {
            return Err("more than one marker".into());
        }
        Some(marker)
    } else {
        None
    };

    let hosts = HostField::parse(first)?;
    let key_type = match fields.next() {
        Some(field) if !field.starts_with('#') => field,
        _ => return Err("no key after the host names".into()),
    };
    let key_data = fields
        .next()
        .ok_or_else(|| format!("{key_type} key has no data"))?;
    // The remaining fields are the key comment.
    let key = PublicKey::from_openssh(&format!("{key_type} {key_data}"))
        .map_err(|err| format!("unreadable or unsupported {key_type} key: {err}"))?;
    Ok(Some((marker, hosts, key)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::known_hosts::pattern::Match;

    const ED: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDA9ZPXl320D2SKtPC0aHqplT16RnD5FDYHJaAHDYfsc";

    fn one(line: &str) -> Entry {
        let (entries, malformed) = parse(line.as_bytes());
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(entries.len(), 1, "{line:?}");
        entries.into_iter().next().unwrap()
    }

    #[test]
    fn comments_blank_lines_and_whitespace_are_skipped_but_counted() {
        let text = format!("# comment\n\n   \n\t# indented comment\n  foo {ED}\n");
        let (entries, malformed) = parse(text.as_bytes());
        assert!(malformed.is_empty());
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].line, 5);
    }

    #[test]
    fn tabs_and_runs_of_spaces_separate_fields() {
        let (key_type, data) = ED.split_once(' ').unwrap();
        let entry = one(&format!(
            "foo,bar\t \t{key_type}\t\t{data}   a comment\twith tabs"
        ));
        assert_eq!(entry.hosts.matches("bar"), Match::Yes);
        assert_eq!(entry.key.to_openssh().unwrap(), ED);
    }

    #[test]
    fn crlf_line_endings_are_accepted() {
        let text = format!("foo {ED}\r\nbar {ED}\r\n");
        let (entries, malformed) = parse(text.as_bytes());
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(entries.len(), 2);
    }

    #[test]
    fn markers_are_recognised() {
        assert_eq!(one(&format!("foo {ED}")).marker, None);
        assert_eq!(
            one(&format!("@cert-authority *.example {ED}")).marker,
            Some(Marker::CertAuthority)
        );
        assert_eq!(
            one(&format!("@revoked\t* {ED}")).marker,
            Some(Marker::Revoked)
        );
    }

    #[test]
    fn malformed_lines_are_reported_with_their_numbers_and_the_rest_still_parse() {
        let text = [
            format!("@trusted foo {ED}"),
            format!("@revoked @cert-authority foo {ED}"),
            "@revoked".to_string(),
            "foo".to_string(),
            "foo # comment".to_string(),
            "foo ssh-ed25519".to_string(),
            "foo ssh-ed25519 not-base64!".to_string(),
            "foo ssh-rsa AAAAC3NzaC1lZDI1NTE5AAAAIDA9ZPXl320D2SKtPC0aHqplT16RnD5FDYHJaAHDYfsc"
                .to_string(),
            format!("|1|AAAA|AAAA {ED}"),
            format!("good {ED}"),
        ]
        .join("\n");
        let (entries, malformed) = parse(text.as_bytes());
        let lines: Vec<usize> = malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [1, 2, 3, 4, 5, 6, 7, 8, 9], "{malformed:#?}");
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].line, 10);
    }

    #[test]
    fn non_utf8_comments_do_not_spoil_the_file() {
        let mut text = b"# caf\xe9\n".to_vec();
        text.extend_from_slice(format!("foo {ED} ").as_bytes());
        text.push(0xff);
        let (entries, malformed) = parse(&text);
        assert!(malformed.is_empty(), "{malformed:?}");
        assert_eq!(entries.len(), 1);
    }
}
