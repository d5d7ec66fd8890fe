//! `exit_when_idle`: ending the daemon (status 0) once nothing has been going on for a while,
//! so that a socket manager, which keeps the ports, can start it again when needed.

use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Below this, launchd's restart throttling (one start per 10 s) makes exiting pointless.
pub const MIN_SENSIBLE: Duration = Duration::from_secs(10);

/// Cancels `shutdown` once `is_idle` has held for `after` without interruption.
///
/// Checked on a tick of a tenth of `after` (0.1-1 s): neither the connection tracker nor the
/// session manager announces changes, and a tick costs nothing next to the minutes measured.
/// A connection that comes and goes between two ticks without a session is not seen, which
/// can shorten the idle period by at most one tick.
pub async fn exit_when_idle(
    after: Duration,
    is_idle: impl Fn() -> bool,
    shutdown: CancellationToken,
) {
    let tick = (after / 10).clamp(Duration::from_millis(100), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(tick);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut idle_since: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = shutdown.cancelled() => return,
        }
        if !is_idle() {
            idle_since = None;
            continue;
        }
        let since = *idle_since.get_or_insert_with(Instant::now);
        if since.elapsed() >= after {
            info!(
                idle = %humantime::format_duration(after),
                "no session or connection for exit_when_idle: exiting"
            );
            shutdown.cancel();
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    const AFTER: Duration = Duration::from_secs(10);

    #[tokio::test(start_paused = true)]
    async fn exits_after_the_idle_period() {
        let shutdown = CancellationToken::new();
        let started = Instant::now();
        exit_when_idle(AFTER, || true, shutdown.clone()).await;
        assert!(shutdown.is_cancelled());
        let took = started.elapsed();
        assert!(
            took >= AFTER && took <= AFTER + Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn activity_restarts_the_idle_period() {
        let shutdown = CancellationToken::new();
        let busy = Arc::new(AtomicBool::new(true));
        let watcher = tokio::spawn(exit_when_idle(
            AFTER,
            {
                let busy = busy.clone();
                move || !busy.load(Ordering::Relaxed)
            },
            shutdown.clone(),
        ));
        tokio::time::sleep(3 * AFTER).await;
        assert!(!shutdown.is_cancelled(), "exited while busy");
        busy.store(false, Ordering::Relaxed);
        let idle_from = Instant::now();
        watcher.await.unwrap();
        let took = idle_from.elapsed();
        assert!(
            took >= AFTER && took <= AFTER + Duration::from_secs(2),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_shutdown_ends_the_watch_of_a_busy_daemon() {
        let shutdown = CancellationToken::new();
        // Never idle, so only the shutdown can end the watch.
        let watcher = tokio::spawn(exit_when_idle(AFTER, || false, shutdown.clone()));
        tokio::time::sleep(3 * AFTER).await;
        assert!(
            !watcher.is_finished(),
            "the watch ended on its own while busy"
        );

        shutdown.cancel();

        // A bounded wait, so a watch that ignored the shutdown fails the test, not hangs it.
        tokio::time::timeout(Duration::from_secs(1), watcher)
            .await
            .expect("the watch outlived the shutdown")
            .unwrap();
    }
}
