//! End-to-end specs of `lazytunnel reload` and SIGHUP: a good config is applied as a
//! difference (new forwards listen, removed ones stop, changed ones restart) while connections
//! of unchanged forwards and their session carry on; a bad config changes nothing.

use crate::{common, control_support, forwarding_support};

use std::process::Output;

use common::{DataServer, TestDaemon, TestSshd, is_reset};
use control_support::{assert_success, entry, status_json, stderr, stdout};
use forwarding_support::{Forward, PROMPTLY, config_text, echo_once, start_daemon};
use tokio::net::TcpStream;

/// A daemon serving forwards named `names`, all to one echo server through the `test` host.
struct Serving {
    sshd: TestSshd,
    echo: DataServer,
    daemon: TestDaemon,
    forwards: Vec<Forward>,
}

impl Serving {
    async fn start(names: &[&'static str]) -> Serving {
        let sshd = TestSshd::start();
        let echo = DataServer::echo().await;
        let forwards: Vec<Forward> = names.iter().map(|n| Forward::new(n, echo.addr())).collect();
        let daemon = start_daemon(&sshd, "", &forwards.iter().collect::<Vec<_>>()).await;
        Serving {
            sshd,
            echo,
            daemon,
            forwards,
        }
    }

    /// Writes a config of `settings`, `forwards` and a new forward to the echo server named
    /// `name`, whose port nothing holds: the daemon binds it itself when a reload adds it.
    fn write_config_adding(
        &self,
        settings: &str,
        forwards: &[&Forward],
        name: &'static str,
    ) -> Forward {
        let added = Forward::new(name, self.echo.addr());
        added.release();
        let all: Vec<&Forward> = forwards.iter().copied().chain([&added]).collect();
        self.write_config(settings, &all);
        added
    }

    /// Reloads with `settings`, `forwards` and a new forward named `name`, returning the
    /// reload's output and the new forward. Its port is free only from just before the reload,
    /// so another process may take it first: the reload then fails changing nothing, naming
    /// the address in use, and is tried again with a new port.
    fn reload_adding(
        &self,
        settings: &str,
        forwards: &[&Forward],
        name: &'static str,
    ) -> (Output, Forward) {
        for _ in 0..3 {
            let added = self.write_config_adding(settings, forwards, name);
            let output = self.daemon.cli(["reload"]);
            if !stderr(&output).contains("Address already in use") {
                return (output, added);
            }
        }
        panic!("three new ports were all taken before the reload could bind them");
    }

    /// Like [`Serving::reload_adding`], reloading by SIGHUP: the outcome is in the log, either
    /// the reload's summary or its failure naming the address in use. Returns the summary.
    async fn sighup_adding(&self, forwards: &[&Forward], name: &'static str) -> (String, Forward) {
        let log = self.daemon.log_file();
        for _ in 0..3 {
            let added = self.write_config_adding("", forwards, name);
            let from = log.end_offset();
            assert!(self.daemon.signal("HUP"));
            let outcome = [&format!("added {name};")[..], "reload failed"];
            let said = log
                .wait_for_any_since("daemon", from, &outcome, PROMPTLY)
                .await;
            if !said.contains("Address already in use") {
                return (said, added);
            }
        }
        panic!("three new ports were all taken before the reload could bind them");
    }

    /// Replaces the daemon's config file with `settings` and `forwards`.
    fn write_config(&self, settings: &str, forwards: &[&Forward]) {
        let text = config_text(&self.sshd.ssh_config_path(), settings, forwards);
        self.daemon.write_config(&text);
    }
}

/// A connection attempt to a port nothing listens on any more is refused.
async fn assert_not_listening(port: u16) {
    match TcpStream::connect(("127.0.0.1", port)).await {
        Err(e) => assert!(
            e.kind() == std::io::ErrorKind::ConnectionRefused || is_reset(&e),
            "port {port}: {e}"
        ),
        Ok(_) => panic!("port {port} still accepts connections"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_adds_removes_and_changes_forwards_while_an_unchanged_connection_keeps_working() {
    let setup = Serving::start(&["keep", "gone", "moved"]).await;
    let [keep, gone, moved] = &setup.forwards[..] else {
        unreachable!()
    };
    let (sshd, daemon) = (&setup.sshd, &setup.daemon);
    let other_echo = DataServer::echo().await;
    let mut held = keep.connect().await;
    echo_once(&mut held, b"before the reload").await;

    let moved_now = moved.retargeted(other_echo.addr());
    let host_change = "[host.test]\nkeepalive_max = 5\n";
    let (output, added) = setup.reload_adding(host_change, &[keep, &moved_now], "added");

    assert_success(&output, "reload");
    assert!(
        stdout(&output).contains("added added; removed gone; changed moved; unchanged keep"),
        "{}",
        stdout(&output)
    );
    echo_once(&mut held, b"after the reload, same bytes back").await;
    assert_eq!(
        sshd.established_connections(),
        1,
        "the session was replaced"
    );
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
    daemon
        .wait_for_log("settings changed: the next session uses them", PROMPTLY)
        .await;
    assert_not_listening(gone.port).await;
    let mut fresh = added.connect().await;
    echo_once(&mut fresh, b"new forward").await;
    let mut restarted = moved_now.connect().await;
    echo_once(&mut restarted, b"new target").await;
    assert_eq!(
        other_echo.accepted(),
        1,
        "the changed forward kept its old target"
    );
    let status = status_json(daemon);
    let names: Vec<&str> = status["forwards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["keep", "moved", "added"]);
    // The unchanged forward kept its counters; the restarted one starts afresh.
    assert_eq!(
        entry(&status["forwards"], "name", "keep")["connections_total"],
        1
    );
    assert_eq!(
        entry(&status["forwards"], "name", "moved")["connections_total"],
        1
    );
    echo_once(&mut held, b"and still").await;
    // Every forward of the host, old and new, still shares the one session.
    assert_eq!(daemon.sole_host_status()["sessions_opened"], 1);
    assert_eq!(sshd.established_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_forwards_open_connection_drains_after_it_stops_listening() {
    let setup = Serving::start(&["keep", "gone"]).await;
    let [keep, gone] = &setup.forwards[..] else {
        unreachable!()
    };
    let mut open = gone.connect().await;
    echo_once(&mut open, b"before").await;

    setup.write_config("", &[keep]);
    assert_success(&setup.daemon.cli(["reload"]), "reload");

    assert_not_listening(gone.port).await;
    echo_once(&mut open, b"still carried").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_config_is_refused_with_its_error_and_the_old_one_keeps_serving() {
    let setup = Serving::start(&["keep"]).await;
    let (keep, daemon) = (&setup.forwards[0], &setup.daemon);
    let mut held = keep.connect().await;
    echo_once(&mut held, b"before").await;
    let before = status_json(daemon)["forwards"].clone();

    // Nothing may listen on the added forward's port but the daemon, were it to apply this.
    let (_held, port) = common::refusing_port();
    let added = Forward::on_port(port, "added", setup.echo.addr());
    setup.write_config("", &[keep, &added]);
    let mut broken = std::fs::read_to_string(daemon.config_path()).unwrap();
    broken.push_str("\nbogus_key = 1\n");
    daemon.write_config(&broken);
    let output = daemon.cli(["reload"]);

    assert!(!output.status.success(), "{}", stdout(&output));
    let said = stderr(&output);
    assert!(
        said.contains("bogus_key") && said.contains(common::path_str(daemon.config_path())),
        "names the file and the key: {said}"
    );
    assert_not_listening(added.port).await;
    echo_once(&mut held, b"after").await;
    let mut another = keep.connect().await;
    echo_once(&mut another, b"new connection on the old config").await;
    let after = status_json(daemon)["forwards"].clone();
    assert_eq!(after.as_array().unwrap().len(), 1);
    assert_eq!(after[0]["listen"], before[0]["listen"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_fails_the_reload_before_anything_changes() {
    let setup = Serving::start(&["keep", "gone"]).await;
    let [keep, gone] = &setup.forwards[..] else {
        unreachable!()
    };
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = Forward::on_port(
        squatter.local_addr().unwrap().port(),
        "taken",
        setup.echo.addr(),
    );

    setup.write_config("", &[keep, &taken]);
    let output = setup.daemon.cli(["reload"]);

    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("cannot listen on"),
        "{}",
        stderr(&output)
    );
    // `gone` would have been removed by this reload: it still serves.
    let mut client = gone.connect().await;
    echo_once(&mut client, b"untouched").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_like_the_command_and_a_bad_config_only_logs() {
    let setup = Serving::start(&["keep"]).await;
    let (keep, daemon, sshd) = (&setup.forwards[0], &setup.daemon, &setup.sshd);
    let mut held = keep.connect().await;
    echo_once(&mut held, b"before").await;

    daemon.write_config("not = [valid");
    assert!(daemon.signal("HUP"));
    daemon
        .wait_for_log("reload failed, the running config stays", PROMPTLY)
        .await;

    let (said, added) = setup.sighup_adding(&[keep], "added").await;
    assert!(said.contains("added added; removed none"), "{said}");

    let mut fresh = added.connect().await;
    echo_once(&mut fresh, b"added by SIGHUP").await;
    echo_once(&mut held, b"after").await;
    assert_eq!(sshd.established_connections(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_host_settings_leave_the_current_session_alone_and_apply_to_the_next() {
    let setup = Serving::start(&["keep"]).await;
    let (keep, daemon, sshd) = (&setup.forwards[0], &setup.daemon, &setup.sshd);
    let mut held = keep.connect().await;
    echo_once(&mut held, b"before").await;
    let (_held, nothing_there) = common::refusing_port();

    setup.write_config(&format!("[host.test]\nport = {nothing_there}\n"), &[keep]);
    assert_success(&daemon.cli(["reload"]), "reload");

    echo_once(&mut held, b"the current session carries on").await;
    assert_eq!(sshd.established_connections(), 1);
    // Once that session is gone, the next one is opened with the new port.
    assert!(!sshd.kill_session_processes().is_empty());
    daemon.wait_for_log("session down", PROMPTLY).await;
    let refused = daemon.cli(["connect", "test"]);
    let said = stderr(&refused);
    assert!(
        said.contains("network failure") && said.contains(&format!(":{nothing_there}")),
        "{said}"
    );
}
