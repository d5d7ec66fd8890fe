//! systemd user units: `lazytunnel.service`, and for socket activation `lazytunnel.socket`.

use std::fmt::Write;

use super::Job;
use crate::config::Listen;

pub const SERVICE: &str = "lazytunnel.service";
pub const SOCKET: &str = "lazytunnel.socket";

/// Not a valid forward name, so never matched by name.
pub const FD_NAME: &str = "lazytunnel+by-address";

const HEADER: &str =
    "# Written by `lazytunnel install systemd`; `lazytunnel uninstall systemd` removes it.\n";

/// The service unit. `Type=notify`: lazytunnel reports READY=1 once it serves. Socket-activated,
/// it has no `[Install]` section of its own: the socket unit starts it.
pub fn render_service(job: &Job) -> String {
    let mut out = String::from(HEADER);
    out.push_str("[Unit]\nDescription=lazytunnel: lazy SSH port forwarding\n");
    if job.sockets.is_some() {
        let _ = writeln!(out, "Requires={SOCKET}\nAfter={SOCKET}");
    }
    out.push_str("\n[Service]\nType=notify\n");
    let command: Vec<String> = job.command().iter().map(|a| quote(a)).collect();
    let _ = writeln!(out, "ExecStart={}", command.join(" "));
    out.push_str("Restart=on-failure\nRestartSec=5s\n");
    if job.sockets.is_none() {
        out.push_str("\n[Install]\nWantedBy=default.target\n");
    }
    out
}

/// The one `SocketMode=` of the socket unit: systemd applies it to every Unix socket of a unit,
/// so the forwards listening on one must agree on `listen_mode`. `None` without Unix sockets.
pub fn socket_mode(job: &Job) -> Result<Option<u32>, String> {
    let mut modes = job
        .sockets
        .iter()
        .flatten()
        .filter_map(|(name, listen)| match listen {
            Listen::Unix { mode, .. } => Some((name, *mode)),
            Listen::Tcp(_) => None,
        });
    let Some((first, mode)) = modes.next() else {
        return Ok(None);
    };
    match modes.find(|(_, other)| *other != mode) {
        Some((name, other)) => Err(format!(
            "forwards {first:?} (listen_mode {mode:04o}) and {name:?} (listen_mode {other:04o}) \
             differ, but a systemd socket unit gives all its Unix sockets one SocketMode: give \
             them the same listen_mode, or install without --socket-activated"
        )),
        None => Ok(Some(mode)),
    }
}

/// The socket unit: one `ListenStream=` per forward with its address written out (a bare port
/// would listen on every interface), or its socket path, with `SocketMode=` (systemd's default
/// is 0666). systemd gives every socket of a unit the same `FileDescriptorName`, so lazytunnel
/// tells them apart by address or path; the name is one no forward can have (`+`), lest every
/// socket go to a forward of that name.
pub fn render_socket(job: &Job) -> String {
    let mut out = String::from(HEADER);
    out.push_str("[Unit]\nDescription=lazytunnel: listening sockets of its forwards\n\n[Socket]\n");
    for (name, listen) in job.sockets.iter().flatten() {
        let listen = match listen {
            Listen::Tcp(addr) => {
                let node = super::node_name(addr);
                match addr {
                    std::net::SocketAddr::V4(_) => format!("{node}:{}", addr.port()),
                    std::net::SocketAddr::V6(_) => format!("[{node}]:{}", addr.port()),
                }
            }
            // A path is not unescaped, but specifiers would be expanded.
            Listen::Unix { path, .. } => path.to_string_lossy().replace('%', "%%"),
        };
        let _ = writeln!(out, "# forward {name}\nListenStream={listen}");
    }
    if let Ok(Some(mode)) = socket_mode(job) {
        let _ = writeln!(out, "SocketMode={mode:04o}");
    }
    let _ = writeln!(out, "FileDescriptorName={FD_NAME}");
    out.push_str("\n[Install]\nWantedBy=sockets.target\n");
    out
}

/// One word of an `ExecStart=` line: double-quoted, with `\` and `"` escaped, and `%` and `$`
/// doubled so that systemd expands no specifier or variable in a path.
pub fn quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn job(sockets: Option<Vec<(String, Listen)>>) -> Job {
        Job {
            program: PathBuf::from("/opt/lazytunnel"),
            config: PathBuf::from("/home/v/lt.toml"),
            log: PathBuf::new(),
            sockets,
        }
    }

    #[test]
    fn a_plain_service_is_wanted_by_the_login_session() {
        let unit = render_service(&job(None));
        assert!(unit.contains("\nType=notify\n"), "{unit}");
        let exec = "\nExecStart=\"/opt/lazytunnel\" \"run\" \"--foreground\" \"--config\" \"/home/v/lt.toml\"\n";
        assert!(unit.contains(exec), "{unit}");
        assert!(unit.contains("\nWantedBy=default.target\n"), "{unit}");
        assert!(!unit.contains(SOCKET), "{unit}");
    }

    #[test]
    fn a_socket_activated_service_is_started_by_its_socket() {
        let sockets = vec![
            (
                "smb".to_string(),
                Listen::Tcp("127.0.0.1:4445".parse().unwrap()),
            ),
            ("db".to_string(), Listen::Tcp("[::1]:5432".parse().unwrap())),
        ];
        let service = render_service(&job(Some(sockets.clone())));
        assert!(
            service.contains("\nRequires=lazytunnel.socket\n"),
            "{service}"
        );
        assert!(!service.contains("WantedBy"), "{service}");
        let socket = render_socket(&job(Some(sockets)));
        let listens: Vec<&str> = socket
            .lines()
            .filter_map(|l| l.strip_prefix("ListenStream="))
            .collect();
        assert_eq!(listens, ["127.0.0.1:4445", "[::1]:5432"]);
        assert!(socket.contains("\nWantedBy=sockets.target\n"), "{socket}");
        assert!(!socket.contains("SocketMode"), "{socket}");
    }

    fn unix(path: &str, mode: u32) -> Listen {
        Listen::Unix {
            path: path.into(),
            mode,
        }
    }

    #[test]
    fn a_unix_socket_listens_on_its_path_with_its_mode() {
        let sockets = vec![
            (
                "docker".to_string(),
                unix("/run/user/1000/d%ocker.sock", 0o660),
            ),
            (
                "smb".to_string(),
                Listen::Tcp("127.0.0.1:4445".parse().unwrap()),
            ),
        ];
        let socket = render_socket(&job(Some(sockets)));
        assert!(
            socket.contains("\nListenStream=/run/user/1000/d%%ocker.sock\n"),
            "{socket}"
        );
        assert!(socket.contains("\nSocketMode=0660\n"), "{socket}");
    }

    #[test]
    fn unix_sockets_with_different_modes_cannot_share_a_unit() {
        let sockets = vec![
            ("a".to_string(), unix("/tmp/a.sock", 0o600)),
            ("b".to_string(), unix("/tmp/b.sock", 0o660)),
        ];
        let err = socket_mode(&job(Some(sockets))).unwrap_err();
        assert!(err.contains("\"a\"") && err.contains("0660"), "{err}");
    }

    #[test]
    fn the_socket_name_cannot_be_a_forward_name() {
        let text = format!(
            "[[forward]]\nname = \"{FD_NAME}\"\nlisten = \"1\"\nhost = \"h\"\ntarget = \"t:1\"\n"
        );
        let parsed = crate::config::Config::from_str(&text, std::path::Path::new("x.toml"));
        assert!(parsed.is_err());
    }

    #[test]
    fn exec_start_words_are_quoted_and_unexpanded() {
        assert_eq!(quote("/usr/bin/lazytunnel"), "\"/usr/bin/lazytunnel\"");
        assert_eq!(
            quote(r#"/a b/%h/$HOME/"q"\"#),
            r#""/a b/%%h/$$HOME/\"q\"\\""#
        );
    }

    // `lo` is Linux's name for loopback.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_scoped_ipv6_address_keeps_its_zone() {
        // SAFETY: if_nametoindex reads the NUL-terminated name.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        assert_ne!(lo, 0, "no interface lo");
        let scoped = Listen::Tcp(
            std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 4445, 0, lo).into(),
        );
        let unit = render_socket(&job(Some(vec![("ll".into(), scoped.clone())])));
        assert!(unit.contains("ListenStream=[fe80::1%lo]:4445\n"), "{unit}");
        let plist =
            super::super::launchd::render_plist("l", &job(Some(vec![("ll".into(), scoped)])));
        assert!(plist.contains("<string>fe80::1%lo</string>"), "{plist}");
    }
}
