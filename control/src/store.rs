//! The saved state: the desired state in `DIR/state.json`, written before a change is
//! acknowledged, read back at start.
//!
//! A write goes to `state.json.tmp`, is synced, renamed over `state.json`, and the directory
//! is synced: a crash at any point leaves the old file or the new one, never a torn one. One
//! daemon owns a directory at a time: it holds an exclusive lock on `DIR/lock` for its life.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use flowtable::conntrack::{ConnKey, SavedConn};
use xvs_proto::state::DesiredState;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xvs";

const FILE: &str = "state.json";
/// The connections a daemon handing over leaves its successor.
const CONNECTIONS: &str = "connections.handover.json";
/// A handover's connections older than this are not taken (a handover nobody took at once).
const CONNECTIONS_MAX_AGE_MS: u64 = 60_000;

/// Why the saved state cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory or a file in it cannot be made, read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the kernel said.
        #[source]
        source: io::Error,
    },
    /// Another daemon holds the directory.
    #[error("{dir} is in use by another xvsd (its lock file {dir}/lock is held)")]
    Locked {
        /// The state directory.
        dir: PathBuf,
    },
    /// The file is not a state this daemon reads.
    #[error("{path}: {message} (start with --reset-state to set it aside and start empty)")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}

/// The bpffs directory where the daemon of state directory `dir` pins its links for a
/// planned restart: one per state directory, so that only its own successor adopts them.
pub fn handover_dir(dir: &Path) -> PathBuf {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_owned());
    // FNV-1a: small, stable across builds.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0x811c_9dc5u32, |h, &b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
    Path::new(dataplane::switch::BPFFS).join(format!("xvs-handover-{hash:08x}"))
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A state directory this daemon owns.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    /// Held for the daemon's life: the lock is the file's, released when it closes.
    _lock: File,
}

impl Store {
    /// Opens (making it if needed) and locks `dir`.
    ///
    /// # Errors
    /// The directory cannot be made, or another daemon holds it.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        fs::create_dir_all(dir).map_err(io_error(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_error(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_owned(),
                });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_error(&lock_path)(e)),
        }
        Ok(Store {
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where this directory's daemon pins its links for a planned restart (see
    /// [`handover_dir`]).
    pub fn handover_dir(&self) -> PathBuf {
        handover_dir(&self.dir)
    }

    /// The state file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// The saved state, or `None` when there is none yet.
    ///
    /// # Errors
    /// The file cannot be read or is not a state; the file is left as it is.
    pub fn load(&self) -> Result<Option<DesiredState>, StoreError> {
        let path = self.path();
        let text = match fs::read(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(&path)(e)),
        };
        serde_json::from_slice(&text)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Sets the saved state aside as `state.json.bad-<unix time>`; returns where it went, or
    /// `None` when there was none.
    ///
    /// # Errors
    /// The rename fails.
    pub fn set_aside(&self) -> Result<Option<PathBuf>, StoreError> {
        let path = self.path();
        if !path.exists() {
            return Ok(None);
        }
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let aside = self.dir.join(format!("{FILE}.bad-{secs}"));
        fs::rename(&path, &aside).map_err(io_error(&path))?;
        Ok(Some(aside))
    }

    /// Leaves `connections` (as of now) for the successor of a planned restart.
    ///
    /// # Errors
    /// The file cannot be written.
    pub fn save_connections(&self, connections: &[SavedConn]) -> Result<(), StoreError> {
        let file = HandedOver {
            written_ms: unix_ms(),
            connections: connections.iter().map(ConnRecord::from).collect(),
        };
        let text = serde_json::to_vec(&file).expect("connections serialize");
        let tmp = self.dir.join(format!("{CONNECTIONS}.tmp"));
        fs::write(&tmp, &text).map_err(io_error(&tmp))?;
        let path = self.dir.join(CONNECTIONS);
        fs::rename(&tmp, &path).map_err(io_error(&path))
    }

    /// Takes (and removes) the connections a predecessor left, their timeouts shortened by
    /// the time since; nothing if there are none, if they are older than a minute, or if the
    /// file does not read (said in the log: connections are then picked up by their next
    /// segments instead).
    pub fn take_connections(&self) -> Vec<SavedConn> {
        let path = self.dir.join(CONNECTIONS);
        let Ok(text) = fs::read(&path) else {
            return Vec::new();
        };
        let _ = fs::remove_file(&path);
        let file: HandedOver = match serde_json::from_slice(&text) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!("{}: not taken: {e}", path.display());
                return Vec::new();
            }
        };
        let age_ms = unix_ms().saturating_sub(file.written_ms);
        if age_ms > CONNECTIONS_MAX_AGE_MS {
            tracing::info!(age_ms, "{}: too old, not taken", path.display());
            return Vec::new();
        }
        file.connections
            .iter()
            .filter_map(|c| c.to_saved(age_ms * 1_000_000))
            .collect()
    }

    /// Saves `state`: when this returns, the file on disk is `state` even after a crash.
    ///
    /// # Errors
    /// A write, sync or rename fails; the old file is then still whole.
    pub fn save(&self, state: &DesiredState) -> Result<(), StoreError> {
        let mut text = serde_json::to_vec_pretty(state).expect("a state serializes");
        text.push(b'\n');
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let mut file = File::create(&tmp).map_err(io_error(&tmp))?;
        file.write_all(&text).map_err(io_error(&tmp))?;
        file.sync_all().map_err(io_error(&tmp))?;
        drop(file);
        let path = self.path();
        fs::rename(&tmp, &path).map_err(io_error(&path))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(io_error(&self.dir))
    }
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The connections file of a handover.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct HandedOver {
    /// When it was written (ms since the Unix epoch).
    written_ms: u64,
    connections: Vec<ConnRecord>,
}

/// One connection in the file.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ConnRecord {
    zone: u16,
    proto: u8,
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    icmp_id: u16,
    seen_reply: bool,
    mark: u32,
    remaining_ns: u64,
}

impl From<&SavedConn> for ConnRecord {
    fn from(c: &SavedConn) -> ConnRecord {
        ConnRecord {
            zone: c.key.zone,
            proto: c.key.proto,
            src: c.key.src_ip(),
            dst: c.key.dst_ip(),
            src_port: c.key.src_port,
            dst_port: c.key.dst_port,
            icmp_id: c.key.icmp_id,
            seen_reply: c.seen_reply,
            mark: c.mark,
            remaining_ns: c.remaining_ns,
        }
    }
}

impl ConnRecord {
    /// The connection, `elapsed_ns` later; `None` if it timed out meanwhile or its addresses
    /// are of two families.
    fn to_saved(&self, elapsed_ns: u64) -> Option<SavedConn> {
        let bits = |ip: IpAddr| match ip {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        if self.src.is_ipv6() != self.dst.is_ipv6() {
            return None;
        }
        let remaining_ns = self
            .remaining_ns
            .checked_sub(elapsed_ns)
            .filter(|&r| r > 0)?;
        Some(SavedConn {
            key: ConnKey {
                zone: self.zone,
                ipv6: self.src.is_ipv6(),
                proto: self.proto,
                src: bits(self.src),
                dst: bits(self.dst),
                src_port: self.src_port,
                dst_port: self.dst_port,
                icmp_id: self.icmp_id,
            },
            seen_reply: self.seen_reply,
            mark: self.mark,
            remaining_ns,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use xvs_proto::state::Port;

    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xvs-store-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_saved_state_loads_back_and_a_second_owner_is_refused() {
        let dir = temp_dir("roundtrip");
        let store = Store::open(&dir).unwrap();
        assert_eq!(store.load().unwrap(), None, "no file yet");
        let state = DesiredState {
            ports: BTreeMap::from([("veth1".to_owned(), Port::default())]),
            fast_path: true,
            ..DesiredState::default()
        };
        store.save(&state).unwrap();
        assert_eq!(store.load().unwrap(), Some(state));
        assert!(!dir.join("state.json.tmp").exists());
        assert!(matches!(Store::open(&dir), Err(StoreError::Locked { .. })));
        drop(store);
        Store::open(&dir).expect("the lock goes with its owner");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_corrupt_file_is_named_and_kept_until_set_aside() {
        let dir = temp_dir("corrupt");
        let store = Store::open(&dir).unwrap();
        fs::write(store.path(), b"{\"ports\": {\"veth1\": ").unwrap();
        let err = store.load().unwrap_err().to_string();
        assert!(err.contains("state.json"), "{err}");
        assert!(err.contains("EOF"), "{err}");
        assert_eq!(fs::read(store.path()).unwrap(), b"{\"ports\": {\"veth1\": ");
        let aside = store.set_aside().unwrap().unwrap();
        assert!(
            aside
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("state.json.bad-")
        );
        assert_eq!(fs::read(&aside).unwrap(), b"{\"ports\": {\"veth1\": ");
        assert_eq!(store.load().unwrap(), None);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn handed_over_connections_are_taken_once_and_only_when_fresh() {
        let dir = temp_dir("connections");
        let store = Store::open(&dir).unwrap();
        let conn = SavedConn {
            key: ConnKey {
                zone: 3,
                ipv6: false,
                proto: 6,
                src: 0x0a00_0001,
                dst: 0x0a00_0002,
                src_port: 40000,
                dst_port: 80,
                icmp_id: 0,
            },
            seen_reply: true,
            mark: 7,
            remaining_ns: 3_600_000_000_000,
        };
        let v6 = SavedConn {
            key: ConnKey {
                ipv6: true,
                proto: 17,
                src: 0xfd00 << 112 | 1,
                dst: 0xfd00 << 112 | 2,
                ..conn.key
            },
            ..conn
        };
        assert!(store.take_connections().is_empty(), "none left yet");
        store.save_connections(&[conn, v6]).unwrap();
        let taken = store.take_connections();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].key, conn.key);
        assert_eq!(taken[1].key, v6.key);
        assert!(taken[0].remaining_ns <= conn.remaining_ns);
        assert_eq!((taken[0].mark, taken[0].seen_reply), (7, true));
        assert!(store.take_connections().is_empty(), "taken once");
        // Too old: a handover nobody took at once.
        let stale = br#"{"written_ms":1000,"connections":[]}"#;
        fs::write(dir.join(CONNECTIONS), stale).unwrap();
        assert!(store.take_connections().is_empty());
        // Not JSON: nothing taken, nothing kept.
        fs::write(dir.join(CONNECTIONS), b"{").unwrap();
        assert!(store.take_connections().is_empty());
        assert!(!dir.join(CONNECTIONS).exists());
        fs::remove_dir_all(&dir).unwrap();
    }
}
