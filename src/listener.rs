//! Local listeners: binding each forward's address or socket path, and the accept loop that
//! hands every accepted socket to its own connection task, counting what each forward carries.

use std::borrow::Cow;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::config::{Endpoint, Forward, ForwardTarget, Limits, Listen};
use crate::forward::{self, ForwardError, Traffic};
use crate::local::{Listener, LocalStream, Peer, StdListener, bind_unix};
use crate::session::{OpenError, SessionManager};
use crate::socks::{self, Failure, Request};

/// A forward with its bound listening socket.
pub struct BoundForward {
    pub forward: Forward,
    pub listener: Listener,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {listen} for forward {name:?}: {error}")]
pub struct BindError {
    pub name: String,
    pub listen: Listen,
    pub error: io::Error,
}

/// Binds a forward's listen address or socket path, before the async runtime exists (so that
/// it can happen before detaching). The socket is non-blocking, ready for
/// [`BoundForward::from_std`].
pub fn bind_std(forward: &Forward) -> Result<StdListener, BindError> {
    let error = |error| BindError {
        name: forward.name.clone(),
        listen: forward.listen.clone(),
        error,
    };
    match &forward.listen {
        Listen::Tcp(addr) => {
            let listener = std::net::TcpListener::bind(addr).map_err(error)?;
            listener.set_nonblocking(true).map_err(error)?;
            Ok(StdListener::Tcp(listener))
        }
        Listen::Unix { path, mode } => {
            let (listener, file) = bind_unix(path, *mode).map_err(error)?;
            Ok(StdListener::Unix(listener, Some(file)))
        }
    }
}

impl BoundForward {
    /// Registers a non-blocking listener with the runtime; call inside it.
    pub fn from_std(forward: Forward, listener: StdListener) -> io::Result<Self> {
        Ok(BoundForward {
            forward,
            listener: Listener::from_std(listener)?,
        })
    }
}

/// What one forward has carried, for status reports. Kept across a reload that leaves the
/// forward unchanged.
#[derive(Debug, Default)]
pub struct ForwardStats {
    open: AtomicU64,
    total: AtomicU64,
    pub traffic: Traffic,
    last_error: Mutex<Option<(SystemTime, String)>>,
}

impl ForwardStats {
    /// Connections open now (including those waiting for a session).
    pub fn open(&self) -> u64 {
        self.open.load(Ordering::Relaxed)
    }

    /// Connections accepted since the forward started.
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// The last connection that failed for a reason other than its own client, and when.
    pub fn last_error(&self) -> Option<(SystemTime, String)> {
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn record_error(&self, error: String) {
        let error = crate::printable::printable(&error).into_owned();
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some((SystemTime::now(), error));
    }
}

/// Counts a connection as open for as long as it lives.
struct OpenGuard<'a>(&'a ForwardStats);

impl<'a> OpenGuard<'a> {
    fn new(stats: &'a ForwardStats) -> Self {
        stats.open.fetch_add(1, Ordering::Relaxed);
        stats.total.fetch_add(1, Ordering::Relaxed);
        OpenGuard(stats)
    }
}

impl Drop for OpenGuard<'_> {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What every accept loop shares.
#[derive(Clone)]
pub struct ConnectionContext {
    pub sessions: Arc<SessionManager>,
    pub limits: Limits,
    /// Daemon-wide limit on open connections; a permit is held for each one's lifetime.
    pub limit: Arc<Semaphore>,
    /// Tracks connection tasks, so shutdown can wait for them to drain.
    pub connections: TaskTracker,
    /// Stops accepting, on every forward (each loop also has its own token, for a reload).
    pub stop_accepting: CancellationToken,
    /// Cuts open connections (after the drain period).
    pub cut_connections: CancellationToken,
}

/// Accepts connections on `bound` until `stop` fires (a child of `ctx.stop_accepting`), then
/// returns the listener, which a reload may hand to the forward's next accept loop. Open
/// connections are not touched: they live in `ctx.connections`.
pub async fn accept_loop(
    bound: BoundForward,
    ctx: ConnectionContext,
    stats: Arc<ForwardStats>,
    stop: CancellationToken,
) -> Listener {
    let BoundForward { forward, listener } = bound;
    let forward = Arc::new(forward);
    let local = listener.listen(&forward.listen);
    info!(forward = %forward.name, listen = %local, host = %forward.host, target = %forward.target, "listening");
    let mut backoff = AcceptBackoff::default();
    loop {
        // Take the permit before accepting: at the limit, new clients wait in the backlog.
        let permit = match ctx.limit.clone().try_acquire_owned() {
            Ok(permit) => permit,
            Err(_) => {
                warn!(
                    forward = %forward.name,
                    limit = ctx.limits.max_connections,
                    "connection limit reached (max_connections); new connections wait in the backlog until one closes"
                );
                tokio::select! {
                    permit = ctx.limit.clone().acquire_owned() => match permit {
                        Ok(permit) => permit,
                        Err(_) => return listener,
                    },
                    () = stop.cancelled() => return listener,
                }
            }
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return listener,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff.reset();
                let span = info_span!("conn", forward = %forward.name, %peer);
                let ctx2 = ctx.clone();
                let forward = forward.clone();
                let stats = stats.clone();
                ctx.connections.spawn(
                    async move {
                        let _open = OpenGuard::new(&stats);
                        handle_connection(stream, peer, &forward, &ctx2, &stats).await;
                        drop(permit);
                    }
                    .instrument(span),
                );
            }
            Err(e) => {
                // Errors such as EMFILE repeat immediately: without a pause the loop would spin.
                let pause = backoff.next();
                error!(forward = %forward.name, "accept failed: {e}; retrying in {pause:?}");
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = stop.cancelled() => return listener,
                }
            }
        }
    }
}

async fn handle_connection(
    mut stream: LocalStream,
    peer: Peer,
    forward: &Forward,
    ctx: &ConnectionContext,
    stats: &ForwardStats,
) {
    stream.set_nodelay();
    debug!(target = %forward.target, "accepted");
    // A SOCKS client names its destination first, and hears back how the channel open went.
    let (target, request) = match &forward.target {
        ForwardTarget::Fixed(target) => (Cow::Borrowed(target), None),
        ForwardTarget::Socks => {
            let Some(request) = socks_request(&mut stream, ctx).await else {
                return;
            };
            let target = Endpoint::Tcp(request.target.clone());
            (Cow::Owned(target), Some(request))
        }
    };
    let originator = peer.originator();
    let opened = tokio::select! {
        lease = ctx.sessions.open_channel(&forward.host, &target, originator) => lease,
        () = ctx.cut_connections.cancelled() => {
            stream.reset();
            return;
        }
    };
    let lease = match opened {
        Ok(lease) => lease,
        Err(e) => return refuse(stream, request, &e, stats).await,
    };
    if let Some(request) = &request
        && let Err(e) = request.grant(&mut stream).await
    {
        debug!("reset: local client: {e}");
        // A dropped channel would stay open on the server.
        let _ = lease.channel.close().await;
        return;
    }
    let dead = lease.session.dead().clone();
    let cut = async {
        tokio::select! {
            () = dead.cancelled() => "ssh session ended",
            () = ctx.cut_connections.cancelled() => "daemon shutting down",
        }
    };
    let meters = [&stats.traffic, &*lease.traffic];
    match forward::forward(stream, lease.channel, &meters, cut).await {
        Ok(moved) => debug!(up = moved.up, down = moved.down, "closed"),
        Err(ForwardError::Local(e)) => debug!("reset: local client: {e}"),
        Err(e) => {
            info!("reset: {}", crate::printable::printable(&e.to_string()));
            stats.record_error(e.to_string());
        }
    }
}

/// Reads a SOCKS client's request; `None` once the client has been answered (if the protocol
/// has an answer) and should be closed, or the daemon is cutting connections.
async fn socks_request(stream: &mut LocalStream, ctx: &ConnectionContext) -> Option<Request> {
    let accepted = tokio::select! {
        accepted = socks::accept(stream) => accepted,
        () = ctx.cut_connections.cancelled() => {
            stream.reset();
            return None;
        }
    };
    match accepted {
        Ok(request) => {
            debug!(destination = %request.target, version = %request.version, "socks request");
            Some(request)
        }
        Err(e) => {
            // The client's own doing: logged, not kept as the forward's last error.
            info!(
                "socks handshake failed: {}",
                crate::printable::printable(&e.to_string())
            );
            None
        }
    }
}

/// Ends a connection whose channel could not be opened: a SOCKS client is told why, then
/// closed (FIN, so that it reads the reply); any other client is reset.
async fn refuse(
    mut stream: LocalStream,
    request: Option<Request>,
    error: &OpenError,
    stats: &ForwardStats,
) {
    let message = crate::printable::printable(&error.to_string()).into_owned();
    match &request {
        // A destination a SOCKS client chose refused it: that client's business.
        Some(_) if matches!(error, OpenError::Refused { .. }) => {
            info!("connection refused: {message}");
        }
        _ => {
            warn!("connection refused: {message}");
            stats.record_error(error.to_string());
        }
    }
    match request {
        Some(request) => {
            let failure = Failure::of(error);
            let _ = request.refuse(&mut stream, failure).await;
            let _ = stream.shutdown().await;
        }
        None => stream.reset(),
    }
}

/// Pauses after consecutive accept errors: 10 ms doubling up to 1 s.
#[derive(Default)]
struct AcceptBackoff {
    failures: u32,
}

impl AcceptBackoff {
    fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(10) * 2u32.pow(self.failures.min(7));
        self.failures += 1;
        pause.min(Duration::from_secs(1))
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}
