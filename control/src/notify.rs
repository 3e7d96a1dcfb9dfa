//! systemd's notification protocol (sd_notify(3)), written out: one datagram of `KEY=VALUE`
//! lines to the Unix socket that `$NOTIFY_SOCKET` names, a path or, when it begins with `@`,
//! an abstract address. No libsystemd and no `unsafe`: a [`UnixDatagram`] is all it takes.
//!
//! Outside systemd (no `$NOTIFY_SOCKET`) every call does nothing.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// What the environment asks of us, read without I/O (see [`NotifyEnv::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyEnv {
    /// Where to send notifications, if anywhere.
    pub socket: Option<NotifyAddr>,
    /// The watchdog's timeout, when the watchdog is on and meant for this process.
    pub watchdog: Option<Duration>,
}

/// The address in `$NOTIFY_SOCKET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotifyAddr {
    /// A socket file.
    Path(OsString),
    /// An abstract socket (`@name` in the variable), by its name without the `@`.
    Abstract(Vec<u8>),
}

impl NotifyEnv {
    /// Reads `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID` through `var`, for the
    /// process `pid`. An address of a kind we do not speak (`vsock:`), a malformed or zero
    /// `WATCHDOG_USEC`, or a `WATCHDOG_PID` that is not `pid` turns the part it belongs to
    /// off (with a warning where it is a mistake rather than someone else's watchdog).
    pub fn parse(var: impl Fn(&str) -> Option<OsString>, pid: u32) -> NotifyEnv {
        let socket = var("NOTIFY_SOCKET").and_then(|value| {
            let bytes = value.as_bytes();
            match bytes.first() {
                Some(b'/') => Some(NotifyAddr::Path(value)),
                Some(b'@') => Some(NotifyAddr::Abstract(bytes[1..].to_vec())),
                _ => {
                    tracing::warn!(
                        "NOTIFY_SOCKET={} is neither a path nor @abstract: not notifying",
                        value.to_string_lossy()
                    );
                    None
                }
            }
        });
        let for_us = match var("WATCHDOG_PID") {
            None => true,
            Some(p) => p.to_str().and_then(|p| p.trim().parse::<u32>().ok()) == Some(pid),
        };
        let watchdog = var("WATCHDOG_USEC")
            .filter(|_| for_us && socket.is_some())
            .and_then(
                |usec| match usec.to_str().and_then(|u| u.trim().parse::<u64>().ok()) {
                    Some(0) | None => {
                        tracing::warn!(
                            "WATCHDOG_USEC={} is not a positive number: no watchdog",
                            usec.to_string_lossy()
                        );
                        None
                    }
                    Some(usec) => Some(Duration::from_micros(usec)),
                },
            );
        NotifyEnv { socket, watchdog }
    }
}

/// The sender of notifications to the service manager. Clones share one socket.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    target: Option<Arc<Target>>,
    watchdog: Option<Duration>,
}

#[derive(Debug)]
struct Target {
    socket: UnixDatagram,
    addr: SocketAddr,
    /// A failed send was logged as a warning; later ones are logged at debug level (a
    /// manager that went away would otherwise get one warning per watchdog ping).
    warned: AtomicBool,
}

impl Notifier {
    /// The notifier that this process's environment asks for; a do-nothing one outside
    /// systemd.
    pub fn from_env() -> Notifier {
        let env = NotifyEnv::parse(|key| std::env::var_os(key), std::process::id());
        Notifier::new(&env).unwrap_or_else(|e| {
            tracing::warn!("the notification socket: {e}: not notifying");
            Notifier::default()
        })
    }

    /// A notifier for `env`.
    ///
    /// # Errors
    /// The datagram socket could not be made, or the address is too long.
    pub fn new(env: &NotifyEnv) -> io::Result<Notifier> {
        let Some(addr) = &env.socket else {
            return Ok(Notifier::default());
        };
        let addr = match addr {
            NotifyAddr::Path(path) => SocketAddr::from_pathname(OsStr::new(path))?,
            NotifyAddr::Abstract(name) => SocketAddr::from_abstract_name(name)?,
        };
        let socket = UnixDatagram::unbound()?;
        Ok(Notifier {
            target: Some(Arc::new(Target {
                socket,
                addr,
                warned: AtomicBool::new(false),
            })),
            watchdog: env.watchdog,
        })
    }

    /// Whether a service manager listens.
    pub fn is_active(&self) -> bool {
        self.target.is_some()
    }

    /// The watchdog timeout the manager set for us, if any: ping at half of it.
    pub fn watchdog_timeout(&self) -> Option<Duration> {
        self.watchdog
    }

    /// Sends `state` (newline-separated `KEY=VALUE` assignments).
    ///
    /// # Errors
    /// The datagram could not be sent.
    pub fn notify(&self, state: &str) -> io::Result<()> {
        match &self.target {
            Some(t) => t.socket.send_to_addr(state.as_bytes(), &t.addr).map(drop),
            None => Ok(()),
        }
    }

    /// Start-up is complete (`READY=1`), with a status line for `systemctl status`.
    pub fn ready(&self, status: &str) {
        self.send_logged(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// Shutting down (`STOPPING=1`).
    pub fn stopping(&self) {
        self.send_logged("STOPPING=1\nSTATUS=stopping");
    }

    /// Alive (`WATCHDOG=1`).
    pub fn watchdog(&self) {
        self.send_logged("WATCHDOG=1");
    }

    fn send_logged(&self, state: &str) {
        let Err(e) = self.notify(state) else {
            return;
        };
        let first = self
            .target
            .as_ref()
            .is_some_and(|t| !t.warned.swap(true, Ordering::Relaxed));
        if first {
            tracing::warn!("notifying the service manager ({state:?}): {e}");
        } else {
            tracing::debug!("notifying the service manager ({state:?}): {e}");
        }
    }
}

/// `text` with no newline (which would end the assignment).
fn one_line(text: &str) -> String {
    text.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn parse(vars: &[(&str, &str)], pid: u32) -> NotifyEnv {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        NotifyEnv::parse(|k| vars.get(k).map(OsString::from), pid)
    }

    #[test]
    fn nothing_outside_systemd() {
        let env = parse(&[("WATCHDOG_USEC", "1000000")], 7);
        assert_eq!(env.socket, None);
        assert_eq!(env.watchdog, None, "nowhere to send pings to");
    }

    #[test]
    fn paths_and_abstract_names() {
        let env = parse(&[("NOTIFY_SOCKET", "/run/systemd/notify")], 7);
        assert_eq!(
            env.socket,
            Some(NotifyAddr::Path("/run/systemd/notify".into()))
        );
        let env = parse(&[("NOTIFY_SOCKET", "@xvs/notify")], 7);
        assert_eq!(
            env.socket,
            Some(NotifyAddr::Abstract(b"xvs/notify".to_vec()))
        );
        let env = parse(&[("NOTIFY_SOCKET", "vsock:2:1234")], 7);
        assert_eq!(env.socket, None);
    }

    #[test]
    fn the_watchdog_is_ours_only_with_our_pid() {
        let base = [("NOTIFY_SOCKET", "/n"), ("WATCHDOG_USEC", "10000000")];
        assert_eq!(parse(&base, 7).watchdog, Some(Duration::from_secs(10)));
        let mine = [base[0], base[1], ("WATCHDOG_PID", "7")];
        assert_eq!(parse(&mine, 7).watchdog, Some(Duration::from_secs(10)));
        let theirs = [base[0], base[1], ("WATCHDOG_PID", "8")];
        assert_eq!(parse(&theirs, 7).watchdog, None);
        let zero = [base[0], ("WATCHDOG_USEC", "0")];
        assert_eq!(parse(&zero, 7).watchdog, None);
        let junk = [base[0], ("WATCHDOG_USEC", "soon")];
        assert_eq!(parse(&junk, 7).watchdog, None);
    }

    #[test]
    fn datagrams_reach_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("xvs-notify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("notify.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixDatagram::bind(&path).unwrap();
        let env = parse(&[("NOTIFY_SOCKET", path.to_str().unwrap())], 1);
        let notifier = Notifier::new(&env).unwrap();
        notifier.ready("serving\n2 ports");
        notifier.watchdog();
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving 2 ports");
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"WATCHDOG=1");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn datagrams_reach_an_abstract_socket() {
        let name = format!("xvs-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let listener = UnixDatagram::bind_addr(&addr).unwrap();
        let env = parse(&[("NOTIFY_SOCKET", &format!("@{name}"))], 1);
        Notifier::new(&env).unwrap().stopping();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert!(buf[..n].starts_with(b"STOPPING=1"));
    }

    #[test]
    fn a_notifier_without_a_manager_does_nothing() {
        let notifier = Notifier::new(&parse(&[], 1)).unwrap();
        assert!(!notifier.is_active());
        notifier.notify("READY=1").unwrap();
    }
}
