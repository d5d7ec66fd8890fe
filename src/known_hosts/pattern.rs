//! The host field of a known_hosts line: a comma-separated list of glob patterns with `!`
//! negation, or one hashed name `|1|salt|hash`.

use hmac::{Hmac, KeyInit, Mac};
use russh::keys::ssh_key::encoding::base64::{Base64, Encoding};
use sha1::Sha1;

/// Salt length of hashed names: OpenSSH requires exactly the HMAC-SHA1 output size.
pub(super) const SALT_LEN: usize = 20;

/// OpenSSH copies each sub-pattern into a 1024-byte buffer; a longer one makes the whole list
/// fail to match.
const MAX_SUBPATTERN: usize = 1023;

/// How a name relates to a host field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Match {
    /// A pattern matched and no negated pattern did.
    Yes,
    /// No pattern matched.
    No,
    /// A `!pattern` matched: the line does not apply to this name, whatever else matches.
    Negated,
}

/// Matches `name` against a comma-separated pattern list as OpenSSH's `match_hostname` does:
/// `*` matches any run of bytes (dots and brackets included), `?` exactly one byte, and a
/// matching `!pattern` vetoes the line. Comparison ignores ASCII case on both sides.
///
/// Ports are not special: `[host]:2222` is matched as a plain string, so a bare `host` pattern
/// never matches the lookup name `[host]:2222` (but `*` does).
pub fn host_matches(patterns: &str, name: &str) -> Match {
    let mut matched = false;
    // `split_terminator`: OpenSSH yields no empty sub-pattern after a trailing comma.
    for sub in patterns.split_terminator(',') {
        let (negated, sub) = match sub.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, sub),
        };
        if sub.len() >= MAX_SUBPATTERN {
            return Match::No;
        }
        if glob(sub.as_bytes(), name.as_bytes(), true) {
            if negated {
                return Match::Negated;
            }
            matched = true;
        }
    }
    if matched { Match::Yes } else { Match::No }
}

/// Byte-wise glob with `*` and `?`, backtracking only to the most recent `*` (linear enough
/// for host names, and no recursion on hostile input). known_hosts compares names ignoring
/// ASCII case; ssh_config's `Host` and algorithm patterns compare them exactly.
pub(crate) fn glob(pattern: &[u8], name: &[u8], ignore_case: bool) -> bool {
    let (mut p, mut n) = (0, 0);
    // Where to resume after the last `*`: (pattern index past it, name index it now covers).
    let mut resume: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                p += 1;
                resume = Some((p, n));
            }
            Some(&c)
                if c == b'?'
                    || c == name[n]
                    || (ignore_case && c.eq_ignore_ascii_case(&name[n])) =>
            {
                p += 1;
                n += 1;
            }
            _ => match resume {
                Some((after_star, covered)) => {
                    p = after_star;
                    n = covered + 1;
                    resume = Some((after_star, covered + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// A parsed host field.
#[derive(Debug, Clone)]
pub(super) enum HostField {
    Patterns(String),
    /// Kept as text: OpenSSH re-hashes the looked-up name with the salt and compares the whole
    /// `|1|salt|hash` string, so nothing may follow the hash.
    Hashed {
        salt: Vec<u8>,
        text: String,
    },
}

impl HostField {
    /// Any field starting with `|` is a hashed name (OpenSSH's rule); it must carry a 20-byte
    /// salt or the line is malformed.
    pub(super) fn parse(field: &str) -> Result<Self, String> {
        if !field.starts_with('|') {
            return Ok(Self::Patterns(field.to_owned()));
        }
        let rest = field
            .strip_prefix("|1|")
            .ok_or("hashed host name is not of the form |1|salt|hash")?;
        let (salt, _) = rest
            .split_once('|')
            .ok_or("hashed host name has no hash after the salt")?;
        let salt = Base64::decode_vec(salt)
            .map_err(|_| "hashed host name has a salt that is not base64")?;
        if salt.len() != SALT_LEN {
            return Err(format!(
                "hashed host name has a {}-byte salt (expected {SALT_LEN})",
                salt.len()
            ));
        }
        Ok(Self::Hashed {
            salt,
            text: field.to_owned(),
        })
    }

    /// `name` must already be lowercased (see [`super::lookup_name`]): hashes cover exact bytes.
    pub(super) fn matches(&self, name: &str) -> Match {
        match self {
            Self::Patterns(patterns) => host_matches(patterns, name),
            Self::Hashed { salt, text } if hash_name(salt, name) == *text => Match::Yes,
            Self::Hashed { .. } => Match::No,
        }
    }
}

/// `|1|base64(salt)|base64(HMAC-SHA1(key = salt, message = name))`, as `ssh-keygen -H` writes.
pub(super) fn hash_name(salt: &[u8], name: &str) -> String {
    let mac = Hmac::<Sha1>::new_from_slice(salt).expect("HMAC takes keys of any length");
    let digest = mac.chain_update(name.as_bytes()).finalize().into_bytes();
    format!(
        "|1|{}|{}",
        Base64::encode_string(salt),
        Base64::encode_string(&digest)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_name_matches_only_itself() {
        assert_eq!(host_matches("foo.example", "foo.example"), Match::Yes);
        assert_eq!(host_matches("foo.example", "foo.example.org"), Match::No);
        assert_eq!(host_matches("foo.example", "xfoo.example"), Match::No);
        assert_eq!(host_matches("foo.example", "foo"), Match::No);
    }

    #[test]
    fn any_name_of_a_comma_list_matches() {
        let list = "foo.example,10.0.0.1,bar";
        assert_eq!(host_matches(list, "foo.example"), Match::Yes);
        assert_eq!(host_matches(list, "10.0.0.1"), Match::Yes);
        assert_eq!(host_matches(list, "bar"), Match::Yes);
        assert_eq!(host_matches(list, "baz"), Match::No);
    }

    #[test]
    fn case_is_ignored_on_both_sides() {
        assert_eq!(host_matches("FOO.Example", "foo.example"), Match::Yes);
        assert_eq!(host_matches("foo.example", "FOO.EXAMPLE"), Match::Yes);
        assert_eq!(host_matches("*.EXAMPLE", "foo.example"), Match::Yes);
    }

    #[test]
    fn star_matches_any_run_including_dots_and_nothing() {
        assert_eq!(host_matches("*.example", "foo.example"), Match::Yes);
        assert_eq!(host_matches("*.example", "a.b.example"), Match::Yes);
        assert_eq!(host_matches("*.example", ".example"), Match::Yes);
        assert_eq!(host_matches("*.example", "example"), Match::No);
        assert_eq!(host_matches("foo*", "foo"), Match::Yes);
        assert_eq!(host_matches("f*o*x", "foo.box"), Match::Yes);
        assert_eq!(host_matches("f*o*x", "foo.boy"), Match::No);
        assert_eq!(host_matches("*", "anything.at.all"), Match::Yes);
    }

    #[test]
    fn question_mark_matches_exactly_one_byte() {
        assert_eq!(host_matches("f?o", "foo"), Match::Yes);
        assert_eq!(host_matches("f?o", "fo"), Match::No);
        assert_eq!(host_matches("f?o", "fooo"), Match::No);
        assert_eq!(host_matches("host??", "host12"), Match::Yes);
    }

    #[test]
    fn negation_vetoes_the_line_wherever_it_appears() {
        assert_eq!(
            host_matches("!foo.example,*.example", "foo.example"),
            Match::Negated
        );
        assert_eq!(
            host_matches("*.example,!foo.example", "foo.example"),
            Match::Negated
        );
        assert_eq!(
            host_matches("!foo.example,*.example", "bar.example"),
            Match::Yes
        );
        // A negation alone never makes a line match.
        assert_eq!(host_matches("!foo.example", "bar.example"), Match::No);
        assert_eq!(host_matches("!*.internal,*", "db.internal"), Match::Negated);
    }

    #[test]
    fn ports_are_part_of_the_string() {
        assert_eq!(
            host_matches("[foo.example]:2222", "[foo.example]:2222"),
            Match::Yes
        );
        assert_eq!(host_matches("foo.example", "[foo.example]:2222"), Match::No);
        assert_eq!(host_matches("[foo.example]:2222", "foo.example"), Match::No);
        assert_eq!(
            host_matches("[foo.example]:2222", "[foo.example]:22"),
            Match::No
        );
        assert_eq!(
            host_matches("[*.example]:2222", "[foo.example]:2222"),
            Match::Yes
        );
        assert_eq!(host_matches("*.example", "[foo.example]:2222"), Match::No);
        // Brackets are literal, not character classes.
        assert_eq!(host_matches("[ab]", "a"), Match::No);
    }

    #[test]
    fn empty_and_oversized_subpatterns() {
        assert_eq!(host_matches("foo,,bar", "bar"), Match::Yes);
        assert_eq!(host_matches("foo,", "foo"), Match::Yes);
        let long = format!("foo,{}", "x".repeat(MAX_SUBPATTERN));
        assert_eq!(host_matches(&long, "foo"), Match::No);
    }

    #[test]
    fn hashed_name_matches_the_name_ssh_keygen_hashed() {
        // `ssh-keygen -H` output for "foo.example".
        let field =
            HostField::parse("|1|1tJXqXz93vEJGFKiCf83DJmTka8=|89Encb4RUF5dT57wxVGCJLzqbfo=")
                .unwrap();
        assert_eq!(field.matches("foo.example"), Match::Yes);
        assert_eq!(field.matches("bar.example"), Match::No);
        assert_eq!(field.matches("[foo.example]:22"), Match::No);
    }

    #[test]
    fn hashing_round_trips() {
        let salt = [7u8; SALT_LEN];
        let text = hash_name(&salt, "[foo.example]:2222");
        let field = HostField::parse(&text).unwrap();
        assert_eq!(field.matches("[foo.example]:2222"), Match::Yes);
        assert_eq!(field.matches("foo.example"), Match::No);
    }

    #[test]
    fn hashed_field_with_trailing_names_never_matches() {
        let salt = [7u8; SALT_LEN];
        let text = format!("{},foo.example", hash_name(&salt, "foo.example"));
        let field = HostField::parse(&text).unwrap();
        assert_eq!(field.matches("foo.example"), Match::No);
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        assert!(HostField::parse("|2|abc|def").is_err());
        assert!(HostField::parse("|1|nodelimiter").is_err());
        assert!(HostField::parse("|1|!!!|AAAA").is_err());
        // A 3-byte salt.
        assert!(HostField::parse("|1|AAAA|AAAA").is_err());
        assert!(HostField::parse("plain.example").is_ok());
    }
}
