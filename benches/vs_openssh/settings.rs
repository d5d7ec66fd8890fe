//! What one run measures and how much: defaults, the quick mode and the environment
//! variables that narrow a run (listed in `main.rs`).

use std::time::Duration;

pub const MIB: u64 = 1 << 20;

pub struct Settings {
    pub quick: bool,
    /// Bytes per single-stream transfer.
    pub single: u64,
    /// Bytes per parallel transfer, over all streams.
    pub parallel: u64,
    /// Bytes per transfer over the long path (a jump host 100 ms away).
    pub far: u64,
    pub streams: u64,
    /// Repetitions of each transfer per tool.
    pub reps: usize,
    pub echoes: usize,
    /// Alternating rounds of each real-client run (ab, pgbench) per tool.
    pub client_rounds: usize,
    pub colds: usize,
    pub idle: Duration,
    pub idle_forwards: usize,
    pub many: usize,
    pub only: Option<Vec<String>>,
    /// Extra top-level lines for lazytunnel's config, e.g. `receive_budget = "256MiB"`.
    pub lazytunnel_config: String,
    /// Cipher settings to run: "default", "aes256-gcm" or both.
    pub ciphers: Option<String>,
}

impl Settings {
    pub fn from_env() -> Settings {
        let quick =
            std::env::var("LAZYTUNNEL_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
        let only = std::env::var("LAZYTUNNEL_BENCH_ONLY")
            .ok()
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
        let number = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let mib = number("LAZYTUNNEL_BENCH_MIB").map(|m| m * MIB);
        Settings {
            quick,
            single: mib.unwrap_or(if quick { 128 * MIB } else { 1024 * MIB }),
            parallel: mib.unwrap_or(if quick { 128 * MIB } else { 1024 * MIB }),
            far: if quick { 32 * MIB } else { 128 * MIB },
            streams: 8,
            reps: number("LAZYTUNNEL_BENCH_REPS").map_or(if quick { 3 } else { 5 }, |n| n as usize),
            echoes: if quick { 100 } else { 500 },
            client_rounds: if quick { 3 } else { 5 },
            colds: if quick { 3 } else { 7 },
            idle: Duration::from_secs(if quick { 3 } else { 10 }),
            idle_forwards: 10,
            many: number("LAZYTUNNEL_BENCH_MANY").map_or(1000, |n| n as usize),
            only,
            ciphers: std::env::var("LAZYTUNNEL_BENCH_CIPHERS").ok(),
            lazytunnel_config: std::env::var("LAZYTUNNEL_BENCH_CONFIG").unwrap_or_default(),
        }
    }

    pub fn wants(&self, part: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|parts| parts.iter().any(|p| p == part))
    }
}

/// N connections need N descriptors here (the clients), N in the echo process and in each
/// forwarder and sshd, which inherit the limit; the soft limit is raised to the hard one (and
/// the hard one too where allowed).
pub fn raise_fd_limit() {
    const WANTED: libc::rlim_t = 65536;
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain system calls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: limit.rlim_max.max(WANTED),
            rlim_max: limit.rlim_max.max(WANTED),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}
