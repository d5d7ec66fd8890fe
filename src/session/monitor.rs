//! Feeds evidence of network changes to the session manager: kernel address/link events, a
//! once-a-second check of the local addresses (for systems without an event source), and wall
//! clock jumps (sleep and wake). The once-a-second timer runs only while some session is up,
//! so an idle daemon does not wake at all.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::SessionManager;
use crate::netwatch::{AddressEvents, ClockWatch};

/// How often the local addresses and the clocks are checked while a session is up.
const TICK: Duration = Duration::from_secs(1);

/// Runs until `stop` fires.
pub async fn watch_network(sessions: Arc<SessionManager>, stop: CancellationToken) {
    let mut events = match AddressEvents::open() {
        Ok(events) => events,
        Err(e) => {
            debug!("no network change events ({e}); checking addresses every {TICK:?}");
            None
        }
    };
    let mut clock = ClockWatch::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        // Address events are listened to always (they cost nothing until the network
        // changes, and may lift a failed host's backoff); the timer runs only while a
        // session is up.
        let ticking = sessions.any_session_up();
        tokio::select! {
            changed = next_event(&mut events) => {
                if let Err(e) = changed {
                    debug!("network change events failed ({e}); checking every {TICK:?}");
                    events = None;
                }
                sessions.network_changed();
            }
            _ = tick.tick(), if ticking => {
                if let Some(jump) = clock.check() {
                    sessions.clock_jumped(jump.amount());
                } else {
                    sessions.check_local_addresses();
                }
            }
            () = sessions.session_came_up(), if !ticking => {
                clock = ClockWatch::new();
                tick.reset();
            }
            () = stop.cancelled() => return,
        }
    }
}

async fn next_event(events: &mut Option<AddressEvents>) -> std::io::Result<()> {
    match events {
        Some(events) => events.changed().await,
        None => std::future::pending().await,
    }
}
