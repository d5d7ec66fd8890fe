//! What the benchmark reads off the processes (CPU time, resident memory) and how it sums up
//! repeated samples: medians, and the median of the lazytunnel/OpenSSH ratios of runs taken
//! back to back, which cancels most of the drift a shared machine adds.

use std::sync::OnceLock;

use crate::common::procfs;

/// CPU seconds (user + system, all threads) the process has used so far.
pub fn cpu_seconds(pid: u32) -> f64 {
    procfs::cpu_ticks(pid) as f64 / ticks_per_second()
}

fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    // SAFETY: sysconf only reads a constant of the system.
    *TICKS.get_or_init(|| match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
        n if n > 0 => n as f64,
        _ => 100.0,
    })
}

/// Resident set size in MiB.
pub fn rss_mib(pid: u32) -> f64 {
    procfs::status_field(pid, "VmRSS") as f64 / 1024.0
}

/// Resident set size in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    procfs::status_field(pid, "VmRSS")
}

pub fn median(values: &[f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    }
}

/// Which way a figure is better, for judging a ratio against a target of 1.0.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Higher,
    Lower,
}

/// The ratio a paired figure must reach.
enum Target {
    AtLeast(f64),
    AtMost(f64),
}

/// Samples of one figure for both tools, taken in pairs.
#[derive(Default)]
pub struct Paired {
    pub lazy: Vec<f64>,
    pub ssh: Vec<f64>,
}

impl Paired {
    pub fn push(&mut self, lazy: f64, ssh: f64) {
        self.lazy.push(lazy);
        self.ssh.push(ssh);
    }

    /// Median over the pairs of lazytunnel / OpenSSH.
    pub fn ratio(&self) -> f64 {
        let ratios: Vec<f64> = self
            .lazy
            .iter()
            .zip(&self.ssh)
            .map(|(lazy, ssh)| lazy / ssh)
            .collect();
        median(&ratios)
    }
}

/// The summary table, printed at the end (and each row as it is measured).
#[derive(Default)]
pub struct Report {
    rows: Vec<String>,
}

impl Report {
    /// A lazytunnel-vs-OpenSSH figure; the target is a ratio of 1.0.
    pub fn paired(&mut self, metric: &str, unit: &str, samples: &Paired, better: Better) {
        let target = match better {
            Better::Higher => Target::AtLeast(1.0),
            Better::Lower => Target::AtMost(1.0),
        };
        self.paired_against(metric, unit, samples, target);
    }

    /// A figure where lazytunnel must reach `factor` times OpenSSH's (higher is better).
    pub fn paired_at_least(&mut self, metric: &str, unit: &str, samples: &Paired, factor: f64) {
        self.paired_against(metric, unit, samples, Target::AtLeast(factor));
    }

    fn paired_against(&mut self, metric: &str, unit: &str, samples: &Paired, target: Target) {
        let ratio = samples.ratio();
        let (met, target) = match target {
            Target::AtLeast(t) => (ratio >= t, format!(">= {t:.1}x")),
            Target::AtMost(t) => (ratio <= t, format!("<= {t:.1}x")),
        };
        self.row(
            metric,
            &format!("{:.3} {unit}", median(&samples.lazy)),
            &format!("{:.3} {unit}", median(&samples.ssh)),
            &format!("{ratio:.2}x"),
            &format!("{target} {}", if met { "met" } else { "MISSED" }),
        );
    }

    /// Any other row, the cells already formatted.
    pub fn row(&mut self, metric: &str, lazy: &str, ssh: &str, ratio: &str, target: &str) {
        let line = format!("| {metric:<44} | {lazy:>16} | {ssh:>16} | {ratio:>7} | {target} |");
        println!("{line}");
        self.rows.push(line);
    }

    /// A figure measured for information, without a target.
    pub fn info(&mut self, metric: &str, unit: &str, samples: &Paired) {
        self.row(
            metric,
            &format!("{:.2} {unit}", median(&samples.lazy)),
            &format!("{:.2} {unit}", median(&samples.ssh)),
            &format!("{:.2}x", samples.ratio()),
            "info",
        );
    }

    pub fn print(&self) {
        println!();
        println!(
            "| {:<44} | {:>16} | {:>16} | {:>7} | target |",
            "metric", "lazytunnel", "OpenSSH", "ratio"
        );
        println!(
            "|{}|{}:|{}:|{}:|---|",
            "-".repeat(46),
            "-".repeat(17),
            "-".repeat(17),
            "-".repeat(8)
        );
        for row in &self.rows {
            println!("{row}");
        }
    }
}
