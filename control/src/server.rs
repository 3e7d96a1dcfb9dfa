//! The command socket: a Unix stream socket, one thread per client, requests forwarded to the
//! control thread.
//!
//! A client that says nothing holds only its own thread; one that sends a line longer than
//! [`MAX_LINE`], invalid UTF-8 or invalid JSON gets an error response; one that disconnects
//! mid-request is forgotten. None of them can block the control thread or another client, and
//! the workers never wait for any of this.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use serde_json::Value;
use xvs_proto::{MAX_LINE, Request, Response, RpcError, code, parse_request};

/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 128;
/// A client that sends nothing for this long is disconnected.
const IDLE_TIMEOUT: Duration = Duration::from_secs(600);

/// A request for the control thread, with where to send the answer.
pub type Pending = (Request, Sender<Response>);

/// Why the socket could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Another xvsd owns the socket.
    #[error("another xvsd is running on {0}")]
    AlreadyRunning(PathBuf),
    /// A filesystem or socket call failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What we were doing.
        what: &'static str,
        /// On which path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// The listening socket, with the lock that makes it ours. The socket file is removed on drop.
#[derive(Debug)]
pub struct Listener {
    listener: UnixListener,
    path: PathBuf,
    _lock: File,
}

impl Listener {
    /// Creates the socket at `path` (mode 0600), replacing a stale one left by a crashed
    /// daemon and refusing to steal a live one.
    ///
    /// A lock file next to the socket (`PATH.lock`, held with `flock` for the daemon's life)
    /// decides who owns it; the kernel releases the lock when a daemon dies, even by SIGKILL.
    ///
    /// # Errors
    /// [`ServerError::AlreadyRunning`], or a filesystem error.
    pub fn bind(path: &Path) -> Result<Listener, ServerError> {
        let io = |what, source| ServerError::Io {
            what,
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
        }
        let lock_path = PathBuf::from(format!("{}.lock", path.display()));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("opening the lock of", e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ServerError::AlreadyRunning(path.to_owned()));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("locking", e)),
        }
        // We hold the lock: whatever socket file is there was left by a dead daemon.
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(path = %path.display(), "replaced a stale socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("removing the stale socket", e)),
        }
        // Bind under a temporary name, restrict it, then move it in place, so that the socket
        // is never reachable with looser permissions.
        let tmp = PathBuf::from(format!("{}.{}.tmp", path.display(), std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = UnixListener::bind(&tmp).map_err(|e| io("binding", e))?;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| io("setting the mode of", e))?;
        std::fs::rename(&tmp, path).map_err(|e| io("renaming the socket to", e))?;
        Ok(Listener {
            listener,
            path: path.to_owned(),
            _lock: lock,
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Accepts clients on a thread of its own, forwarding their requests to `calls`.
    ///
    /// # Errors
    /// The listener cannot be duplicated for the thread.
    pub fn serve(&self, calls: Sender<Pending>) -> std::io::Result<()> {
        let listener = self.listener.try_clone()?;
        let clients = Arc::new(AtomicUsize::new(0));
        std::thread::Builder::new()
            .name("xvsd-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    accept(stream, &calls, &clients);
                }
            })?;
        Ok(())
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn accept(mut stream: UnixStream, calls: &Sender<Pending>, clients: &Arc<AtomicUsize>) {
    if clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
        clients.fetch_sub(1, Ordering::SeqCst);
        let error = Response::err(
            Value::Null,
            RpcError::new(
                code::LIMIT,
                format!("too many clients (at most {MAX_CLIENTS})"),
            ),
        );
        let _ = write_response(&mut stream, &error);
        return;
    }
    let calls = calls.clone();
    let count = clients.clone();
    let spawned = std::thread::Builder::new()
        .name("xvsd-client".into())
        .spawn(move || {
            serve_client(stream, &calls);
            count.fetch_sub(1, Ordering::SeqCst);
        });
    if spawned.is_err() {
        clients.fetch_sub(1, Ordering::SeqCst);
    }
}

fn write_response(stream: &mut UnixStream, response: &Response) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(response).expect("responses serialize");
    line.push(b'\n');
    stream.write_all(&line)
}

/// Reads one line of at most `limit` bytes (without the newline). Returns `Ok(None)` at end of
/// stream and `Err(InvalidData)` for a longer line.
fn read_line(
    reader: &mut impl BufRead,
    buf: &mut Vec<u8>,
    limit: usize,
) -> std::io::Result<Option<()>> {
    buf.clear();
    let n = reader.take(limit as u64 + 1).read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    } else if buf.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long",
        ));
    }
    Ok(Some(()))
}

fn serve_client(stream: UnixStream, calls: &Sender<Pending>) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    loop {
        match read_line(&mut reader, &mut line, MAX_LINE) {
            Ok(None) => return,
            Ok(Some(())) => {}
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                let error = Response::err(
                    Value::Null,
                    RpcError::new(
                        code::LIMIT,
                        format!("request line longer than {MAX_LINE} bytes; closing"),
                    ),
                );
                let _ = write_response(&mut writer, &error);
                return;
            }
            Err(_) => return,
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let response = match parse_request(&line) {
            Err(error) => *error,
            Ok(request) => {
                let id = request.id.clone();
                let (tx, rx) = mpsc::channel();
                if calls.send((request, tx)).is_err() {
                    return;
                }
                rx.recv().unwrap_or_else(|_| {
                    Response::err(id, RpcError::new(code::INTERNAL, "xvsd is shutting down"))
                })
            }
        };
        if write_response(&mut writer, &response).is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_line_limits() {
        let mut buf = Vec::new();
        let mut input = &b"abc\ndef"[..];
        assert!(read_line(&mut input, &mut buf, 10).unwrap().is_some());
        assert_eq!(buf, b"abc");
        assert!(read_line(&mut input, &mut buf, 10).unwrap().is_some());
        assert_eq!(buf, b"def");
        assert!(read_line(&mut input, &mut buf, 10).unwrap().is_none());
        let mut long = &[b'x'; 20][..];
        assert!(read_line(&mut long, &mut buf, 10).is_err());
    }
}
