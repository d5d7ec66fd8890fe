//! The options that apply to one host, collected as OpenSSH collects them: the first value
//! obtained wins, across blocks and files (the user's file, then the system file), except for
//! IdentityFile and CertificateFile, whose lines all add up. ProxyJump and ProxyCommand share
//! one slot: whichever comes first decides.

use std::collections::HashMap;

use super::files::{ConfigFile, Location};

/// One option's first value and where it was read.
#[derive(Debug, Clone)]
pub(super) struct Found {
    /// As written in the file (for messages), e.g. `ProxyJump`.
    pub(super) keyword: String,
    pub(super) args: Vec<String>,
    /// The line after the keyword, unsplit (ProxyJump reads it so).
    pub(super) rest: String,
    pub(super) at: Location,
}

impl Found {
    /// The first argument (an option with none has the empty string).
    pub(super) fn value(&self) -> &str {
        self.args.first().map_or("", String::as_str)
    }
}

/// Keywords whose every line counts, in order.
const ACCUMULATING: &[&str] = &["identityfile", "certificatefile"];

/// Keywords whose `none` (exact case) means "not set" to OpenSSH, not a value.
const UNSET_BY_NONE: &[&str] = &["connecttimeout", "serveraliveinterval"];

#[derive(Debug, Default)]
pub(super) struct Options {
    first: HashMap<String, Found>,
    all: HashMap<String, Vec<Found>>,
}

impl Options {
    /// Collects the options of `files`, in order, that apply to `host`.
    pub(super) fn collect(files: &[&ConfigFile], host: &str) -> Options {
        let mut options = Options::default();
        for file in files {
            file.walk(host, &mut |at, directive| {
                let keyword = directive.keyword.as_str();
                let found = Found {
                    keyword: keyword.to_string(),
                    args: directive.args.clone(),
                    rest: directive.rest.clone(),
                    at: at.clone(),
                };
                if ACCUMULATING.contains(&keyword) {
                    let lines = options.all.entry(keyword.to_string()).or_default();
                    if !lines.iter().any(|line| line.args == found.args) {
                        lines.push(found);
                    }
                    return;
                }
                // `none` leaves these unset, so a later line may still set them.
                if UNSET_BY_NONE.contains(&keyword) && found.value() == "none" {
                    return;
                }
                let slot = match keyword {
                    "proxyjump" | "proxycommand" => "proxy",
                    other => other,
                };
                options.first.entry(slot.to_string()).or_insert(found);
            });
        }
        options
    }

    /// The first value of `keyword` (lowercase); for ProxyJump/ProxyCommand ask for `proxy`.
    pub(super) fn get(&self, keyword: &str) -> Option<&Found> {
        self.first.get(keyword)
    }

    /// Every line of an accumulating keyword, in order, without repeats of the same text
    /// (OpenSSH lists a key file once, however many blocks name it).
    pub(super) fn all(&self, keyword: &str) -> &[Found] {
        self.all.get(keyword).map_or(&[], Vec::as_slice)
    }
}
