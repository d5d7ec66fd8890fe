//! Which lines apply to a host: names, ports, hashes, wildcards, negation; `ssh-keygen -F` is
//! the oracle.

use std::collections::BTreeSet;

use super::*;

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
