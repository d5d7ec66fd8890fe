//! End-to-end spec: when the local address under an SSH session disappears (Wi-Fi to hotspot),
//! the daemon notices from the kernel's address events and gives the session up within about a
//! second, instead of the minute its keepalives would take; Linux itself keeps such a
//! connection open silently. Runs in a network namespace of its own; skips (with a message)
//! where namespaces are unavailable, i.e. not root or no `ip netns`, and fails there under
//! `CI=true`. CI runs it as root.

use crate::common;

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use common::netns::NetNs;
use common::{TIMEOUT, TestDaemon, TestSshd, bind_loopback, path_str, port_of};

/// The address sshd listens on, which the daemon's session also uses as its local address.
const CIDR: &str = "10.77.1.1/32";

/// Reads sshd's banner through the daemon's forward: proves a session carries the forward.
fn read_banner_through(netns: &NetNs, port: u16) {
    let mut stream = netns.connect(SocketAddr::from(([127, 0, 0, 1], port)));
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut banner = [0; 8];
    stream
        .read_exact(&mut banner)
        .expect("read the banner through the forward");
    assert_eq!(&banner, b"SSH-2.0-");
}

/// sshd listening on [`CIDR`]'s address inside `netns`.
fn sshd_in(netns: &NetNs) -> TestSshd {
    let ip: IpAddr = CIDR
        .split('/')
        .next()
        .and_then(|a| a.parse().ok())
        .expect("address");
    TestSshd::builder()
        .netns(netns.handle())
        .listen_address(ip)
        .start()
}

/// A daemon inside `netns` with `settings` and one forward to sshd's own port (its banner
/// proves the forward end to end), once it listens; and the port it listens on.
async fn daemon_in(netns: &NetNs, sshd: &TestSshd, settings: &str) -> (TestDaemon, u16) {
    // Bound inside the namespace, where the daemon listens.
    let listener = netns
        .spawn_thread(bind_loopback)
        .join()
        .expect("bind in the namespace");
    let port = port_of(&listener);
    let daemon = TestDaemon::builder()
        .netns(netns.handle())
        .inherit(listener)
        .config_text(format!(
            "ssh_config = \"{config}\"\n{settings}\n[[forward]]\nlisten = \"127.0.0.1:{port}\"\nhost = \"test\"\ntarget = \"{target}\"\n",
            config = path_str(&sshd.ssh_config_path()),
            target = sshd.addr(),
        ))
        .start();
    daemon.wait_for_log("listening", TIMEOUT).await;
    (daemon, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn losing_the_sessions_local_address_ends_it_within_a_second_and_the_next_client_gets_a_new_one()
 {
    let Some(netns) = NetNs::create() else { return };
    netns.add_address(CIDR);
    let sshd = sshd_in(&netns);
    // Keepalives every 15 s x 3: they would need a minute to notice.
    let (daemon, port) = daemon_in(&netns, &sshd, "").await;
    read_banner_through(&netns, port);
    let up = daemon.wait_for_log("session up", TIMEOUT).await;
    assert!(up.contains("local=10.77.1.1:"), "{up}");

    let deleted_at = Instant::now();
    netns.del_address(CIDR);
    let down = daemon.wait_for_log("session down", TIMEOUT).await;
    let detected = deleted_at.elapsed();

    eprintln!("session given up {detected:?} after its local address was deleted");
    assert!(down.contains("local address 10.77.1.1 is gone"), "{down}");
    assert!(
        detected < Duration::from_secs(5),
        "took {detected:?}: the keepalives, not the address event, found it"
    );

    netns.add_address(CIDR);
    read_banner_through(&netns, port);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_change_lifts_the_backoff_of_a_host_that_was_unreachable() {
    let Some(netns) = NetNs::create() else { return };
    netns.add_address(CIDR);
    let sshd = sshd_in(&netns);
    // Offline: sshd's socket stays bound, but nothing routes to its address.
    netns.del_address(CIDR);
    let (daemon, port) =
        daemon_in(&netns, &sshd, "backoff_min = \"1h\"\nbackoff_max = \"1h\"").await;
    // Reset, either once connected or (when the reset wins the race) while connecting.
    let offline = netns
        .spawn_thread(move || -> std::io::Result<usize> {
            let mut stream =
                std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port)))?;
            stream.set_read_timeout(Some(TIMEOUT))?;
            stream.read(&mut [0; 8])
        })
        .join()
        .expect("client thread");
    assert!(
        offline.as_ref().is_err_and(common::is_reset),
        "offline client: {offline:?}"
    );
    let failed = daemon
        .wait_for_log("session failed (transient)", TIMEOUT)
        .await;
    assert!(
        failed.contains("next attempt no sooner than in"),
        "{failed}"
    );

    // Back online: the next client does not wait out the hour.
    netns.add_address(CIDR);
    daemon
        .wait_for_log(
            "network changed: the next connection retries at once",
            TIMEOUT,
        )
        .await;
    read_banner_through(&netns, port);
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
}
