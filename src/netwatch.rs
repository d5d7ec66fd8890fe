//! Evidence that the network under an SSH session changed, gathered from the OS so the daemon can
//! probe a session at once instead of waiting for its keepalives to time out.
//!
//! When a laptop moves from one network to another or wakes from sleep, the TCP connection of
//! an SSH session is usually dead, but nothing tells the socket: the kernel retransmits for
//! minutes and keepalives take `interval × (max + 1)` to notice. Three cheap signals come
//! earlier, and this module owns them (it decides nothing; the session manager does):
//! - [`is_local_address`]: whether the local address of a session's TCP connection is still
//!   configured on an interface. Once it is gone, the connection cannot carry traffic any more.
//! - [`AddressEvents`]: the kernel's notification that addresses or links changed (netlink on
//!   Linux, the routing socket on macOS), so [`is_local_address`] need not be polled often.
//! - [`ClockWatch`]: the wall clock jumped relative to the monotonic clock, which is what a
//!   suspend looks like from inside the process (the monotonic clock stops during sleep).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant, SystemTime};

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "macos")]
mod macos;
#[cfg(test)]
mod tests;

#[cfg(target_os = "linux")]
use linux as os;
#[cfg(target_os = "macos")]
use macos as os;

/// Whether `ip` is currently configured on any interface, i.e. whether a socket bound to it can
/// still send. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket reports
/// an IPv4 peer) is checked as the IPv4 address.
///
/// On Linux an address on a loopback interface makes its whole prefix local (`127.0.0.1/8` on
/// `lo` means 127.0.0.2 is local too), so an address inside such a prefix counts as configured.
/// macOS has no such rule (127.0.0.2 needs an alias), so there only exact matches count.
pub fn is_local_address(ip: IpAddr) -> io::Result<bool> {
    Ok(is_configured(ip, &interface_addresses()?))
}

/// One address of an interface, as getifaddrs(3) lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InterfaceAddress {
    addr: IpAddr,
    /// The prefix length, recorded only where the whole prefix is local: loopback on Linux.
    local_prefix: Option<u8>,
}

fn is_configured(ip: IpAddr, configured: &[InterfaceAddress]) -> bool {
    let ip = ip.to_canonical();
    configured.iter().any(|entry| {
        entry.addr == ip
            || entry
                .local_prefix
                .is_some_and(|len| same_prefix(ip, entry.addr, len))
    })
}

fn same_prefix(a: IpAddr, b: IpAddr, len: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

/// Every IPv4 and IPv6 address of every interface, from getifaddrs(3).
fn interface_addresses() -> io::Result<Vec<InterfaceAddress>> {
    /// Frees the list on every path out, including a panic.
    struct List(*mut libc::ifaddrs);
    impl Drop for List {
        fn drop(&mut self) {
            // SAFETY: the pointer came from a successful getifaddrs and is freed only here.
            unsafe { libc::freeifaddrs(self.0) }
        }
    }

    let mut head = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head to `head`, which we free through `List`.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let list = List(head);
    let mut found = Vec::new();
    let mut cursor = list.0;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list, alive until `list` is dropped.
        let entry = unsafe { &*cursor };
        // SAFETY: getifaddrs gives null or a valid sockaddr of the family it names.
        if let Some(addr) = unsafe { sockaddr_ip(entry.ifa_addr) } {
            let loopback = entry.ifa_flags & libc::IFF_LOOPBACK as libc::c_uint != 0;
            let local_prefix = if cfg!(target_os = "linux") && loopback {
                // SAFETY: as above; on Linux netmasks are full-size sockaddrs.
                unsafe { sockaddr_ip(entry.ifa_netmask) }.map(prefix_len)
            } else {
                None
            };
            found.push(InterfaceAddress { addr, local_prefix });
        }
        cursor = entry.ifa_next;
    }
    Ok(found)
}

/// The address in `sa` if it is IPv4 or IPv6.
///
/// # Safety
/// `sa` must be null or point to a valid sockaddr whose size matches its `sa_family`.
unsafe fn sockaddr_ip(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: per the contract, `sa` is a sockaddr of the family it names.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*sa.cast::<libc::sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 => {
                let sin6 = &*sa.cast::<libc::sockaddr_in6>();
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => None,
        }
    }
}

/// The number of leading one bits of a netmask.
fn prefix_len(netmask: IpAddr) -> u8 {
    match netmask {
        IpAddr::V4(mask) => u32::from(mask).leading_ones() as u8,
        IpAddr::V6(mask) => u128::from(mask).leading_ones() as u8,
    }
}

/// Notifications that an interface address or link changed, from the kernel.
///
/// They carry no detail on purpose: on each one the caller re-checks what it cares about
/// (typically [`is_local_address`] for each session's local address). Bursts are merged: one
/// [`Self::changed`] consumes every message pending at that moment, and a kernel overrun (the
/// socket buffer overflowed, messages were lost) is reported as a change too.
#[derive(Debug)]
pub struct AddressEvents {
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    socket: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

/// At most this many messages are read per wake, so a flood cannot starve the caller's task.
#[cfg(any(target_os = "linux", target_os = "macos"))]
const MAX_MESSAGES_PER_WAKE: usize = 256;

impl AddressEvents {
    /// Subscribes to address and link changes: a netlink socket on Linux, a routing socket on
    /// macOS. `Ok(None)` where this OS has no implemented event source (callers then rely on
    /// polling [`is_local_address`]). Must be called inside a tokio runtime with I/O enabled.
    ///
    /// On Linux the socket belongs to the network namespace of the calling thread.
    pub fn open() -> io::Result<Option<AddressEvents>> {
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        {
            let fd = os::open_socket()?;
            // SAFETY: an OwnedFd keeps its descriptor open and unchanged until it is dropped,
            // and the AsyncFd owns it.
            let socket = unsafe {
                tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
            }?;
            Ok(Some(AddressEvents { socket }))
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        Ok(None)
    }

    /// Resolves when the kernel reports an address or link change (or lost some reports).
    /// Cancel-safe: nothing is consumed until a change is returned.
    pub async fn changed(&mut self) -> io::Result<()> {
        #[cfg(any(target_os = "linux", target_os = "macos"))]
        loop {
            let mut ready = self.socket.readable().await?;
            let (seen, drained) = drain(ready.get_inner())?;
            if drained {
                // Only after the socket said EAGAIN; the guard's tick keeps a newer wake.
                ready.clear_ready();
            }
            if seen {
                return Ok(());
            }
        }
        #[cfg(not(any(target_os = "linux", target_os = "macos")))]
        std::future::pending().await
    }
}

/// Reads pending messages; returns whether any was a change, and whether the socket is empty.
#[cfg(any(target_os = "linux", target_os = "macos"))]
fn drain(socket: &std::os::fd::OwnedFd) -> io::Result<(bool, bool)> {
    use std::os::fd::AsRawFd;

    // Longer messages are truncated, which is fine: only the header is looked at.
    let mut buf = [0u8; 4096];
    let mut seen = false;
    for _ in 0..MAX_MESSAGES_PER_WAKE {
        // SAFETY: `buf` is writable for its whole length.
        let n = unsafe {
            libc::recv(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if let Ok(n) = usize::try_from(n) {
            seen |= os::is_change(&buf[..n.min(buf.len())]);
            continue;
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EAGAIN) => return Ok((seen, true)),
            Some(libc::EINTR) => {}
            // The kernel dropped messages for lack of buffer: something changed, unknown what.
            Some(libc::ENOBUFS) => seen = true,
            _ => return Err(err),
        }
    }
    Ok((seen, false))
}

/// How far the wall clock may drift from the monotonic clock between two checks before
/// [`ClockWatch`] reports a jump. NTP slews at most 0.5 ms/s, far below this.
pub const CLOCK_JUMP_THRESHOLD: Duration = Duration::from_secs(2);

/// A jump of the wall clock relative to the monotonic clock, seen by [`ClockWatch::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockJump {
    /// The wall clock advanced this much more than the monotonic clock: the machine slept (or
    /// the clock was set forward).
    Forward(Duration),
    /// The wall clock went back by this much relative to the monotonic clock (set back).
    Backward(Duration),
}

impl ClockJump {
    pub fn amount(self) -> Duration {
        match self {
            ClockJump::Forward(amount) | ClockJump::Backward(amount) => amount,
        }
    }
}

/// Detects sleep/wake and clock changes by comparing how far [`SystemTime`] and [`Instant`]
/// advanced between two calls of [`Self::check`] (call it every second or so).
///
/// `Instant` does not advance while the machine is suspended (CLOCK_MONOTONIC on Linux,
/// CLOCK_UPTIME_RAW on macOS), while the wall clock is corrected on wake; the difference is the
/// time slept. A check that merely comes late (a busy machine, a stopped process) moves both
/// clocks alike and reports nothing.
#[derive(Debug, Clone)]
pub struct ClockWatch {
    threshold: Duration,
    last: (Instant, SystemTime),
}

impl Default for ClockWatch {
    fn default() -> Self {
        ClockWatch::new()
    }
}

impl ClockWatch {
    /// Starts watching now, with [`CLOCK_JUMP_THRESHOLD`].
    pub fn new() -> ClockWatch {
        ClockWatch::with_threshold(CLOCK_JUMP_THRESHOLD)
    }

    pub fn with_threshold(threshold: Duration) -> ClockWatch {
        ClockWatch::starting_at(threshold, Instant::now(), SystemTime::now())
    }

    fn starting_at(threshold: Duration, monotonic: Instant, wall: SystemTime) -> ClockWatch {
        ClockWatch {
            threshold,
            last: (monotonic, wall),
        }
    }

    /// The jump since the previous check (or creation), if it exceeds the threshold.
    pub fn check(&mut self) -> Option<ClockJump> {
        self.observe(Instant::now(), SystemTime::now())
    }

    /// [`Self::check`] with the clocks read by the caller.
    fn observe(&mut self, monotonic: Instant, wall: SystemTime) -> Option<ClockJump> {
        let (last_monotonic, last_wall) = std::mem::replace(&mut self.last, (monotonic, wall));
        let monotonic_elapsed = monotonic.saturating_duration_since(last_monotonic);
        let jump = match wall.duration_since(last_wall) {
            Ok(wall_elapsed) => match wall_elapsed.checked_sub(monotonic_elapsed) {
                Some(ahead) => ClockJump::Forward(ahead),
                None => ClockJump::Backward(monotonic_elapsed - wall_elapsed),
            },
            Err(went_back) => ClockJump::Backward(monotonic_elapsed + went_back.duration()),
        };
        (jump.amount() > self.threshold).then_some(jump)
    }
}
