//! The UMEM area and the ownership of its chunks.
//!
//! A UMEM is one mapping cut into equal chunks ("frames"). At any moment each chunk is owned by
//! exactly one party: the kernel (it sits in a fill or TX ring, or in flight) or one holder of a
//! [`Frame`] token. Tokens are minted once per chunk when the area is created and otherwise only
//! by the rings of [`super::ring`] when the kernel hands a chunk back, so they are unique; that
//! uniqueness is what makes [`UmemArea::bytes_mut`] sound.

use std::sync::atomic::{AtomicU16, Ordering};

use super::SyscallError;
use super::mmap::MmapRegion;

const ADDR_BITS: u32 = 48;
const ADDR_MASK: u64 = (1 << ADDR_BITS) - 1;

/// The owned right to read and write one UMEM chunk. Not `Clone`: moving it moves ownership.
///
/// It carries the chunk's base address and the id of the UMEM it belongs to.
#[derive(Debug)]
#[must_use = "dropping a Frame leaks its UMEM chunk"]
pub struct Frame(u64);

impl Frame {
    /// Mints a token. Callers in this module guarantee that no other token for the same chunk
    /// exists.
    pub(super) fn mint(umem: u16, addr: u64) -> Frame {
        Frame((u64::from(umem) << ADDR_BITS) | (addr & ADDR_MASK))
    }

    /// The chunk's base address inside its UMEM.
    pub fn addr(&self) -> u64 {
        self.0 & ADDR_MASK
    }

    /// The id of the UMEM this chunk belongs to.
    pub fn umem(&self) -> u16 {
        (self.0 >> ADDR_BITS) as u16
    }

    /// Gives the token up for a ring: the chunk now belongs to the kernel.
    pub(super) fn into_addr(self) -> u64 {
        self.addr()
    }
}

/// A packet in a UMEM chunk: the chunk, and where in it the packet's bytes are.
#[derive(Debug)]
pub struct Packet {
    /// The chunk holding the packet.
    pub frame: Frame,
    /// Offset of the first byte of the packet inside the chunk.
    pub offset: u32,
    /// Length of the packet.
    pub len: u32,
}

/// An anonymous mapping registered (or to be registered) with the kernel as a UMEM.
#[derive(Debug)]
pub struct UmemArea {
    id: u16,
    region: MmapRegion,
    frame_size: u32,
    frame_count: u32,
    frame_shift: u32,
    /// For each chunk, the tag of the socket whose ring holds it, or [`USER_TAG`] while a token
    /// holder owns it. Written only by the chunk's current owner; read to reclaim the chunks of
    /// a released socket.
    tags: Box<[AtomicU16]>,
}

/// The tag of chunks that a [`Frame`] holder owns.
pub(crate) const USER_TAG: u16 = 0;

impl UmemArea {
    /// Maps `frame_count` chunks of `frame_size` bytes and returns the area with one token per
    /// chunk.
    ///
    /// # Errors
    /// The mapping fails (out of memory or over `RLIMIT_MEMLOCK` with `MAP_POPULATE`).
    ///
    /// # Panics
    /// If `frame_size` is not a power of two of at least 2048 bytes.
    pub fn new(
        id: u16,
        frame_count: u32,
        frame_size: u32,
    ) -> Result<(UmemArea, Vec<Frame>), SyscallError> {
        assert!(frame_size.is_power_of_two() && frame_size >= 2048);
        let len = frame_count as usize * frame_size as usize;
        let region = MmapRegion::anonymous(len)?;
        let frames = (0..u64::from(frame_count))
            .map(|i| Frame::mint(id, i * u64::from(frame_size)))
            .collect();
        let tags = (0..frame_count).map(|_| AtomicU16::new(USER_TAG)).collect();
        Ok((
            UmemArea {
                id,
                region,
                frame_size,
                frame_count,
                frame_shift: frame_size.trailing_zeros(),
                tags,
            },
            frames,
        ))
    }

    /// The id that this area's frames carry.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The size of one chunk.
    pub fn frame_size(&self) -> u32 {
        self.frame_size
    }

    /// The number of chunks.
    pub fn frame_count(&self) -> u32 {
        self.frame_count
    }

    /// Records that `frame` is about to be lent to the socket tagged `tag`.
    pub(super) fn set_tag(&self, frame: &Frame, tag: u16) {
        let index = self.chunk_offset(frame) >> self.frame_shift;
        self.tags[index].store(tag, Ordering::Relaxed);
    }

    /// Turns an address the kernel returned (from an RX or completion ring) back into the token
    /// of its chunk.
    ///
    /// # Panics
    /// If the address lies outside the area: the kernel only returns addresses we gave it.
    pub(super) fn take_back(&self, addr: u64) -> Frame {
        let base = addr & !u64::from(self.frame_size - 1);
        let index = (base >> self.frame_shift) as usize;
        assert!(
            index < self.tags.len(),
            "kernel returned a foreign UMEM address"
        );
        self.tags[index].store(USER_TAG, Ordering::Relaxed);
        Frame::mint(self.id, base)
    }

    /// Mints the tokens of every chunk still tagged `tag`.
    ///
    /// Only sound once the socket that used `tag` is released, so that neither the kernel nor
    /// its rings can hand those chunks out again; [`super::xsk::XskSocket::close`] is the only
    /// caller.
    pub(super) fn reclaim(&self, tag: u16) -> Vec<Frame> {
        debug_assert_ne!(tag, USER_TAG);
        let mut frames = Vec::new();
        for (index, owner) in self.tags.iter().enumerate() {
            if owner.load(Ordering::Relaxed) == tag {
                owner.store(USER_TAG, Ordering::Relaxed);
                frames.push(Frame::mint(self.id, (index as u64) << self.frame_shift));
            }
        }
        frames
    }

    pub(crate) fn base(&self) -> *mut u8 {
        self.region.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.region.len()
    }

    fn chunk_offset(&self, frame: &Frame) -> usize {
        assert_eq!(frame.umem(), self.id, "frame of another UMEM");
        let addr = frame.addr() as usize;
        debug_assert!(addr + self.frame_size as usize <= self.region.len());
        addr
    }

    /// Hints the CPU to start loading the cache line at `offset` of `frame`'s chunk (the first
    /// bytes of a received packet, written by another CPU), so that parsing it later does not
    /// stall. Does nothing on CPUs without a prefetch hint.
    ///
    /// # Panics
    /// If the frame belongs to another UMEM.
    #[inline]
    pub fn prefetch(&self, frame: &Frame, offset: u32) {
        let at = self.chunk_offset(frame) + (offset as usize).min(self.frame_size as usize - 1);
        #[cfg(target_arch = "x86_64")]
        {
            use core::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            // SAFETY: `at` is inside the mapping; a prefetch never faults and changes nothing
            // but the cache, and SSE (which has it) is part of the x86_64 baseline.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(self.region.as_ptr().add(at).cast::<i8>()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = at;
    }

    /// The whole chunk `frame` owns. The slice borrows the token too, so the frame cannot be
    /// written or given away while it is read.
    ///
    /// # Panics
    /// If the frame belongs to another UMEM.
    pub fn bytes<'a>(&'a self, frame: &'a Frame) -> &'a [u8] {
        let offset = self.chunk_offset(frame);
        // SAFETY: offset..offset+frame_size lies in the mapping (tokens are only minted for
        // chunk bases of this area). The token is borrowed, so no `&mut` to this chunk can be
        // alive; the kernel does not touch chunks that a token holder owns.
        unsafe {
            std::slice::from_raw_parts(self.region.as_ptr().add(offset), self.frame_size as usize)
        }
    }

    /// The whole chunk `frame` owns, writable.
    ///
    /// # Panics
    /// If the frame belongs to another UMEM.
    pub fn bytes_mut<'a>(&'a self, frame: &'a mut Frame) -> &'a mut [u8] {
        let offset = self.chunk_offset(frame);
        // SAFETY: as in `bytes`; the token is borrowed mutably and tokens are unique per chunk,
        // so this is the only reference to the chunk's bytes.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.region.as_ptr().add(offset),
                self.frame_size as usize,
            )
        }
    }
}
