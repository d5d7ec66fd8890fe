//! Helpers for the control-socket specs (`tests/control.rs`, `tests/reload.rs`): the daemon's
//! control socket, raw requests on it, and the CLI's output.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::Output;

use crate::common::{TIMEOUT, TestDaemon};

/// Where a [`TestDaemon`] has its control socket (the default: under XDG_RUNTIME_DIR).
pub fn control_socket(daemon: &TestDaemon) -> PathBuf {
    daemon.runtime_dir().join("lazytunnel/control.sock")
}

/// Sends `bytes` as they are and returns the daemon's one-line answer, parsed.
pub fn raw_request(daemon: &TestDaemon, bytes: &[u8]) -> serde_json::Value {
    let mut stream = UnixStream::connect(control_socket(daemon)).expect("connect control socket");
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    stream.write_all(bytes).expect("send the request");
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .expect("read the answer");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("answer is not JSON ({e}): {line:?}"))
}

/// `lazytunnel status --json`, parsed; panics unless it succeeds.
pub fn status_json(daemon: &TestDaemon) -> serde_json::Value {
    daemon.status_json()
}

/// The entry of `list` (an array of objects) whose `key` is `value`.
pub fn entry<'a>(list: &'a serde_json::Value, key: &str, value: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("an array")
        .iter()
        .find(|e| e[key] == value)
        .unwrap_or_else(|| panic!("no entry with {key} = {value:?} in {list}"))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn assert_success(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        stdout(output),
        stderr(output)
    );
}

/// Asserts that `window` is the one chosen for a round trip that status reports as `rtt`, which
/// it has rounded down to whole microseconds.
#[track_caller]
pub fn assert_window_follows(window: u64, rtt: std::time::Duration) {
    let at_least = u64::from(lazytunnel::client::window_for(rtt));
    let at_most = u64::from(lazytunnel::client::window_for(
        rtt + std::time::Duration::from_micros(1),
    ));
    assert!(
        (at_least..=at_most).contains(&window),
        "window {window} is not the one chosen for a round trip of {rtt:?}"
    );
}
