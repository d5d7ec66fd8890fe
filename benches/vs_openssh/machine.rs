//! What the reader needs to judge the figures: the machine, its load, and the ciphers sshd
//! actually negotiated.

use crate::settings::{MIB, Settings};

pub fn describe_machine(s: &Settings) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")?
                .split_once(':')
                .map(|(_, m)| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let aes = cpuinfo.split_whitespace().any(|flag| flag == "aes");
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let openssh = std::process::Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_default();
    println!(
        "lazytunnel vs OpenSSH ssh -N -L{}",
        if s.quick { " (quick mode)" } else { "" }
    );
    println!(
        "machine: {model}, {cores} cores, AES instructions: {aes}, Linux {}",
        kernel.trim()
    );
    println!("OpenSSH: {openssh}");
    println!("load average at the start: {}", loadavg());
    println!(
        "sizes: {} MiB single-stream, {} MiB over {} streams, {} repetitions per tool",
        s.single / MIB,
        s.parallel / MIB,
        s.streams,
        s.reps
    );
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The ciphers sshd negotiated, from its DEBUG1 log, so a reader can check what was compared.
pub fn print_ciphers(log: &str) {
    let mut seen: Vec<(String, usize)> = Vec::new();
    for line in log
        .lines()
        .filter(|l| l.contains("kex: client->server cipher:"))
    {
        let cipher = line.split("cipher: ").nth(1).unwrap_or("").to_string();
        match seen.iter_mut().find(|(c, _)| *c == cipher) {
            Some((_, n)) => *n += 1,
            None => seen.push((cipher, 1)),
        }
    }
    println!("\nciphers sshd negotiated (client->server), sessions:");
    for (cipher, n) in seen {
        println!("  {n:>4} × {cipher}");
    }
}
