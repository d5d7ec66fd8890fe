//! [`FaultProxy`]: a TCP proxy on 127.0.0.1 that sits between the daemon and a server (the test
//! sshd) and breaks the path on demand, as networks do: blackhole, reset, delay, refuse.
//!
//! What "blackhole" means here: the proxy stops reading from and writing to both sockets of a
//! connection, and neither closes nor resets them, so neither end hears anything. That is as
//! close to a vanished path (Wi-Fi gone, laptop moved) as a user-space proxy can come; the one
//! difference is that the local kernel still ACKs what the daemon sends until the proxy's
//! receive buffer is full, so the daemon's writes succeed for a while instead of being
//! retransmitted. The daemon must notice through missing *replies*, which is what it has to do
//! on a real dead path too.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socket2::SockRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// What happens to one relayed connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Relay,
    /// Stop relaying, keep both sockets open (until [`Fault::Reset`] or the proxy's drop).
    Blackhole,
    /// Close both sockets with RST.
    Reset,
}

/// What happens to connections accepted from now on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NewConnections {
    Relay,
    /// Accepted, never relayed, upstream never dialled.
    Blackhole,
    /// Reset at once, as close to a refused connect as an accepting listener gets.
    Refuse,
}

/// Counters of a [`FaultProxy`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProxyCounters {
    /// Connections accepted, including refused and blackholed ones.
    pub accepted: usize,
    /// Connections held (relayed or blackholed) and not yet closed.
    pub open: usize,
}

struct State {
    new_connections: NewConnections,
    delay: Duration,
    next_id: u64,
    connections: HashMap<u64, Arc<watch::Sender<Fault>>>,
}

struct Shared {
    state: Mutex<State>,
    counters: watch::Sender<ProxyCounters>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("proxy state poisoned")
    }

    /// Applies `fault` to every open connection, except that a reset one stays reset.
    fn set_fault_of_open(&self, fault: Fault) {
        for sender in self.state().connections.values() {
            sender.send_if_modified(|current| {
                let change = *current != fault && *current != Fault::Reset;
                if change {
                    *current = fault;
                }
                change
            });
        }
    }
}

/// A fault-injecting TCP proxy to `upstream` on 127.0.0.1 with an ephemeral port, running on the
/// current tokio runtime. Each connection is relayed byte-exact in both directions
/// independently, carrying half-close (EOF one way, data still flowing the other) and resets.
/// Stops on drop, closing every connection.
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    counters: watch::Receiver<ProxyCounters>,
    task: JoinHandle<()>,
}

impl FaultProxy {
    pub async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("could not bind a FaultProxy on 127.0.0.1:0");
        let addr = listener.local_addr().expect("FaultProxy local address");
        let (sender, counters) = watch::channel(ProxyCounters::default());
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                new_connections: NewConnections::Relay,
                delay: Duration::ZERO,
                next_id: 0,
                connections: HashMap::new(),
            }),
            counters: sender,
        });
        let task = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        FaultProxy {
            addr,
            upstream,
            shared,
            counters,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Every connection relayed now goes silent both ways, without FIN or RST: its path
    /// vanished. Connections accepted later are relayed normally (the new path works).
    pub fn blackhole(&self) {
        self.shared.set_fault_of_open(Fault::Blackhole);
    }

    /// [`Self::blackhole`], and connections accepted from now on are blackholed too (accepted,
    /// upstream never dialled), until [`Self::heal`].
    pub fn blackhole_all(&self) {
        self.shared.state().new_connections = NewConnections::Blackhole;
        self.blackhole();
    }

    /// Relay connections accepted from now on again. Blackholed ones stay dead.
    pub fn heal(&self) {
        self.shared.state().new_connections = NewConnections::Relay;
    }

    /// Resets (RST) both sides of every open connection, blackholed ones included.
    pub fn reset_all(&self) {
        self.shared.set_fault_of_open(Fault::Reset);
    }

    /// While `true`, connections are reset as soon as they are accepted.
    pub fn refuse_new(&self, refuse: bool) {
        self.shared.state().new_connections = if refuse {
            NewConnections::Refuse
        } else {
            NewConnections::Relay
        };
    }

    /// Delays every chunk relayed from now on by `delay`, in each direction.
    pub fn set_delay(&self, delay: Duration) {
        self.shared.state().delay = delay;
    }

    pub fn counters(&self) -> ProxyCounters {
        *self.counters.borrow()
    }

    pub fn accepted(&self) -> usize {
        self.counters().accepted
    }

    pub fn open(&self) -> usize {
        self.counters().open
    }

    /// Waits until `accepted == n` or `timeout` passes; returns the last count.
    pub async fn wait_for_accepted(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |counters| counters.accepted == n)
            .await
            .accepted
    }

    /// Waits until `open == n` or `timeout` passes; returns the last count.
    pub async fn wait_for_open(&self, n: usize, timeout: Duration) -> usize {
        self.wait_until(timeout, |counters| counters.open == n)
            .await
            .open
    }

    async fn wait_until(
        &self,
        timeout: Duration,
        done: impl FnMut(&ProxyCounters) -> bool,
    ) -> ProxyCounters {
        let mut counters = self.counters.clone();
        let _ = tokio::time::timeout(timeout, counters.wait_for(done)).await;
        *counters.borrow()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        // The accept loop owns the JoinSet of connections: aborting it closes them all.
        self.task.abort();
    }
}

/// Removes its connection from the proxy's table when the connection's task ends.
struct Registration {
    id: u64,
    shared: Arc<Shared>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.state().connections.remove(&self.id);
        self.shared
            .counters
            .send_modify(|counters| counters.open -= 1);
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    let mut connections = JoinSet::new();
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(_) => {
                // Typically fd exhaustion during a stress test: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = client.set_nodelay(true);
        let (registration, fault) = {
            let mut state = shared.state();
            let initial = match state.new_connections {
                NewConnections::Relay => Fault::Relay,
                NewConnections::Blackhole => Fault::Blackhole,
                NewConnections::Refuse => Fault::Reset,
            };
            let id = state.next_id;
            state.next_id += 1;
            let sender = Arc::new(watch::Sender::new(initial));
            state.connections.insert(id, Arc::clone(&sender));
            shared.counters.send_modify(|counters| {
                counters.accepted += 1;
                counters.open += 1;
            });
            let registration = Registration {
                id,
                shared: Arc::clone(&shared),
            };
            (registration, sender)
        };
        connections.spawn(serve(client, upstream, fault, registration));
        while connections.try_join_next().is_some() {}
    }
}

async fn serve(
    client: TcpStream,
    upstream: SocketAddr,
    fault: Arc<watch::Sender<Fault>>,
    registration: Registration,
) {
    let mut faults = fault.subscribe();
    let initial = *faults.borrow_and_update();
    match initial {
        Fault::Relay => {}
        Fault::Blackhole => {
            // Hold the socket, silent, until reset or the proxy's drop.
            let _ = faults.wait_for(|fault| *fault == Fault::Reset).await;
            reset(&client);
            return;
        }
        Fault::Reset => return reset(&client),
    }
    let server = match TcpStream::connect(upstream).await {
        Ok(server) => server,
        Err(_) => return reset(&client),
    };
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let shared = &registration.shared;
    tokio::join!(
        relay(client_read, server_write, &fault, shared),
        relay(server_read, client_write, &fault, shared),
    );
}

/// How one direction's relaying stopped.
enum Stop {
    Eof,
    Error,
    Fault,
}

/// Copies `from` to `to` until EOF (then half-closes `to`), an error (then resets the whole
/// connection) or a fault.
async fn relay(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    fault: &watch::Sender<Fault>,
    shared: &Shared,
) {
    let mut faults = fault.subscribe();
    let mut buf = vec![0; 64 * 1024];
    let stop = loop {
        let n = tokio::select! {
            biased;
            _ = faults.wait_for(|fault| *fault != Fault::Relay) => break Stop::Fault,
            read = from.read(&mut buf) => match read {
                Ok(0) => break Stop::Eof,
                Ok(n) => n,
                Err(_) => break Stop::Error,
            },
        };
        let delay = shared.state().delay;
        let write = async {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            to.write_all(&buf[..n]).await
        };
        tokio::select! {
            biased;
            // Bytes read but not yet written are lost, as packets in flight on a dead path.
            _ = faults.wait_for(|fault| *fault != Fault::Relay) => break Stop::Fault,
            written = write => if written.is_err() {
                break Stop::Error;
            },
        }
    };
    match stop {
        Stop::Eof => {
            let _ = to.shutdown().await;
            return;
        }
        // A reset (or any failure) on one side is passed on to the other, as a path would.
        Stop::Error => {
            fault.send_replace(Fault::Reset);
        }
        Stop::Fault => {
            let _ = faults.wait_for(|fault| *fault == Fault::Reset).await;
        }
    }
    reset(from.as_ref());
    reset(to.as_ref());
    // Dropping a write half would send FIN before the RST; forgetting it leaves the close to
    // the last owner of the socket, which then aborts it.
    to.forget();
}

/// Makes the socket's close abortive (RST instead of FIN): SO_LINGER with a zero timeout.
fn reset(stream: &TcpStream) {
    let _ = SockRef::from(stream).set_linger(Some(Duration::ZERO));
}
