//! Self-checks of the network namespace helper (`tests/common/netns.rs`): sshd, the real `ssh`
//! client and the lazytunnel daemon work inside a namespace on addresses added to its `lo`, and
//! deleting an address is seen by `netwatch` there. Also records what Linux does to an
//! established TCP connection whose local address is deleted, which is what the daemon's
//! address-loss detection is up against.
//!
//! Every test skips (returns early, with a message) where namespaces are unavailable: not root,
//! or no `ip netns`; under `CI=true` that fails instead. CI runs them as root.

use crate::common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::netns::NetNs;
use common::ssh_client::{SshProcess, ssh_command};
use common::{TIMEOUT, TestDaemon, TestSshd, bind_loopback, path_str, port_of};
use lazytunnel::netwatch::{AddressEvents, is_local_address};

/// Where sshd listens inside the namespace.
const SERVER_CIDR: &str = "10.77.0.1/32";
/// The client side's address, the one a network change takes away.
const CLIENT_CIDR: &str = "10.77.0.2/32";

fn ip_of(cidr: &str) -> IpAddr {
    cidr.split('/').next().unwrap().parse().unwrap()
}

/// A namespace with both addresses on its `lo`, or `None` to skip.
fn namespace() -> Option<NetNs> {
    let netns = NetNs::create()?;
    netns.add_address(SERVER_CIDR);
    netns.add_address(CLIENT_CIDR);
    Some(netns)
}

fn sshd_in(netns: &NetNs) -> TestSshd {
    TestSshd::builder()
        .netns(netns.handle())
        .listen_address(ip_of(SERVER_CIDR))
        .start()
}

#[test]
fn ssh_logs_in_to_sshd_inside_a_namespace_from_a_chosen_address() {
    let Some(netns) = namespace() else { return };
    let sshd = sshd_in(&netns);

    let mut command = ssh_command(&sshd.ssh_config_path());
    netns.handle().wrap(&mut command);
    let output = command
        .args(["-b", &ip_of(CLIENT_CIDR).to_string(), "test", "true"])
        .output()
        .expect("run ssh");

    assert!(
        output.status.success(),
        "ssh failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let from = format!("from {} port", ip_of(CLIENT_CIDR));
    assert!(sshd.log().contains(&from), "sshd log lacks {from:?}");
}

#[tokio::test]
async fn daemon_forwards_inside_a_namespace() {
    let Some(netns) = namespace() else { return };
    let sshd = sshd_in(&netns);
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
            "ssh_config = \"{config}\"
[[forward]]
listen = \"127.0.0.1:{port}\"
host = \"test\"
target = \"{target}\"
",
            config = path_str(&sshd.ssh_config_path()),
            // sshd's own port as the target: its banner proves the forward end to end.
            target = sshd.addr(),
        ))
        .start();
    daemon.wait_for_log("listening", TIMEOUT).await;

    let mut stream = netns.connect(SocketAddr::from(([127, 0, 0, 1], port)));
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut banner = [0; 8];
    stream
        .read_exact(&mut banner)
        .expect("read the banner through the forward");

    assert_eq!(&banner, b"SSH-2.0-");
    // Counted inside the namespace: the daemon's session, and the forwarded connection itself
    // (it goes to sshd's port).
    assert_eq!(sshd.established_connections(), 2);
}

#[tokio::test]
async fn deleting_a_sessions_local_address_is_reported_at_once() {
    let Some(netns) = namespace() else { return };
    let sshd = sshd_in(&netns);
    let mut command = ssh_command(&sshd.ssh_config_path());
    netns.handle().wrap(&mut command);
    command.args(["-v", "-N", "-b", &ip_of(CLIENT_CIDR).to_string(), "test"]);
    let ssh = SshProcess::spawn(command);
    ssh.wait_for_log("Authenticated to", TIMEOUT).await;

    // Watches from inside the namespace, as the daemon would; says when the address is gone.
    let (ready_tx, ready) = mpsc::channel();
    let watcher = netns.spawn_thread(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            let client = ip_of(CLIENT_CIDR);
            let mut events = AddressEvents::open().unwrap().expect("netlink on Linux");
            assert!(is_local_address(client).unwrap());
            ready_tx.send(()).unwrap();
            tokio::time::timeout(TIMEOUT, async {
                loop {
                    events.changed().await.expect("netlink read");
                    if !is_local_address(client).unwrap() {
                        return Instant::now();
                    }
                }
            })
            .await
            .expect("no event reported the deleted address")
        })
    });
    ready.recv_timeout(TIMEOUT).expect("watcher did not start");

    let deleted = Instant::now();
    netns.del_address(CLIENT_CIDR);
    let seen = watcher.join().expect("watcher thread panicked");

    let detection = seen.duration_since(deleted);
    eprintln!("address deletion seen after {detection:?} (includes running `ip`)");
    assert!(
        detection < Duration::from_secs(1),
        "took {detection:?}, the target is 1 s"
    );
}

/// Sets TCP_USER_TIMEOUT: unacknowledged data older than `timeout` aborts the connection.
fn set_user_timeout(stream: &std::net::TcpStream, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let millis = libc::c_uint::try_from(timeout.as_millis()).unwrap();
    // SAFETY: setsockopt on an open socket with a c_uint option value of the size passed.
    let set = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            (&raw const millis).cast(),
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        )
    };
    assert_eq!(
        set,
        0,
        "TCP_USER_TIMEOUT: {}",
        std::io::Error::last_os_error()
    );
}

#[test]
fn an_established_connection_outlives_its_deleted_local_address_silently() {
    let Some(netns) = namespace() else { return };
    let listener = netns
        .spawn_thread(|| TcpListener::bind((ip_of(SERVER_CIDR), 0)))
        .join()
        .unwrap()
        .expect("bind inside the namespace");
    let server_addr = listener.local_addr().unwrap();
    let mut client = netns.connect_from(ip_of(CLIENT_CIDR), server_addr);
    let (mut server, _) = listener.accept().expect("accept");
    let user_timeout = Duration::from_secs(1);
    set_user_timeout(&client, user_timeout);
    client.write_all(b"hello").unwrap();
    server.set_read_timeout(Some(TIMEOUT)).unwrap();
    assert_eq!(server.read(&mut [0; 64]).unwrap(), 5);

    netns.del_address(CLIENT_CIDR);
    let deleted = Instant::now();

    // Nothing tells the client: the write is accepted, no socket error is pending. (Whether
    // the segment still reaches the server depends on the route cached in the socket, and
    // varies between runs; replies to the deleted address are never delivered either way.)
    assert_eq!(client.write(b"x").expect("write after deletion"), 1);
    assert!(client.take_error().unwrap().is_none());
    // Only TCP_USER_TIMEOUT (or, without it, ~15 min of retransmissions) ends it. An idle
    // connection, with nothing to retransmit, would not even notice that.
    client.set_read_timeout(Some(TIMEOUT)).unwrap();
    let client_read = client.read(&mut [0; 64]);
    let ended = deleted.elapsed();
    eprintln!(
        "after deleting the client's address: the client's read ended after {ended:?} with \
         {client_read:?} (TCP_USER_TIMEOUT {user_timeout:?})"
    );
    let err = client_read.expect_err("the client read data after deletion");
    assert!(
        ended >= user_timeout && ended < TIMEOUT,
        "ended after {ended:?}: {err}"
    );
}
