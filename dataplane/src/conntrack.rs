//! The switch's connection tracker, shared by its workers: the two directions of a
//! connection may arrive at different workers (each owns its ports' queues), so every
//! worker's pipeline looks connections up in one table behind a lock. Only packets that
//! need the tracker take the lock: those decided afresh (new connections, handshakes and
//! teardowns, invalid ones), never cache or kernel hits.

use std::sync::{Arc, Mutex, MutexGuard};

use flowtable::conntrack::{ConnKey, Conntrack, CtConfig, CtPacket, CtStats, CtVerdict, SavedConn};
use flowtable::pipeline::ConnTable;

/// A [`Conntrack`] every worker of a switch uses.
#[derive(Debug, Clone)]
pub struct SharedConntrack(Arc<Mutex<Conntrack>>);

impl SharedConntrack {
    /// An empty table.
    pub fn new(config: CtConfig) -> SharedConntrack {
        SharedConntrack(Arc::new(Mutex::new(Conntrack::new(config))))
    }

    fn lock(&self) -> MutexGuard<'_, Conntrack> {
        // A worker that panicked holding the lock left a whole table (every method leaves
        // it consistent between calls): keep using it.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The connections worth handing to a successor at `now` ([`Conntrack::save`]).
    pub fn save(&self, now: u64) -> Vec<SavedConn> {
        self.lock().save(now)
    }

    /// Takes connections a predecessor handed over ([`Conntrack::restore`]).
    pub fn restore(&self, saved: &[SavedConn], now: u64) -> usize {
        self.lock().restore(saved, now)
    }

    /// Forgets the connections of `zone` (every zone when `None`); returns how many went.
    /// The decisions that used them go stale when the workers next expire connections.
    pub fn flush(&self, zone: Option<u16>) -> usize {
        let mut gone = Vec::new();
        self.lock().flush(zone, &mut gone);
        gone.len()
    }
}

impl ConnTable for SharedConntrack {
    fn process(
        &mut self,
        packet: &CtPacket,
        commit: bool,
        set_mark: Option<(u32, u32)>,
        now: u64,
    ) -> CtVerdict {
        self.lock().process(packet, commit, set_mark, now)
    }

    fn refresh(&mut self, conn: &ConnKey, now: u64) {
        self.lock().refresh(conn, now);
    }

    fn expire(&mut self, now: u64, out: &mut Vec<ConnKey>) {
        self.lock().expire(now, out);
    }

    fn stats(&self) -> CtStats {
        self.lock().stats()
    }

    fn snapshot(&self) -> Conntrack {
        self.lock().clone()
    }
}
