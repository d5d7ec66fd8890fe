//! End-to-end specs of what the daemon refuses at start-up from a socket manager: an
//! inherited socket listening on every interface while the forward is loopback-only, and a
//! `LISTEN_FDS` count naming descriptors that were never passed. Either ends the daemon with a
//! message naming the culprit before it serves anything; so does a config file others could
//! write (it can turn host key checking off).

use crate::{common, forwarding_support, service_support};

use std::net::{Ipv4Addr, TcpListener};

use common::{DataServer, TIMEOUT, TestSshd, port_of};
use forwarding_support::{Forward, config_text};
use service_support::Setup;
use tokio::io::AsyncReadExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_socket_passed_on_every_interface_is_refused_naming_the_forward_and_the_address() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let every_interface = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind 0.0.0.0:0");
    let forward = Forward::on_port(port_of(&every_interface), "smb", echo.addr());
    let wildcard = format!("0.0.0.0:{}", forward.port);
    let setup = Setup::new(&config_text(&sshd.ssh_config_path(), "", &[&forward]));
    let mut daemon = setup.spawn_socket_activate(&[&every_interface], "smb");
    drop(every_interface);

    // Only loopback traffic: the wildcard socket accepts it like any other.
    let mut client = forward.connect().await;
    let status = daemon.wait_for_exit(TIMEOUT).await;
    assert!(!status.success(), "exit status {status}");
    let log = setup.log.contents();
    assert!(
        log.contains("forward \"smb\"") && log.contains(&wildcard),
        "the refusal names neither the forward nor the address: {log}"
    );
    assert!(log.contains("allow_non_loopback = true"), "{log}");
    assert!(!log.contains("listening"), "it served a forward: {log}");
    let mut buf = [0; 16];
    let read = tokio::time::timeout(TIMEOUT, client.read(&mut buf))
        .await
        .expect("the client was left hanging");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the client got data: {read:?}"
    );
    assert_eq!(sshd.wait_for_connections(0, TIMEOUT).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listen_fds_count_beyond_the_passed_sockets_is_refused_naming_it() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let forward = Forward::new("echo", echo.addr());
    let passed = forward.take_socket().expect("a new forward's socket");
    let setup = Setup::new(&config_text(&sshd.ssh_config_path(), "", &[&forward]));

    // One socket on fd 3, but the count says three: fds 4 and 5 are whatever the daemon opens.
    let mut daemon = setup.spawn_with_fds_counted(&[&passed], Some("echo:a:b"), 3);
    let status = daemon.wait_for_exit(TIMEOUT).await;
    assert!(!status.success(), "exit status {status}");
    let log = setup.log.contents();
    assert!(
        log.contains("LISTEN_FDS=3") && log.contains("descriptor 4") && log.contains("not open"),
        "the refusal does not say what was wrong: {log}"
    );
    assert!(!log.contains("listening"), "it served a forward: {log}");
    // Nothing was left behind for the next start: no lock file in use, no control socket.
    let again = setup.spawn_with_fds(&[&passed], Some("echo"));
    setup
        .log
        .wait_for_count("daemon", "listening", 1, TIMEOUT)
        .await;
    drop(again);
}

#[test]
fn a_config_file_others_could_write_is_refused_naming_it() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("lazytunnel.toml");
    common::write_file(
        &config,
        "[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"h\"\ntarget = \"t:1\"\n",
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    let output =
        common::daemon::run_cli(["check".as_ref(), "--config".as_ref(), config.as_os_str()]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(common::path_str(&config))
            && stderr.contains("writable by group or others"),
        "{stderr}"
    );
}
