//! The daemon's end of the control socket: binding it safely (0600, in a 0700 directory of
//! ours, a stale socket replaced), and answering one request per connection within bounds.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Handler;
use super::protocol::{MAX_REQUEST, Request, Response};

/// How long a client may take to send its request, and to take the response.
pub const IO_DEADLINE: Duration = Duration::from_secs(5);
/// Control connections handled at once; more wait in the backlog.
const MAX_CLIENTS: usize = 16;

/// The bound control socket; the file is removed when this is dropped.
#[derive(Debug)]
pub struct ControlSocket {
    pub listener: std::os::unix::net::UnixListener,
    path: PathBuf,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket at `path`. Call with the instance lock held: any socket already
/// there is then a dead daemon's, and is replaced. The directory must be ours and closed to
/// others (the instance lock creates it so), since the socket accepts every command.
pub fn bind(path: &Path) -> anyhow::Result<ControlSocket> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    crate::instance::check_private_dir(dir)?;
    match std::fs::symlink_metadata(path) {
        Ok(old) if old.file_type().is_socket() => std::fs::remove_file(path)
            .with_context(|| format!("cannot remove stale control socket {}", path.display()))?,
        Ok(_) => bail!(
            "{} exists and is not a socket: remove it or choose another `control_socket`",
            path.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot inspect {}", path.display())),
    }
    let listener = std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind control socket {}", path.display()))?;
    let socket = ControlSocket {
        listener,
        path: path.to_path_buf(),
    };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .and_then(|()| socket.listener.set_nonblocking(true))
        .with_context(|| format!("cannot set up control socket {}", path.display()))?;
    Ok(socket)
}

/// Answers requests on `listener` until `stop` fires.
pub async fn serve<H: Handler>(listener: UnixListener, handler: Arc<H>, stop: CancellationToken) {
    let limit = Arc::new(Semaphore::new(MAX_CLIENTS));
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            () = stop.cancelled() => return,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stop.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                // The directory already keeps others out; this holds even if someone opened it.
                if let Err(why) = check_peer(&stream) {
                    warn!("control socket: refusing a client: {why}");
                    continue;
                }
                let handler = handler.clone();
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &*handler).await {
                        debug!("control client: {e}");
                    }
                    drop(permit);
                });
            }
            Err(e) => {
                // As for TCP accepts: an error such as EMFILE repeats at once, so pause.
                warn!("control socket accept failed: {e}");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => {}
                    () = stop.cancelled() => return,
                }
            }
        }
    }
}

/// Only our own user (and root, who could act as us anyway) may command the daemon.
fn check_peer(stream: &UnixStream) -> io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if peer == me || peer == 0 {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("its user (uid {peer}) is not the daemon's (uid {me})"),
    ))
}

/// Reads one request, answers it, and for `stop` acts after answering.
async fn answer(stream: UnixStream, handler: &impl Handler) -> io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = Vec::new();
    let mut reader = BufReader::new(read).take(MAX_REQUEST as u64);
    let read = tokio::time::timeout(IO_DEADLINE, reader.read_until(b'\n', &mut line)).await;
    let mut stop_after = false;
    let response = match read {
        Err(_) => Response::error(format!(
            "no complete request within {}",
            humantime::format_duration(IO_DEADLINE)
        )),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) if !line.ends_with(b"\n") && line.len() >= MAX_REQUEST => Response::error(
            format!("request longer than {MAX_REQUEST} bytes; one JSON object per line"),
        ),
        Ok(Ok(_)) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::error(format!("malformed request: {e}")),
            Ok(request) => {
                debug!(?request, "control request");
                stop_after = request == Request::Stop;
                dispatch(request, handler).await
            }
        },
    };
    let mut text = serde_json::to_vec(&response).map_err(io::Error::other)?;
    text.push(b'\n');
    let written = tokio::time::timeout(IO_DEADLINE, write.write_all(&text)).await;
    if stop_after {
        info!("stop requested on the control socket: shutting down");
        handler.stop();
    }
    written.map_err(|_| io::Error::other("client did not take the response"))?
}

async fn dispatch(request: Request, handler: &impl Handler) -> Response {
    let outcome = match request {
        Request::Status => {
            return Response {
                ok: true,
                status: Some(handler.status()),
                ..Response::default()
            };
        }
        Request::Stop => Ok("stopping".to_string()),
        Request::Reload => handler.reload().await,
        Request::Connect { host } => handler.connect(&host).await,
    };
    match outcome {
        Ok(message) => Response::message(message),
        Err(error) => Response::error(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn private_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        dir
    }

    #[test]
    fn a_stale_socket_is_replaced_and_the_new_one_is_private() {
        let dir = private_dir();
        let path = dir.path().join("control.sock");
        // A dead daemon's socket: the file outlives its listener.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(path.exists());

        let socket = bind(&path).expect("stale socket replaced");

        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::os::unix::net::UnixStream::connect(&path).expect("the new socket listens");
        drop(socket);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn a_directory_others_can_enter_or_a_non_socket_file_is_refused() {
        let dir = private_dir();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let err = bind(&dir.path().join("control.sock"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("closed to others") && err.contains("755"),
            "{err}"
        );

        let dir = private_dir();
        let path = dir.path().join("control.sock");
        std::fs::write(&path, "not a socket").unwrap();
        let err = bind(&path).unwrap_err().to_string();
        assert!(err.contains("is not a socket"), "{err}");
        assert!(path.exists(), "a regular file is never removed");
    }

    /// A client of another user is refused. The connecting thread alone takes uid 65534 (the
    /// raw syscall changes one thread's credentials), so this needs root.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn a_client_of_another_user_is_refused() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            assert!(
                std::env::var_os("CI").is_none(),
                "this test needs root under CI"
            );
            eprintln!("skipping: changing a thread's uid needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = dir.path().join("control.sock");
        let listener = UnixListener::bind(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();

        let own = std::os::unix::net::UnixStream::connect(&path).unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        check_peer(&accepted).expect("our own uid is let in");

        let other = std::thread::spawn({
            let path = path.clone();
            move || {
                // SAFETY: changes only this thread's credentials; it exits right after.
                let rc = unsafe { libc::syscall(libc::SYS_setresuid, 65534, 65534, 65534) };
                assert_eq!(rc, 0, "{}", io::Error::last_os_error());
                std::os::unix::net::UnixStream::connect(&path).unwrap()
            }
        })
        .join()
        .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let err = check_peer(&accepted).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::PermissionDenied);
        assert!(err.to_string().contains("uid 65534"), "{err}");
        drop((own, other));
    }
}
