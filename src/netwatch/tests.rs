use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime};

use super::{ClockJump, ClockWatch, InterfaceAddress, is_configured, is_local_address};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("test address")
}

#[test]
fn loopback_addresses_are_local() {
    assert!(is_local_address(IpAddr::V4(Ipv4Addr::LOCALHOST)).expect("getifaddrs"));
    // Containers sometimes run without IPv6; ::1 is then absent, which is not our bug.
    if std::path::Path::new("/proc/net/if_inet6").exists() {
        assert!(is_local_address(IpAddr::V6(Ipv6Addr::LOCALHOST)).expect("getifaddrs"));
    }
}

#[test]
fn ipv4_mapped_loopback_is_local() {
    assert!(is_local_address(ip("::ffff:127.0.0.1")).expect("getifaddrs"));
}

#[test]
fn documentation_address_is_not_local() {
    assert!(!is_local_address(ip("192.0.2.1")).expect("getifaddrs"));
    assert!(!is_local_address(ip("2001:db8::1")).expect("getifaddrs"));
    assert!(!is_local_address(ip("::ffff:192.0.2.1")).expect("getifaddrs"));
}

#[cfg(target_os = "linux")]
#[test]
fn whole_loopback_prefix_is_local_on_linux() {
    assert!(is_local_address(ip("127.0.0.2")).expect("getifaddrs"));
    assert!(is_local_address(ip("127.255.1.2")).expect("getifaddrs"));
}

#[test]
fn prefix_counts_only_where_recorded() {
    let configured = [
        InterfaceAddress {
            addr: ip("127.0.0.1"),
            local_prefix: Some(8),
        },
        InterfaceAddress {
            addr: ip("10.1.2.3"),
            local_prefix: None,
        },
        InterfaceAddress {
            addr: ip("fd00::1"),
            local_prefix: Some(64),
        },
    ];
    assert!(is_configured(ip("127.9.9.9"), &configured));
    assert!(is_configured(ip("::ffff:127.9.9.9"), &configured));
    assert!(!is_configured(ip("128.0.0.1"), &configured));
    assert!(is_configured(ip("10.1.2.3"), &configured));
    assert!(!is_configured(ip("10.1.2.4"), &configured));
    assert!(is_configured(ip("fd00::ffff"), &configured));
    assert!(!is_configured(ip("fd00:0:0:1::1"), &configured));
    // A v4 prefix never matches a v6 address, even one with the same bits.
    assert!(!is_configured(ip("::7f00:1"), &configured));
    // /0 contains everything of its family.
    let everything = [InterfaceAddress {
        addr: ip("0.0.0.0"),
        local_prefix: Some(0),
    }];
    assert!(is_configured(ip("203.0.113.7"), &everything));
}

/// A watch started at a fixed point, and a way to read both clocks `secs` later.
fn watch() -> (ClockWatch, Instant, SystemTime) {
    let monotonic = Instant::now();
    let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let watch = ClockWatch::starting_at(Duration::from_secs(2), monotonic, wall);
    (watch, monotonic, wall)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn clocks_advancing_together_report_nothing() {
    let (mut watch, mono, wall) = watch();
    assert_eq!(watch.observe(mono + ms(1000), wall + ms(1000)), None);
    // A late check (busy machine) moves both clocks alike.
    assert_eq!(watch.observe(mono + ms(61_000), wall + ms(61_000)), None);
    // Small drift, as NTP slewing, stays under the threshold either way.
    assert_eq!(watch.observe(mono + ms(62_000), wall + ms(63_900)), None);
    assert_eq!(watch.observe(mono + ms(63_000), wall + ms(63_000)), None);
}

#[test]
fn sleep_shows_as_a_forward_jump() {
    let (mut watch, mono, wall) = watch();
    assert_eq!(watch.observe(mono + ms(1000), wall + ms(1000)), None);
    // Slept an hour: the monotonic clock moved one second, the wall clock an hour and one.
    assert_eq!(
        watch.observe(mono + ms(2000), wall + ms(3_602_000)),
        Some(ClockJump::Forward(ms(3_600_000)))
    );
    // Reported once: the next check compares with the post-wake readings.
    assert_eq!(watch.observe(mono + ms(3000), wall + ms(3_603_000)), None);
}

#[test]
fn wall_clock_set_back_shows_as_a_backward_jump() {
    let (mut watch, mono, wall) = watch();
    assert_eq!(
        watch.observe(mono + ms(1000), wall - ms(9000)),
        Some(ClockJump::Backward(ms(10_000)))
    );
    // Wall clock advancing less than the monotonic one, without going back.
    assert_eq!(
        watch.observe(mono + ms(11_000), wall - ms(6000)),
        Some(ClockJump::Backward(ms(7000)))
    );
}

#[test]
fn threshold_is_exclusive() {
    let (mut watch, mono, wall) = watch();
    assert_eq!(watch.observe(mono + ms(1000), wall + ms(3000)), None);
    assert_eq!(
        watch.observe(mono + ms(2000), wall + ms(6001)),
        Some(ClockJump::Forward(ms(2001)))
    );
}

#[test]
fn check_on_real_clocks_reports_nothing_right_away() {
    let mut watch = ClockWatch::new();
    assert_eq!(watch.check(), None);
}

#[cfg(target_os = "linux")]
mod namespace {
    //! AddressEvents against real kernel events, in a network namespace of its own so the
    //! host's networking is never touched. Needs root and `ip netns`; skips otherwise.

    use std::net::IpAddr;
    use std::os::fd::AsRawFd;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::super::{AddressEvents, is_local_address};

    const WAIT: Duration = Duration::from_secs(20);

    /// A named network namespace (`ip netns add`), deleted on drop.
    struct Namespace {
        name: String,
    }

    impl Namespace {
        fn create() -> Option<Namespace> {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                eprintln!("skipped: network namespaces need root");
                return None;
            }
            let name = format!(
                "lt-unit-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let added = Command::new("ip")
                .args(["netns", "add", &name])
                .stderr(Stdio::null())
                .status();
            if !added.is_ok_and(|status| status.success()) {
                eprintln!("skipped: `ip netns add` is unavailable");
                return None;
            }
            let namespace = Namespace { name };
            namespace.ip(&["link", "set", "lo", "up"]);
            Some(namespace)
        }

        fn ip(&self, args: &[&str]) {
            let status = Command::new("ip")
                .args(["-n", &self.name])
                .args(args)
                .status()
                .expect("run ip");
            assert!(status.success(), "ip -n {} {args:?} failed", self.name);
        }

        /// Moves the calling thread into the namespace.
        fn enter(&self) {
            let file = std::fs::File::open(format!("/run/netns/{}", self.name))
                .expect("open the namespace file");
            // SAFETY: setns on a namespace descriptor; affects only this thread.
            let entered = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(entered, 0, "setns: {}", std::io::Error::last_os_error());
        }
    }

    impl Drop for Namespace {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "del", &self.name])
                .status();
        }
    }

    /// Awaits changes until `ip`'s presence equals `present`; panics after [`WAIT`].
    async fn wait_until_local(events: &mut AddressEvents, ip: IpAddr, present: bool) {
        let waited = tokio::time::timeout(WAIT, async {
            loop {
                events.changed().await.expect("netlink read");
                if is_local_address(ip).expect("getifaddrs") == present {
                    return;
                }
            }
        })
        .await;
        assert!(
            waited.is_ok(),
            "no change event made {ip} {} within {WAIT:?}",
            if present { "appear" } else { "disappear" }
        );
    }

    #[test]
    fn address_events_report_an_address_added_and_deleted() {
        let Some(namespace) = Namespace::create() else {
            return;
        };
        // Everything below runs on a thread inside the namespace, so the netlink socket and
        // getifaddrs see the namespace's interfaces; `ip -n` reaches it from anywhere.
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    namespace.enter();
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .expect("runtime");
                    runtime.block_on(async {
                        let ip: IpAddr = "10.77.0.1".parse().unwrap();
                        let mut events = AddressEvents::open()
                            .expect("open netlink")
                            .expect("Linux has address events");
                        assert!(!is_local_address(ip).unwrap());

                        namespace.ip(&["addr", "add", "10.77.0.1/32", "dev", "lo"]);
                        wait_until_local(&mut events, ip, true).await;

                        namespace.ip(&["addr", "del", "10.77.0.1/32", "dev", "lo"]);
                        wait_until_local(&mut events, ip, false).await;
                    });
                })
                .join()
                .expect("namespace thread panicked");
        });
    }
}
