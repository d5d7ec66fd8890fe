//! Every class of bad input is refused with the file, line and offending value.

use super::{EXAMPLE, FILE, FORWARD, assert_refused, parse, sa, with_forward};

#[test]
fn unknown_keys_are_refused_with_the_expected_ones() {
    assert_refused(
        &format!("bogus = 1\n{FORWARD}"),
        1,
        &["`bogus`", "ssh_config"],
    );
    assert_refused(
        &format!("{FORWARD}proto = \"tcp\"\n"),
        5,
        &["`proto`", "allow_non_loopback"],
    );
    assert_refused(
        &format!("[host.srv11]\nusername = \"vit\"\n{FORWARD}"),
        2,
        &["`username`", "user", "host.srv11"],
    );
}

#[test]
fn wrong_types_are_refused_with_the_key() {
    assert_refused(
        &format!("keepalive_max = \"3\"\n{FORWARD}"),
        1,
        &["keepalive_max", "\"3\""],
    );
    assert_refused(
        &format!("idle_timeout = 300\n{FORWARD}"),
        1,
        &["idle_timeout", "300"],
    );
    let text = with_forward("listen = 4445\nhost = \"srv11\"\ntarget = \"localhost:445\"\n");
    assert_refused(&text, 2, &["forward.listen", "4445"]);
    assert_refused(
        &format!("{FORWARD}allow_non_loopback = \"yes\"\n"),
        5,
        &["allow_non_loopback", "\"yes\""],
    );
    assert_refused(
        &format!("[host.a]\nidentity_file = \"~/id\"\n{FORWARD}"),
        2,
        &["identity_file", "~/id"],
    );
    assert_refused("forward = 3\n", 1, &["forward", "3"]);
    assert_refused(&format!("[[host]]\n{FORWARD}"), 1, &["host"]);
}

#[test]
fn syntax_errors_and_duplicate_keys_carry_their_line() {
    assert_refused(&format!("{FORWARD}name = \n"), 5, &["`name =`"]);
    assert_refused(
        &format!("{FORWARD}listen = \"4446\"\n"),
        5,
        &["duplicate key `listen`"],
    );
}

#[test]
fn missing_forward_keys_are_named() {
    for socks in ["", "socks = false\n"] {
        assert_refused(
            &format!("[[forward]]\nlisten = \"4445\"\nhost = \"srv11\"\n{socks}"),
            2,
            &[
                "`listen = \"4445\"`",
                "`target = \"HOST:PORT\"`",
                "`socks = true`",
            ],
        );
    }
    assert_refused(
        "[[forward]]\nlisten = \"4445\"\ntarget = \"a:1\"\n",
        1,
        &["`host`"],
    );
}

#[test]
fn target_and_socks_exclude_each_other() {
    let text =
        with_forward("listen = \"1080\"\nhost = \"srv11\"\nsocks = true\ntarget = \"db:1\"\n");
    assert_refused(
        &text,
        5,
        &["`target = \"db:1\"`", "socks = true", "remove one"],
    );
    let text = with_forward("listen = \"1080\"\nhost = \"srv11\"\nsocks = \"yes\"\n");
    assert_refused(&text, 4, &["socks", "\"yes\""]);
}

#[test]
fn a_socks_forward_on_a_non_loopback_address_needs_the_explicit_flag() {
    let body = "listen = \"0.0.0.0:1080\"\nhost = \"srv11\"\nsocks = true\n";
    assert_refused(
        &with_forward(body),
        2,
        &["0.0.0.0:1080", "allow_non_loopback = true"],
    );
    let config = parse(&with_forward(&format!("{body}allow_non_loopback = true\n"))).unwrap();
    assert!(config.forwards[0].target.is_socks());
}

#[test]
fn bad_durations_are_refused_with_key_and_value() {
    for (value, why) in [
        ("5x", "not a duration"),
        ("5", "not a duration"),
        ("", "not a duration"),
        ("0s", "at least 1s"),
        ("500ms", "at least 1s"),
        ("400days", "at most 366 days"),
    ] {
        for key in [
            "idle_timeout",
            "connect_timeout",
            "keepalive_interval",
            "exit_when_idle",
        ] {
            let text = format!("ssh_config = \"/x\"\n{key} = \"{value}\"\n{FORWARD}");
            assert_refused(&text, 2, &[&format!("`{key} = \"{value}\"`"), why]);
        }
    }
}

#[test]
fn bad_limits_are_refused_with_key_and_value() {
    for (line, why) in [
        ("receive_budget = \"8MB\"", "unknown unit \"MB\""),
        ("receive_budget = \"lots\"", "whole number of bytes"),
        ("receive_budget = \"1KiB\"", "between 64KiB and 1GiB"),
        ("receive_budget = \"2GiB\"", "between 64KiB and 1GiB"),
        ("max_connections = 0", "between 1 and 1000000"),
        (
            "window_size = \"32KiB\"",
            "between 64KiB and 1GiB, or \"auto\"",
        ),
        (
            "window_size = \"4GiB\"",
            "between 64KiB and 1GiB, or \"auto\"",
        ),
        ("window_size = \"big\"", "whole number of bytes"),
        (
            "backoff_min = \"5s\"\nbackoff_max = \"2s\"",
            "not be below backoff_min (5s)",
        ),
    ] {
        let text = format!("{line}\n{FORWARD}");
        let key = line.lines().last().unwrap_or_default();
        let key = key.split(" = ").next().unwrap_or_default();
        assert_refused(&text, line.lines().count(), &[key, why]);
    }
}

#[test]
fn keepalive_max_must_be_at_least_one() {
    for value in ["0", "-1", "4294967296"] {
        let text = format!("keepalive_max = {value}\n{FORWARD}");
        assert_refused(
            &text,
            1,
            &[&format!("`keepalive_max = {value}`"), "between 1 and"],
        );
    }
}

#[test]
fn bad_host_table_values_are_refused_with_their_key() {
    for (entry, needles) in [
        (
            "port = 0",
            &["host.srv11.port = 0", "between 1 and 65535"][..],
        ),
        ("port = 65536", &["host.srv11.port = 65536"]),
        (
            "hostname = \"bad host\"",
            &["host.srv11.hostname", "\"bad host\""],
        ),
        ("user = \"\"", &["host.srv11.user", "empty user"]),
        (
            "strict_host_key_checking = \"maybe\"",
            &["\"maybe\"", "accept-new"],
        ),
        (
            "idle_timeout = \"0s\"",
            &["host.srv11.idle_timeout = \"0s\"", "at least 1s"],
        ),
        ("keepalive_max = 0", &["host.srv11.keepalive_max = 0"]),
        (
            "window_size = \"2GiB\"",
            &[
                "host.srv11.window_size = \"2GiB\"",
                "between 64KiB and 1GiB",
            ],
        ),
        (
            "user_known_hosts_file = [\"\"]",
            &["user_known_hosts_file", "empty"],
        ),
    ] {
        assert_refused(&format!("\n[host.srv11]\n{entry}\n{FORWARD}"), 3, needles);
    }
}

#[test]
fn at_least_one_forward_is_required() {
    for text in ["", "idle_timeout = \"1m\"\n", "forward = []\n"] {
        let err = parse(text).unwrap_err().to_string();
        assert!(err.starts_with(&format!("{FILE}: no forwards")), "{err}");
        assert!(err.contains("[[forward]]"), "{err}");
    }
}

#[test]
fn bad_listen_values_are_refused() {
    for (listen, why) in [
        ("host.example:80", "expected IP:PORT"),
        ("0", "port 0"),
        ("127.0.0.1:0", "port 0"),
        ("65536", "1-65535"),
        ("127.0.0.1:65536", "1-65535"),
        ("", "expected IP:PORT"),
    ] {
        let text = with_forward(&format!(
            "host = \"srv11\"\nlisten = \"{listen}\"\ntarget = \"localhost:445\"\n"
        ));
        assert_refused(&text, 3, &[&format!("`listen = \"{listen}\"`"), why]);
    }
}

#[test]
fn non_loopback_listen_needs_the_explicit_flag() {
    for listen in ["0.0.0.0:8080", "[::]:8080", "192.168.1.10:8080"] {
        let body = format!("listen = \"{listen}\"\nhost = \"srv11\"\ntarget = \"web:80\"\n");
        assert_refused(
            &with_forward(&body),
            2,
            &[listen, "expose", "network", "allow_non_loopback = true"],
        );
        let config = parse(&with_forward(&format!("{body}allow_non_loopback = true\n"))).unwrap();
        assert!(config.forwards[0].allow_non_loopback);
        assert_eq!(config.forwards[0].listen, sa(listen));
    }
    let config = parse(&with_forward(
        "listen = \"0.0.0.0:8080\"\nhost = \"a\"\ntarget = \"b:1\"\nallow_non_loopback = true\n",
    ))
    .unwrap();
    assert_eq!(config.forwards[0].name, "0.0.0.0_8080");
}

#[test]
fn bad_targets_are_refused() {
    for (target, why) in [
        ("localhost", "HOST:PORT"),
        ("localhost:0", "1-65535"),
        ("localhost:65536", "1-65535"),
        ("::1:80", "brackets"),
        ("[::1]", "HOST:PORT"),
        (":80", "missing host"),
        ("web server:80", "may only contain"),
    ] {
        let text = with_forward(&format!(
            "listen = \"4445\"\nhost = \"srv11\"\ntarget = \"{target}\"\n"
        ));
        assert_refused(&text, 4, &[&format!("`target = \"{target}\"`"), why]);
    }
}

#[test]
fn bad_host_specs_are_refused() {
    for (host, why) in [
        ("@srv11", "empty user"),
        ("vit@", "missing host"),
        ("srv11:0", "1-65535"),
        ("srv11:65536", "1-65535"),
        ("srv 11", "may only contain"),
        ("-oProxyCommand=x", "start with `-`"),
        ("", "missing host"),
    ] {
        let text = with_forward(&format!(
            "listen = \"4445\"\nhost = \"{host}\"\ntarget = \"localhost:445\"\n"
        ));
        assert_refused(
            &text,
            3,
            &[&format!("`host = \"{host}\"`"), "[user@]host[:port]", why],
        );
    }
}

#[test]
fn names_are_restricted_to_a_portable_charset() {
    let long = "n".repeat(256);
    for name in ["my forward", "smb:1", "smé", "", "..", long.as_str()] {
        let text = format!("{FORWARD}name = \"{name}\"\n");
        assert_refused(&text, 5, &[&format!("`name = \"{name}\"`"), "forward name"]);
    }
    let text = format!("{FORWARD}name = \"Smb_2.x-y\"\n");
    assert_eq!(parse(&text).unwrap().forwards[0].name, "Smb_2.x-y");
}

#[test]
fn duplicate_names_are_refused_naming_both_forwards() {
    let text = "[[forward]]\nname = \"db\"\nlisten = \"1\"\nhost = \"a\"\ntarget = \"b:1\"\n\
         [[forward]]\nname = \"db\"\nlisten = \"2\"\nhost = \"a\"\ntarget = \"b:1\"\n";
    assert_refused(
        text,
        7,
        &["`name = \"db\"`", "duplicate forward name", "line 2"],
    );
}

#[test]
fn a_derived_name_clashing_with_an_explicit_one_is_refused() {
    let text = format!(
        "[[forward]]\nname = \"4445\"\nlisten = \"1\"\nhost = \"a\"\ntarget = \"b:1\"\n{FORWARD}"
    );
    assert_refused(
        &text,
        7,
        &[
            "`listen = \"4445\"`",
            "duplicate forward name",
            "derived",
            "line 2",
        ],
    );
}

#[test]
fn duplicate_listen_addresses_are_refused_naming_both_forwards() {
    let text = format!(
        "{FORWARD}[[forward]]\nname = \"again\"\nlisten = \"localhost:4445\"\nhost = \"b\"\n\
         target = \"c:2\"\n"
    );
    assert_refused(
        &text,
        7,
        &[
            "`listen = \"localhost:4445\"`",
            "\"again\"",
            "\"4445\"",
            "line 2",
        ],
    );

    // 0.0.0.0 takes the port on every address, so the second bind would fail.
    let text = format!(
        "{FORWARD}[[forward]]\nlisten = \"0.0.0.0:4445\"\nallow_non_loopback = true\n\
         host = \"b\"\ntarget = \"c:2\"\n"
    );
    assert_refused(&text, 6, &["0.0.0.0:4445", "127.0.0.1:4445"]);

    let text = format!(
        "{FORWARD}[[forward]]\nlisten = \"127.0.0.2:4445\"\nhost = \"b\"\ntarget = \"c:2\"\n"
    );
    let names: Vec<_> = parse(&text)
        .unwrap()
        .forwards
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert_eq!(names, ["4445", "127.0.0.2_4445"]);
}

#[test]
fn no_prefix_of_the_example_panics() {
    // Truncated documents hit every error path the parser has; none may panic.
    for (end, _) in EXAMPLE.char_indices() {
        let _ = parse(&EXAMPLE[..end]);
    }
}

#[test]
fn bad_socket_paths_and_modes_are_refused_with_the_value() {
    let forward = |body: &str| with_forward(&format!("host = \"srv11\"\n{body}"));
    assert_refused(
        &forward("listen = \"run/d.sock\"\ntarget = \"db:1\"\n"),
        3,
        &["listen", "run/d.sock", "absolute"],
    );
    assert_refused(
        &forward("listen = \"/tmp/d.sock\"\nlisten_mode = \"0400\"\ntarget = \"db:1\"\n"),
        4,
        &["listen_mode", "0400", "owner"],
    );
    assert_refused(
        &forward("listen = \"/tmp/d.sock\"\nlisten_mode = \"rw\"\ntarget = \"db:1\"\n"),
        4,
        &["listen_mode", "octal"],
    );
    assert_refused(
        &forward("listen = \"4445\"\nlisten_mode = \"0600\"\ntarget = \"db:1\"\n"),
        4,
        &["listen_mode", "Unix socket"],
    );
    assert_refused(
        &forward("listen = \"4445\"\ntarget = \"run/d.sock\"\n"),
        4,
        &["target", "absolute"],
    );
    let long = format!("/tmp/{}.sock", "x".repeat(120));
    assert_refused(
        &forward(&format!("listen = \"{long}\"\ntarget = \"db:1\"\n")),
        3,
        &["listen", "bytes long"],
    );
    let twice = format!(
        "{}[[forward]]\nname = \"b\"\nlisten = \"/tmp/a.sock\"\nhost = \"h\"\ntarget = \"x:1\"\n",
        forward("name = \"a\"\nlisten = \"/tmp/a.sock\"\ntarget = \"db:1\"\n")
    );
    assert_refused(&twice, 8, &["/tmp/a.sock", "clashes"]);
}
