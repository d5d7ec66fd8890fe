//! Verdicts over real files, with keys, certificates and hashed names made by `ssh-keygen`,
//! which also serves as the oracle for host matching and for [`append`]ed lines.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use russh::keys::PublicKeyOrCertificate;
use russh::keys::ssh_key::{Certificate, HashAlg, PublicKey};

use super::*;

/// Keys and files in a temporary directory. `None` (and a message) without `ssh-keygen`.
struct Fixture {
    dir: tempfile::TempDir,
}

macro_rules! fixture {
    () => {
        match Fixture::new() {
            Some(fixture) => fixture,
            None => return,
        }
    };
}

impl Fixture {
    fn new() -> Option<Self> {
        if Command::new("ssh-keygen").arg("-?").output().is_err() {
            eprintln!("skipping: ssh-keygen is not installed");
            return None;
        }
        Some(Self {
            dir: tempfile::tempdir().unwrap(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn ssh_keygen(&self, args: &[&str]) -> String {
        let out = Command::new("ssh-keygen")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh-keygen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// A new key pair `name`/`name.pub` of `key_type` (ed25519, ecdsa, rsa).
    fn key(&self, name: &str, key_type: &str) -> PublicKey {
        self.ssh_keygen(&["-q", "-t", key_type, "-N", "", "-C", name, "-f", name]);
        PublicKey::read_openssh_file(self.path(&format!("{name}.pub"))).unwrap()
    }

    /// Signs the public half of `key` with the private key `ca`, passing `args` (e.g. `-h`,
    /// `-n principals`, `-V interval`) to `ssh-keygen -s`.
    fn cert(&self, ca: &str, key: &str, args: &[&str]) -> PublicKeyOrCertificate {
        // A copy per certificate, since ssh-keygen names the output after its input.
        let copy = format!("{key}-{}", self.dir.path().read_dir().unwrap().count());
        std::fs::copy(
            self.path(&format!("{key}.pub")),
            self.path(&format!("{copy}.pub")),
        )
        .unwrap();
        let mut all = vec!["-q", "-s", ca, "-I", "test-cert"];
        all.extend_from_slice(args);
        let input = format!("{copy}.pub");
        all.push(&input);
        self.ssh_keygen(&all);
        let cert = Certificate::read_file(&self.path(&format!("{copy}-cert.pub"))).unwrap();
        PublicKeyOrCertificate::Certificate(cert)
    }

    fn file(&self, name: &str, lines: &[String]) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        path
    }

    /// Line numbers `ssh-keygen -F name -f file` reports as matching.
    fn keygen_matches(&self, file: &Path, name: &str) -> BTreeSet<usize> {
        let out = Command::new("ssh-keygen")
            .args(["-F", name, "-f"])
            .arg(file)
            .output()
            .unwrap();
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                line.strip_prefix("# Host ")?
                    .split_once(" found: line ")?
                    .1
                    .split(' ')
                    .next()?
                    .parse()
                    .ok()
            })
            .collect()
    }
}

/// A known_hosts line; the key's comment is left in, as users' files have them.
fn line(marker_and_hosts: &str, key: &PublicKey) -> String {
    format!("{marker_and_hosts} {}", key.to_openssh().unwrap())
}

fn plain(key: &PublicKey) -> PublicKeyOrCertificate {
    PublicKeyOrCertificate::from(key.clone())
}

fn check(files: &[&Path], host: &str, port: u16, key: &PublicKeyOrCertificate) -> Verdict {
    let files: Vec<PathBuf> = files.iter().map(|path| path.to_path_buf()).collect();
    verify(&files, host, port, key).unwrap()
}

fn trusted(path: &Path, line: usize) -> Verdict {
    Verdict::Trusted {
        at: Location {
            path: path.to_owned(),
            line,
        },
    }
}

fn revoked(path: &Path, line: usize) -> Verdict {
    Verdict::Revoked {
        at: Location {
            path: path.to_owned(),
            line,
        },
    }
}

fn changed(path: &Path, line: usize, known: &PublicKey) -> Verdict {
    Verdict::Changed {
        at: Location {
            path: path.to_owned(),
            line,
        },
        known_fingerprint: known.fingerprint(HashAlg::Sha256).to_string(),
    }
}

#[test]
fn lookup_names_follow_openssh() {
    assert_eq!(lookup_name("Foo.Example", 22), "foo.example");
    assert_eq!(lookup_name("foo.example", 2222), "[foo.example]:2222");
    assert_eq!(lookup_name("::1", 2222), "[::1]:2222");
    assert_eq!(lookup_name("foo.example", 0), "foo.example");
}

#[test]
fn a_line_naming_the_host_trusts_its_key() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let other = fx.key("other", "ed25519");
    let kh = fx.file(
        "kh",
        &[
            "# comment".into(),
            line("other.example", &other),
            line("foo.example,10.0.0.1", &key),
        ],
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 3)
    );
    assert_eq!(check(&[&kh], "10.0.0.1", 22, &plain(&key)), trusted(&kh, 3));
    assert_eq!(
        check(&[&kh], "FOO.Example", 22, &plain(&key)),
        trusted(&kh, 3)
    );
    assert_eq!(
        check(&[&kh], "bar.example", 22, &plain(&key)),
        Verdict::Unknown
    );
}

#[test]
fn a_non_default_port_is_looked_up_as_bracketed_host_and_port() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.file("kh", &[line("[foo.example]:2222", &key)]);
    assert_eq!(
        check(&[&kh], "foo.example", 2222, &plain(&key)),
        trusted(&kh, 1)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        Verdict::Unknown
    );
    assert_eq!(
        check(&[&kh], "foo.example", 2200, &plain(&key)),
        Verdict::Unknown
    );
}

#[test]
fn a_bare_host_line_vouches_for_another_port_only_with_the_same_key() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let other = fx.key("other", "ed25519");
    let same = fx.file("same", &[line("foo.example", &key)]);
    assert_eq!(
        check(&[&same], "foo.example", 2222, &plain(&key)),
        trusted(&same, 1)
    );
    let different = fx.file("different", &[line("foo.example", &other)]);
    assert_eq!(
        check(&[&different], "foo.example", 2222, &plain(&key)),
        Verdict::Unknown
    );
    // A changed key under the port's own name is not rescued by the bare name.
    let both = fx.file(
        "both",
        &[
            line("[foo.example]:2222", &other),
            line("foo.example", &key),
        ],
    );
    assert_eq!(
        check(&[&both], "foo.example", 2222, &plain(&key)),
        changed(&both, 1, &other)
    );
}

#[test]
fn hashed_names_written_by_ssh_keygen_match() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.file(
        "kh",
        &[
            line("foo.example,Bar.Example", &key),
            line("[foo.example]:2222", &key),
        ],
    );
    fx.ssh_keygen(&["-q", "-H", "-f", "kh"]);
    let text = std::fs::read_to_string(&kh).unwrap();
    assert!(text.lines().all(|l| l.starts_with("|1|")), "{text}");
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 1)
    );
    assert_eq!(
        check(&[&kh], "BAR.example", 22, &plain(&key)),
        trusted(&kh, 2)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 2222, &plain(&key)),
        trusted(&kh, 3)
    );
    assert_eq!(
        check(&[&kh], "baz.example", 22, &plain(&key)),
        Verdict::Unknown
    );
}

#[test]
fn wildcards_and_negations_select_lines() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let other = fx.key("other", "ed25519");
    let kh = fx.file(
        "kh",
        &[
            line("!secret.example,*.example", &key),
            line("h?st.lan", &key),
            line("!foo.example,*.example", &other),
        ],
    );
    assert_eq!(
        check(&[&kh], "public.example", 22, &plain(&key)),
        trusted(&kh, 1)
    );
    assert_eq!(check(&[&kh], "host.lan", 22, &plain(&key)), trusted(&kh, 2));
    assert_eq!(
        check(&[&kh], "hoost.lan", 22, &plain(&key)),
        Verdict::Unknown
    );
    assert_eq!(
        check(&[&kh], "secret.example", 22, &plain(&key)),
        changed(&kh, 3, &other)
    );
    // Line 3 is vetoed for foo.example, so its other key is no change; line 1 applies.
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 1)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&other)),
        changed(&kh, 1, &key)
    );
}

#[test]
fn host_matching_agrees_with_ssh_keygen() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.file(
        "kh",
        &[
            line("foo.example,bar.example", &key),
            line("*.wild.example", &key),
            line("!secret.wild.example,*.wild.example", &key),
            line("h?st.example", &key),
            line("[foo.example]:2222", &key),
            line("[*.example]:2200", &key),
            line("@cert-authority *.ca.example", &key),
            line("@revoked revoked.example", &key),
            line("UPPER.Example", &key),
            line("10.0.0.*", &key),
            line("*.example,!*.wild.example", &key),
        ],
    );
    let hosts = [
        ("foo.example", 22),
        ("bar.example", 22),
        ("a.wild.example", 22),
        ("secret.wild.example", 22),
        ("host.example", 22),
        ("hst.example", 22),
        ("foo.example", 2222),
        ("x.example", 2200),
        ("x.example", 2201),
        ("a.ca.example", 22),
        ("revoked.example", 22),
        ("upper.example", 22),
        ("10.0.0.5", 22),
        ("10.0.1.5", 22),
        ("unknown.org", 22),
    ];
    let ours = |file: &Path, name: &str| -> BTreeSet<usize> {
        let (entries, malformed) = parse::parse(&std::fs::read(file).unwrap());
        assert!(malformed.is_empty());
        entries
            .iter()
            .filter(|e| e.hosts.matches(name) == Match::Yes)
            .map(|e| e.line)
            .collect()
    };
    for (host, port) in hosts {
        let name = lookup_name(host, port);
        assert_eq!(ours(&kh, &name), fx.keygen_matches(&kh, &name), "{name}");
    }
    // Again with every name hashed (ssh-keygen -H leaves patterns and markers alone).
    fx.ssh_keygen(&["-q", "-H", "-f", "kh"]);
    for (host, port) in hosts {
        let name = lookup_name(host, port);
        assert_eq!(
            ours(&kh, &name),
            fx.keygen_matches(&kh, &name),
            "hashed {name}"
        );
    }
}

#[test]
fn every_key_of_a_host_with_several_is_trusted() {
    let fx = fixture!();
    let ed = fx.key("ed", "ed25519");
    let ec = fx.key("ec", "ecdsa");
    let rsa = fx.key("rsa", "rsa");
    let kh = fx.file(
        "kh",
        &[
            line("foo.example", &ed),
            line("foo.example", &ec),
            line("foo.example", &rsa),
        ],
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&ed)),
        trusted(&kh, 1)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&ec)),
        trusted(&kh, 2)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&rsa)),
        trusted(&kh, 3)
    );
}

#[test]
fn a_different_key_of_the_same_type_is_a_change() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let old = fx.key("old", "ed25519");
    let ec = fx.key("ec", "ecdsa");
    // The ECDSA line comes first, but the same-type line is the one to report.
    let kh = fx.file("kh", &[line("foo.example", &ec), line("foo.example", &old)]);
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        changed(&kh, 2, &old)
    );
}

#[test]
fn a_key_of_another_type_than_the_known_ones_is_a_change_as_in_openssh() {
    let fx = fixture!();
    let known = fx.key("known", "ed25519");
    let presented = fx.key("presented", "ecdsa");
    let kh = fx.file("kh", &[line("foo.example", &known)]);
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&presented)),
        changed(&kh, 1, &known)
    );
}

#[test]
fn a_change_is_found_across_files() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let old = fx.key("old", "ed25519");
    let user = fx.file("user", &[line("other.example", &key)]);
    let global = fx.file("global", &[line("foo.example", &old)]);
    assert_eq!(
        check(&[&user, &global], "foo.example", 22, &plain(&key)),
        changed(&global, 1, &old)
    );
}

#[test]
fn a_revoked_key_is_refused_whatever_else_matches() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let same_file = fx.file(
        "same",
        &[line("foo.example", &key), line("@revoked *", &key)],
    );
    assert_eq!(
        check(&[&same_file], "foo.example", 22, &plain(&key)),
        revoked(&same_file, 2)
    );

    let user = fx.file("user", &[line("foo.example", &key)]);
    let global = fx.file("global", &[line("@revoked foo.example", &key)]);
    assert_eq!(
        check(&[&user, &global], "foo.example", 22, &plain(&key)),
        revoked(&global, 1)
    );

    // Stricter than OpenSSH: the revoked line's host field does not matter.
    let elsewhere = fx.file(
        "elsewhere",
        &[
            line("@revoked old.example", &key),
            line("foo.example", &key),
        ],
    );
    assert_eq!(
        check(&[&elsewhere], "foo.example", 2222, &plain(&key)),
        revoked(&elsewhere, 1)
    );
}

#[test]
fn malformed_lines_are_skipped() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.file(
        "kh",
        &[
            "@bogus foo.example ssh-ed25519 AAAA".into(),
            "foo.example ssh-ed25519".into(),
            "foo.example ssh-ed25519 !!!!".into(),
            "|1|c2FsdA==|x foo".into(),
            format!("\t  {}", line("foo.example", &key).replace(' ', "\t")),
        ],
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 5)
    );
}

#[test]
fn a_missing_file_is_skipped_and_an_unreadable_one_is_an_error() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.file("kh", &[line("foo.example", &key)]);
    let missing = fx.path("missing");
    assert_eq!(
        check(&[&missing, &kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 1)
    );
    // A directory cannot be read, whoever runs the test (root can read a 0000 file).
    let unreadable = fx.path("dir");
    std::fs::create_dir(&unreadable).unwrap();
    let err = verify(&[kh, unreadable.clone()], "foo.example", 22, &plain(&key)).unwrap_err();
    let KnownHostsError::Read { path, .. } = &err;
    assert_eq!(path, &unreadable);
    assert!(
        err.to_string().contains(&unreadable.display().to_string()),
        "{err}"
    );
}

mod appending;
mod certificates;
