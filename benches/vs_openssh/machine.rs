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
    if let Some((asleep, busy)) = wake_cost() {
        println!(
            "waking a reader asleep on the other CPU costs the writer {asleep:.1} µs per write \
             (a busy reader: {busy:.1} µs)"
        );
    }
    println!("load average at the start: {}", loadavg());
    println!(
        "sizes: {} MiB single-stream, {} MiB over {} streams, {} repetitions per tool",
        s.single / MIB,
        s.parallel / MIB,
        s.streams,
        s.reps
    );
}

/// What a write costs the writer when it wakes a reader asleep on another CPU, against one
/// whose reader is busy polling, in µs: (asleep, busy). Every hand-off between the processes
/// measured here pays it, so it sets how far latency and CPU figures carry to other machines;
/// on virtual machines whose idle vCPUs halt it is many times the cost on bare metal.
fn wake_cost() -> Option<(f64, f64)> {
    use std::io::{Read, Write};
    use std::os::unix::net::UnixStream;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    const WRITES: u32 = 2000;
    let allowed = affinity()?;
    let cpus: Vec<usize> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: CPU_ISSET reads a bit of an initialised set, within its size.
        .filter(|&cpu| unsafe { libc::CPU_ISSET(cpu, &allowed) })
        .take(2)
        .collect();
    let &[writer_cpu, reader_cpu] = cpus.as_slice() else {
        return None;
    };
    let measure = |reader_busy: bool| -> Option<f64> {
        let (mut writer, mut reader) = UnixStream::pair().ok()?;
        reader.set_nonblocking(reader_busy).ok()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop_reader = stop.clone();
        let reading = std::thread::spawn(move || {
            set_affinity(&only(reader_cpu));
            let mut byte = [0; 64];
            while !stop_reader.load(Ordering::Relaxed) {
                // Busy: WouldBlock at once, and again; asleep: blocks in read. A closed or
                // failed writer ends the loop.
                match reader.read(&mut byte) {
                    Ok(0) => break,
                    Err(e) if e.kind() != std::io::ErrorKind::WouldBlock => break,
                    _ => {}
                }
            }
        });
        set_affinity(&only(writer_cpu));
        let mut spent = Duration::ZERO;
        for _ in 0..WRITES {
            let started = Instant::now();
            writer.write_all(b"x").ok()?;
            spent += started.elapsed();
            // Stay busy (so only the reader's CPU idles) long enough for the reader to sleep.
            let until = Instant::now() + Duration::from_micros(50);
            while Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        stop.store(true, Ordering::Relaxed);
        writer.write_all(b"x").ok()?;
        reading.join().ok()?;
        Some(spent.as_secs_f64() * 1e6 / f64::from(WRITES))
    };
    let costs = measure(false).zip(measure(true));
    set_affinity(&allowed);
    costs
}

/// The CPUs the calling thread may run on.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: a plain system call filling a local, zeroed CPU set of the size passed.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        (libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) == 0).then_some(set)
    }
}

fn only(cpu: usize) -> libc::cpu_set_t {
    // SAFETY: CPU_SET writes one bit of a local, zeroed set; `cpu` came from a set's range.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    }
}

fn set_affinity(set: &libc::cpu_set_t) {
    // SAFETY: a plain system call reading an initialised CPU set of the size passed.
    unsafe {
        libc::sched_setaffinity(0, std::mem::size_of_val(set), set);
    }
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
