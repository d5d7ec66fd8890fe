//! [`NetNs`]: a network namespace of the test's own, with only `lo`, where addresses can be added
//! and deleted (as Wi-Fi does to a laptop) without touching the host's networking.
//!
//! Needs root and `ip netns` (iproute2): [`NetNs::create`] returns `None` with a message on
//! stderr otherwise, and the test returns early. Skipping is for developer machines only: under
//! `CI=true` a missing namespace fails the test ([`super::prerequisite_missing`]); CI runs as
//! root with iproute2 installed by `scripts/test`.
//!
//! Processes enter the namespace through a `pre_exec` setns ([`NsHandle::wrap`]), so the pid
//! the harness holds is the program's own and killing it works as usual. Sockets belong to the
//! namespace of the thread that created them, so [`NetNs::connect`] and [`NetNs::spawn_thread`]
//! run their work on a thread that entered the namespace first.

use std::fs::File;
use std::io;
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;

use super::{TIMEOUT, prerequisite_missing, send_signal};

/// A cheap, clonable reference to a namespace, for builders ([`super::TestSshd`],
/// [`super::TestDaemon`]) to run their process inside it. Keeps the namespace file open, not
/// the namespace alive: the [`NetNs`] must outlive the processes.
#[derive(Debug, Clone)]
pub struct NsHandle {
    name: Arc<str>,
    file: Arc<File>,
}

impl NsHandle {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Moves the calling thread (only it) into the namespace.
    pub fn enter_current_thread(&self) -> io::Result<()> {
        setns(&self.file)
    }

    /// Makes `command` run its program inside the namespace.
    pub fn wrap<'c>(&self, command: &'c mut Command) -> &'c mut Command {
        let file = Arc::clone(&self.file);
        // SAFETY: between fork and exec the closure only makes the setns system call, which is
        // async-signal-safe, on a descriptor opened before the fork.
        unsafe { command.pre_exec(move || setns(&file)) }
    }
}

fn setns(file: &File) -> io::Result<()> {
    // SAFETY: setns on an open namespace descriptor; it affects the calling thread only.
    if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// A network namespace named `lt-PID-N` with `lo` up; deleted on drop, after its processes are
/// killed.
pub struct NetNs {
    handle: NsHandle,
}

impl NetNs {
    /// Creates the namespace, or returns `None` (printing why) where this machine cannot:
    /// not root, or no `ip netns`. Under `CI=true` it panics instead.
    pub fn create() -> Option<NetNs> {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            prerequisite_missing("network namespace tests need root (CI runs them as root)");
            return None;
        }
        let name = format!(
            "lt-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let added = Command::new("ip")
            .args(["netns", "add", &name])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        match added {
            Ok(output) if output.status.success() => {}
            Ok(output) => {
                prerequisite_missing(&format!(
                    "`ip netns add` failed: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ));
                return None;
            }
            Err(err) => {
                prerequisite_missing(&format!("could not run `ip` (install iproute2): {err}"));
                return None;
            }
        }
        // From here on, Drop deletes the namespace whatever fails.
        let path = format!("/run/netns/{name}");
        let file = File::open(&path);
        let netns = NetNs {
            handle: NsHandle {
                name: name.into(),
                file: Arc::new(file.unwrap_or_else(|err| panic!("could not open {path}: {err}"))),
            },
        };
        netns.ip(&["link", "set", "lo", "up"]);
        Some(netns)
    }

    pub fn name(&self) -> &str {
        self.handle.name()
    }

    pub fn handle(&self) -> NsHandle {
        self.handle.clone()
    }

    /// Runs `ip -n NAME ARGS`; panics with ip's message if it fails.
    pub fn ip(&self, args: &[&str]) {
        let output = Command::new("ip")
            .args(["-n", self.name()])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("could not run ip");
        assert!(
            output.status.success(),
            "ip -n {} {} failed: {}",
            self.name(),
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }

    /// Adds `cidr` (e.g. `10.77.0.2/32`) to the namespace's `lo`.
    pub fn add_address(&self, cidr: &str) {
        self.ip(&["addr", "add", cidr, "dev", "lo"]);
    }

    /// Deletes `cidr` from the namespace's `lo`, as a network change would.
    pub fn del_address(&self, cidr: &str) {
        self.ip(&["addr", "del", cidr, "dev", "lo"]);
    }

    /// A command whose program runs inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        self.handle.wrap(&mut command);
        command
    }

    /// Runs `work` on a new thread inside the namespace: sockets it creates (including a
    /// netlink socket or a tokio runtime's) belong to the namespace.
    pub fn spawn_thread<T, F>(&self, work: F) -> JoinHandle<T>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let handle = self.handle();
        std::thread::spawn(move || {
            handle
                .enter_current_thread()
                .unwrap_or_else(|err| panic!("could not enter netns {}: {err}", handle.name()));
            work()
        })
    }

    /// A TCP connection to `addr` opened from inside the namespace (blocking, with
    /// [`TIMEOUT`]); the socket stays in the namespace.
    pub fn connect(&self, addr: SocketAddr) -> TcpStream {
        self.spawn_thread(move || TcpStream::connect_timeout(&addr, TIMEOUT))
            .join()
            .expect("connect thread panicked")
            .unwrap_or_else(|err| panic!("could not connect to {addr} inside the netns: {err}"))
    }

    /// Like [`Self::connect`], from the local address `local` (port chosen by the kernel).
    pub fn connect_from(&self, local: IpAddr, addr: SocketAddr) -> TcpStream {
        self.spawn_thread(move || -> io::Result<TcpStream> {
            let socket = socket2::Socket::new(
                socket2::Domain::for_address(addr),
                socket2::Type::STREAM,
                None,
            )?;
            socket.bind(&SocketAddr::new(local, 0).into())?;
            socket.connect_timeout(&addr.into(), TIMEOUT)?;
            Ok(socket.into())
        })
        .join()
        .expect("connect thread panicked")
        .unwrap_or_else(|err| panic!("could not connect {local} -> {addr} inside the netns: {err}"))
    }

    /// Pids of every process in the namespace (`ip netns pids`).
    pub fn pids(&self) -> Vec<u32> {
        Command::new("ip")
            .args(["netns", "pids", self.name()])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map(|output| {
                String::from_utf8_lossy(&output.stdout)
                    .split_whitespace()
                    .filter_map(|pid| pid.parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Normally the helpers that started them are gone already; this catches strays, which
        // would keep the namespace alive after its name is deleted.
        for pid in self.pids() {
            send_signal(pid, "KILL");
        }
        let _ = Command::new("ip")
            .args(["netns", "del", self.name()])
            .stdin(Stdio::null())
            .status();
    }
}
