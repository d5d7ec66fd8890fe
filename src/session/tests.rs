//! Unit specs of the manager's bookkeeping that need no server: reloading hosts, status;
//! holding, backoff and shared attempts against a fake connector in [`attempts`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Backoff, HostState, SessionManager};
use crate::config::{Config, HostSpec};
use crate::ssh_config::{HostConfig, SshConfigFile};

const SSH_CONFIG: &str = "Host jump\n  Port 2200\nHost far\n  ProxyJump jump\n";

fn host(name: &str, ssh_config: &str) -> HostConfig {
    let text =
        format!("[[forward]]\nlisten = \"127.0.0.1:4445\"\nhost = \"{name}\"\ntarget = \"x:1\"\n");
    let config = Config::from_str(&text, Path::new("/test/config.toml")).expect("config");
    SshConfigFile::parse(
        Path::new("/test/ssh_config"),
        ssh_config,
        PathBuf::from("/home/u"),
    )
    .expect("parses")
    .resolve(&config, &config.forwards[0].host)
    .expect("resolves")
}

fn manager(hosts: Vec<HostConfig>) -> SessionManager {
    let backoff = Backoff {
        min: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    SessionManager::new(
        hosts,
        backoff,
        Arc::new(russh::WindowBudget::new(64 << 20)),
        CancellationToken::new(),
    )
}

fn spec(name: &str) -> HostSpec {
    name.parse().unwrap()
}

fn hosts_in_status(manager: &SessionManager) -> Vec<String> {
    manager.status().into_iter().map(|h| h.host).collect()
}

#[test]
fn a_reload_keeps_a_changed_hosts_slot_and_gives_it_the_new_settings() {
    let manager = manager(vec![host("srv", "Host srv\n  Port 22\n")]);
    let before = manager.slot(&spec("srv")).unwrap();

    manager.update_hosts([host("srv", "Host srv\n  Port 2222\n"), host("new", "")]);

    let after = manager.slot(&spec("srv")).unwrap();
    assert!(
        Arc::ptr_eq(&before, &after),
        "the slot (and its session) was replaced"
    );
    assert_eq!(after.config().port, 2222);
    assert!(manager.slot(&spec("new")).is_some());
    assert_eq!(hosts_in_status(&manager), ["srv", "new"]);
}

#[test]
fn a_host_no_forward_uses_any_more_leaves_once_idle() {
    let manager = manager(vec![host("srv", ""), host("other", "")]);

    manager.update_hosts([host("other", "")]);

    assert!(manager.slot(&spec("srv")).is_none());
    assert_eq!(hosts_in_status(&manager), ["other"]);
    assert!(
        manager
            .status()
            .iter()
            .all(|h| h.state == HostState::Idle && h.bytes.up == 0)
    );
}

#[test]
fn a_jump_host_whose_settings_change_stays_one_slot_shared_with_the_host_it_carries() {
    let manager = manager(vec![host("far", SSH_CONFIG), host("jump", SSH_CONFIG)]);
    assert_eq!(hosts_in_status(&manager), ["jump", "far"]);
    let changed = SSH_CONFIG.replace("2200", "2201");

    manager.update_hosts([host("far", &changed), host("jump", &changed)]);

    let jump = manager.slot(&spec("jump")).unwrap();
    let via = manager.slot(&spec("far")).unwrap().setup().via.unwrap();
    assert!(
        Arc::ptr_eq(&jump, &via),
        "far goes through another jump slot"
    );
    assert_eq!(jump.config().port, 2201);
    assert_eq!(hosts_in_status(&manager), ["jump", "far"]);
}

/// What a connect attempt that never returns its outcome leaves in the slot.
fn state_after(slot: &super::slot::HostSlot) -> (u32, String) {
    let state = slot.state.borrow();
    match &state.phase {
        super::slot::Phase::Backoff { error, .. } => (state.failures, error.to_string()),
        _ => (state.failures, "not in backoff".into()),
    }
}

#[tokio::test]
async fn a_connect_attempt_that_panics_or_is_cancelled_still_records_a_failure() {
    use super::live::Carrier;
    use crate::client::{ConnectError, Connection};
    type Outcome = Result<(Connection, Option<Carrier>), ConnectError>;
    fn buggy_connect() -> Outcome {
        panic!("a bug in the connect path")
    }
    let backoff = Backoff {
        min: Duration::from_secs(1),
        max: Duration::from_secs(60),
    };
    let slot = Arc::new(super::slot::HostSlot::new(host("far", SSH_CONFIG), None));
    let shutdown = CancellationToken::new();

    let panicking = tokio::spawn({
        let (slot, shutdown) = (slot.clone(), shutdown.clone());
        async move {
            let boom = async { buggy_connect() };
            slot.attempt(boom, backoff, &shutdown).await.is_some()
        }
    });
    assert!(panicking.await.unwrap_err().is_panic());
    let (failures, error) = state_after(&slot);
    assert_eq!(failures, 1);
    assert!(error.contains("panicked"), "{error}");

    let started = Arc::new(tokio::sync::Notify::new());
    let hanging = tokio::spawn({
        let (slot, shutdown, started) = (slot.clone(), shutdown.clone(), started.clone());
        async move {
            let never = std::future::pending::<Outcome>();
            // The attempt is polled in this same poll, before the task can be aborted.
            started.notify_one();
            slot.attempt(never, backoff, &shutdown).await.is_some()
        }
    });
    started.notified().await;
    hanging.abort();
    assert!(hanging.await.unwrap_err().is_cancelled());
    let (failures, error) = state_after(&slot);
    assert_eq!(failures, 2);
    assert!(error.contains("cancelled"), "{error}");
}

mod attempts;
