//! Property spec of the parsers of untrusted text: the daemon's TOML config, ssh_config and
//! known_hosts. Thousands of inputs, made by mutating valid samples with a seeded generator
//! (the same cases on every run; a failing seed is printed), must never panic, and every
//! refusal must name the file, and the line where the problem is on one.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use lazytunnel::config::{Config, ConfigError};
use lazytunnel::known_hosts;
use lazytunnel::ssh_config::{SshConfigError, SshConfigFile};
use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::PublicKey;
use russh::keys::ssh_key::public::Ed25519PublicKey;

const CASES: u64 = 3000;

const TOML_SAMPLE: &str = include_str!("../../config/example.toml");

const SSH_CONFIG_SAMPLE: &str = "Host web db-*.example.com !db-old\n  HostName 10.0.0.%h\n  \
     Port 2222\n  User admin\n  IdentityFile ~/.ssh/id_ed25519\n  ServerAliveInterval 30\n  \
     ServerAliveCountMax 3\n  ConnectTimeout 10\n  StrictHostKeyChecking accept-new\n  \
     UserKnownHostsFile ~/.ssh/kh %d/other\n  ProxyJump jump\n\nHost jump\n  Hostname \
     jump.example.com\n  Port=22\n  Ciphers aes256-gcm@openssh.com,chacha20-poly1305@openssh.com\n\
     \nMatch host *\n  User fallback\n";

/// Pieces that parsers treat specially, and some that no parser expects.
const TOKENS: &[&str] = &[
    "\n",
    "\"",
    "'",
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "{",
    "}",
    "#",
    "\\",
    ",",
    ":",
    "*",
    "?",
    "!",
    "@",
    "%",
    "~",
    "|1|",
    " ",
    "\t",
    "\r",
    "\0",
    "-1",
    "0",
    "65536",
    "99999999999999999999",
    "1e309",
    "nan",
    "é",
    "\u{202e}",
    "yes",
    "none",
    "Host",
    "Match",
    "true",
    "\"\"\"",
    "@revoked",
    "@cert-authority",
    "AAAA",
    "ssh-ed25519",
    "[[forward]]",
    "listen",
];

/// xorshift64*: tiny, seeded, good enough to spread mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `sample` with a few random edits: tokens inserted, ranges deleted or repeated, bytes changed.
fn mutate(sample: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut text = sample.to_vec();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(text.len() + 1);
        match rng.below(4) {
            0 => {
                let token = TOKENS[rng.below(TOKENS.len())].as_bytes();
                text.splice(at..at, token.iter().copied());
            }
            1 => {
                let end = (at + rng.below(40)).min(text.len());
                text.drain(at..end);
            }
            2 => {
                let end = (at + rng.below(80)).min(text.len());
                let copy = text[at..end].to_vec();
                text.splice(at..at, copy);
            }
            _ => {
                if let Some(byte) = text.get_mut(at) {
                    *byte = rng.next() as u8;
                }
            }
        }
    }
    text
}

/// Runs `check` on `CASES` mutations of `sample`, reporting the seed and input of a panic.
fn for_each_case(name: &str, sample: &str, mut check: impl FnMut(&[u8])) {
    for seed in 1..=CASES {
        let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let input = mutate(sample.as_bytes(), &mut rng);
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        if outcome.is_err() {
            panic!(
                "{name} parser panicked on case {seed}: {:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}

#[test]
fn the_daemon_config_parser_never_panics_and_names_file_and_line() {
    let file = Path::new("/fuzz/config.toml");
    for_each_case("config", TOML_SAMPLE, |input| {
        let text = String::from_utf8_lossy(input);
        match Config::from_str(&text, file) {
            Ok(_) => {}
            Err(ConfigError::Invalid { position, .. }) => {
                let shown = Config::from_str(&text, file).unwrap_err().to_string();
                assert!(shown.starts_with("/fuzz/config.toml"), "{shown}");
                if let Some(at) = position {
                    let prefix = format!("/fuzz/config.toml:{}:", at.line);
                    assert!(shown.starts_with(&prefix), "{shown}");
                    assert!(
                        at.line >= 1 && at.line <= text.lines().count() + 1,
                        "{shown}"
                    );
                }
            }
            Err(other) => {
                let shown = other.to_string();
                // Only `~` expansion fails without a position, and it names the path.
                assert!(matches!(other, ConfigError::Path { .. }), "{shown}");
            }
        }
    });
}

#[test]
fn the_ssh_config_parser_never_panics_and_names_file_and_line() {
    let file = Path::new("/fuzz/ssh_config");
    let daemon_config = Config::from_str(
        "[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"web\"\ntarget = \"t:1\"\n",
        Path::new("/fuzz/config.toml"),
    )
    .expect("the daemon config");
    for_each_case("ssh_config", SSH_CONFIG_SAMPLE, |input| {
        let text = String::from_utf8_lossy(input);
        let parsed = SshConfigFile::parse(file, &text, PathBuf::from("/nonexistent/home"));
        let error = match parsed {
            Ok(ssh) => match ssh.resolve(&daemon_config, &daemon_config.forwards[0].host) {
                Ok(_) => return,
                Err(e) => e,
            },
            Err(e) => e,
        };
        let shown = error.to_string();
        match &error {
            SshConfigError::Parse { line, .. } => {
                assert!(
                    shown.starts_with(&format!("/fuzz/ssh_config:{line}:")),
                    "{shown}"
                );
            }
            SshConfigError::Value { at, .. } | SshConfigError::Unsupported { at, .. } => {
                assert!(at.starts_with("/fuzz/ssh_config:"), "{shown}");
            }
            _ => assert!(!shown.is_empty()),
        }
    });
}

#[test]
fn the_known_hosts_parser_never_panics_and_skips_what_it_cannot_read() {
    let key = PublicKey::from(Ed25519PublicKey([7; 32]));
    let other = PublicKey::from(Ed25519PublicKey([9; 32]));
    let line = |k: &PublicKey| k.to_openssh().expect("openssh text");
    let sample = format!(
        "web,10.0.0.1 {}\n[db.example.com]:2222 {}\n|1|c2FsdHNhbHRzYWx0c2FsdHNhbHQ=|aGFzaGhhc2hoYXNoaGFzaGhhc2g= {}\n\
         @revoked * {}\n@cert-authority *.example.com {}\n# comment\n!bad,*.example.com {}\n",
        line(&key),
        line(&key),
        line(&other),
        line(&other),
        line(&other),
        line(&key)
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("known_hosts");
    let offered = PublicKeyOrCertificate::PublicKey {
        key: key.clone(),
        hash_alg: None,
    };
    for_each_case("known_hosts", &sample, |input| {
        std::fs::write(&path, input).expect("write the case");
        // Malformed lines are skipped (and logged with their line), as OpenSSH does: reading
        // a readable file never fails.
        for (host, port) in [("web", 22), ("db.example.com", 2222), ("x.example.com", 22)] {
            known_hosts::verify(std::slice::from_ref(&path), host, port, &offered)
                .unwrap_or_else(|e| panic!("{e}"));
        }
    });
}
