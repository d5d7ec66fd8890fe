//! `lazytunnel status` for a person: two compact tables (hosts, forwards), with a host's
//! failure and a forward's last error on a line of their own under it.

use std::fmt::Write;

use super::protocol::Status;

/// Renders `status` as aligned text.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut hosts = Table::new(&[
        "HOST", "STATE", "SINCE", "REMOTE", "LOCAL", "RECONN", "CHAN", "UP", "DOWN",
    ]);
    for host in &status.hosts {
        hosts.row(vec![
            host.host.clone(),
            host.state.clone(),
            host.since.clone(),
            host.remote_addr.clone().unwrap_or_else(|| "-".into()),
            host.local_addr.clone().unwrap_or_else(|| "-".into()),
            host.reconnects.to_string(),
            host.channels.to_string(),
            bytes(host.bytes_up),
            bytes(host.bytes_down),
        ]);
        if let Some(error) = &host.error {
            let next = host.next_attempt.as_deref().unwrap_or("-");
            hosts.note(format!(
                "{} failure(s), next attempt {next}: {error}",
                host.failures
            ));
        }
    }
    let mut forwards = Table::new(&[
        "FORWARD", "LISTEN", "HOST", "TARGET", "OPEN", "TOTAL", "UP", "DOWN",
    ]);
    for forward in &status.forwards {
        forwards.row(vec![
            forward.name.clone(),
            forward.listen.join(","),
            forward.host.clone(),
            forward.target.clone(),
            forward.connections_open.to_string(),
            forward.connections_total.to_string(),
            bytes(forward.bytes_up),
            bytes(forward.bytes_down),
        ]);
        if let Some(last) = &forward.last_error {
            forwards.note(format!("last error {}: {}", last.at, last.message));
        }
    }
    let _ = writeln!(out, "lazytunnel pid {}", status.pid);
    out.push('\n');
    out.push_str(&hosts.render());
    out.push('\n');
    out.push_str(&forwards.render());
    out
}

/// Bytes with a binary unit, one decimal above 1 KiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// Rows of cells padded to their column's width; a note is an indented line under its row.
struct Table {
    rows: Vec<Line>,
}

enum Line {
    Cells(Vec<String>),
    Note(String),
}

impl Table {
    fn new(header: &[&str]) -> Table {
        Table {
            rows: vec![Line::Cells(header.iter().map(|h| h.to_string()).collect())],
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(Line::Cells(cells));
    }

    fn note(&mut self, text: String) {
        self.rows.push(Line::Note(text));
    }

    fn render(&self) -> String {
        let mut widths: Vec<usize> = Vec::new();
        for line in &self.rows {
            if let Line::Cells(cells) = line {
                widths.resize(widths.len().max(cells.len()), 0);
                for (w, cell) in widths.iter_mut().zip(cells) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let mut out = String::new();
        for line in &self.rows {
            match line {
                Line::Cells(cells) => {
                    let padded: Vec<String> = cells
                        .iter()
                        .zip(&widths)
                        .map(|(cell, w)| format!("{cell:<w$}"))
                        .collect();
                    let _ = writeln!(out, "{}", padded.join("  ").trim_end());
                }
                Line::Note(text) => {
                    let _ = writeln!(out, "  {text}");
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_use_binary_units() {
        assert_eq!(bytes(0), "0 B");
        assert_eq!(bytes(1023), "1023 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 << 20), "5.0 MiB");
    }

    #[test]
    fn columns_align_and_notes_follow_their_row() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["long-name".into(), "x".into()]);
        table.note("why".into());
        assert_eq!(table.render(), "A          B\nlong-name  x\n  why\n");
    }
}
