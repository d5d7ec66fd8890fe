//! End-to-end spec: a file that would block a read forever (here a FIFO as
//! `UserKnownHostsFile`; a hung NFS home does the same) fails only the host that uses it. The
//! other host is served, `status` answers, and SIGTERM stops the daemon within its drain time.

use crate::{common, forwarding_support};

use std::time::Duration;

use common::{DataServer, TIMEOUT, TestSshd, path_str, write_file};
use forwarding_support::{Forward, echo_once, start_daemon_with};
use tokio::io::AsyncReadExt;

/// lazytunnel's drain period for open connections at shutdown (`daemon::DRAIN_PERIOD`).
const DRAIN_PERIOD: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fifo_known_hosts_fails_its_host_only_and_leaves_status_and_signals_working() {
    let sshd = TestSshd::start();
    let echo = DataServer::echo().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let fifo = dir.path().join("known_hosts.fifo");
    let c_path = std::ffi::CString::new(path_str(&fifo)).expect("no NUL");
    // SAFETY: mkfifo reads the NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Host `stuck` is host `test` with the FIFO as its known_hosts.
    let good = std::fs::read_to_string(sshd.ssh_config_path()).expect("read ssh_config");
    let stuck = good
        .replace("Host test", "Host stuck")
        .replace(path_str(&sshd.known_hosts_path()), path_str(&fifo));
    assert_ne!(stuck, good.replace("Host test", "Host stuck"));
    let ssh_config = dir.path().join("ssh_config");
    write_file(&ssh_config, &format!("{stuck}\n{good}"));
    let on_stuck = Forward::via("stuck", "on-stuck", echo.addr());
    let on_good = Forward::via("test", "on-good", echo.addr());
    let mut daemon = start_daemon_with(&ssh_config, "", &[&on_stuck, &on_good]).await;

    let mut refused = on_stuck.connect().await;
    let mut buf = [0; 8];
    let read = tokio::time::timeout(TIMEOUT, refused.read(&mut buf))
        .await
        .expect("the stuck host's client was left hanging");
    assert!(matches!(read, Ok(0) | Err(_)), "got data: {read:?}");

    let mut served = on_good.connect().await;
    echo_once(&mut served, b"the other host is served").await;

    let status = tokio::time::timeout(
        TIMEOUT,
        tokio::task::spawn_blocking({
            let command = daemon.cli(["status", "--json"]);
            move || command
        }),
    )
    .await
    .expect("status did not answer")
    .expect("status task");
    assert!(status.status.success(), "{status:?}");
    let json: serde_json::Value =
        serde_json::from_slice(&status.stdout).expect("status --json is JSON");
    let hosts = json["hosts"].as_array().expect("hosts");
    let host = |name: &str| {
        hosts
            .iter()
            .find(|h| h["host"] == name)
            .unwrap_or_else(|| panic!("no host {name}: {json}"))
    };
    assert_eq!(host("test")["state"], "up", "{json}");
    let error = host("stuck")["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("FIFO") && error.contains(path_str(&fifo)),
        "the stuck host's error does not name the FIFO: {json}"
    );

    drop(served);
    let status = daemon.shutdown(DRAIN_PERIOD + Duration::from_secs(2)).await;
    assert!(status.success(), "exit status {status}");
}
