//! Resolution that must match `ssh -G` (OpenSSH 9.2) where a first reader went its own way:
//! Include of several files, HostKeyAlias case, repeated key files, numeric host names, jump
//! host loops and token expansion per hop, and the values OpenSSH accepts.

use super::*;

fn resolve_err(ssh_text: &str, host: &str) -> String {
    let config = config_for(host, "");
    ssh(ssh_text)
        .resolve(&config, &config.forwards[0].host)
        .expect_err("resolving fails")
        .to_string()
}

/// Item 1: each included file starts in the state of the Include line, so options at the top
/// of the second file apply although the first ended inside another Host block.
#[test]
fn each_included_file_starts_in_the_state_of_the_include_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let conf = dir.path().join("conf.d");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(conf.join("1.conf"), "Host other\n  User bob\n").unwrap();
    std::fs::write(
        conf.join("2.conf"),
        "User alice\nPort 2200\nHost *\n  HostName h2\n",
    )
    .unwrap();
    let text = format!("Include {}/*.conf\n", conf.display());
    let host = resolve_in(dir.path(), &text, "web");
    assert_eq!((host.user.as_str(), host.port), ("alice", 2200));
    assert_eq!(host.host_name, "h2");
}

/// `~user` in Include is that user's home, as everywhere else; a pattern that finds no file,
/// or names an unknown user, includes nothing (as `ssh -G` shows).
#[test]
fn include_takes_tilde_user() {
    use super::super::files::{IncludeBase, include_paths};
    let root = super::super::openssh::user_home("root").expect("root's home");
    let home = PathBuf::from("/home/u");
    let base = IncludeBase {
        home: &home,
        dir: &home,
    };
    assert_eq!(include_paths("~root", &base), Ok(vec![root]));
    assert_eq!(
        include_paths("~no-such-user-lazytunnel/x", &base),
        Ok(vec![])
    );
    ssh("Include ~root/no-such-dir-lazytunnel/*.conf\nInclude ~no-such-user-lazytunnel/x\n");
}

fn resolve_in(home: &Path, text: &str, host: &str) -> HostConfig {
    let config = config_for(host, "");
    SshConfigFile::parse(&home.join("config"), text, home.to_owned())
        .expect("parses")
        .resolve(&config, &config.forwards[0].host)
        .expect("resolves")
}

/// Item 2: OpenSSH lower-cases HostKeyAlias, also where `%k` stands for it.
#[test]
fn host_key_alias_is_lowercased_also_in_percent_k() {
    let host = resolve(
        "Host web\n  HostKeyAlias MyBox\n  UserKnownHostsFile ~/.ssh/kh_%k\n",
        "web",
    );
    assert_eq!(host.host_key_alias.as_deref(), Some("mybox"));
    assert_eq!(
        host.user_known_hosts_files,
        vec![PathBuf::from("/home/u/.ssh/kh_mybox")]
    );
}

/// Item 3: the same key or certificate file named twice is tried once.
#[test]
fn a_key_file_named_twice_is_listed_once() {
    let host = resolve(
        "Host web\n  IdentityFile ~/.ssh/k\n  CertificateFile ~/.ssh/c\n\
         Host *\n  IdentityFile ~/.ssh/k\n  IdentityFile ~/.ssh/j\n  CertificateFile ~/.ssh/c\n",
        "web",
    );
    assert_eq!(
        host.identity_files,
        vec![
            PathBuf::from("/home/u/.ssh/k"),
            PathBuf::from("/home/u/.ssh/j")
        ]
    );
    assert_eq!(
        host.certificate_files,
        vec![PathBuf::from("/home/u/.ssh/c")]
    );
}

/// Item 4: numeric host names take the form OpenSSH connects to, also in `%h`.
#[test]
fn numeric_host_names_are_canonical() {
    let host = resolve(
        "Host web\n  HostName 10.0.0.010\n  UserKnownHostsFile ~/kh_%h\n",
        "web",
    );
    assert_eq!(host.host_name, "10.0.0.8");
    assert_eq!(
        host.user_known_hosts_files,
        vec![PathBuf::from("/home/u/kh_10.0.0.8")]
    );
    assert_eq!(resolve("", "127.1").host_name, "127.0.0.1");
    assert_eq!(resolve("Host x\n HostName 0:0::1\n", "x").host_name, "::1");
}

/// Item 6: a last hop that is the host itself (name, user, port) is OpenSSH's "jumphost loop".
#[test]
fn a_hop_through_itself_is_refused() {
    let err = resolve_err("Host web\n  ProxyJump web\n", "web");
    assert!(err.contains("loop"), "{err}");
    let err = resolve_err("Host web\n  ProxyJump bastion,bastion\n", "web");
    assert!(err.contains("loop"), "{err}");
    // The host name after HostName counts; another user or port is another hop.
    let err = resolve_err("Host web\n  HostName srv\n  ProxyJump srv\n", "web");
    assert!(err.contains("loop"), "{err}");
    let host = resolve(
        "Host web\n  HostName srv\n  User a\n  ProxyJump b@srv\n",
        "web",
    );
    assert_eq!(host.jump.expect("a hop").user, "b");
    let host = resolve("Host web\n  HostName srv\n  ProxyJump srv:2222\n", "web");
    assert_eq!(host.jump.expect("a hop").port, 2222);
}

/// Item 7: earlier hops reach their host's ssh as `-J` and are expanded again there.
#[test]
fn tokens_in_earlier_hops_are_expanded_once_per_level() {
    let host = resolve(
        "Host web\n  User u%%1\n  ProxyJump %r@bastion,jump2\n",
        "web",
    );
    let jump2 = host.jump.expect("jump2");
    assert_eq!(jump2.host_name, "jump2");
    let bastion = jump2.jump.expect("bastion");
    assert_eq!(
        (bastion.host_name.as_str(), bastion.user.as_str()),
        ("bastion", "u%1")
    );
}

/// Item 8: values OpenSSH accepts resolve as it reads them.
#[test]
fn values_openssh_accepts_resolve() {
    let text = "Host web\n  IdentitiesOnly true\n  StrictHostKeyChecking false\n  \
                ConnectTimeout none\n  ServerAliveInterval none\n  ServerAliveCountMax 0\n  \
                CanonicalizeHostname false\n  ProxyJump [10.1.2.3]:2200\n  \
                IdentityFile ~root/.ssh/k\n  ConnectTimeout 7\n  ServerAliveInterval 9\n";
    let host = resolve(text, "web");
    assert!(host.identities_only);
    assert_eq!(host.strict_host_key_checking, StrictHostKeyChecking::No);
    assert_eq!(host.keepalive_max, 0);
    // `none` leaves the option unset, so the later line decides.
    assert_eq!(host.connect_timeout, Duration::from_secs(7));
    assert_eq!(host.keepalive_interval, Duration::from_secs(9));
    let root = super::super::openssh::user_home("root").expect("root's home");
    assert_eq!(host.identity_files, vec![root.join(".ssh/k")]);
    let jump = host.jump.expect("a hop");
    assert_eq!((jump.host_name.as_str(), jump.port), ("10.1.2.3", 2200));
    if std::path::Path::new("/etc/services").exists() {
        assert_eq!(resolve("Host web\n  Port http\n", "web").port, 80);
    }
}

/// Captures what `f` logs.
fn logs_of(f: impl FnOnce()) -> String {
    use std::sync::{Arc, Mutex};
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Buffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// Item 11: an unknown keyword is a warning naming file:line (OpenSSH would refuse the file),
/// once, and none when IgnoreUnknown read before covers it.
#[test]
fn an_unknown_keyword_warns_once_naming_file_and_line_unless_ignore_unknown_covers_it() {
    let logs = logs_of(|| {
        ssh("Host x\n  FrobnicateAll yes\n");
    });
    assert!(logs.contains("/test/ssh_config:2"), "{logs}");
    assert_eq!(logs.matches("frobnicateall").count(), 1, "{logs}");
    let logs = logs_of(|| {
        ssh("IgnoreUnknown Frob*,UseKeychain\nHost x\n  FrobnicateAll yes\n  UseKeychain yes\n");
    });
    assert!(!logs.contains("unknown"), "{logs}");
}
