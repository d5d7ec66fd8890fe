//! systemd user units: `lazytunnel.service`, and for socket activation `lazytunnel.socket`.

use std::fmt::Write;

use super::Job;

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

/// The socket unit: one `ListenStream=` per forward with its address written out (a bare port
/// would listen on every interface). systemd gives every socket of a unit the same
/// `FileDescriptorName`, so lazytunnel tells them apart by address; the name is one no forward
/// can have (`+`), lest every socket go to a forward of that name.
pub fn render_socket(job: &Job) -> String {
    let mut out = String::from(HEADER);
    out.push_str("[Unit]\nDescription=lazytunnel: listening sockets of its forwards\n\n[Socket]\n");
    for (name, listen) in job.sockets.iter().flatten() {
        let node = super::node_name(listen);
        let port = listen.port();
        let listen = match listen {
            std::net::SocketAddr::V4(_) => format!("{node}:{port}"),
            std::net::SocketAddr::V6(_) => format!("[{node}]:{port}"),
        };
        let _ = writeln!(out, "# forward {name}\nListenStream={listen}");
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

    fn job(sockets: Option<Vec<(String, std::net::SocketAddr)>>) -> Job {
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
            ("smb".to_string(), "127.0.0.1:4445".parse().unwrap()),
            ("db".to_string(), "[::1]:5432".parse().unwrap()),
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
        let scoped = std::net::SocketAddrV6::new("fe80::1".parse().unwrap(), 4445, 0, lo);
        let unit = render_socket(&job(Some(vec![("ll".into(), scoped.into())])));
        assert!(unit.contains("ListenStream=[fe80::1%lo]:4445\n"), "{unit}");
        let plist = super::super::launchd::render_plist(
            "l",
            &job(Some(vec![("ll".into(), scoped.into())])),
        );
        assert!(plist.contains("<string>fe80::1%lo</string>"), "{plist}");
    }
}
