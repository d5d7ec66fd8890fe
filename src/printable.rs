//! Text from outside (a server's DISCONNECT message, error texts carrying config values) made
//! safe for one log line or one `status` row: control characters, newlines included, are
//! shown escaped, so nothing can forge a log line or drive the terminal.

use std::borrow::Cow;

/// `text` with every control character escaped (`\n`, `\u{1b}`, ...).
pub fn printable(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut shown = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    Cow::Owned(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_the_rest_kept() {
        assert!(matches!(printable("plain text, ünïcode"), Cow::Borrowed(_)));
        assert_eq!(
            printable("bye\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[2J\u{7f}"),
            "bye\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[2J\\u{7f}"
        );
    }
}
