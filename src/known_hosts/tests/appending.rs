//! [`append`] output, checked with `ssh-keygen -F` and read back.

use super::*;

#[test]
fn an_appended_key_is_found_by_ssh_keygen_and_trusted() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let rsa = fx.key("rsa", "rsa");
    let kh = fx.path("kh");
    append(&kh, "Foo.Example", 22, &key, false).unwrap();
    append(&kh, "foo.example", 2222, &rsa, false).unwrap();
    let text = std::fs::read_to_string(&kh).unwrap();
    let expected = format!(
        "foo.example {}\n[foo.example]:2222 {}\n",
        PublicKey::new(key.key_data().clone(), "")
            .to_openssh()
            .unwrap(),
        PublicKey::new(rsa.key_data().clone(), "")
            .to_openssh()
            .unwrap()
    );
    assert_eq!(text, expected);
    assert_eq!(fx.keygen_matches(&kh, "foo.example"), BTreeSet::from([1]));
    assert_eq!(
        fx.keygen_matches(&kh, "[foo.example]:2222"),
        BTreeSet::from([2])
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 1)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 2222, &plain(&rsa)),
        trusted(&kh, 2)
    );
}

#[test]
fn a_hashed_appended_key_is_found_by_ssh_keygen_and_trusted() {
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.path("kh");
    append(&kh, "foo.example", 22, &key, true).unwrap();
    append(&kh, "foo.example", 2222, &key, true).unwrap();
    let text = std::fs::read_to_string(&kh).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .all(|l| l.starts_with("|1|") && !l.contains("foo")),
        "{text}"
    );
    assert_ne!(
        lines[0].split(' ').next(),
        lines[1].split(' ').next(),
        "fresh salt each time"
    );
    assert_eq!(fx.keygen_matches(&kh, "foo.example"), BTreeSet::from([1]));
    assert_eq!(
        fx.keygen_matches(&kh, "[foo.example]:2222"),
        BTreeSet::from([2])
    );
    assert_eq!(
        check(&[&kh], "foo.example", 2222, &plain(&key)),
        trusted(&kh, 2)
    );
}

#[test]
fn appending_completes_an_unterminated_last_line() {
    let fx = fixture!();
    let old = fx.key("old", "ed25519");
    let key = fx.key("host", "ed25519");
    let kh = fx.path("kh");
    std::fs::write(&kh, line("old.example", &old)).unwrap();
    append(&kh, "foo.example", 22, &key, false).unwrap();
    assert_eq!(
        check(&[&kh], "old.example", 22, &plain(&old)),
        trusted(&kh, 1)
    );
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 2)
    );
    assert!(std::fs::read_to_string(&kh).unwrap().ends_with('\n'));
}

#[cfg(unix)]
#[test]
fn appending_creates_a_private_directory_and_file() {
    use std::os::unix::fs::PermissionsExt;
    let fx = fixture!();
    let key = fx.key("host", "ed25519");
    let kh = fx.path("new/.ssh/known_hosts");
    append(&kh, "foo.example", 22, &key, false).unwrap();
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(kh.parent().unwrap()), 0o700);
    assert_eq!(mode(&kh), 0o600);
    assert_eq!(
        check(&[&kh], "foo.example", 22, &plain(&key)),
        trusted(&kh, 1)
    );
}
