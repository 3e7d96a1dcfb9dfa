//! UMEMs and the frames that circulate through them.
//!
//! A UMEM is shared by every socket of the switch that runs in the same mode (copy or
//! zero-copy; the kernel fixes the mode of a UMEM at its first bind), so that forwarding
//! between two such ports moves a descriptor and copies nothing. Frames start in a lock-free
//! global pool; each worker keeps a local free list and trades batches with the pool when its
//! list runs low or high, which also brings frames home after they crossed to another worker.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use xvs_sys::SyscallError;
use xvs_sys::frame::{Frame, UmemArea};

/// A UMEM: its memory and its pool of free frames.
#[derive(Debug)]
pub struct Umem {
    area: Arc<UmemArea>,
    pool: ArrayQueue<Frame>,
}

impl Umem {
    /// Maps a UMEM of `frame_count` frames of `frame_size` bytes, all free.
    ///
    /// # Errors
    /// The mapping fails.
    pub fn new(id: u16, frame_count: u32, frame_size: u32) -> Result<Umem, SyscallError> {
        let (area, frames) = UmemArea::new(id, frame_count, frame_size)?;
        let pool = ArrayQueue::new(frame_count as usize);
        for frame in frames {
            pool.push(frame).expect("pool sized for every frame");
        }
        Ok(Umem {
            area: Arc::new(area),
            pool,
        })
    }

    /// The memory.
    pub fn area(&self) -> &Arc<UmemArea> {
        &self.area
    }

    /// The id carried by this UMEM's frames.
    pub fn id(&self) -> u16 {
        self.area.id()
    }

    /// Frames currently in the global pool.
    pub fn pooled(&self) -> usize {
        self.pool.len()
    }

    /// Returns frames to the global pool.
    pub fn give(&self, frames: impl IntoIterator<Item = Frame>) {
        for frame in frames {
            // The pool holds every frame of the UMEM, so it cannot be full.
            let _ = self.pool.push(frame);
        }
    }

    /// Takes up to `n` frames from the global pool into `out`; returns how many.
    pub fn take(&self, out: &mut Vec<Frame>, n: usize) -> usize {
        let mut taken = 0;
        while taken < n {
            match self.pool.pop() {
                Some(frame) => {
                    out.push(frame);
                    taken += 1;
                }
                None => break,
            }
        }
        taken
    }
}

/// A worker's free frames of one UMEM.
#[derive(Debug)]
pub(crate) struct FreeList {
    pub(crate) umem: Arc<Umem>,
    pub(crate) frames: Vec<Frame>,
    low: usize,
    high: usize,
}

impl FreeList {
    /// A free list that keeps between `low` and `high` frames, trading the rest with the
    /// UMEM's pool.
    pub(crate) fn new(umem: Arc<Umem>, low: usize, high: usize) -> FreeList {
        FreeList {
            umem,
            frames: Vec::with_capacity(high * 2),
            low,
            high,
        }
    }

    /// Brings the list back between its watermarks.
    pub(crate) fn balance(&mut self) {
        let len = self.frames.len();
        if len < self.low {
            self.umem.take(&mut self.frames, self.high - len);
        } else if len > self.high * 2 {
            let excess = len - self.high;
            self.umem.give(self.frames.drain(len - excess..));
        }
    }

    /// One free frame, from the pool if the list is empty.
    pub(crate) fn pop(&mut self) -> Option<Frame> {
        if self.frames.is_empty() {
            self.umem.take(&mut self.frames, self.high.max(1));
        }
        self.frames.pop()
    }

    /// Gives back every frame (when the worker stops).
    pub(crate) fn release(&mut self) {
        self.umem.give(self.frames.drain(..));
    }
}
