//! A backend in memory, for tests: the test puts frames on its wire and reads what the worker
//! sent, with no kernel object but the UMEM's anonymous memory (and an eventfd to poll).

use std::collections::VecDeque;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::{Arc, Mutex};

use xvs_sys::frame::{Frame, Packet, UmemArea};
use xvs_sys::os::EventFd;

use super::{Flushed, QueueBackend};

/// Where a received frame starts in its chunk, as AF_XDP leaves room in front.
const HEADROOM: usize = 256;

/// The two directions of a memory queue, shared with the test.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    /// Frames to be received, in order.
    pub(crate) inbound: VecDeque<Vec<u8>>,
    /// Frames the worker sent, in order.
    pub(crate) outbound: Vec<Vec<u8>>,
}

/// A queue whose device is a [`Wire`].
#[derive(Debug)]
pub(crate) struct MemoryQueue {
    area: Arc<UmemArea>,
    wire: Arc<Mutex<Wire>>,
    lent: Vec<Frame>,
    sent: Vec<Frame>,
    ready: EventFd,
}

impl MemoryQueue {
    pub(crate) fn new(area: Arc<UmemArea>) -> (MemoryQueue, Arc<Mutex<Wire>>) {
        let wire = Arc::new(Mutex::new(Wire::default()));
        let queue = MemoryQueue {
            area,
            wire: wire.clone(),
            lent: Vec::new(),
            sent: Vec::new(),
            ready: EventFd::new().expect("eventfd"),
        };
        (queue, wire)
    }
}

impl QueueBackend for MemoryQueue {
    fn receive(&mut self, batch: &mut Vec<Packet>, max: u32) -> u32 {
        let mut wire = self.wire.lock().expect("wire");
        let mut n = 0;
        while n < max && !self.lent.is_empty() {
            let Some(bytes) = wire.inbound.pop_front() else {
                break;
            };
            let mut frame = self.lent.pop().expect("checked");
            let chunk = self.area.bytes_mut(&mut frame);
            chunk[HEADROOM..HEADROOM + bytes.len()].copy_from_slice(&bytes);
            batch.push(Packet {
                frame,
                offset: HEADROOM as u32,
                len: bytes.len() as u32,
            });
            n += 1;
        }
        n
    }

    fn send(&mut self, batch: &mut Vec<Packet>) -> u32 {
        let mut wire = self.wire.lock().expect("wire");
        let n = batch.len() as u32;
        for packet in batch.drain(..) {
            let start = packet.offset as usize;
            let bytes = &self.area.bytes(&packet.frame)[start..start + packet.len as usize];
            wire.outbound.push(bytes.to_vec());
            self.sent.push(packet.frame);
        }
        n
    }

    fn flush(&mut self) -> Flushed {
        Flushed::default()
    }

    fn has_pending(&self) -> bool {
        false
    }

    fn reap(&mut self, free: &mut Vec<Frame>, max: u32) -> u32 {
        let n = self.sent.len().min(max as usize);
        free.extend(self.sent.drain(..n));
        n as u32
    }

    fn lent(&self) -> u32 {
        self.lent.len() as u32
    }

    fn refill(&mut self, free: &mut Vec<Frame>, max: u32) -> u32 {
        let n = free.len().min(max as usize);
        self.lent.extend(free.drain(free.len() - n..));
        n as u32
    }

    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.ready.as_fd()
    }

    fn close(self: Box<Self>) -> Vec<Frame> {
        let MemoryQueue { lent, sent, .. } = *self;
        lent.into_iter().chain(sent).collect()
    }
}
