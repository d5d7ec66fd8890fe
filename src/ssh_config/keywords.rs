//! Every ssh_config keyword of current OpenSSH releases (and Apple's), and the checks OpenSSH
//! makes on each line when it reads it, whichever host the line's block applies to: the number
//! of arguments and, for the options lazytunnel reads and the plain flags, their values. A bad
//! line is an error for the whole file, as in OpenSSH. An unknown keyword is a warning naming
//! file:line instead of an error, unless `IgnoreUnknown` covers it: the user's `ssh` may be
//! newer than this list.

use super::lexer::Directive;
use super::{proxy_jump, values};

/// What a keyword's arguments must look like.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// Exactly one non-empty argument.
    One,
    /// One or more arguments.
    Many,
    /// The rest of the line, as written (commands).
    Line,
    /// Accepted and ignored by OpenSSH (deprecated or removed).
    Ignored,
    /// One of yes/no/true/false or the listed words.
    Flag(&'static [&'static str]),
    /// One of the listed words only, any case.
    Words(&'static str, &'static [&'static str]),
    Integer,
    /// A time; `none` also allowed.
    Time,
    Port,
    /// SendEnv: variable names (patterns), no `=`.
    EnvNames,
    /// SetEnv: `NAME=VALUE` each.
    EnvSettings,
    /// One or more file names; `none` only alone.
    Files,
    Jump,
}

use Shape::*;

const KEYWORDS: &[(&str, Shape)] = &[
    ("addkeystoagent", One),
    ("addressfamily", Words("option", &["any", "inet", "inet6"])),
    ("batchmode", Flag(&[])),
    ("bindaddress", One),
    ("bindinterface", One),
    ("canonicaldomains", Many),
    ("canonicalizefallbacklocal", Flag(&[])),
    ("canonicalizehostname", Flag(&["always"])),
    ("canonicalizemaxdots", Integer),
    ("canonicalizepermittedcnames", Many),
    ("casignaturealgorithms", One),
    ("certificatefile", One),
    ("channeltimeout", Many),
    ("checkhostip", Flag(&[])),
    ("ciphers", One),
    ("clearallforwardings", Flag(&[])),
    ("compression", Flag(&[])),
    ("connectionattempts", Integer),
    ("connecttimeout", Time),
    ("controlmaster", Flag(&["ask", "auto", "autoask"])),
    ("controlpath", One),
    ("controlpersist", One),
    ("dynamicforward", One),
    ("enableescapecommandline", Flag(&[])),
    ("enablesshkeysign", Flag(&[])),
    ("escapechar", One),
    ("exitonforwardfailure", Flag(&[])),
    ("fingerprinthash", One),
    ("forkafterauthentication", Flag(&[])),
    ("forwardagent", One),
    ("forwardx11", Flag(&[])),
    ("forwardx11timeout", Time),
    ("forwardx11trusted", Flag(&[])),
    ("gatewayports", Flag(&[])),
    ("globalknownhostsfile", Files),
    ("gssapiauthentication", Flag(&[])),
    ("gssapiclientidentity", One),
    ("gssapidelegatecredentials", Flag(&[])),
    ("gssapikexalgorithms", One),
    ("gssapikeyexchange", Flag(&[])),
    ("gssapirenewalforcesrekey", Flag(&[])),
    ("gssapiserveridentity", One),
    ("gssapitrustdns", Flag(&[])),
    ("hashknownhosts", Flag(&[])),
    ("hostbasedacceptedalgorithms", One),
    ("hostbasedauthentication", Flag(&[])),
    ("hostbasedkeytypes", One),
    ("hostkeyalgorithms", One),
    ("hostkeyalias", One),
    ("hostname", One),
    ("identitiesonly", Flag(&[])),
    ("identityagent", One),
    ("identityfile", One),
    ("ignoreunknown", One),
    ("ipqos", Many),
    ("kbdinteractiveauthentication", Flag(&[])),
    ("challengeresponseauthentication", Flag(&[])),
    ("kbdinteractivedevices", One),
    ("kexalgorithms", One),
    ("knownhostscommand", Line),
    ("localcommand", Line),
    ("localforward", Many),
    (
        "loglevel",
        Words(
            "log level",
            &[
                "quiet", "fatal", "error", "info", "verbose", "debug", "debug1", "debug2", "debug3",
            ],
        ),
    ),
    ("logverbose", Many),
    ("macs", One),
    ("nohostauthenticationforlocalhost", Flag(&[])),
    ("numberofpasswordprompts", Integer),
    ("obscurekeystroketiming", One),
    ("passwordauthentication", Flag(&[])),
    ("permitlocalcommand", Flag(&[])),
    ("permitremoteopen", Many),
    ("pkcs11provider", One),
    ("smartcarddevice", One),
    ("port", Port),
    ("preferredauthentications", One),
    ("proxycommand", Line),
    ("proxyjump", Jump),
    ("proxyusefdpass", Flag(&[])),
    ("pubkeyacceptedalgorithms", One),
    ("pubkeyacceptedkeytypes", One),
    ("pubkeyauthentication", Flag(&["unbound", "host-bound"])),
    ("refuseconnection", Many),
    ("rekeylimit", Many),
    ("remotecommand", Line),
    ("remoteforward", Many),
    ("requesttty", Flag(&["auto", "force"])),
    ("requiredrsasize", Integer),
    ("revokedhostkeys", One),
    ("securitykeyprovider", One),
    ("sendenv", EnvNames),
    ("serveralivecountmax", Integer),
    ("serveraliveinterval", Time),
    (
        "sessiontype",
        Words("option", &["none", "subsystem", "default"]),
    ),
    ("setenv", EnvSettings),
    ("stdinnull", Flag(&[])),
    ("streamlocalbindmask", One),
    ("streamlocalbindunlink", Flag(&[])),
    ("stricthostkeychecking", Flag(&["ask", "off", "accept-new"])),
    (
        "syslogfacility",
        Words(
            "log facility",
            &[
                "daemon", "user", "auth", "authpriv", "local0", "local1", "local2", "local3",
                "local4", "local5", "local6", "local7",
            ],
        ),
    ),
    ("tag", One),
    ("tcpkeepalive", Flag(&[])),
    ("tunnel", Flag(&["point-to-point", "ethernet"])),
    ("tunneldevice", One),
    ("updatehostkeys", Flag(&["ask"])),
    ("user", One),
    ("userknownhostsfile", Files),
    ("verifyhostkeydns", Flag(&["ask"])),
    ("versionaddendum", Line),
    ("visualhostkey", Flag(&[])),
    ("warnweakcrypto", Many),
    ("xauthlocation", One),
    // Apple's OpenSSH.
    ("usekeychain", Flag(&[])),
    // Deprecated or removed: OpenSSH reads past them.
    ("afstokenpassing", Ignored),
    ("cipher", Ignored),
    ("compressionlevel", Ignored),
    ("dsaauthentication", Ignored),
    ("fallbacktorsh", Ignored),
    ("globalknownhostsfile2", Ignored),
    ("kerberosauthentication", Ignored),
    ("kerberostgtpassing", Ignored),
    ("protocol", Ignored),
    ("rhostsauthentication", Ignored),
    ("rhostsrsaauthentication", Ignored),
    ("rsaauthentication", Ignored),
    ("skeyauthentication", Ignored),
    ("tisauthentication", Ignored),
    ("useblacklistedkeys", Ignored),
    ("useprivilegedport", Ignored),
    ("useroaming", Ignored),
    ("usersh", Ignored),
    ("userknownhostsfile2", Ignored),
];

/// Whether a line's keyword is one OpenSSH knows.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Known {
    Yes,
    No,
}

/// Checks one option line as OpenSSH does when it reads it. `Host`, `Match` and `Include` are
/// the reader's own.
pub(super) fn check(directive: &Directive) -> Result<Known, String> {
    let keyword = directive.keyword.as_str();
    let Some((_, shape)) = KEYWORDS.iter().find(|(name, _)| *name == keyword) else {
        return Ok(Known::No);
    };
    let args = &directive.args;
    let one = || -> Result<&str, String> {
        match args.as_slice() {
            [] => Err("Missing argument".into()),
            [arg] if arg.is_empty() => Err("Missing argument".into()),
            [arg] => Ok(arg.as_str()),
            _ => Err(format!("keyword {keyword} extra arguments at end of line")),
        }
    };
    match *shape {
        Ignored | Line => {}
        One => {
            one()?;
        }
        Many => {
            if args.is_empty() {
                return Err("Missing argument".into());
            }
        }
        Flag(extra) => {
            values::multistate(one()?, extra)?;
        }
        Words(what, words) => {
            let value = one()?;
            if !words.iter().any(|w| w.eq_ignore_ascii_case(value)) {
                return Err(format!("unsupported {what} {value:?}"));
            }
        }
        Integer => {
            values::integer(one()?)?;
        }
        Time => {
            let value = one()?;
            if value != "none" {
                values::time(value)?;
            }
        }
        Port => {
            values::port(one()?)?;
        }
        Files => check_files(keyword, args)?,
        EnvNames | EnvSettings => {
            let setting = matches!(shape, EnvSettings);
            if args.is_empty() {
                return Err("Missing argument".into());
            }
            let bad = |a: &String| match setting {
                true => !a.contains('='),
                false => a.is_empty() || a.contains('='),
            };
            if args.iter().any(bad) {
                return Err(match setting {
                    true => "Invalid SetEnv".into(),
                    false => "Invalid environment name".into(),
                });
            }
        }
        Jump => {
            let value = proxy_jump::value_of(&directive.rest);
            if !proxy_jump::is_none(value) {
                proxy_jump::parse(value)?;
            }
        }
    }
    Ok(Known::Yes)
}

fn check_files(keyword: &str, args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        return Err("Missing argument".into());
    }
    for arg in args {
        if arg.is_empty() {
            return Err(format!("keyword {keyword} empty argument"));
        }
        if arg.eq_ignore_ascii_case("none") && args.len() > 1 {
            return Err(format!(
                "keyword {keyword} \"none\" argument must appear alone"
            ));
        }
    }
    Ok(())
}

/// Whether `IgnoreUnknown`'s pattern list (comma-separated, `*`/`?` globs, `!` negation,
/// case-insensitive) covers `keyword`.
pub(super) fn ignored(patterns: &str, keyword: &str) -> bool {
    let mut matched = false;
    for pattern in patterns.split(',') {
        let (negated, pattern) = match pattern.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, pattern),
        };
        let pattern = pattern.to_ascii_lowercase();
        if crate::known_hosts::glob(pattern.as_bytes(), keyword.as_bytes(), false) {
            if negated {
                return false;
            }
            matched = true;
        }
    }
    matched
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh_config::lexer;

    fn check_line(line: &str) -> Result<Known, String> {
        check(&lexer::split(line).unwrap().unwrap())
    }

    /// Issue 16 item 10: extra arguments, `none` with others, and values OpenSSH refuses.
    #[test]
    fn lines_openssh_refuses_are_errors() {
        for (line, error) in [
            ("IdentityFile a b", "extra arguments"),
            ("User #x", "Missing argument"),
            ("UserKnownHostsFile none other", "must appear alone"),
            ("CanonicalizeHostname none", "unsupported option"),
            ("ProxyJump bastion:%p", "Invalid ProxyJump"),
            ("Port 70000", "Bad port"),
            ("ServerAliveCountMax -1", "too small"),
            (
                "ServerAliveInterval 10000000000000000000",
                "invalid time value",
            ),
            ("ConnectTimeout 2147483648", "invalid time value"),
            ("StrictHostKeyChecking maybe", "unsupported option"),
            ("SendEnv A=1", "Invalid environment name"),
            ("SetEnv LANG", "Invalid SetEnv"),
            ("LogLevel foo", "unsupported log level"),
            ("AddressFamily yes", "unsupported option"),
            ("SetEnv =1", "Invalid SetEnv"),
        ] {
            let err = check_line(line).unwrap_err();
            assert!(err.contains(error), "{line}: {err}");
        }
    }

    /// Issue 16 item 8: what OpenSSH accepts, lazytunnel accepts.
    #[test]
    fn lines_openssh_accepts_are_accepted() {
        for line in [
            "IdentitiesOnly true",
            "StrictHostKeyChecking false",
            "ConnectTimeout none",
            "ServerAliveInterval none",
            "ServerAliveCountMax 0",
            "Port http",
            "CanonicalizeHostname false",
            "ProxyJump [10.1.2.3]:2200",
            "ProxyJump a b",
            "SendEnv LANG LC_*",
            "Protocol 1,2",
            "UseKeychain yes",
            "LogLevel Debug1",
            "SessionType None",
        ] {
            assert_eq!(check_line(line), Ok(Known::Yes), "{line}");
        }
    }

    /// Issue 16 item 11: unknown keywords are told apart, and IgnoreUnknown covers them.
    #[test]
    fn unknown_keywords_are_told_apart_and_ignore_unknown_matches_them() {
        assert_eq!(check_line("FutureOption 1"), Ok(Known::No));
        assert!(ignored("Use*,Future*", "futureoption"));
        assert!(!ignored("*,!future*", "futureoption"));
        assert!(!ignored("Other", "futureoption"));
    }
}
