//! The AF_XDP backend: a socket bound to one queue of one interface, its four rings in a
//! shared UMEM.

use std::os::fd::BorrowedFd;

use xvs_sys::frame::{Frame, Packet};
use xvs_sys::xsk::{KickError, XskRings, XskSocket};

use super::{Flushed, QueueBackend};

/// Kicks per flush at most (copy mode sends 32 descriptors per kick).
const MAX_KICKS: u32 = 64;

/// An AF_XDP socket, owned by the worker that serves its queue.
#[derive(Debug)]
pub(crate) struct AfXdpQueue {
    socket: XskSocket,
    rings: XskRings,
}

impl AfXdpQueue {
    pub(crate) fn new(socket: XskSocket, rings: XskRings) -> AfXdpQueue {
        assert!(rings.is_of(&socket), "rings of another socket");
        AfXdpQueue { socket, rings }
    }
}

impl QueueBackend for AfXdpQueue {
    fn receive(&mut self, batch: &mut Vec<Packet>, max: u32) -> u32 {
        self.rings.rx.receive(batch, max)
    }

    fn send(&mut self, batch: &mut Vec<Packet>) -> u32 {
        self.rings.tx.send(batch)
    }

    /// Kicks the TX ring until the kernel has taken everything (copy mode sends 32 per kick).
    fn flush(&mut self) -> Flushed {
        let mut flushed = Flushed::default();
        while flushed.kicks < MAX_KICKS && self.rings.tx.outstanding() > 0 {
            flushed.kicks += 1;
            match self.rings.kick_tx() {
                Ok(()) | Err(KickError::Again) => {}
                Err(KickError::Down(errno)) => {
                    flushed.down = Some(errno);
                    break;
                }
                Err(KickError::Other(errno)) => {
                    tracing::debug!(errno, "tx kick failed");
                    break;
                }
            }
        }
        flushed
    }

    fn has_pending(&self) -> bool {
        self.rings.tx.outstanding() > 0
    }

    fn reap(&mut self, free: &mut Vec<Frame>, max: u32) -> u32 {
        self.rings.completion.reap(free, max)
    }

    fn lent(&self) -> u32 {
        self.rings.fill.outstanding()
    }

    fn refill(&mut self, free: &mut Vec<Frame>, max: u32) -> u32 {
        let n = self.rings.fill.fill(free, max);
        if self.rings.fill.needs_wakeup() {
            self.rings.kick_rx();
        }
        n
    }

    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.rings.as_fd()
    }

    fn close(self: Box<Self>) -> Vec<Frame> {
        let AfXdpQueue { socket, rings } = *self;
        socket.close(rings)
    }
}
