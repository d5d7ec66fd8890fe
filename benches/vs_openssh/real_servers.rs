//! Real servers for the real-client part: nginx answering a small page and closing after each
//! response (`keepalive_timeout 0`), and a throwaway PostgreSQL cluster (initdb in a temp dir,
//! a loopback port, fsync off). Both stop on drop. What they need is installed when missing and
//! the benchmark runs as root (Debian: nginx-light, apache2-utils, postgresql); otherwise the
//! part says what to install and is skipped.

use std::ffi::CString;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::common::free_port;
use crate::tools::is_listening;

/// Debian packages with what this part runs.
const PACKAGES: [&str; 3] = ["nginx-light", "apache2-utils", "postgresql"];
const NGINX: &str = "/usr/sbin/nginx";
/// The page nginx answers: about the size of a small API response.
pub const PAGE_BYTES: usize = 300;
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Where PostgreSQL's programs are, once nginx, ab and PostgreSQL are known to be installed.
pub struct Tools {
    pub postgres_bin: PathBuf,
}

/// Finds the tools, installing them as root when missing; `Err` says what to install.
pub fn tools() -> Result<Tools, String> {
    if let Some(tools) = find() {
        return Ok(tools);
    }
    let install = format!("apt-get install {}", PACKAGES.join(" "));
    // SAFETY: getuid cannot fail.
    if unsafe { libc::getuid() } != 0 {
        return Err(format!(
            "needs nginx, ab and PostgreSQL; as root: {install}"
        ));
    }
    println!("  installing {} ...", PACKAGES.join(" "));
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut args = vec!["install", "-y", "-qq", "--no-install-recommends"];
    args.extend(PACKAGES);
    // A fresh machine may not have the package lists yet.
    let installed = apt(&args) || (apt(&["update", "-qq"]) && apt(&args));
    if !installed {
        return Err(format!("`{install}` failed"));
    }
    find().ok_or_else(|| format!("still missing after `{install}`"))
}

fn find() -> Option<Tools> {
    let found = |p: &str| Path::new(p).exists();
    if !found(NGINX) || !found("/usr/bin/ab") {
        return None;
    }
    // The newest installed version (Debian puts each in /usr/lib/postgresql/VERSION/bin).
    let mut bins: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pgbench").exists()).then_some((version, bin))
        })
        .collect();
    bins.sort();
    Some(Tools {
        postgres_bin: bins.pop()?.1,
    })
}

/// A server process in its own temp dir; stopped with `stop_signal` (then killed) on drop.
pub struct RealServer {
    pub addr: SocketAddr,
    child: Child,
    stop_signal: libc::c_int,
    _dir: TempDir,
}

impl Drop for RealServer {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by its pid.
        unsafe { libc::kill(self.child.id() as libc::pid_t, self.stop_signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// nginx on a loopback port answering every request with [`PAGE_BYTES`] and closing.
pub fn nginx() -> RealServer {
    let dir = temp_dir("lazytunnel-bench-nginx-");
    let page = "x".repeat(PAGE_BYTES);
    let prefix = format!("{}/", dir.path().display());
    let spawn = |port: u16| {
        let conf = format!(
            "worker_processes 1;\ndaemon off;\npid nginx.pid;\nevents {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  keepalive_timeout 0;\n  default_type text/plain;\n\
             \x20 server {{ listen 127.0.0.1:{port}; location / {{ return 200 \"{page}\"; }} }}\n}}\n"
        );
        std::fs::write(dir.path().join("nginx.conf"), conf).expect("write nginx.conf");
        Command::new(NGINX)
            .args(["-p", &prefix, "-c", "nginx.conf", "-e", "error.log"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run nginx")
    };
    let log = dir.path().join("error.log");
    let (child, port) = start_on_a_free_port("nginx", &log, spawn);
    server(child, port, libc::SIGQUIT, dir)
}

/// A throwaway PostgreSQL cluster on a loopback port, initialised for `pgbench -S`.
pub fn postgres(bin: &Path) -> RealServer {
    let dir = temp_dir("lazytunnel-bench-postgres-");
    // PostgreSQL refuses to run as root: as root, run it as the `postgres` user (or nobody).
    // SAFETY: getuid cannot fail.
    let user = unsafe { libc::getuid() == 0 }.then(|| {
        let user = account("postgres").or_else(|| account("nobody"));
        let (uid, gid) = user.expect("no `postgres` or `nobody` account to run PostgreSQL as");
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).expect("chown the cluster dir");
        (uid, gid)
    });
    let as_user = |program: &str| {
        let mut command = Command::new(bin.join(program));
        if let Some((uid, gid)) = user {
            command.uid(uid).gid(gid);
        }
        command.stdin(Stdio::null()).stdout(Stdio::null());
        command
    };
    let data = dir.path().join("data");
    let init = as_user("initdb")
        .arg("-D")
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync"])
        .stderr(Stdio::null())
        .status()
        .expect("run initdb");
    assert!(init.success(), "initdb failed ({init})");
    let log_path = dir.path().join("postgres.log");
    let spawn = |port: u16| {
        let log = std::fs::File::create(&log_path).expect("postgres log");
        if let Some((uid, gid)) = user {
            std::os::unix::fs::chown(&log_path, Some(uid), Some(gid)).expect("chown the log");
        }
        as_user("postgres")
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
            .args(["-c", "synchronous_commit=off", "-c", "full_page_writes=off"])
            .stderr(log)
            .spawn()
            .expect("run postgres")
    };
    let (child, port) = start_on_a_free_port("postgres", &log_path, spawn);
    // SIGINT: PostgreSQL's fast shutdown (ends the backends, removes its shared memory).
    let server = server(child, port, libc::SIGINT, dir);
    let pgbench_init = Command::new(bin.join("pgbench"))
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
        .args(["-i", "-q", "-s", "1", "postgres"])
        .env("PGSSLMODE", "disable")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run pgbench -i");
    assert!(pgbench_init.success(), "pgbench -i failed ({pgbench_init})");
    server
}

/// Runs `spawn(port)` on a free loopback port until the server listens. The server binds
/// the port itself, so another process may take it first: the server then exits, its `log`
/// saying the address is in use, and a new port is tried.
fn start_on_a_free_port(name: &str, log: &Path, spawn: impl Fn(u16) -> Child) -> (Child, u16) {
    for _ in 0..3 {
        let port = free_port();
        let mut child = spawn(port);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if is_listening(port) {
                return (child, port);
            }
            if let Ok(Some(status)) = child.try_wait() {
                let said = std::fs::read_to_string(log).unwrap_or_default();
                assert!(
                    said.contains("Address already in use"),
                    "{name} exited ({status}); its log {}:\n{said}",
                    log.display()
                );
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{name} not listening on {port} after {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("{name} found its port taken three times in a row");
}

fn server(child: Child, port: u16, stop_signal: libc::c_int, dir: TempDir) -> RealServer {
    RealServer {
        addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        child,
        stop_signal,
        _dir: dir,
    }
}

fn temp_dir(prefix: &str) -> TempDir {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .expect("create a temp dir")
}

/// The uid and gid of the account `name`.
fn account(name: &str) -> Option<(u32, u32)> {
    let name = CString::new(name).ok()?;
    // SAFETY: getpwnam returns null or a pointer to a static record, read at once (the
    // benchmark looks up no other account meanwhile).
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    // SAFETY: checked non-null just before.
    (!entry.is_null()).then(|| unsafe { ((*entry).pw_uid, (*entry).pw_gid) })
}
