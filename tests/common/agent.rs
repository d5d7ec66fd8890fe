//! [`TestAgent`]: a real `ssh-agent` on a socket in its own temp dir, killed on drop.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

use tempfile::TempDir;

use super::log::LogFile;
use super::{path_str, write_file};

pub struct TestAgent {
    child: Child,
    // Kept open: ssh-agent writes to stdout after its first line and would die of SIGPIPE.
    _stdout: BufReader<ChildStdout>,
    socket: PathBuf,
    log: LogFile,
    dir: TempDir,
}

impl TestAgent {
    /// Starts `ssh-agent -D -a SOCKET` and returns once the socket accepts connections.
    pub fn start() -> TestAgent {
        let dir = tempfile::Builder::new()
            .prefix("lazytunnel-agent-")
            .tempdir()
            .expect("could not create a temp dir for ssh-agent");
        let socket = dir.path().join("agent.sock");
        let log = LogFile::new(dir.path().join("ssh-agent.log"));
        let mut child = Command::new("ssh-agent")
            .args(["-D", "-a", path_str(&socket)])
            .env_remove("SSH_AUTH_SOCK")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log.stdio())
            .spawn()
            .expect("could not run ssh-agent: is openssh-client installed?");
        // ssh-agent prints `SSH_AUTH_SOCK=...` only after it is listening on the socket, so
        // reading that line is the readiness signal.
        let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let mut first_line = String::new();
        let _ = stdout.read_line(&mut first_line);
        if !first_line.starts_with("SSH_AUTH_SOCK=") {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ssh-agent did not start (said {first_line:?}):\n{}",
                log.contents()
            );
        }
        TestAgent {
            child,
            _stdout: stdout,
            socket,
            log,
            dir,
        }
    }

    /// The value for `SSH_AUTH_SOCK`.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// Adds an unencrypted private key (`ssh-add KEY`).
    pub fn add(&self, key: &Path) {
        self.ssh_add(&[path_str(key)], None);
    }

    /// Adds a passphrase-protected private key. ssh-add reads passphrases only from a terminal
    /// or an askpass program; `SSH_ASKPASS_REQUIRE=force` makes it use ours (ssh-add(1)).
    pub fn add_with_passphrase(&self, key: &Path, passphrase: &str) {
        self.ssh_add(&[path_str(key)], Some(passphrase));
    }

    /// Removes every key (`ssh-add -D`).
    pub fn remove_all(&self) {
        self.ssh_add(&["-D"], None);
    }

    /// The public keys the agent holds, one `TYPE BASE64 COMMENT` line each (`ssh-add -L`).
    pub fn public_keys(&self) -> Vec<String> {
        let output = self
            .command()
            .arg("-L")
            .output()
            .expect("could not run ssh-add -L");
        // Exit status 1 means "no identities", which is an answer, not a failure.
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|line| !line.is_empty() && !line.contains("has no identities"))
            .map(str::to_string)
            .collect()
    }

    fn command(&self) -> Command {
        let mut command = Command::new("ssh-add");
        command
            .env("SSH_AUTH_SOCK", &self.socket)
            .stdin(Stdio::null());
        command
    }

    fn ssh_add(&self, args: &[&str], passphrase: Option<&str>) {
        let mut command = self.command();
        command.args(args);
        if let Some(passphrase) = passphrase {
            command
                .env("SSH_ASKPASS", self.askpass_script(passphrase))
                .env("SSH_ASKPASS_REQUIRE", "force");
        }
        let output = command.output().expect("could not run ssh-add");
        assert!(
            output.status.success(),
            "ssh-add {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// A script that prints `passphrase`. The passphrase sits in a file next to it, so no
    /// shell quoting is involved.
    fn askpass_script(&self, passphrase: &str) -> PathBuf {
        let secret = self.dir.path().join("passphrase");
        write_file(&secret, &format!("{passphrase}\n"));
        let script = self.dir.path().join("askpass.sh");
        write_file(
            &script,
            &format!("#!/bin/sh\ncat '{}'\n", path_str(&secret)),
        );
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700))
            .expect("could not make the askpass script executable");
        script
    }
}

impl Drop for TestAgent {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.log.dump_tail("ssh-agent");
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
