//! lazytunnel against OpenSSH's `ssh -N -L`, side by side in one run against the same local
//! sshd (the tests' [`TestSshd`]): throughput and CPU per GiB, connection latency (warm, cold,
//! and the seed's `ssh -W` per connection), idle cost, and 1000 connections on one session.
//!
//! Run: `cargo bench --bench vs_openssh` (needs OpenSSH's `sshd` and `ssh`, as the tests do:
//! `scripts/test` installs them). Environment:
//! - `LAZYTUNNEL_BENCH_QUICK=1`: smaller transfers and fewer repetitions (about 20 s);
//! - `LAZYTUNNEL_BENCH_ONLY=throughput,parallel,latency,cold,idle,many,far,clients`: just those
//!   parts (`clients`: ab and pgbench against nginx and PostgreSQL, see `clients.rs`);
//! - `LAZYTUNNEL_BENCH_CIPHERS=default` or `aes256-gcm`: just that cipher setting;
//! - `LAZYTUNNEL_BENCH_CONFIG='receive_budget = "256MiB"'`: extra lines for lazytunnel's config;
//! - `LAZYTUNNEL_BENCH_MIB=N`, `LAZYTUNNEL_BENCH_REPS=N`: bytes per transfer, repetitions;
//! - `LAZYTUNNEL_BENCH_MANY=N`: connections held open at once (default 1000; 10000 needs
//!   `max_connections` raised in `LAZYTUNNEL_BENCH_CONFIG` and a hard descriptor limit of
//!   at least 10,000 plus a few).
//!
//! Runs of the two tools alternate (lazytunnel first on even repetitions, OpenSSH first on odd
//! ones); each figure is printed as the median of each tool and the median of the
//! lazytunnel/OpenSSH ratios of back-to-back pairs, which is what to read on a busy machine.

mod clients;
#[path = "../../tests/common/mod.rs"]
mod common;
mod delay_line;
mod echo_process;
mod latency;
mod machine;
mod many;
mod measure;
mod real_servers;
mod servers;
mod settings;
mod throughput;
mod tools;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sshd_files::SSH_CONFIG_TEMPLATE;
use common::{DataServer, TestSshd};
use machine::{describe_machine, loadavg, print_ciphers};
use measure::{Better, Paired, Report, cpu_seconds, rss_mib};
use servers::Server;
use settings::{Settings, raise_fd_limit};
use throughput::Direction;
use tools::Forwarder;

fn main() {
    raise_fd_limit();
    if std::env::var_os(echo_process::CHILD_VAR).is_some() {
        return echo_process::serve();
    }
    let settings = Settings::from_env();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(settings));
}

async fn run(s: Settings) {
    describe_machine(&s);
    let sshd = TestSshd::start();
    let pinned = sshd.write_ssh_config(
        "ssh_config.aes256-gcm",
        &format!("{SSH_CONFIG_TEMPLATE}    Ciphers aes256-gcm@openssh.com\n"),
    );
    let sink = Server::sink().await;
    let source = Server::source().await;
    let echo = DataServer::echo().await;
    let targets = [sink.addr, source.addr, echo.addr()];
    let (sink_at, source_at, echo_at) = (0, 1, 2);
    let target_of = |direction| match direction {
        Direction::Upload => sink_at,
        Direction::Download => source_at,
    };
    let mut report = Report::default();
    println!();

    let configs: [(&str, PathBuf); 2] = [
        ("default ciphers", sshd.ssh_config_path()),
        ("aes256-gcm", pinned),
    ];
    for (label, ssh_config) in &configs {
        let default = *label == "default ciphers";
        let cipher_wanted = s.ciphers.as_deref().is_none_or(|c| label.starts_with(c));
        let wanted = cipher_wanted && s.wants("throughput")
            || (cipher_wanted
                && default
                && ["parallel", "latency", "many"].iter().any(|p| s.wants(p)));
        if !wanted {
            continue;
        }
        let (lazy, ssh) = start_both(ssh_config, &s, &targets, echo_at).await;
        let pair = Pair {
            lazy: &lazy,
            ssh: &ssh,
            sshd_pid: sshd.pid(),
        };

        if s.wants("throughput") {
            for direction in [Direction::Upload, Direction::Download] {
                let at = target_of(direction);
                let name = format!("1 stream {}, {label}", direction.name());
                let load = Load {
                    streams: 1,
                    total: s.single,
                };
                transfers(&mut report, &s, &name, pair, at, direction, load).await;
            }
        }
        if default && s.wants("parallel") {
            for direction in [Direction::Upload, Direction::Download] {
                let at = target_of(direction);
                let name = format!("{} streams {}, {label}", s.streams, direction.name());
                let load = Load {
                    streams: s.streams,
                    total: s.parallel,
                };
                transfers(&mut report, &s, &name, pair, at, direction, load).await;
            }
        }
        if default && s.wants("latency") {
            let mut warm = Paired::default();
            for i in 0..s.echoes {
                let (l, o) = alternate(
                    i,
                    || latency::connect_echo_ms(lazy.ports[echo_at]),
                    || latency::connect_echo_ms(ssh.ports[echo_at]),
                )
                .await;
                warm.push(l, o);
            }
            report.paired("warm connect + 1-byte echo", "ms", &warm, Better::Lower);
        }
        if default && s.wants("many") {
            // Fresh forwarders, their session open: heap that the transfers above freed, and
            // that glibc keeps for reuse (src/memory.rs), would hide what connections take.
            // The echo target runs in its own process (see echo_process.rs).
            let target = echo_process::EchoProcess::start();
            let mut targets = targets;
            targets[echo_at] = target.addr;
            let (lazy, ssh) = start_both(ssh_config, &s, &targets, echo_at).await;
            let fresh = Pair {
                lazy: &lazy,
                ssh: &ssh,
                sshd_pid: sshd.pid(),
            };
            concurrent(&mut report, &s, fresh, echo_at).await;
        }
    }

    if s.wants("far") {
        far(&mut report, &s, &sshd, [sink.addr, source.addr]).await;
    }
    if s.wants("clients") {
        clients::clients(&mut report, &s, &sshd.ssh_config_path()).await;
    }
    if s.wants("cold") {
        cold(&mut report, &s, &sshd.ssh_config_path(), echo.addr()).await;
    }
    if s.wants("idle") {
        idle(&mut report, &s, &sshd.ssh_config_path(), echo.addr()).await;
    }

    print_ciphers(&sshd.log());
    report.print();
    println!("\nload average at the end: {}", loadavg());
}

/// The two forwarders of one cipher setting, and the sshd they both use.
#[derive(Clone, Copy)]
struct Pair<'a> {
    lazy: &'a Forwarder,
    ssh: &'a Forwarder,
    sshd_pid: u32,
}

/// Runs `lazy` and `ssh` back to back, lazytunnel first on even `i`.
async fn alternate<L, S, FL, FS, T>(i: usize, lazy: L, ssh: S) -> (T, T)
where
    L: FnOnce() -> FL,
    S: FnOnce() -> FS,
    FL: Future<Output = T>,
    FS: Future<Output = T>,
{
    if i.is_multiple_of(2) {
        let l = lazy().await;
        (l, ssh().await)
    } else {
        let o = ssh().await;
        (lazy().await, o)
    }
}

/// How many streams a transfer uses, and how many bytes they move together.
#[derive(Clone, Copy)]
struct Load {
    streams: u64,
    total: u64,
}

async fn transfers(
    report: &mut Report,
    s: &Settings,
    name: &str,
    Pair {
        lazy,
        ssh,
        sshd_pid,
    }: Pair<'_>,
    at: usize,
    direction: Direction,
    Load { streams, total }: Load,
) {
    let (mut speed, mut cpu, mut server) =
        (Paired::default(), Paired::default(), Paired::default());
    let mut cut = [0; 2];
    for i in 0..s.reps {
        let (l, o) = alternate(
            i,
            || {
                throughput::transfer(
                    lazy.pid(),
                    sshd_pid,
                    lazy.ports[at],
                    direction,
                    total,
                    streams,
                )
            },
            || {
                throughput::transfer(
                    ssh.pid(),
                    sshd_pid,
                    ssh.ports[at],
                    direction,
                    total,
                    streams,
                )
            },
        )
        .await;
        match (l, o) {
            (Ok(l), Ok(o)) => {
                speed.push(l.mb_per_s, o.mb_per_s);
                cpu.push(l.cpu_s_per_gib, o.cpu_s_per_gib);
                server.push(l.sshd_cpu_s_per_gib, o.sshd_cpu_s_per_gib);
            }
            (l, o) => {
                for (n, result) in cut.iter_mut().zip([l.err(), o.err()]) {
                    if let Some(e) = result {
                        println!("  {name}: a stream was cut: {e}");
                        *n += 1;
                    }
                }
            }
        }
    }
    report.paired(name, "MB/s", &speed, Better::Higher);
    report.paired(&format!("  CPU per GiB, {name}"), "s", &cpu, Better::Lower);
    report.info(&format!("  sshd CPU per GiB, {name}"), "s", &server);
    if cut != [0, 0] {
        let [l, o] = cut;
        let reps = s.reps;
        report.row(
            &format!("  transfers cut, {name}"),
            &format!("{l}/{reps}"),
            &format!("{o}/{reps}"),
            "-",
            if l == 0 { "0 met" } else { "0 MISSED" },
        );
    }
}

/// One stream each way to a host behind a jump host 100 ms away (50 ms each way on the path to
/// the jump host, a delay line in front of the same sshd): what the window allows on a long
/// path. `ssh` reaches it with ProxyJump as lazytunnel does, through `ssh -W`.
async fn far(report: &mut Report, s: &Settings, sshd: &TestSshd, [sink, source]: [SocketAddr; 2]) {
    let path = delay_line::start(sshd.addr(), Duration::from_millis(50)).await;
    let template = format!(
        "{SSH_CONFIG_TEMPLATE}    ProxyJump far\n\
         Host far\n    HostName 127.0.0.1\n    Port {}\n    HostKeyAlias [{{host}}]:{{port}}\n\
         {}",
        path.port(),
        SSH_CONFIG_TEMPLATE
            .lines()
            .skip(3)
            .map(|line| format!("{line}\n"))
            .collect::<String>(),
    );
    let ssh_config = sshd.write_ssh_config("ssh_config.far", &template);
    let targets = [sink, source];
    let lazy = Forwarder::lazytunnel(&ssh_config, &s.lazytunnel_config, &targets).await;
    let ssh = Forwarder::openssh(&ssh_config, &targets).await;
    let pair = Pair {
        lazy: &lazy,
        ssh: &ssh,
        sshd_pid: sshd.pid(),
    };
    for (direction, at) in [(Direction::Download, 1), (Direction::Upload, 0)] {
        let name = format!("1 stream {}, jump host 100 ms away", direction.name());
        let load = Load {
            streams: 1,
            total: s.far,
        };
        transfers(report, s, &name, pair, at, direction, load).await;
    }
}

/// lazytunnel and `ssh -L` with the same forwards, each session already open (through the
/// forward at `echo_at`), so nothing measured later pays for lazytunnel's lazy handshake.
async fn start_both(
    ssh_config: &Path,
    s: &Settings,
    targets: &[SocketAddr],
    echo_at: usize,
) -> (Forwarder, Forwarder) {
    let lazy = Forwarder::lazytunnel(ssh_config, &s.lazytunnel_config, targets).await;
    let ssh = Forwarder::openssh(ssh_config, targets).await;
    latency::connect_echo_ms(lazy.ports[echo_at]).await;
    latency::connect_echo_ms(ssh.ports[echo_at]).await;
    (lazy, ssh)
}

async fn concurrent(
    report: &mut Report,
    s: &Settings,
    Pair { lazy, ssh, .. }: Pair<'_>,
    at: usize,
) {
    let l = many::hold_many(lazy.pid(), lazy.ports[at], s.many).await;
    let o = many::hold_many(ssh.pid(), ssh.ports[at], s.many).await;
    let n = s.many;
    report.row(
        &format!("{n} concurrent on one session: correct"),
        &format!("{}/{n} ({:.1} s)", l.correct, l.open_secs),
        &format!("{}/{n} ({:.1} s)", o.correct, o.open_secs),
        "-",
        &format!("{n}/{n} {}", if l.correct == n { "met" } else { "MISSED" }),
    );
    report.row(
        "  RSS per open connection",
        &format!("{:.1} KiB", l.rss_per_conn_kib),
        &format!("{:.1} KiB", o.rss_per_conn_kib),
        &format!("{:.2}x", l.rss_per_conn_kib / o.rss_per_conn_kib),
        &format!(
            "<= 64 KiB {}",
            if l.rss_per_conn_kib <= 64.0 {
                "met"
            } else {
                "MISSED"
            }
        ),
    );
    if l.open_at_once < n || o.open_at_once < n {
        println!(
            "  (open at once: lazytunnel {}, OpenSSH {})",
            l.open_at_once, o.open_at_once
        );
    }
}

/// The first connection through a daemon that has no session yet, against a fresh `ssh -W`
/// per connection (the seed design, which pays that handshake on every connection).
async fn cold(report: &mut Report, s: &Settings, ssh_config: &Path, echo: std::net::SocketAddr) {
    let mut first = Paired::default();
    for i in 0..s.colds {
        let daemon = Forwarder::lazytunnel(ssh_config, &s.lazytunnel_config, &[echo]).await;
        let port = daemon.ports[0];
        let (l, o) = alternate(
            i,
            || latency::connect_echo_ms(port),
            || latency::ssh_w_echo_ms(ssh_config, echo),
        )
        .await;
        first.push(l, o);
    }
    report.paired(
        "cold: first connection vs `ssh -W` each",
        "ms",
        &first,
        Better::Lower,
    );
}

/// Ten forwards configured and nothing connecting: lazytunnel holds no session then; `ssh -L`
/// holds its session open.
async fn idle(report: &mut Report, s: &Settings, ssh_config: &Path, echo: std::net::SocketAddr) {
    let targets = vec![echo; s.idle_forwards];
    let lazy = Forwarder::lazytunnel(ssh_config, &s.lazytunnel_config, &targets).await;
    let ssh = Forwarder::openssh(ssh_config, &targets).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (l0, o0) = (cpu_seconds(lazy.pid()), cpu_seconds(ssh.pid()));
    tokio::time::sleep(s.idle).await;
    let (l_cpu, o_cpu) = (
        (cpu_seconds(lazy.pid()) - l0) * 1e3,
        (cpu_seconds(ssh.pid()) - o0) * 1e3,
    );
    let secs = s.idle.as_secs();
    let n = s.idle_forwards;
    report.row(
        &format!("idle CPU over {secs} s, {n} forwards"),
        &format!("{l_cpu:.0} ms"),
        &format!("{o_cpu:.0} ms"),
        "-",
        &format!("0 {}", if l_cpu == 0.0 { "met" } else { "MISSED" }),
    );
    let (l_rss, o_rss) = (rss_mib(lazy.pid()), rss_mib(ssh.pid()));
    report.row(
        &format!("idle RSS, {n} forwards (no session / ssh -L)"),
        &format!("{l_rss:.1} MiB"),
        &format!("{o_rss:.1} MiB"),
        &format!("{:.2}x", l_rss / o_rss),
        &format!("<= 8 MiB {}", if l_rss <= 8.0 { "met" } else { "MISSED" }),
    );
}
