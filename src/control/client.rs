//! The commands' end of the control socket: one request, one response, blocking (the
//! commands need no async runtime), and waiting for a stopped daemon to be gone.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::protocol::{Request, Response};
use crate::config::Config;
use crate::instance::{lock, paths};

/// The longest reply read: a status of thousands of forwards fits many times over.
pub const MAX_REPLY: u64 = 16 * 1024 * 1024;

/// How long `status` and `reload` wait for the daemon's answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// How long `connect` waits: an attempt is bounded by the host's connect timeout (through
/// each jump host), which the config may raise.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(300);
/// How long `stop` waits for the daemon to exit: its drain period, closing sessions, slack.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);

/// The control socket a command talks to: `socket` if given, else the `control_socket` of
/// `config` (or of the default config file), else the default. A default config file that does
/// not load is no reason to refuse `status`: the default socket is tried, with a note.
pub fn locate(socket: Option<PathBuf>, config: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = socket {
        return Ok(path);
    }
    let config = match config {
        Some(path) => Some(Config::load(&path)?),
        None => match Config::default_path() {
            Ok(path) if path.exists() => match Config::load(&path) {
                Ok(config) => Some(config),
                Err(e) => {
                    eprintln!("lazytunnel: note: {e}; using the default control socket");
                    None
                }
            },
            _ => None,
        },
    };
    match config {
        Some(config) => paths::control_socket(&config),
        None => paths::default_control_socket(),
    }
}

/// `lazytunnel status`: the table, or the JSON document (one line) with `json`.
pub fn status(socket: &Path, json: bool) -> anyhow::Result<String> {
    let response = expect_ok(socket, &Request::Status, ANSWER_TIMEOUT)?;
    let Some(status) = response.status else {
        bail!("the daemon's answer has no status");
    };
    if json {
        Ok(format!("{}\n", serde_json::to_string(&status)?))
    } else {
        Ok(super::render::render(&status))
    }
}

/// `lazytunnel stop`: asks the daemon to shut down, and returns once it has exited.
pub fn stop(socket: &Path) -> anyhow::Result<()> {
    expect_ok(socket, &Request::Stop, ANSWER_TIMEOUT)?;
    wait_for_exit(socket, EXIT_TIMEOUT)
}

/// `lazytunnel reload`: the daemon's summary of what changed.
pub fn reload(socket: &Path) -> anyhow::Result<String> {
    message(expect_ok(socket, &Request::Reload, ANSWER_TIMEOUT)?)
}

/// `lazytunnel connect HOST`: the daemon's account of the session.
pub fn connect(socket: &Path, host: &str) -> anyhow::Result<String> {
    let request = Request::Connect {
        host: host.to_string(),
    };
    message(expect_ok(socket, &request, CONNECT_TIMEOUT)?)
}

fn message(response: Response) -> anyhow::Result<String> {
    Ok(response.message.unwrap_or_default())
}

#[derive(Debug, thiserror::Error)]
#[error("lazytunnel is not running (no daemon answers on {})", .0.display())]
pub struct NotRunning(pub std::path::PathBuf);

/// Sends `request` to the daemon at `socket` and returns its response, waiting for it at most
/// `timeout`. A missing or dead socket is [`NotRunning`].
pub fn request(socket: &Path, request: &Request, timeout: Duration) -> anyhow::Result<Response> {
    let mut stream = match UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(NotRunning(socket.to_path_buf()).into());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot connect to {}", socket.display()));
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = serde_json::to_vec(request)?;
    line.push(b'\n');
    stream
        .write_all(&line)
        .with_context(|| format!("cannot send to {}", socket.display()))?;
    let mut reply = String::new();
    // Whatever answers on the socket, its reply is not read without end.
    BufReader::new(&stream)
        .take(MAX_REPLY + 1)
        .read_line(&mut reply)
        .with_context(|| format!("no answer from the daemon on {}", socket.display()))?;
    if reply.len() as u64 > MAX_REPLY {
        bail!(
            "the answer on {} is longer than {MAX_REPLY} bytes: not a lazytunnel daemon",
            socket.display()
        );
    }
    if reply.is_empty() {
        bail!(
            "the daemon on {} closed the connection without answering",
            socket.display()
        );
    }
    serde_json::from_str(&reply).with_context(|| format!("unreadable answer: {}", reply.trim()))
}

/// Like [`request`], turning an error response into an error.
pub fn expect_ok(socket: &Path, req: &Request, timeout: Duration) -> anyhow::Result<Response> {
    let response = request(socket, req, timeout)?;
    if !response.ok {
        bail!(
            "{}",
            response
                .error
                .as_deref()
                .unwrap_or("the daemon reported an error")
        );
    }
    Ok(response)
}

/// Waits until the daemon of `socket` has exited: its instance lock is free.
pub fn wait_for_exit(socket: &Path, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while lock::is_held(socket)? {
        if Instant::now() >= deadline {
            bail!(
                "the daemon has not exited {} after being asked to stop (it drains open \
                 connections first); its pid is in {}",
                humantime::format_duration(timeout),
                paths::lock_file(socket).display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_endless_reply_is_cut_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("control.sock");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let chunk = vec![b'x'; 64 * 1024];
            // Until the client hangs up.
            while stream.write_all(&chunk).is_ok() {}
        });
        let err = request(&path, &Request::Status, Duration::from_secs(30)).unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("longer than") && err.contains("not a lazytunnel daemon"),
            "{err}"
        );
        server.join().unwrap();
    }
}
