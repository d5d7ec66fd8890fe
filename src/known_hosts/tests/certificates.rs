//! Host certificates and `@cert-authority` lines.

use super::*;

/// A host key, a CA and a second CA, and a file trusting the first CA for `*.example`.
fn setup(fx: &Fixture) -> (PublicKey, PublicKey, PathBuf) {
    let host = fx.key("host", "ed25519");
    let ca = fx.key("ca", "ed25519");
    fx.key("ca2", "ed25519");
    let kh = fx.file("kh", &[line("@cert-authority *.example", &ca)]);
    (host, ca, kh)
}

#[test]
fn a_host_certificate_from_a_trusted_ca_is_trusted() {
    let fx = fixture!();
    let (_, _, kh) = setup(&fx);
    let cert = fx.cert("ca", "host", &["-h", "-n", "foo.example,bar.example"]);
    assert_eq!(check(&[&kh], "foo.example", 22, &cert), trusted(&kh, 1));
    assert_eq!(check(&[&kh], "Bar.Example", 22, &cert), trusted(&kh, 1));
    // Principals name hosts, not ports; a CA line for the bare name covers other ports.
    assert_eq!(
        check(&[&kh], "foo.example", 2222, &cert),
        trusted(&fx.path("kh"), 1)
    );
    let bracketed = fx.file(
        "bracketed",
        &[line(
            "@cert-authority [*.example]:2222",
            &fx.key("ca3", "ed25519"),
        )],
    );
    let cert3 = fx.cert("ca3", "host", &["-h", "-n", "foo.example"]);
    assert_eq!(
        check(&[&bracketed], "foo.example", 2222, &cert3),
        trusted(&bracketed, 1)
    );
    assert_eq!(
        check(&[&bracketed], "foo.example", 22, &cert3),
        Verdict::Unknown
    );
}

#[test]
fn invalid_certificates_are_not_trusted() {
    let fx = fixture!();
    let (_, _, kh) = setup(&fx);
    let cases: [(&str, &str, &[&str]); 7] = [
        ("wrong principal", "ca", &["-h", "-n", "other.example"]),
        ("no principals", "ca", &["-h"]),
        (
            "expired",
            "ca",
            &["-h", "-n", "foo.example", "-V", "20200101:20200102"],
        ),
        (
            "not yet valid",
            "ca",
            &["-h", "-n", "foo.example", "-V", "+52w:+104w"],
        ),
        ("user certificate", "ca", &["-n", "foo.example"]),
        ("another CA", "ca2", &["-h", "-n", "foo.example"]),
        (
            "critical option",
            "ca",
            &["-h", "-n", "foo.example", "-O", "critical:x@example.com=y"],
        ),
    ];
    for (what, ca, args) in cases {
        let cert = fx.cert(ca, "host", args);
        assert_eq!(
            check(&[&kh], "foo.example", 22, &cert),
            Verdict::Unknown,
            "{what}"
        );
    }
}

#[test]
fn a_ca_line_for_other_hosts_does_not_vouch() {
    let fx = fixture!();
    let (_, ca, _) = setup(&fx);
    let kh = fx.file("narrow", &[line("@cert-authority bar.example", &ca)]);
    let cert = fx.cert("ca", "host", &["-h", "-n", "foo.example,bar.example"]);
    assert_eq!(check(&[&kh], "foo.example", 22, &cert), Verdict::Unknown);
}

#[test]
fn an_unmarked_line_with_the_ca_key_does_not_vouch() {
    let fx = fixture!();
    let (_, ca, _) = setup(&fx);
    let kh = fx.file("unmarked", &[line("foo.example", &ca)]);
    let cert = fx.cert("ca", "host", &["-h", "-n", "foo.example"]);
    // The line holds another ed25519 key for the host, so the certificate's key changed.
    assert_eq!(
        check(&[&kh], "foo.example", 22, &cert),
        changed(&kh, 1, &ca)
    );
}

#[test]
fn a_rejected_certificate_falls_back_to_its_plain_key() {
    let fx = fixture!();
    let (host, ca, _) = setup(&fx);
    let old = fx.key("old", "ed25519");
    let cert = fx.cert("ca", "host", &["-h", "-n", "other.example"]);
    let pinned = fx.file(
        "pinned",
        &[
            line("@cert-authority *.example", &ca),
            line("foo.example", &host),
        ],
    );
    assert_eq!(
        check(&[&pinned], "foo.example", 22, &cert),
        trusted(&pinned, 2)
    );
    let stale = fx.file(
        "stale",
        &[
            line("@cert-authority *.example", &ca),
            line("foo.example", &old),
        ],
    );
    assert_eq!(
        check(&[&stale], "foo.example", 22, &cert),
        changed(&stale, 2, &old)
    );
}

#[test]
fn a_valid_certificate_wins_over_a_stale_plain_line() {
    let fx = fixture!();
    let (_, ca, _) = setup(&fx);
    let old = fx.key("old", "ed25519");
    let kh = fx.file(
        "kh2",
        &[
            line("foo.example", &old),
            line("@cert-authority *.example", &ca),
        ],
    );
    let cert = fx.cert("ca", "host", &["-h", "-n", "foo.example"]);
    assert_eq!(check(&[&kh], "foo.example", 22, &cert), trusted(&kh, 2));
}

#[test]
fn a_revoked_ca_or_certified_key_is_refused() {
    let fx = fixture!();
    let (host, ca, kh) = setup(&fx);
    let cert = fx.cert("ca", "host", &["-h", "-n", "foo.example"]);
    let ca_revoked = fx.file("ca_revoked", &[line("@revoked *", &ca)]);
    assert_eq!(
        check(&[&kh, &ca_revoked], "foo.example", 22, &cert),
        revoked(&ca_revoked, 1)
    );
    let key_revoked = fx.file("key_revoked", &[line("@revoked nowhere", &host)]);
    assert_eq!(
        check(&[&kh, &key_revoked], "foo.example", 22, &cert),
        revoked(&key_revoked, 1)
    );
}

#[test]
fn a_certificate_signed_with_sha1_rsa_is_not_trusted() {
    let fx = fixture!();
    fx.key("host", "ed25519");
    let ca = fx.key("rsa_ca", "rsa");
    let kh = fx.file("kh", &[line("@cert-authority *.example", &ca)]);
    let sha1 = fx.cert(
        "rsa_ca",
        "host",
        &["-h", "-n", "foo.example", "-t", "ssh-rsa"],
    );
    assert_eq!(check(&[&kh], "foo.example", 22, &sha1), Verdict::Unknown);
    let sha512 = fx.cert(
        "rsa_ca",
        "host",
        &["-h", "-n", "foo.example", "-t", "rsa-sha2-512"],
    );
    assert_eq!(check(&[&kh], "foo.example", 22, &sha512), trusted(&kh, 1));
}
