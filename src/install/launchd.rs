//! The launchd agent plist, written as XML by hand (a dozen keys need no plist crate).

use std::fmt::Write;

use super::Job;
use crate::config::Listen;

/// The default `Label`, and so the plist's file name.
pub const DEFAULT_LABEL: &str = "io.lazytunnel.agent";

/// A label becomes a file name: reverse-DNS characters only.
pub fn check_label(label: &str) -> Result<(), String> {
    let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if label.is_empty() || label.starts_with('.') || !label.chars().all(valid) {
        return Err(format!(
            "label {label:?}: use letters, digits, `.`, `_` and `-`, like {DEFAULT_LABEL}"
        ));
    }
    Ok(())
}

/// The plist for `job` under `label`: KeepAlive + RunAtLoad, or, when socket-activated, one
/// `Sockets` entry per forward (named after it, so `launch_activate_socket` finds it) and no
/// KeepAlive, so launchd starts the daemon on the first connection.
pub fn render_plist(label: &str, job: &Job) -> String {
    let mut out = String::from(concat!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n",
        "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" ",
        "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n",
        "<plist version=\"1.0\">\n<dict>\n",
    ));
    key_string(&mut out, 1, "Label", label);
    key(&mut out, 1, "ProgramArguments");
    line(&mut out, 1, "<array>");
    for arg in job.command() {
        line(&mut out, 2, &format!("<string>{}</string>", escape(&arg)));
    }
    line(&mut out, 1, "</array>");
    key_string(&mut out, 1, "StandardErrorPath", &job.log.to_string_lossy());
    match &job.sockets {
        None => {
            key(&mut out, 1, "RunAtLoad");
            line(&mut out, 1, "<true/>");
            key(&mut out, 1, "KeepAlive");
            line(&mut out, 1, "<true/>");
        }
        Some(forwards) => {
            key(&mut out, 1, "Sockets");
            line(&mut out, 1, "<dict>");
            for (name, listen) in forwards {
                key(&mut out, 2, name);
                socket(&mut out, listen);
            }
            line(&mut out, 1, "</dict>");
        }
    }
    out.push_str("</dict>\n</plist>\n");
    out
}

/// One listening socket; the address is always explicit, since launchd's default is every
/// interface. A Unix socket has its path and mode (launchd reads the mode as a number).
fn socket(out: &mut String, listen: &Listen) {
    line(out, 2, "<dict>");
    let listen = match listen {
        Listen::Tcp(addr) => addr,
        Listen::Unix { path, mode } => {
            key_string(out, 3, "SockPathName", &path.to_string_lossy());
            key(out, 3, "SockPathMode");
            line(out, 3, &format!("<integer>{mode}</integer>"));
            key_string(out, 3, "SockType", "stream");
            line(out, 2, "</dict>");
            return;
        }
    };
    key_string(out, 3, "SockNodeName", &super::node_name(listen));
    key_string(out, 3, "SockServiceName", &listen.port().to_string());
    let family = if listen.is_ipv4() { "IPv4" } else { "IPv6" };
    key_string(out, 3, "SockFamily", family);
    key_string(out, 3, "SockType", "stream");
    line(out, 2, "</dict>");
}

fn key(out: &mut String, depth: usize, name: &str) {
    line(out, depth, &format!("<key>{}</key>", escape(name)));
}

fn key_string(out: &mut String, depth: usize, name: &str, value: &str) {
    key(out, depth, name);
    line(out, depth, &format!("<string>{}</string>", escape(value)));
}

fn line(out: &mut String, depth: usize, text: &str) {
    let _ = writeln!(out, "{}{text}", "\t".repeat(depth));
}

/// XML character data: the five special characters, and control characters, which XML 1.0
/// cannot carry at all (replaced, since a path with one cannot be launched by name anyway).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn job(sockets: Option<Vec<(String, Listen)>>) -> Job {
        Job {
            program: PathBuf::from("/opt/lazytunnel"),
            config: PathBuf::from("/home/v/a&b.toml"),
            log: PathBuf::from("/home/v/Library/Logs/lazytunnel.log"),
            sockets,
        }
    }

    #[test]
    fn keepalive_agent_runs_at_load_and_is_kept_alive() {
        let plist = render_plist(DEFAULT_LABEL, &job(None));
        assert!(plist.contains("<key>KeepAlive</key>\n\t<true/>"), "{plist}");
        assert!(plist.contains("<key>RunAtLoad</key>\n\t<true/>"), "{plist}");
        assert!(
            plist.contains("<string>/home/v/a&amp;b.toml</string>"),
            "{plist}"
        );
        assert!(!plist.contains("Sockets"), "{plist}");
    }

    #[test]
    fn socket_activated_agent_has_named_sockets_and_no_keepalive() {
        let sockets = vec![(
            "smb".to_string(),
            Listen::Tcp("127.0.0.1:4445".parse().unwrap()),
        )];
        let plist = render_plist("x.y", &job(Some(sockets)));
        assert!(!plist.contains("KeepAlive"), "{plist}");
        assert!(!plist.contains("RunAtLoad"), "{plist}");
        let smb = "<key>smb</key>\n\t\t<dict>\n\t\t\t<key>SockNodeName</key>\n\t\t\t<string>127.0.0.1</string>";
        assert!(plist.contains(smb), "{plist}");
        assert!(plist.contains("<string>4445</string>"), "{plist}");
    }

    #[test]
    fn a_unix_socket_has_its_path_and_mode() {
        let docker = Listen::Unix {
            path: "/Users/v/d&d.sock".into(),
            mode: 0o600,
        };
        let plist = render_plist("x.y", &job(Some(vec![("docker".to_string(), docker)])));
        assert!(
            plist.contains("<key>SockPathName</key>\n\t\t\t<string>/Users/v/d&amp;d.sock</string>"),
            "{plist}"
        );
        assert!(
            plist.contains("<key>SockPathMode</key>\n\t\t\t<integer>384</integer>"),
            "{plist}"
        );
        assert!(!plist.contains("SockNodeName"), "{plist}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a&b<c>\"d'"), "a&amp;b&lt;c&gt;&quot;d&apos;");
        assert_eq!(escape("x\u{1}y"), "x\u{FFFD}y");
    }

    #[test]
    fn labels_are_file_names() {
        assert!(check_label(DEFAULT_LABEL).is_ok());
        for bad in ["", "../x", "a/b", ".hidden", "a b"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }
}
