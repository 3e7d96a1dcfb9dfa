//! Sending: queued packets to their queues' backends, flushes, completions back to the free
//! lists, and frames lent to the receive rings.

use flowtable::edit::FrameBuf;
use flowtable::{EgressTag, PortId};
use xvs_sys::frame::Packet;

use super::{Datapath, WorkerEvent};
use crate::backend::Ingress;
use crate::counters::DropCause;

/// Completions taken per queue per iteration.
const COMPLETION_BATCH: u32 = 512;
/// Fill a receive ring only when it lacks at least this many frames (batches the index
/// update).
const FILL_BATCH: u32 = 32;

impl Datapath {
    pub(super) fn output(&mut self, mut packet: Packet, port: PortId, tag: Option<EgressTag>) {
        if let Some(tag) = tag {
            let area = &self.areas[usize::from(packet.frame.umem())];
            let chunk = area.bytes_mut(&mut packet.frame);
            let applied = FrameBuf::new(chunk, packet.offset as usize, packet.len as usize)
                .and_then(|mut f| f.apply_egress(tag).map(|()| (f.offset(), f.len())));
            match applied {
                Ok((offset, len)) => {
                    packet.offset = offset as u32;
                    packet.len = len as u32;
                }
                Err(_) => {
                    self.drop(port, DropCause::EditFailed, packet);
                    return;
                }
            }
        }
        if let Some(s) = self.tx_local[usize::from(port)] {
            self.enqueue_local(packet, port, usize::from(s));
        } else if let Some(worker) = self.tx_remote[usize::from(port)] {
            match self.peers[worker].handoff.push((packet, port)) {
                Ok(()) => {
                    self.shared.counters.handed_off(1);
                    self.nudge_peers |= 1 << worker;
                }
                Err((packet, port)) => self.drop(port, DropCause::HandoffFull, packet),
            }
        } else {
            self.drop(port, DropCause::NoPort, packet);
        }
    }

    pub(super) fn enqueue_local(&mut self, packet: Packet, port: PortId, s: usize) {
        let umem = self.queues[s].umem;
        if usize::from(packet.frame.umem()) != umem {
            // Crossing between a copy-mode and a zero-copy UMEM: the one copy we must make.
            let copy = self.copy(&packet, umem as u16);
            self.free[usize::from(packet.frame.umem())]
                .frames
                .push(packet.frame);
            match copy {
                Some(copy) => self.queues[s].tx_batch.push(copy),
                None => self.shared.counters.drop(port, DropCause::NoBuffer, 1),
            }
            return;
        }
        self.queues[s].tx_batch.push(packet);
    }

    pub(super) fn transmit(&mut self) {
        for i in 0..self.queues.len() {
            let queue = &mut self.queues[i];
            if !queue.tx_batch.is_empty() {
                if queue.dead {
                    let n = queue.tx_batch.len() as u64;
                    self.shared.counters.drop(queue.port, DropCause::NoPort, n);
                    let frames = queue.tx_batch.drain(..).map(|p| p.frame);
                    self.free[queue.umem].frames.extend(frames);
                    continue;
                }
                let bytes: u64 = queue.tx_batch.iter().map(|p| u64::from(p.len)).sum();
                let queued = queue.backend.send(&mut queue.tx_batch);
                let unsent_bytes: u64 = queue.tx_batch.iter().map(|p| u64::from(p.len)).sum();
                self.shared
                    .counters
                    .tx(queue.port, u64::from(queued), bytes - unsent_bytes);
                if !queue.tx_batch.is_empty() {
                    let n = queue.tx_batch.len() as u64;
                    self.shared
                        .counters
                        .drop(queue.port, DropCause::TxRingFull, n);
                    let frames = queue.tx_batch.drain(..).map(|p| p.frame);
                    self.free[queue.umem].frames.extend(frames);
                }
            }
            if !queue.dead && queue.backend.has_pending() {
                self.flush(i);
            }
        }
        if self.nudge_peers != 0 {
            for (w, peer) in self.peers.iter().enumerate() {
                if self.nudge_peers & (1 << w) != 0 {
                    peer.nudge();
                }
            }
            self.nudge_peers = 0;
        }
    }

    /// Has queue `i`'s device send what was queued; a device gone marks the queue dead and
    /// tells the control thread.
    fn flush(&mut self, i: usize) {
        let queue = &mut self.queues[i];
        let flushed = queue.backend.flush();
        self.shared.counters.kicked(u64::from(flushed.kicks));
        if let Some(errno) = flushed.down {
            queue.dead = true;
            let _ = self.events.send(WorkerEvent::SocketDown {
                port: queue.port,
                queue: queue.queue,
                errno,
            });
            self.reindex();
        }
    }

    pub(super) fn reap(&mut self) {
        for queue in &mut self.queues {
            let free = &mut self.free[queue.umem].frames;
            queue.backend.reap(free, COMPLETION_BATCH);
        }
    }

    /// Before the worker sleeps, lends every receiving ring its share of `budget` (as far as
    /// the ring and the UMEM's pool allow): a burst that wakes the worker then has the most
    /// room while the worker wakes up and works its way to its first refill. Nothing is in
    /// flight while it sleeps, so the frames have no other use meanwhile; once traffic flows,
    /// [`Datapath::refill`] lends no more until a ring is back under the target.
    pub(super) fn top_up(&mut self, budget: u32) {
        let receiving = self
            .queues
            .iter()
            .filter(|q| !q.dead && q.ingress != Ingress::None)
            .count() as u32;
        if receiving == 0 {
            return;
        }
        let share = budget / receiving;
        let mut lent: u32 = self.queues.iter().map(|q| q.backend.lent()).sum();
        for queue in &mut self.queues {
            if queue.dead || queue.ingress == Ingress::None {
                continue;
            }
            let room = share
                .saturating_sub(queue.backend.lent())
                .min(budget.saturating_sub(lent));
            if room < FILL_BATCH {
                continue;
            }
            let free = &mut self.free[queue.umem];
            let missing = (room as usize).saturating_sub(free.frames.len());
            if missing > 0 {
                free.umem.take(&mut free.frames, missing);
            }
            lent += queue.backend.refill(&mut free.frames, room);
        }
    }

    /// Tops receive rings up to `target` frames each, keeping the sum under `budget` (frames
    /// lent to a ring are stuck there until packets arrive, so idle ports must not hoard them);
    /// under the budget every ring still gets [`FILL_BATCH`] frames.
    pub(super) fn refill(&mut self, target: u32, budget: u32) {
        for free in &mut self.free {
            free.balance();
        }
        let mut lent: u32 = self.queues.iter().map(|q| q.backend.lent()).sum();
        for queue in &mut self.queues {
            if queue.dead || queue.ingress == Ingress::None {
                continue;
            }
            let have = queue.backend.lent();
            let room = if lent >= budget {
                FILL_BATCH.saturating_sub(have)
            } else {
                target.saturating_sub(have).min(budget - lent)
            };
            if room >= FILL_BATCH || (have == 0 && room > 0) {
                let free = &mut self.free[queue.umem].frames;
                lent += queue.backend.refill(free, room);
            }
        }
    }
}
