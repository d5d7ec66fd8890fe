//! Real clients against real servers through both forwarders: ApacheBench without keep-alive
//! against nginx closing after each response (the server closes first, as HTTP/1.0,
//! `Connection: close`, SMTP and health checks do), and pgbench against a throwaway PostgreSQL
//! cluster with a new connection per transaction (`-C`) and with persistent connections.
//! Rounds alternate between the tools; the direct figure (no tunnel) is printed for scale.

use std::path::Path;
use std::process::Command;

use crate::alternate;
use crate::measure::{Better, Paired, Report, median};
use crate::real_servers::{self, PAGE_BYTES};
use crate::settings::Settings;
use crate::tools::Forwarder;

/// Persistent pgbench clients (and 2 pgbench threads, one per core of the reference machine).
const PERSISTENT_CLIENTS: &str = "8";

/// What one client run measured.
struct Run {
    /// Requests or transactions per second.
    rate: f64,
    /// pgbench's average connection time, ms (`-C` only).
    connect_ms: Option<f64>,
}

/// The client runs of this part, each against a port.
#[derive(Clone, Copy)]
enum Client {
    Ab,
    PgbenchPerConnection,
    PgbenchPersistent,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Ab => "ab, no keep-alive, server closes",
            Client::PgbenchPerConnection => "pgbench -S -C (connection per txn)",
            Client::PgbenchPersistent => "pgbench -S, 8 persistent connections",
        }
    }

    fn run(self, bin: &Path, port: u16, secs: u64) -> Result<Run, String> {
        match self {
            Client::Ab => ab(port, secs),
            Client::PgbenchPerConnection => pgbench(bin, port, secs, &["-C", "-c", "1"]),
            Client::PgbenchPersistent => {
                pgbench(bin, port, secs, &["-c", PERSISTENT_CLIENTS, "-j", "2"])
            }
        }
    }
}

pub async fn clients(report: &mut Report, s: &Settings, ssh_config: &Path) {
    let tools = match real_servers::tools() {
        Ok(tools) => tools,
        Err(why) => {
            println!("  real clients skipped: {why}");
            return;
        }
    };
    let bin = tools.postgres_bin;
    let nginx = real_servers::nginx();
    let postgres = real_servers::postgres(&bin);
    let targets = [nginx.addr, postgres.addr];
    let lazy = Forwarder::lazytunnel(ssh_config, &s.lazytunnel_config, &targets).await;
    let ssh = Forwarder::openssh(ssh_config, &targets).await;
    let secs = if s.quick { 2 } else { 3 };
    let plan = [
        (Client::Ab, 0, nginx.addr.port()),
        (Client::PgbenchPerConnection, 1, postgres.addr.port()),
        (Client::PgbenchPersistent, 1, postgres.addr.port()),
    ];
    for (client, at, direct_port) in plan {
        // Opens lazytunnel's session, and warms both paths.
        for port in [lazy.ports[at], ssh.ports[at]] {
            let bin = bin.clone();
            let _ = blocking(move || client.run(&bin, port, 1)).await;
        }
        measure(report, s, (&lazy, &ssh), &bin, client, at, secs).await;
        let bin = bin.clone();
        if let Ok(direct) = blocking(move || client.run(&bin, direct_port, secs)).await {
            println!(
                "  {}, direct (no tunnel): {:.0}/s",
                client.name(),
                direct.rate
            );
        }
    }
}

async fn measure(
    report: &mut Report,
    s: &Settings,
    (lazy, ssh): (&Forwarder, &Forwarder),
    bin: &Path,
    client: Client,
    at: usize,
    secs: u64,
) {
    let (mut rate, mut connect) = (Paired::default(), Paired::default());
    let mut failed = 0;
    for i in 0..s.client_rounds {
        let (l, o) = alternate(
            i,
            || {
                let bin = bin.to_path_buf();
                let port = lazy.ports[at];
                blocking(move || client.run(&bin, port, secs))
            },
            || {
                let bin = bin.to_path_buf();
                let port = ssh.ports[at];
                blocking(move || client.run(&bin, port, secs))
            },
        )
        .await;
        match (l, o) {
            (Ok(l), Ok(o)) => {
                rate.push(l.rate, o.rate);
                if let (Some(l), Some(o)) = (l.connect_ms, o.connect_ms) {
                    connect.push(l, o);
                }
            }
            (l, o) => {
                for e in [l.err(), o.err()].into_iter().flatten() {
                    println!("  {}: {e}", client.name());
                    failed += 1;
                }
            }
        }
    }
    let name = client.name();
    match client {
        Client::Ab => report.paired_at_least(name, "req/s", &rate, 10.0),
        _ => report.paired(name, "txn/s", &rate, Better::Higher),
    }
    if !connect.lazy.is_empty() {
        report.paired(
            "  pgbench's average connection time",
            "ms",
            &connect,
            Better::Lower,
        );
    }
    if failed > 0 {
        println!("  {name}: {failed} runs failed; medians over the rest");
    }
    println!(
        "  {name}: lazytunnel rounds {:?}, OpenSSH rounds {:?} (median {:.0} / {:.0})",
        rounded(&rate.lazy),
        rounded(&rate.ssh),
        median(&rate.lazy),
        median(&rate.ssh)
    );
}

fn rounded(values: &[f64]) -> Vec<i64> {
    values.iter().map(|v| v.round() as i64).collect()
}

async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("client task")
}

/// `ab -c 1 -t secs` (no keep-alive): requests per second, every answer whole.
fn ab(port: u16, secs: u64) -> Result<Run, String> {
    let url = format!("http://127.0.0.1:{port}/");
    let out = output(Command::new("ab").args(["-q", "-c", "1", "-t", &secs.to_string(), &url]))?;
    let failed = field(&out, "Failed requests:").unwrap_or(f64::NAN);
    let length = field(&out, "Document Length:").unwrap_or(f64::NAN);
    if failed != 0.0 || length != PAGE_BYTES as f64 {
        return Err(format!(
            "ab: {failed} failed, document length {length}:\n{out}"
        ));
    }
    let rate = field(&out, "Requests per second:").ok_or_else(|| format!("ab said:\n{out}"))?;
    Ok(Run {
        rate,
        connect_ms: None,
    })
}

/// `pgbench -S` (select only) for `secs` with `args`: transactions per second.
fn pgbench(bin: &Path, port: u16, secs: u64, args: &[&str]) -> Result<Run, String> {
    let out = output(
        Command::new(bin.join("pgbench"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
            .args(["-n", "-S", "-T", &secs.to_string()])
            .args(args)
            .arg("postgres")
            .env("PGSSLMODE", "disable"),
    )?;
    let rate = field(&out, "tps =").ok_or_else(|| format!("pgbench said:\n{out}"))?;
    Ok(Run {
        rate,
        connect_ms: field(&out, "average connection time ="),
    })
}

fn output(command: &mut Command) -> Result<String, String> {
    let out = command.output().map_err(|e| format!("{command:?}: {e}"))?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{command:?} exited ({}):\n{text}", out.status))
    }
}

/// The number after `label` on the first line that has it.
fn field(text: &str, label: &str) -> Option<f64> {
    let (_, rest) = text.split_once(label)?;
    rest.split_whitespace().next()?.parse().ok()
}
