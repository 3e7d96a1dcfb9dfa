//! The saved state: the desired state in `DIR/state.json`, written before a change is
//! acknowledged, read back at start.
//!
//! A write goes to `state.json.tmp`, is synced, renamed over `state.json`, and the directory
//! is synced: a crash at any point leaves the old file or the new one, never a torn one. One
//! daemon owns a directory at a time: it holds an exclusive lock on `DIR/lock` for its life.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use xvs_proto::state::DesiredState;

/// The default state directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/xvs";

const FILE: &str = "state.json";

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
}
