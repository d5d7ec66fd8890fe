//! One ssh_config line split into a keyword and its arguments, as OpenSSH's `readconf.c` splits
//! it: the keyword ends at whitespace or `=` (one `=` may separate it from the arguments),
//! arguments are whitespace-separated, `"…"` or `'…'` quote spaces, a backslash escapes a
//! quote, a backslash or a space, and an argument starting with `#` ends the line.

/// A line that holds a directive: the keyword lowercased, and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Directive {
    pub(super) keyword: String,
    pub(super) args: Vec<String>,
}

/// Splits `line`. `Ok(None)` for blank and comment lines; `Err` says what is malformed.
pub(super) fn split(line: &str) -> Result<Option<Directive>, String> {
    let line = line.trim_start_matches([' ', '\t', '\r', '\n']);
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let end = line
        .find(|c: char| c.is_ascii_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = line[..end].to_ascii_lowercase();
    let mut rest = line[end..].trim_start_matches([' ', '\t']);
    // OpenSSH's strdelim accepts one `=` between keyword and value, with optional spaces.
    if let Some(after) = rest.strip_prefix('=') {
        rest = after.trim_start_matches([' ', '\t']);
    }
    if keyword.is_empty() {
        return Err("missing keyword".into());
    }
    let args = split_args(rest)?;
    Ok(Some(Directive { keyword, args }))
}

fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_ascii_whitespace()).is_some() {}
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
                ('\\', _) if matches!(chars.peek(), Some('"' | '\'' | '\\' | ' ')) => {
                    arg.extend(chars.next());
                }
                ('"' | '\'', None) => quote = Some(c),
                (c, Some(q)) if c == q => quote = None,
                (c, None) if c.is_ascii_whitespace() => break,
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
}
