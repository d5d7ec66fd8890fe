//! The real OpenSSH `ssh` client, to check the harness against and to compare lazytunnel with.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use tempfile::TempDir;

use super::log::LogFile;

/// `ssh -F CONFIG -o BatchMode=yes` with no agent (`SSH_AUTH_SOCK` removed) and no stdin; add
/// options and the destination (e.g. `test`, the alias of the generated config).
pub fn ssh_command(config: &Path) -> Command {
    let mut command = Command::new("ssh");
    command
        .arg("-F")
        .arg(config)
        .args(["-o", "BatchMode=yes"])
        .env_remove("SSH_AUTH_SOCK")
        .stdin(Stdio::null());
    command
}

/// A long-running `ssh` (e.g. `-N -L ...`) with stdout and stderr in a log; killed on drop.
/// Pass `-v` to see the debug lines worth waiting for, such as
/// `Authenticated to` and `Local forwarding listening on`.
pub struct SshProcess {
    child: Child,
    log: LogFile,
    _dir: TempDir,
}

impl SshProcess {
    pub fn spawn(mut command: Command) -> SshProcess {
        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-ssh-")
            .tempdir()
            .expect("could not create a temp dir for ssh");
        let log = LogFile::new(dir.path().join("ssh.log"));
        let child = command
            .stdout(log.stdio())
            .stderr(log.stdio())
            .spawn()
            .expect("could not run ssh: is openssh-client installed?");
        SshProcess {
            child,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.contents()
    }

    /// Waits for `needle` in ssh's output; panics with the output after `timeout`.
    pub async fn wait_for_log(&self, needle: &str, timeout: Duration) -> String {
        self.log.wait_for_count("ssh", needle, 1, timeout).await
    }

    /// Waits for one of `needles` in ssh's output; returns the output.
    pub async fn wait_for_any(&self, needles: &[&str], timeout: Duration) -> String {
        self.log
            .wait_for_any_since("ssh", 0, needles, timeout)
            .await
    }

    /// The exit status, if ssh has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Waits until ssh exits or `timeout` passes.
    pub async fn wait_for_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        super::wait_for_exit(&mut self.child, timeout).await
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for SshProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail("ssh");
        }
        self.kill();
    }
}
