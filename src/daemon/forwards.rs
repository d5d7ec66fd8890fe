//! The running forwards: each one's accept loops, its own stop token (so a reload can stop one
//! forward without touching the others) and its counters.

use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{Forward, Listen};
use crate::control::protocol;
use crate::listener::{self, BoundForward, ConnectionContext, ForwardStats};
use crate::local::Listener;

struct Running {
    forward: Forward,
    listen: Vec<Listen>,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
    loops: Vec<JoinHandle<Listener>>,
}

/// A forward being stopped: await [`Stopping::listeners`] for its sockets back.
pub(super) struct Stopping {
    pub forward: Forward,
    loops: Vec<JoinHandle<Listener>>,
}

impl Stopping {
    /// Waits for the accept loops to end and returns their listeners, still bound (a Unix
    /// socket's file goes when its listener is dropped).
    pub async fn listeners(self) -> Vec<Listener> {
        let mut listeners = Vec::new();
        for handle in self.loops {
            // A loop that panicked has dropped its listener: nothing to hand back.
            if let Ok(listener) = handle.await {
                listeners.push(listener);
            }
        }
        listeners
    }
}

/// Every forward being served, in config order.
pub(super) struct Forwards {
    running: Vec<Running>,
}

impl Forwards {
    pub fn new() -> Forwards {
        Forwards {
            running: Vec::new(),
        }
    }

    /// The addresses and socket paths `name` listens on now.
    pub fn listening(&self, name: &str) -> Vec<Listen> {
        self.running
            .iter()
            .filter(|r| r.forward.name == name)
            .flat_map(|r| r.listen.clone())
            .collect()
    }

    /// Starts accepting on `listeners` for `forward`, with fresh counters.
    pub fn start(&mut self, forward: Forward, listeners: Vec<Listener>, ctx: &ConnectionContext) {
        let stats = Arc::new(ForwardStats::default());
        let stop = ctx.stop_accepting.child_token();
        let listen = listeners
            .iter()
            .map(|l| l.listen(&forward.listen))
            .collect();
        let loops = listeners
            .into_iter()
            .map(|listener| {
                let bound = BoundForward {
                    forward: forward.clone(),
                    listener,
                };
                let accepting =
                    listener::accept_loop(bound, ctx.clone(), stats.clone(), stop.clone());
                tokio::spawn(accepting)
            })
            .collect();
        self.running.push(Running {
            forward,
            listen,
            stats,
            stop,
            loops,
        });
    }

    /// Stops accepting for `name`; its open connections go on.
    pub fn stop(&mut self, name: &str) -> Option<Stopping> {
        let index = self.running.iter().position(|r| r.forward.name == name)?;
        let running = self.running.remove(index);
        running.stop.cancel();
        Some(Stopping {
            forward: running.forward,
            loops: running.loops,
        })
    }

    /// Stops every forward (shutdown).
    pub fn stop_all(&mut self) -> Vec<Stopping> {
        let names: Vec<String> = self
            .running
            .iter()
            .map(|r| r.forward.name.clone())
            .collect();
        names.iter().filter_map(|n| self.stop(n)).collect()
    }

    /// Puts the forwards back in `order` (the config's), for status reports.
    pub fn sort_like(&mut self, order: &[Forward]) {
        self.running
            .sort_by_key(|r| order.iter().position(|f| f.name == r.forward.name));
    }

    pub fn report(&self) -> Vec<protocol::Forward> {
        self.running
            .iter()
            .map(|r| {
                let traffic = r.stats.traffic.get();
                protocol::Forward {
                    name: r.forward.name.clone(),
                    listen: r.listen.iter().map(|a| a.to_string()).collect(),
                    host: r.forward.host.to_string(),
                    target: r.forward.target.to_string(),
                    socks: r.forward.target.is_socks(),
                    connections_open: r.stats.open(),
                    connections_total: r.stats.total(),
                    bytes_up: traffic.up,
                    bytes_down: traffic.down,
                    last_error: r
                        .stats
                        .last_error()
                        .map(|(at, message)| protocol::LastError {
                            at: protocol::timestamp(at),
                            message,
                        }),
                }
            })
            .collect()
    }
}
