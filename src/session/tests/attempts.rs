//! Specs of holding, backoff and shared attempts, against a fake connector whose attempts fail
//! as told, in tokio's paused time: the schedule is checked in milliseconds of test time.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use russh::WindowBudget;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{host, spec};
use crate::client::ConnectError;
use crate::config::Target;
use crate::session::{Backoff, Connector, Hop, OpenError, Opening, SessionManager};
use crate::ssh_config::HostConfig;

/// A connector whose every attempt fails: with the next of the errors it was given, the last
/// one again once they run out. It records when each attempt started, and can keep attempts
/// from finishing until the test lets them.
#[derive(Clone)]
struct FailingConnector {
    inner: Arc<Inner>,
}

struct Inner {
    errors: Mutex<VecDeque<fn() -> ConnectError>>,
    started: Mutex<Vec<Instant>>,
    attempt_started: Notify,
    /// Attempts finish only while this is true.
    finishing: watch::Sender<bool>,
}

impl FailingConnector {
    fn new(errors: &[fn() -> ConnectError]) -> FailingConnector {
        FailingConnector {
            inner: Arc::new(Inner {
                errors: Mutex::new(errors.iter().copied().collect()),
                started: Mutex::default(),
                attempt_started: Notify::new(),
                finishing: watch::channel(true).0,
            }),
        }
    }

    /// When each attempt started.
    fn attempts(&self) -> Vec<Instant> {
        lock(&self.inner.started).clone()
    }

    /// Keeps attempts from finishing until [`FailingConnector::finish_attempts`].
    fn hold_attempts(&self) {
        self.inner.finishing.send_replace(false);
    }

    fn finish_attempts(&self) {
        self.inner.finishing.send_replace(true);
    }

    async fn wait_for_attempts(&self, n: usize) {
        loop {
            let started = self.inner.attempt_started.notified();
            if self.attempts().len() >= n {
                return;
            }
            started.await;
        }
    }
}

impl Connector for FailingConnector {
    fn connect(
        &self,
        _host: Arc<HostConfig>,
        _hop: Option<Hop>,
        _carries: bool,
        _budget: Arc<WindowBudget>,
    ) -> Opening {
        let inner = self.inner.clone();
        Box::pin(async move {
            lock(&inner.started).push(Instant::now());
            inner.attempt_started.notify_waiters();
            let mut finishing = inner.finishing.subscribe();
            let _ = finishing.wait_for(|finishing| *finishing).await;
            let mut errors = lock(&inner.errors);
            let error = if errors.len() > 1 {
                errors.pop_front()
            } else {
                errors.front().copied()
            };
            Err(error.expect("a FailingConnector needs an error")())
        })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn refused() -> ConnectError {
    ConnectError::Tcp {
        addr: "192.0.2.1:22".into(),
        error: std::io::ErrorKind::ConnectionRefused.into(),
    }
}

fn timed_out() -> ConnectError {
    ConnectError::Timeout {
        addr: "192.0.2.1:22".into(),
        timeout: Duration::from_secs(1),
    }
}

fn host_key_changed() -> ConnectError {
    ConnectError::HostKey("the host key of srv changed".into())
}

/// A manager with one host, `srv`, whose attempts `connector` makes.
fn manager_with(
    connector: &FailingConnector,
    connect_timeout: Duration,
    backoff: Backoff,
) -> Arc<SessionManager> {
    let mut srv = host("srv", "");
    srv.connect_timeout = connect_timeout;
    let budget = Arc::new(WindowBudget::new(64 << 20));
    let manager = SessionManager::new([srv], backoff, budget, CancellationToken::new());
    Arc::new(manager.with_connector(Arc::new(connector.clone())))
}

fn backoff(min: Duration, max: Duration) -> Backoff {
    Backoff { min, max }
}

/// A connection to `srv` asking for its channel: the error it is reset with.
async fn connection(manager: Arc<SessionManager>) -> OpenError {
    let target = crate::config::Endpoint::Tcp(Target {
        host: "db".into(),
        port: 5432,
    });
    let originator = SocketAddr::from(([127, 0, 0, 1], 40000));
    match manager
        .open_channel(&spec("srv"), &target, originator)
        .await
    {
        Ok(_) => panic!("a FailingConnector opened a session"),
        Err(error) => error,
    }
}

/// The attempt's error a connection was reset with.
fn attempt_error(error: &OpenError) -> Arc<ConnectError> {
    match error {
        OpenError::Connect { error, .. } => error.clone(),
        other => panic!("reset for another reason: {other}"),
    }
}

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

/// Paused time moves to each timer's deadline, rounded to tokio's millisecond ticks.
const TICK: Duration = Duration::from_millis(2);

fn assert_within(what: &str, took: Duration, from: Duration, to: Duration) {
    assert!(
        took + TICK >= from && took <= to + TICK,
        "{what}: {took:?}, expected {from:?} to {to:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_arriving_together_share_one_attempt_and_its_failure() {
    let connector = FailingConnector::new(&[refused]);
    // The next attempt (after backoff_min) is never due within connect_timeout: each
    // connection gets the first attempt's outcome.
    let manager = manager_with(&connector, secs(0.5), backoff(secs(1.0), secs(60.0)));
    connector.hold_attempts();

    let connections: Vec<_> = (0..8)
        .map(|_| tokio::spawn(connection(manager.clone())))
        .collect();
    connector.wait_for_attempts(1).await;
    tokio::time::advance(secs(0.2)).await;
    connector.finish_attempts();
    let mut errors = Vec::new();
    for connection in connections {
        errors.push(attempt_error(&connection.await.expect("connection task")));
    }

    assert_eq!(connector.attempts().len(), 1);
    assert!(
        errors.iter().all(|e| Arc::ptr_eq(e, &errors[0])),
        "the connections saw different attempts"
    );
}

#[tokio::test(start_paused = true)]
async fn a_held_connection_waits_out_each_delay_which_doubles_with_jitter_until_none_is_due_in_time()
 {
    let connector = FailingConnector::new(&[refused]);
    let manager = manager_with(&connector, secs(40.0), backoff(secs(1.0), secs(60.0)));
    let arrived = Instant::now();

    let error = connection(manager.clone()).await;

    // Delays 1, 2, 4, 8, 16 s, each times [0.8, 1.2] (but never below backoff_min): the
    // sixth attempt comes 25 to 37.2 s after the first, within connect_timeout (40 s); the
    // seventh at least 25.6 s later, beyond it. So exactly six, the last one's error kept.
    let attempts = connector.attempts();
    assert_eq!(attempts.len(), 6, "{attempts:?}");
    for (i, pair) in attempts.windows(2).enumerate() {
        let nominal = secs(f64::from(1u32 << i));
        let from = nominal.mul_f64(0.8).max(secs(1.0));
        assert_within(
            &format!("delay {}", i + 1),
            pair[1] - pair[0],
            from,
            nominal.mul_f64(1.2),
        );
    }
    assert_within(
        "the connection's wait",
        arrived.elapsed(),
        attempts[5] - arrived,
        attempts[5] - arrived,
    );
    assert!(matches!(*attempt_error(&error), ConnectError::Tcp { .. }));
    let status = &manager.status()[0];
    assert_eq!((status.attempts, status.failures), (6, 6));
}

#[tokio::test(start_paused = true)]
async fn connections_arriving_all_the_time_cause_no_attempts_of_their_own() {
    let connector = FailingConnector::new(&[refused]);
    let manager = manager_with(&connector, secs(1.0), backoff(secs(1.0), secs(60.0)));

    // A connection every 50 ms for 10 s: demand at every moment.
    let until = Instant::now() + secs(10.0);
    let mut connections = Vec::new();
    while Instant::now() < until {
        connections.push(tokio::spawn(connection(manager.clone())));
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for connection in connections {
        connection.await.expect("connection task");
    }

    // Attempts at 0, then after 1, 2 and 4 s (each within [0.8, 1.2] of that): the fourth by
    // 8.4 s, the fifth no sooner than 0.8 x 15 = 12 s. Four, however many clients came.
    let attempts = connector.attempts();
    assert_eq!(attempts.len(), 4, "{attempts:?}");
    for (i, pair) in attempts.windows(2).enumerate() {
        let nominal = secs(f64::from(1u32 << i));
        assert_within(
            &format!("delay {}", i + 1),
            pair[1] - pair[0],
            nominal.mul_f64(0.8).max(secs(1.0)),
            nominal.mul_f64(1.2),
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_held_for_the_next_attempt_only_if_it_is_due_within_connect_timeout() {
    let connector = FailingConnector::new(&[refused, timed_out]);
    // backoff_min = backoff_max: no jitter can move the retry (always 2 s).
    let manager = manager_with(&connector, secs(3.0), backoff(secs(2.0), secs(2.0)));
    let first = connection(manager.clone()).await;
    // First attempt at 0, retry at 2 s within the 3 s: the same connection was held for it.
    assert_eq!(connector.attempts().len(), 2);
    assert!(matches!(
        *attempt_error(&first),
        ConnectError::Timeout { .. }
    ));

    // Arriving 0.5 s into the next 2 s delay, the retry is due within 3 s: held for it.
    tokio::time::advance(secs(0.5)).await;
    let arrived = Instant::now();
    let held = tokio::spawn(connection(manager.clone()));
    let error = held.await.expect("connection task");
    assert_within("held", arrived.elapsed(), secs(1.5), secs(1.5));
    assert_eq!(connector.attempts().len(), 3);
    assert!(matches!(
        *attempt_error(&error),
        ConnectError::Timeout { .. }
    ));
}

#[tokio::test(start_paused = true)]
async fn a_connection_is_reset_at_once_when_no_attempt_is_due_within_connect_timeout() {
    let connector = FailingConnector::new(&[refused]);
    let manager = manager_with(&connector, secs(3.0), backoff(secs(10.0), secs(10.0)));
    let first = attempt_error(&connection(manager.clone()).await);
    tokio::time::advance(secs(1.0)).await;

    let arrived = Instant::now();
    let second = attempt_error(&connection(manager.clone()).await);

    assert_eq!(arrived.elapsed(), Duration::ZERO);
    assert!(Arc::ptr_eq(&first, &second), "not the last attempt's error");
    assert_eq!(connector.attempts().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_permanent_failure_waits_backoff_max_and_resets_connections_at_once_meanwhile() {
    let connector = FailingConnector::new(&[host_key_changed]);
    let manager = manager_with(&connector, secs(30.0), backoff(secs(1.0), secs(60.0)));
    let arrived = Instant::now();
    let first = attempt_error(&connection(manager.clone()).await);
    // Not held for a retry, though connect_timeout would allow one after backoff_min.
    assert_eq!(arrived.elapsed(), Duration::ZERO);

    // backoff_max times [0.8, 1]: no attempt before 48 s.
    tokio::time::advance(secs(47.0)).await;
    let later = attempt_error(&connection(manager.clone()).await);
    assert!(Arc::ptr_eq(&first, &later));
    assert_eq!(connector.attempts().len(), 1);

    tokio::time::advance(secs(13.0)).await;
    connection(manager.clone()).await;
    assert_eq!(connector.attempts().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_network_change_lifts_a_transient_backoff_but_not_a_permanent_one() {
    let connector = FailingConnector::new(&[refused, host_key_changed]);
    let manager = manager_with(&connector, secs(3.0), backoff(secs(3600.0), secs(3600.0)));
    connection(manager.clone()).await;

    manager.network_changed();
    let permanent = attempt_error(&connection(manager.clone()).await);
    assert_eq!(connector.attempts().len(), 2, "the transient backoff held");

    manager.network_changed();
    let again = attempt_error(&connection(manager.clone()).await);
    assert!(Arc::ptr_eq(&permanent, &again));
    assert_eq!(
        connector.attempts().len(),
        2,
        "the permanent backoff was lifted"
    );
}
