//! Verdicts for plain keys: several keys per host, changes, revocation, bad lines and files.

use super::*;

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
