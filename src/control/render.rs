//! `lazytunnel status` for a person: two compact tables (hosts, forwards), with a host's
//! failure and a forward's last error on a line of their own under it.

use std::fmt::Write;

use super::protocol::Status;

/// Renders `status` as aligned text.
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut hosts = Table::new(&[
        "HOST", "STATE", "SINCE", "REMOTE", "LOCAL", "RECONN", "CHAN", "WINDOW", "UP", "DOWN",
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
            host.window
                .map_or_else(|| "-".into(), |w| bytes(u64::from(w))),
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
    fn a_failed_host_shows_its_error_and_next_attempt_under_its_row() {
        use super::super::protocol::{Forward, Host, LastError};
        let status = Status {
            version: 1,
            pid: 42,
            hosts: vec![Host {
                host: "srv11".into(),
                state: "failed".into(),
                since: "2026-01-01T00:00:00Z".into(),
                next_attempt: Some("2026-01-01T00:01:00Z".into()),
                error: Some("host key refused".into()),
                local_addr: None,
                remote_addr: None,
                failures: 1,
                reconnects: 0,
                attempts: 1,
                sessions_opened: 0,
                channels: 0,
                window: None,
                path_rtt_us: None,
                bytes_up: 0,
                bytes_down: 2048,
            }],
            forwards: vec![Forward {
                name: "smb".into(),
                listen: vec!["127.0.0.1:4445".into()],
                host: "srv11".into(),
                target: "localhost:445".into(),
                socks: false,
                connections_open: 0,
                connections_total: 3,
                bytes_up: 0,
                bytes_down: 2048,
                last_error: Some(LastError {
                    at: "2026-01-01T00:00:30Z".into(),
                    message: "no session to srv11".into(),
                }),
            }],
        };
        let text = render(&status);
        let lines: Vec<&str> = text.lines().collect();
        let row = lines.iter().position(|l| l.starts_with("srv11")).unwrap();
        assert!(
            lines[row].contains("failed") && lines[row].contains("2.0 KiB"),
            "{text}"
        );
        assert_eq!(
            lines[row + 1],
            "  1 failure(s), next attempt 2026-01-01T00:01:00Z: host key refused"
        );
        let row = lines.iter().position(|l| l.starts_with("smb")).unwrap();
        assert!(
            lines[row].contains("127.0.0.1:4445") && lines[row].contains(" 3 "),
            "{text}"
        );
        assert_eq!(
            lines[row + 1],
            "  last error 2026-01-01T00:00:30Z: no session to srv11"
        );
    }

    #[test]
    fn columns_align_and_notes_follow_their_row() {
        let mut table = Table::new(&["A", "B"]);
        table.row(vec!["long-name".into(), "x".into()]);
        table.note("why".into());
        assert_eq!(table.render(), "A          B\nlong-name  x\n  why\n");
    }
}
