//! The daemon's start-up, in the only order that is sound, as a chain of values each obtainable
//! only from the step before:
//!
//! 1. [`begin`]: take the descriptors systemd passed (and clear `LISTEN_*` from the
//!    environment) before this process opens any descriptor of its own, which could otherwise
//!    land on a number a wrong `LISTEN_FDS` names; raise the open-file limit.
//! 2. [`Inherited::lock`]: the instance lock, then the control socket (a socket already there is
//!    then a dead daemon's).
//! 3. [`Locked::listen`]: launchd's sockets, every inherited socket sorted into its forward
//!    (the loopback rule applied), the rest bound.
//! 4. [`Listening::start`]: detach (fork) unless in the foreground, record the pid, tune the
//!    allocator, then build the async runtime, the first thing that starts a thread.
//!
//! Environment changes, `fork` and adopting descriptors by number are unsound once another
//! thread runs; they live here and nowhere else.
//!
//! The steps' parts: [`systemd`] and [`launchd`] hand over sockets ([`InheritedSocket`]),
//! [`activation`] sorts them into forwards and binds the rest, [`detach`] forks into the
//! background; [`systemd`] also reports readiness, and [`idle`] ends a socket-activated daemon
//! that has nothing to do.

use std::path::Path;

use anyhow::Context;

use crate::config::Forward;
use crate::control::server::{self, ControlSocket};
use crate::instance::lock::InstanceLock;
use activation::Listeners;
use detach::Ready;

pub mod activation;
pub mod detach;
pub mod idle;
pub mod launchd;
pub mod systemd;

/// A descriptor passed by a socket manager (systemd, launchd), not yet checked.
#[derive(Debug)]
pub struct InheritedSocket {
    pub fd: std::os::fd::OwnedFd,
    /// systemd's `FileDescriptorName`, or the launchd socket name.
    pub name: Option<String>,
    /// `"systemd"` or `"launchd"`, for logs.
    pub source: &'static str,
}

/// Step 1 done: what the service manager passed, not yet sorted into forwards.
#[derive(Debug)]
pub struct Inherited {
    taken: Vec<InheritedSocket>,
}

/// Step 2 done: this is the only daemon for its control socket.
#[derive(Debug)]
pub struct Locked {
    inherited: Inherited,
    lock: InstanceLock,
    control: ControlSocket,
}

/// Step 3 done: every forward has its listening sockets.
#[derive(Debug)]
pub struct Listening {
    locked: Locked,
    listeners: Listeners,
}

/// Step 4 done: what the daemon serves, and the runtime to serve it on.
pub struct Started {
    pub runtime: tokio::runtime::Runtime,
    pub listeners: Listeners,
    pub control: ControlSocket,
    /// Releases the terminal waiting for a background daemon; `None` in the foreground.
    pub ready: Option<Ready>,
    /// Held for the daemon's life.
    pub lock: InstanceLock,
}

/// Step 1. Call first in `run`, before anything opens a file or starts a thread.
pub fn begin() -> anyhow::Result<Inherited> {
    let taken = systemd::take_listen_fds()?;
    crate::limits::raise_open_files();
    Ok(Inherited { taken })
}

impl Inherited {
    /// Step 2: takes the instance lock for `control_path`, then binds the control socket.
    pub fn lock(self, control_path: &Path) -> anyhow::Result<Locked> {
        let lock = InstanceLock::acquire(control_path)?;
        // Only with the lock held: a socket already there is then a dead daemon's.
        let control = server::bind(control_path)?;
        Ok(Locked {
            inherited: self,
            lock,
            control,
        })
    }
}

impl Locked {
    /// Step 3: every forward's listeners, inherited where a socket manager passed them.
    pub fn listen(self, forwards: &[Forward]) -> anyhow::Result<Listening> {
        let Locked {
            mut inherited,
            lock,
            control,
        } = self;
        let taken = std::mem::take(&mut inherited.taken);
        let listeners = activation::open_listeners(forwards, taken)?;
        Ok(Listening {
            locked: Locked {
                inherited,
                lock,
                control,
            },
            listeners,
        })
    }
}

impl Listening {
    /// How many listening sockets came from a socket manager.
    pub fn inherited(&self) -> usize {
        self.listeners.inherited
    }

    /// Step 4: detaches unless `foreground` (logging to `log`), records the daemon's pid, and
    /// builds the runtime.
    pub fn start(self, foreground: bool, log: &Path) -> anyhow::Result<Started> {
        let Listening { locked, listeners } = self;
        let Locked {
            mut lock, control, ..
        } = locked;
        let ready = if foreground {
            None
        } else {
            Some(detach::detach(log)?)
        };
        lock.write_pid()?;
        crate::memory::tune();
        let runtime = daemon_runtime().context("cannot start the async runtime")?;
        Ok(Started {
            runtime,
            listeners,
            control,
            ready,
            lock,
        })
    }
}

/// One worker thread unless `TOKIO_WORKER_THREADS` asks for more. Each packet crosses from
/// the session's task to its connection's and back; on one thread that is a function call, on
/// two it is often a futex wake-up of the other thread: measured, a warm connect took 15-20%
/// longer with a worker per core, and a GiB cost 10-20% more CPU, for no more throughput (one
/// core moves well over 1 GB/s with AES-GCM). Files are read on the blocking pool, never on
/// this worker.
fn daemon_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        builder.worker_threads(1);
    }
    builder.enable_all().build()
}
