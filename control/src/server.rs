//! The command socket: a Unix stream socket, one thread per client, requests forwarded to the
//! control thread.
//!
//! A client that says nothing holds only its own thread, and is disconnected after
//! [`IDLE_TIMEOUT`]; one that sends a line longer than [`MAX_LINE`], invalid UTF-8 or invalid
//! JSON gets an error response; one that disconnects mid-request is forgotten. None of them can
//! block the control thread or another client, and the workers never wait for any of this.
//!
//! At most [`MAX_CLIENTS`] are connected at once. When one more comes, the client idle the
//! longest (connected, no request in progress) is disconnected to make room, so silent
//! connections cannot lock the CLI out; a newcomer is refused only while every client is in
//! the middle of a request.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::Shutdown;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde_json::Value;
use xvs_proto::{MAX_LINE, Request, Response, RpcError, code, parse_request};

/// Most clients connected at once.
pub const MAX_CLIENTS: usize = 128;
/// A client that sends nothing for this long is disconnected.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// How many clients the socket takes, and for how long one may stay silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most clients connected at once.
    pub max_clients: usize,
    /// A client that sends nothing for this long is disconnected.
    pub idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_clients: MAX_CLIENTS,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

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

    /// Accepts clients on a thread of its own, forwarding their requests to `calls`, with the
    /// default [`Limits`].
    ///
    /// # Errors
    /// The listener cannot be duplicated for the thread.
    pub fn serve(&self, calls: Sender<Pending>) -> std::io::Result<()> {
        self.serve_with(calls, Limits::default())
    }

    /// [`Listener::serve`] with other limits.
    ///
    /// # Errors
    /// The listener cannot be duplicated for the thread.
    pub fn serve_with(&self, calls: Sender<Pending>, limits: Limits) -> std::io::Result<()> {
        let listener = self.listener.try_clone()?;
        let clients = Arc::new(Clients::default());
        std::thread::Builder::new()
            .name("xvsd-accept".into())
            .spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { continue };
                    accept(stream, &calls, &clients, limits);
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

/// A connected client as the accept thread sees it.
#[derive(Debug)]
struct Slot {
    /// A handle on its socket, to disconnect it.
    stream: UnixStream,
    /// Since when it has had no request in progress (`None`: one is).
    idle_since: Option<Instant>,
}

/// The clients connected, by a number of their own.
#[derive(Debug, Default)]
struct Clients {
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    slots: HashMap<u64, Slot>,
    last_id: u64,
}

impl Clients {
    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes a new client (`stream` is a handle on its socket), disconnecting the client idle
    /// the longest if `max` are connected. Returns its number, or `None` when every client
    /// is in the middle of a request.
    fn admit(&self, stream: UnixStream, max: usize) -> Option<u64> {
        let mut table = self.table();
        let Table { slots, last_id } = &mut *table;
        if slots.len() >= max {
            let (&oldest, _) = slots
                .iter()
                .filter_map(|(id, s)| s.idle_since.map(|since| (id, since)))
                .min_by_key(|(_, since)| *since)?;
            let slot = slots.remove(&oldest).expect("just found");
            // Its thread reads end of stream and goes.
            let _ = slot.stream.shutdown(Shutdown::Both);
            tracing::info!(
                idle_s = slot.idle_since.map(|s| s.elapsed().as_secs_f64()),
                "{max} clients connected: disconnected the one idle the longest"
            );
        }
        *last_id += 1;
        slots.insert(
            *last_id,
            Slot {
                stream,
                idle_since: Some(Instant::now()),
            },
        );
        Some(*last_id)
    }

    /// Marks client `id` busy (a request in progress) or idle from now on.
    fn set_busy(&self, id: u64, busy: bool) {
        if let Some(slot) = self.table().slots.get_mut(&id) {
            slot.idle_since = (!busy).then(Instant::now);
        }
    }

    fn remove(&self, id: u64) {
        self.table().slots.remove(&id);
    }
}

fn accept(stream: UnixStream, calls: &Sender<Pending>, clients: &Arc<Clients>, limits: Limits) {
    let id = stream
        .try_clone()
        .ok()
        .and_then(|handle| clients.admit(handle, limits.max_clients));
    let Some(id) = id else {
        refuse(stream, limits.max_clients);
        return;
    };
    let calls = calls.clone();
    let owner = clients.clone();
    let spawned = std::thread::Builder::new()
        .name("xvsd-client".into())
        .spawn(move || {
            serve_client(stream, &calls, &owner, id, limits.idle_timeout);
            owner.remove(id);
        });
    if spawned.is_err() {
        clients.remove(id);
    }
}

/// Tells a client there is no room, and hangs up. Its first request is read first (for a
/// second at most, on a thread of its own), so that a client which writes before it reads
/// gets the answer rather than a broken pipe.
fn refuse(stream: UnixStream, max: usize) {
    let _ = std::thread::Builder::new()
        .name("xvsd-refuse".into())
        .spawn(move || {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let Ok(mut writer) = stream.try_clone() else {
                return;
            };
            let _ = read_line(&mut BufReader::new(stream), &mut Vec::new(), MAX_LINE);
            let error = Response::err(
                Value::Null,
                RpcError::new(
                    code::LIMIT,
                    format!("too many clients, all in the middle of a request (at most {max})"),
                ),
            );
            let _ = write_response(&mut writer, &error);
        });
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

fn serve_client(
    stream: UnixStream,
    calls: &Sender<Pending>,
    clients: &Clients,
    id: u64,
    idle_timeout: Duration,
) {
    let _ = stream.set_read_timeout(Some(idle_timeout));
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
        clients.set_busy(id, true);
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
        clients.set_busy(id, false);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    /// A listener in a directory of its own (removed on drop), served with `limits`; its
    /// control thread answers `version` at once and any other method once `release` is set.
    struct Served {
        listener: Listener,
        dir: PathBuf,
        release: Arc<AtomicBool>,
    }

    impl Drop for Served {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn served(limits: Limits) -> Served {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "xvs-server-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let listener = Listener::bind(&dir.join("xvsd.ctl")).unwrap();
        let (calls, requests) = mpsc::channel::<Pending>();
        let release = Arc::new(AtomicBool::new(false));
        let released = release.clone();
        std::thread::spawn(move || {
            for (request, reply) in requests {
                let released = released.clone();
                std::thread::spawn(move || {
                    while request.method != "version" && !released.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let _ = reply.send(Response::ok(request.id, Value::Bool(true)));
                });
            }
        });
        listener.serve_with(calls, limits).unwrap();
        Served {
            listener,
            dir,
            release,
        }
    }

    fn connect(served: &Served) -> UnixStream {
        let s = UnixStream::connect(served.listener.path()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    }

    /// Sends a request for `method` and reads the answer.
    fn call(s: &mut UnixStream, method: &str) -> Value {
        s.write_all(
            format!("{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"{method}\"}}\n").as_bytes(),
        )
        .unwrap();
        let mut line = String::new();
        BufReader::new(s.try_clone().unwrap())
            .read_line(&mut line)
            .unwrap();
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    /// Whether the daemon hung up on `s` (end of stream), waiting up to its read timeout.
    fn hung_up(s: &mut UnixStream) -> bool {
        matches!(s.read(&mut [0u8; 1]), Ok(0))
    }

    #[test]
    fn the_client_idle_the_longest_makes_room() {
        let served = served(Limits {
            max_clients: 4,
            idle_timeout: Duration::from_secs(60),
        });
        let mut idle: Vec<UnixStream> = (0..4).map(|_| connect(&served)).collect();
        // One of them has been active since: it is not the one to go.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(call(&mut idle[0], "version")["result"], true);
        let mut newcomer = connect(&served);
        assert_eq!(call(&mut newcomer, "version")["result"], true);
        assert!(
            hung_up(&mut idle[1]),
            "the one idle the longest is still there"
        );
        for i in [0, 2, 3] {
            let s = &mut idle[i];
            s.set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            assert!(!hung_up(s));
        }
    }

    #[test]
    fn a_newcomer_is_refused_only_while_every_client_is_busy() {
        let served = served(Limits {
            max_clients: 2,
            idle_timeout: Duration::from_secs(60),
        });
        let mut busy: Vec<UnixStream> = (0..2).map(|_| connect(&served)).collect();
        for s in &mut busy {
            s.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"show\"}\n")
                .unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut refused = connect(&served);
        let answer = call(&mut refused, "version");
        assert_eq!(answer["error"]["code"], code::LIMIT, "{answer}");
        served.release.store(true, Ordering::Relaxed);
        for s in &mut busy {
            let mut line = String::new();
            BufReader::new(s.try_clone().unwrap())
                .read_line(&mut line)
                .unwrap();
            assert!(line.contains("\"id\":7"), "{line}");
        }
        assert_eq!(call(&mut connect(&served), "version")["result"], true);
    }

    #[test]
    fn a_silent_client_is_disconnected_after_the_idle_timeout() {
        let served = served(Limits {
            max_clients: 4,
            idle_timeout: Duration::from_millis(300),
        });
        let mut silent = connect(&served);
        let mut talking = connect(&served);
        for _ in 0..8 {
            std::thread::sleep(Duration::from_millis(100));
            assert_eq!(call(&mut talking, "version")["result"], true);
        }
        assert!(hung_up(&mut silent));
    }

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
