//! Shared helpers for the end-to-end tests: a real OpenSSH server ([`sshd::TestSshd`]), a real
//! `ssh-agent` ([`agent::TestAgent`]), loopback target servers ([`net`]), the real `ssh` client
//! ([`ssh_client`]) and the lazytunnel binary ([`daemon::TestDaemon`]).
//!
//! Conventions, so tests can run in parallel threads and binaries:
//! - nothing uses a fixed port or a shared file: every helper owns a temp dir and binds port 0;
//!   a daemon's listen ports are bound here and handed over ([`inherit`]);
//! - everything cleans up on `Drop` (processes killed, temp dirs removed), and a helper dropped
//!   while its test is panicking prints its log to stderr, which the test runner shows;
//! - helpers panic with a message naming what failed: they are test code, not library code;
//! - methods that wait for an *external* process (sshd starting, ssh-keygen) block; methods that
//!   wait for something the test itself may have to drive (a log line, a connection count) are
//!   `async`, so a current-thread tokio runtime keeps running the code under test meanwhile.
//!
//! Each test binary (`e2e`, `isolation`, `flow_in_process`) compiles this module on its own
//! and the last two use only part of it, hence the `allow(dead_code)`.
#![allow(dead_code)]

pub mod agent;
pub mod certs;
pub mod daemon;
pub mod inherit;
pub mod keys;
pub mod log;
pub mod net;
pub mod netns;
pub mod procfs;
pub mod proxy;
pub mod ssh_client;
pub mod sshd;
pub mod sshd_files;

// The helpers most tests need, at `common::`; a test binary that skips some would warn.
#[allow(unused_imports)]
pub use agent::TestAgent;
#[allow(unused_imports)]
pub use daemon::{TestDaemon, run_cli};
#[allow(unused_imports)]
pub use inherit::{bind_loopback, port_of};
#[allow(unused_imports)]
pub use net::{DataServer, Mode, deterministic_bytes, free_port, is_reset, refusing_port, sha256};
#[allow(unused_imports)]
pub use sshd::TestSshd;

use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long tests wait for an event before failing. Generous: the machine is shared.
pub const TIMEOUT: Duration = Duration::from_secs(20);

/// How often log files and `/proc` are re-read while waiting for an event.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// The name of the user running the tests, which is the user tests log in as.
///
/// `id -un` asks NSS, so it also knows users outside `/etc/passwd`; `$USER` is often unset in
/// containers and CI, so it is only a fallback, followed by `/etc/passwd` itself.
pub fn current_user() -> &'static str {
    static USER: OnceLock<String> = OnceLock::new();
    USER.get_or_init(|| {
        let from_id = Command::new("id")
            .arg("-un")
            .output()
            .ok()
            .filter(|out| out.status.success())
            .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string());
        from_id
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|name| !name.is_empty()))
            .or_else(user_from_passwd)
            .expect("could not determine the current user name (id -un, $USER, /etc/passwd)")
    })
}

fn user_from_passwd() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let uid = status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .to_string();
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_string())
    })
}

/// Sends `signal` (a name such as `TERM`, `KILL`, `STOP`) to `pid` with kill(1), so the tests
/// need no libc. Returns whether kill(1) succeeded (it fails when the process is already gone).
pub fn send_signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .args(["-s", signal, &pid.to_string()])
        .stderr(std::process::Stdio::null())
        .status()
        .map(|status| status.success())
        .unwrap_or(false)
}

/// Re-evaluates `count` every [`POLL_INTERVAL`] until it returns `expected` or `timeout`
/// passes; returns the last value, for the caller to assert on.
pub async fn wait_for_count(
    expected: usize,
    timeout: Duration,
    count: impl Fn() -> usize,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let now = count();
        if now == expected || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// For specs that something does *not* happen, which no event can signal: evaluates `fact`
/// every [`POLL_INTERVAL`] for all of `window` and panics, with what `fact` returned, at the
/// first observation where it does not hold. Callers choose `window` from the timers that
/// would make it happen, and say why in a comment.
pub async fn holds_throughout(window: Duration, mut fact: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + window;
    loop {
        if let Err(broken) = fact() {
            panic!("within {window:?}: {broken}");
        }
        if Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Polls `child` every [`POLL_INTERVAL`] until it exits or `timeout` passes; returns its exit
/// status if it exited.
pub async fn wait_for_exit(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`wait_for_exit`], blocking the thread: for `Drop`, which cannot await.
pub fn wait_for_exit_blocking(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Reports that a test cannot run here because `reason` (a tool, root, a kernel feature) is
/// missing. Under `CI=true` that fails the test: CI installs every prerequisite
/// (`scripts/test`), so a missing one is a broken set-up that must not pass as green. On a
/// developer's machine the test is skipped, saying why; the caller returns early.
pub fn prerequisite_missing(reason: &str) {
    if std::env::var("CI").is_ok_and(|ci| ci == "true") {
        panic!("prerequisite missing under CI=true: {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Writes `contents` to `path`, panicking with the path on failure.
pub fn write_file(path: &Path, contents: &str) {
    std::fs::write(path, contents)
        .unwrap_or_else(|err| panic!("could not write {}: {err}", path.display()));
}

/// The path as UTF-8, for config files and command lines (temp paths always are).
pub fn path_str(path: &Path) -> &str {
    path.to_str()
        .unwrap_or_else(|| panic!("test path is not UTF-8: {}", path.display()))
}
