//! One ssh_config line split into a keyword and its arguments, as OpenSSH's `readconf.c` splits
//! it: the keyword ends at whitespace or `=` (one `=` may separate it from the arguments), a
//! keyword without any text after it is an error, arguments are separated by spaces or tabs,
//! `"…"` or `'…'` quote spaces, a backslash escapes a quote or a backslash anywhere and a space
//! outside quotes (elsewhere it stays), and an argument starting with `#` ends the line.

/// A line that holds a directive: the keyword lowercased, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Directive {
    pub(super) keyword: String,
    pub(super) args: Vec<String>,
    /// The text after the keyword (and its `=`), unsplit: ProxyJump and the command options
    /// take the line as written, quotes included.
    pub(super) rest: String,
}

/// Splits `line`. `Ok(None)` for blank and comment lines; `Err` says what is malformed.
pub(super) fn split(line: &str) -> Result<Option<Directive>, String> {
    let line = line
        .trim_start_matches([' ', '\t', '\r', '\n'])
        .trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find([' ', '\t', '\r', '\n', '=', '"'])
        .unwrap_or(line.len());
    let (keyword, rest) = if line[end..].starts_with('"') {
        // strdelim: a quote drops out and the keyword runs to the next one (no `=` after it).
        let quoted = &line[end + 1..];
        let Some(close) = quoted.find('"') else {
            // OpenSSH finds no keyword on such a line and skips it.
            return Ok(None);
        };
        let keyword = format!("{}{}", &line[..end], &quoted[..close]);
        let rest = quoted[close + 1..].trim_start_matches([' ', '\t', '\r', '\n']);
        (keyword.to_ascii_lowercase(), rest)
    } else {
        let mut rest = line[end..].trim_start_matches([' ', '\t', '\r', '\n']);
        // OpenSSH's strdelim accepts one `=` between keyword and value, with optional spaces.
        if let Some(after) = rest.strip_prefix('=') {
            rest = after.trim_start_matches([' ', '\t', '\r', '\n']);
        }
        (line[..end].to_ascii_lowercase(), rest)
    };
    if keyword.is_empty() {
        return Err("missing keyword".into());
    }
    if rest.is_empty() {
        return Err(format!("no argument after keyword {keyword:?}"));
    }
    let args = split_args(rest)?;
    Ok(Some(Directive {
        keyword,
        args,
        rest: rest.to_string(),
    }))
}

fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    let blank = |c: &char| *c == ' ' || *c == '\t';
    loop {
        while chars.next_if(blank).is_some() {}
        let Some(&first) = chars.peek() else {
            return Ok(args);
        };
        if first == '#' {
            return Ok(args);
        }
        let mut arg = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = chars.next() {
            match (c, quote) {
                ('\\', _) if matches!(chars.peek(), Some('"' | '\'' | '\\')) => {
                    arg.extend(chars.next());
                }
                ('\\', None) if chars.peek() == Some(&' ') => arg.extend(chars.next()),
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if blank(&c) => break,
                (c, _) => arg.push(c),
            }
        }
        if let Some(q) = quote {
            return Err(format!("unterminated {q} quote"));
        }
        args.push(arg);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(line: &str) -> (String, Vec<String>) {
        let d = split(line).expect("splits").expect("a directive");
        (d.keyword, d.args)
    }

    #[test]
    fn keyword_is_lowercased_and_equals_sign_is_optional() {
        assert_eq!(
            parts("  HostName  example.org"),
            ("hostname".into(), vec!["example.org".into()])
        );
        assert_eq!(parts("Port=23"), ("port".into(), vec!["23".into()]));
        assert_eq!(parts("Port = 23"), ("port".into(), vec!["23".into()]));
        assert_eq!(parts("\tUser\t= vit"), ("user".into(), vec!["vit".into()]));
    }

    #[test]
    fn quotes_escapes_and_trailing_comments() {
        assert_eq!(
            parts("User \"my user\""),
            ("user".into(), vec!["my user".into()])
        );
        assert_eq!(
            parts("IdentityFile '/a b/k' /c\\ d # two files"),
            ("identityfile".into(), vec!["/a b/k".into(), "/c d".into()])
        );
        assert_eq!(
            parts("HostName x#y"),
            ("hostname".into(), vec!["x#y".into()])
        );
    }

    #[test]
    fn blank_and_comment_lines_are_skipped() {
        assert_eq!(split("").unwrap(), None);
        assert_eq!(split("   # note").unwrap(), None);
    }

    #[test]
    fn unterminated_quote_is_an_error() {
        assert!(split("User \"vit").unwrap_err().contains("quote"));
    }

    /// Issue 16 item 5: inside quotes OpenSSH's argv_split keeps `\ ` as written.
    #[test]
    fn backslash_space_is_an_escape_only_outside_quotes() {
        assert_eq!(
            parts(r#"IdentityFile "~/.ssh/q\ key" ~/.ssh/r\ key a\b"#).1,
            vec![r"~/.ssh/q\ key", "~/.ssh/r key", r"a\b"]
        );
    }

    /// Issue 16 item 10: a keyword with nothing after it is an error, as in OpenSSH.
    #[test]
    fn a_keyword_without_a_value_is_an_error() {
        assert!(split("User").unwrap_err().contains("no argument"));
        assert!(split("Port = ").unwrap_err().contains("no argument"));
    }

    /// OpenSSH's strdelim takes a quoted keyword (`"User" a`) without its quotes.
    #[test]
    fn a_quoted_keyword_loses_its_quotes() {
        assert_eq!(parts("\"User\" a"), ("user".into(), vec!["a".into()]));
        assert_eq!(parts("Us\"er\" a"), ("user".into(), vec!["a".into()]));
        assert_eq!(split("\"User a").unwrap(), None);
    }

    #[test]
    fn rest_keeps_the_line_as_written() {
        let d = split("ProxyJump = \"a\",b # c").unwrap().unwrap();
        assert_eq!(d.rest, "\"a\",b # c");
    }
}
