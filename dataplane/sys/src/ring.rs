//! The single-producer single-consumer rings an AF_XDP socket shares with the kernel.
//!
//! Each ring is a mapping holding a producer index, a consumer index, a flags word and an array
//! of `size` slots (a power of two). Indexes run freely and are masked on access. We own one
//! index of each ring and cache the kernel's, reading it again only when the cached view says
//! the ring is full (producer side) or empty (consumer side), as libxdp does.
//!
//! The typed rings turn addresses into [`Frame`] tokens and back, and keep the UMEM's chunk
//! tags (see [`UmemArea`]'s owner tags) up to date so that a closed socket's chunks can be
//! reclaimed exactly.

use std::marker::PhantomData;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::SyscallError;
use super::frame::{Frame, Packet, UmemArea};
use super::if_xdp::{RingOffset, XdpDesc};
use super::mmap::MmapRegion;

/// The `XDP_RING_NEED_WAKEUP` flag the kernel sets when it wants a syscall to make progress.
const XDP_RING_NEED_WAKEUP: u32 = 1;

/// A mapped ring of `T` slots.
#[derive(Debug)]
struct RingMap<T> {
    map: MmapRegion,
    producer: usize,
    consumer: usize,
    flags: usize,
    descs: usize,
    mask: u32,
    _slot: PhantomData<T>,
}

impl<T: Copy> RingMap<T> {
    fn new(
        fd: BorrowedFd<'_>,
        size: u32,
        offsets: &RingOffset,
        pgoff: u64,
        call: &'static str,
    ) -> Result<Self, SyscallError> {
        debug_assert!(size.is_power_of_two());
        let len = offsets.desc as usize + size as usize * size_of::<T>();
        let map = MmapRegion::socket(fd, len, pgoff, call)?;
        let check = |off: u64, align: usize| {
            assert!(
                (off as usize) < len && (off as usize).is_multiple_of(align),
                "kernel ring offset out of bounds"
            );
            off as usize
        };
        Ok(RingMap {
            producer: check(offsets.producer, align_of::<AtomicU32>()),
            consumer: check(offsets.consumer, align_of::<AtomicU32>()),
            flags: check(offsets.flags, align_of::<AtomicU32>()),
            descs: check(offsets.desc, align_of::<T>()),
            map,
            mask: size - 1,
            _slot: PhantomData,
        })
    }

    fn index(&self, offset: usize) -> &AtomicU32 {
        // SAFETY: `offset` was checked in `new` to lie inside the mapping and to be aligned for
        // an AtomicU32; the kernel only ever accesses these words atomically as well; the
        // reference lives no longer than the mapping, which `self` owns.
        unsafe { &*self.map.as_ptr().add(offset).cast::<AtomicU32>() }
    }

    fn producer(&self) -> &AtomicU32 {
        self.index(self.producer)
    }

    fn consumer(&self) -> &AtomicU32 {
        self.index(self.consumer)
    }

    fn flags(&self) -> &AtomicU32 {
        self.index(self.flags)
    }

    fn slot(&self, index: u32) -> *mut T {
        let i = (index & self.mask) as usize;
        // SAFETY: i <= mask < size, and the mapping holds `size` slots of T from `descs` on
        // (its length was computed that way in `new`).
        unsafe { self.map.as_ptr().add(self.descs).cast::<T>().add(i) }
    }

    /// Reads a slot that the ring protocol gives to us (between our consumer index and the
    /// producer index we loaded with Acquire).
    fn read(&self, index: u32) -> T {
        // SAFETY: the slot is in bounds (see `slot`) and aligned; the protocol guarantees the
        // kernel does not write it until we release it.
        unsafe { self.slot(index).read() }
    }

    /// Writes a slot that the ring protocol gives to us (between our producer index and the
    /// consumer index plus size).
    fn write(&mut self, index: u32, value: T) {
        // SAFETY: the slot is in bounds and aligned; the kernel does not read it until we
        // publish it with a Release store of the producer index.
        unsafe { self.slot(index).write(value) }
    }
}

/// The side of a ring where we produce (fill and TX rings).
#[derive(Debug)]
struct ProdRing<T> {
    ring: RingMap<T>,
    size: u32,
    cached_prod: u32,
    /// The kernel's consumer index plus `size`: we may write up to here.
    cached_cons: u32,
}

impl<T: Copy> ProdRing<T> {
    fn new(ring: RingMap<T>, size: u32) -> Self {
        let cached_prod = ring.producer().load(Ordering::Relaxed);
        let cached_cons = ring.consumer().load(Ordering::Acquire).wrapping_add(size);
        ProdRing {
            ring,
            size,
            cached_prod,
            cached_cons,
        }
    }

    /// How many slots we may fill now, looking at the kernel's index only if fewer than `want`
    /// are known to be free.
    fn free(&mut self, want: u32) -> u32 {
        let free = self.cached_cons.wrapping_sub(self.cached_prod);
        if free >= want {
            return free;
        }
        self.cached_cons = self
            .ring
            .consumer()
            .load(Ordering::Acquire)
            .wrapping_add(self.size);
        self.cached_cons.wrapping_sub(self.cached_prod)
    }

    fn write(&mut self, i: u32, value: T) {
        self.ring.write(self.cached_prod.wrapping_add(i), value);
    }

    fn submit(&mut self, n: u32) {
        self.cached_prod = self.cached_prod.wrapping_add(n);
        self.ring
            .producer()
            .store(self.cached_prod, Ordering::Release);
    }

    /// Entries published but not yet consumed by the kernel.
    fn outstanding(&self) -> u32 {
        self.cached_prod
            .wrapping_sub(self.ring.consumer().load(Ordering::Acquire))
    }

    fn needs_wakeup(&self) -> bool {
        self.ring.flags().load(Ordering::Relaxed) & XDP_RING_NEED_WAKEUP != 0
    }
}

/// The side of a ring where we consume (RX and completion rings).
#[derive(Debug)]
struct ConsRing<T> {
    ring: RingMap<T>,
    cached_cons: u32,
    cached_prod: u32,
}

impl<T: Copy> ConsRing<T> {
    fn new(ring: RingMap<T>) -> Self {
        let cached_cons = ring.consumer().load(Ordering::Relaxed);
        let cached_prod = ring.producer().load(Ordering::Acquire);
        ConsRing {
            ring,
            cached_cons,
            cached_prod,
        }
    }

    /// How many entries are ready, up to `max`.
    fn available(&mut self, max: u32) -> u32 {
        let mut ready = self.cached_prod.wrapping_sub(self.cached_cons);
        if ready == 0 {
            self.cached_prod = self.ring.producer().load(Ordering::Acquire);
            ready = self.cached_prod.wrapping_sub(self.cached_cons);
        }
        ready.min(max)
    }

    fn read(&self, i: u32) -> T {
        self.ring.read(self.cached_cons.wrapping_add(i))
    }

    fn release(&mut self, n: u32) {
        self.cached_cons = self.cached_cons.wrapping_add(n);
        self.ring
            .consumer()
            .store(self.cached_cons, Ordering::Release);
    }
}

/// Where the four rings of one socket live and how big they are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingLayout<'a> {
    pub(crate) fd: BorrowedFd<'a>,
    pub(crate) offset: &'a RingOffset,
    pub(crate) pgoff: u64,
    pub(crate) size: u32,
}

/// The fill ring: empty chunks we lend the kernel to receive into.
#[derive(Debug)]
pub struct FillRing {
    ring: ProdRing<u64>,
    umem: Arc<UmemArea>,
    tag: u16,
}

impl FillRing {
    pub(crate) fn map(
        layout: RingLayout<'_>,
        umem: Arc<UmemArea>,
        tag: u16,
    ) -> Result<Self, SyscallError> {
        let map = RingMap::new(
            layout.fd,
            layout.size,
            layout.offset,
            layout.pgoff,
            "mmap(fill ring)",
        )?;
        Ok(FillRing {
            ring: ProdRing::new(map, layout.size),
            umem,
            tag,
        })
    }

    /// Lends up to `max` chunks from the end of `free` to the kernel; returns how many.
    pub fn fill(&mut self, free: &mut Vec<Frame>, max: u32) -> u32 {
        let want = max.min(free.len() as u32);
        let n = self.ring.free(want).min(want);
        for i in 0..n {
            let frame = free.pop().expect("n <= free.len()");
            self.umem.set_tag(&frame, self.tag);
            self.ring.write(i, frame.into_addr());
        }
        if n > 0 {
            self.ring.submit(n);
        }
        n
    }

    /// Chunks currently lent to the kernel through this ring and not yet taken.
    pub fn outstanding(&self) -> u32 {
        self.ring.outstanding()
    }

    /// Whether the kernel asked for a wakeup to look at this ring (need-wakeup mode).
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}

/// The completion ring: chunks the kernel has finished transmitting.
#[derive(Debug)]
pub struct CompletionRing {
    ring: ConsRing<u64>,
    umem: Arc<UmemArea>,
}

impl CompletionRing {
    pub(crate) fn map(layout: RingLayout<'_>, umem: Arc<UmemArea>) -> Result<Self, SyscallError> {
        let map = RingMap::new(
            layout.fd,
            layout.size,
            layout.offset,
            layout.pgoff,
            "mmap(completion ring)",
        )?;
        Ok(CompletionRing {
            ring: ConsRing::new(map),
            umem,
        })
    }

    /// Takes back up to `max` transmitted chunks into `out`; returns how many.
    pub fn reap(&mut self, out: &mut Vec<Frame>, max: u32) -> u32 {
        let n = self.ring.available(max);
        let area = &self.umem;
        for i in 0..n {
            let frame = area.take_back(self.ring.read(i));
            out.push(frame);
        }
        if n > 0 {
            self.ring.release(n);
        }
        n
    }
}

/// The RX ring: packets the kernel received into chunks of the fill ring.
#[derive(Debug)]
pub struct RxRing {
    ring: ConsRing<XdpDesc>,
    umem: Arc<UmemArea>,
}

impl RxRing {
    pub(crate) fn map(layout: RingLayout<'_>, umem: Arc<UmemArea>) -> Result<Self, SyscallError> {
        let map = RingMap::new(
            layout.fd,
            layout.size,
            layout.offset,
            layout.pgoff,
            "mmap(rx ring)",
        )?;
        Ok(RxRing {
            ring: ConsRing::new(map),
            umem,
        })
    }

    /// Takes up to `max` received packets into `out`; returns how many.
    pub fn receive(&mut self, out: &mut Vec<Packet>, max: u32) -> u32 {
        let n = self.ring.available(max);
        let area = &self.umem;
        for i in 0..n {
            let desc = self.ring.read(i);
            let frame = area.take_back(desc.addr);
            let offset = (desc.addr - frame.addr()) as u32;
            out.push(Packet {
                frame,
                offset,
                len: desc.len,
            });
        }
        if n > 0 {
            self.ring.release(n);
        }
        n
    }
}

/// The TX ring: packets we hand the kernel to send.
#[derive(Debug)]
pub struct TxRing {
    ring: ProdRing<XdpDesc>,
    umem: Arc<UmemArea>,
    tag: u16,
}

impl TxRing {
    pub(crate) fn map(
        layout: RingLayout<'_>,
        umem: Arc<UmemArea>,
        tag: u16,
    ) -> Result<Self, SyscallError> {
        let map = RingMap::new(
            layout.fd,
            layout.size,
            layout.offset,
            layout.pgoff,
            "mmap(tx ring)",
        )?;
        Ok(TxRing {
            ring: ProdRing::new(map, layout.size),
            umem,
            tag,
        })
    }

    /// Queues packets from the front of `batch` for transmission, as many as the ring takes;
    /// the ones that did not fit stay in `batch`. Returns how many were queued.
    ///
    /// # Panics
    /// If a packet lies in another UMEM than this socket's.
    pub fn send(&mut self, batch: &mut Vec<Packet>) -> u32 {
        let want = batch.len() as u32;
        let n = self.ring.free(want).min(want);
        let area = &self.umem;
        for (i, packet) in batch.drain(..n as usize).enumerate() {
            assert_eq!(
                packet.frame.umem(),
                area.id(),
                "TX of a frame of another UMEM"
            );
            area.set_tag(&packet.frame, self.tag);
            let desc = XdpDesc {
                addr: packet.frame.into_addr() + u64::from(packet.offset),
                len: packet.len,
                options: 0,
            };
            self.ring.write(i as u32, desc);
        }
        if n > 0 {
            self.ring.submit(n);
        }
        n
    }

    /// Descriptors queued but not yet taken by the kernel.
    pub fn outstanding(&self) -> u32 {
        self.ring.outstanding()
    }

    /// Whether the kernel asked for a `sendto` to process this ring.
    pub fn needs_wakeup(&self) -> bool {
        self.ring.needs_wakeup()
    }
}
