//! Ad hoc configs from `-L`/`-D`, SOCKS forwards and Unix socket forwards.

use super::*;

fn ad_hoc(local: &[&str], destination: &str) -> Result<Config, ConfigError> {
    ad_hoc_mixed(local, &[], destination)
}

fn ad_hoc_mixed(
    local: &[&str],
    dynamic: &[&str],
    destination: &str,
) -> Result<Config, ConfigError> {
    let specs = local
        .iter()
        .map(|s| AdHocSpec::Local(s))
        .chain(dynamic.iter().map(|s| AdHocSpec::Dynamic(s)));
    ad_hoc_with(specs, destination, home())
}

#[test]
fn a_socks_forward_has_socks_instead_of_a_target() {
    let config = parse(&with_forward(
        "listen = \"1080\"\nhost = \"srv11\"\nsocks = true\n",
    ))
    .unwrap();
    let [proxy] = config.forwards.as_slice() else {
        panic!("{:?}", config.forwards)
    };
    assert_eq!(proxy.target, ForwardTarget::Socks);
    assert_eq!(
        (proxy.name.as_str(), proxy.listen.clone()),
        ("1080", Listen::Tcp(sa("127.0.0.1:1080")))
    );
    // `socks = false` is the same as leaving it out.
    let config = parse(&format!("{FORWARD}socks = false\n")).unwrap();
    assert_eq!(config.forwards[0].target.to_string(), "localhost:445");
}

#[test]
fn ad_hoc_dynamic_forwards_come_after_the_local_ones() {
    let config = ad_hoc_mixed(&["8080:web:80"], &["1080", "[::1]:1081"], "srv11").unwrap();
    let targets: Vec<(String, String)> = config
        .forwards
        .iter()
        .map(|f| (f.listen.to_string(), f.target.to_string()))
        .collect();
    let expected = [
        ("127.0.0.1:8080", "web:80"),
        ("127.0.0.1:1080", "socks"),
        ("[::1]:1081", "socks"),
    ];
    assert_eq!(
        targets,
        expected.map(|(l, t)| (l.to_string(), t.to_string()))
    );
    assert!(
        config
            .forwards
            .iter()
            .all(|f| f.host.to_string() == "srv11")
    );
    assert!(ad_hoc_mixed(&[], &["1080"], "srv11").is_ok());
}

#[test]
fn ad_hoc_dynamic_forward_errors_name_the_argument() {
    let err = |local: &[&str], dynamic: &[&str]| {
        ad_hoc_mixed(local, dynamic, "srv11")
            .unwrap_err()
            .to_string()
    };
    let e = err(&[], &["*:1080"]);
    assert!(
        e.starts_with("invalid -D \"*:1080\": ") && e.contains("allow_non_loopback"),
        "{e}"
    );
    let e = err(&[], &["1080:x"]);
    assert!(e.starts_with("invalid -D \"1080:x\": "), "{e}");
    let e = err(&["1080:web:80"], &["localhost:1080"]);
    assert_eq!(
        e,
        "invalid -D \"localhost:1080\": its listen address clashes with -L \"1080:web:80\""
    );
    let e = err(&[], &["1080", "1080"]);
    assert!(e.contains("clashes with -D \"1080\""), "{e}");
    let e = ad_hoc_mixed(&[], &[], "srv11").unwrap_err().to_string();
    assert!(e.contains("-L") && e.contains("-D [BIND:]PORT"), "{e}");
}

#[test]
fn ad_hoc_builds_one_forward_per_local_spec() {
    let config = ad_hoc(&["4445:localhost:445", "[::1]:5432:db:5432"], "vit@srv11").unwrap();
    assert_eq!(config.ssh_config, Path::new("/home/vit/.ssh/config"));
    assert_eq!(config.defaults, Defaults::default());
    assert_eq!(config.source, None);
    let [smb, db] = config.forwards.as_slice() else {
        panic!("{:?}", config.forwards)
    };
    assert_eq!(
        (smb.name.as_str(), smb.listen.clone()),
        ("4445", Listen::Tcp(sa("127.0.0.1:4445")))
    );
    assert_eq!(smb.target.to_string(), "localhost:445");
    assert_eq!(
        (db.name.as_str(), db.listen.clone()),
        ("--1_5432", Listen::Tcp(sa("[::1]:5432")))
    );
    assert_eq!(db.host.to_string(), "vit@srv11");
    assert_eq!(db.host, smb.host);
}

#[test]
fn ad_hoc_errors_name_the_argument() {
    let err = |local: &[&str], dest: &str| ad_hoc(local, dest).unwrap_err().to_string();
    assert!(matches!(
        ad_hoc(&[], "srv11"),
        Err(ConfigError::NoLocalForwards)
    ));
    let e = err(&["1:a:1"], "vit@");
    assert!(e.contains("destination \"vit@\""), "{e}");
    let e = err(&["80:web"], "srv11");
    assert!(e.contains("-L \"80:web\""), "{e}");
    let e = err(&["*:8080:web:80"], "srv11");
    assert!(
        e.contains("-L \"*:8080:web:80\"") && e.contains("allow_non_loopback"),
        "{e}"
    );
    let e = err(&["8080:a:80", "localhost:8080:b:80"], "srv11");
    assert!(
        e.contains("-L \"localhost:8080:b:80\"") && e.contains("\"8080:a:80\""),
        "{e}"
    );
}

#[test]
fn a_path_listen_is_a_unix_socket_with_its_mode() {
    let config = parse(&with_forward(
        "listen = \"~/run/docker.sock\"\nlisten_mode = \"0660\"\nhost = \"srv11\"\n\
         target = \"/var/run/docker.sock\"\n",
    ))
    .unwrap();
    let [docker] = config.forwards.as_slice() else {
        panic!("{:?}", config.forwards)
    };
    let path = PathBuf::from("/home/vit/run/docker.sock");
    assert_eq!(docker.listen, Listen::Unix { path, mode: 0o660 });
    assert_eq!(docker.name, "home_vit_run_docker.sock");
    let target = Endpoint::Unix("/var/run/docker.sock".into());
    assert_eq!(docker.target, ForwardTarget::Fixed(target));

    let config = parse(&with_forward(
        "listen = \"/tmp/pg.sock\"\nhost = \"db\"\ntarget = \"localhost:5432\"\n",
    ))
    .unwrap();
    let listen = &config.forwards[0].listen;
    assert!(
        matches!(listen, Listen::Unix { mode: 0o600, .. }),
        "{listen:?}"
    );
}

#[test]
fn ad_hoc_socket_forms_are_served_like_ports() {
    let config = ad_hoc(
        &[
            "/tmp/docker.sock:/var/run/docker.sock",
            "5432:/run/pg/.s.PGSQL.5432",
        ],
        "srv",
    )
    .unwrap();
    let shown: Vec<(String, String, String)> = config
        .forwards
        .iter()
        .map(|f| (f.name.clone(), f.listen.to_string(), f.target.to_string()))
        .collect();
    assert_eq!(
        shown,
        [
            (
                "tmp_docker.sock".into(),
                "/tmp/docker.sock".into(),
                "/var/run/docker.sock".into()
            ),
            (
                "5432".into(),
                "127.0.0.1:5432".into(),
                "/run/pg/.s.PGSQL.5432".into()
            ),
        ]
    );
    let clash = ad_hoc(&["/tmp/a.sock:db:1", "/tmp/a.sock:/run/b.sock"], "srv").unwrap_err();
    assert!(clash.to_string().contains("clashes"), "{clash}");
}

#[test]
fn a_listen_mode_on_a_port_is_refused_saying_it_needs_a_socket_path() {
    assert_refused(
        &with_forward(
            "listen = \"4445\"\nlisten_mode = \"0660\"\nhost = \"srv\"\ntarget = \"x:1\"\n",
        ),
        3,
        &[
            "`listen_mode = \"0660\"`",
            "applies only to a Unix socket, and this forward listens on a port (\"4445\")",
        ],
    );
}
