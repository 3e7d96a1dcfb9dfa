//! Memory mappings: the UMEM's anonymous area and the rings a socket maps from the kernel.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

use super::SyscallError;

/// An owned memory mapping, unmapped on drop.
#[derive(Debug)]
pub(crate) struct MmapRegion {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the region is plain memory owned by this value; sharing the pointer between threads is
// sound because every access through it is mediated by the types of this module, which uphold
// exclusive access per chunk or use atomics.
unsafe impl Send for MmapRegion {}
// SAFETY: as above, `&MmapRegion` only exposes the base pointer and length.
unsafe impl Sync for MmapRegion {}

impl MmapRegion {
    /// Maps `len` bytes of zeroed anonymous private memory, populated up front so that the
    /// kernel can pin it at UMEM registration without faulting pages in.
    pub(crate) fn anonymous(len: usize) -> Result<Self, SyscallError> {
        // SAFETY: an anonymous mapping with a null hint creates fresh memory; we check for
        // MAP_FAILED before using the pointer.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        Self::from_raw(ptr, len, "mmap(umem)")
    }

    /// Maps `len` bytes of a socket's kernel object at page offset `offset` (an AF_XDP ring).
    pub(crate) fn socket(
        fd: BorrowedFd<'_>,
        len: usize,
        offset: u64,
        call: &'static str,
    ) -> Result<Self, SyscallError> {
        let offset = libc::off_t::try_from(offset).map_err(|_| SyscallError {
            call,
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        })?;
        // SAFETY: mapping a kernel-provided object of a valid, open fd; we check MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd.as_raw_fd(),
                offset,
            )
        };
        Self::from_raw(ptr, len, call)
    }

    fn from_raw(
        ptr: *mut libc::c_void,
        len: usize,
        call: &'static str,
    ) -> Result<Self, SyscallError> {
        if ptr == libc::MAP_FAILED {
            return Err(SyscallError::last(call));
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| SyscallError::last(call))?;
        Ok(MmapRegion { ptr, len })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for MmapRegion {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping this value created and nobody else unmaps; every
        // borrow of its memory is tied to `&self`, so none outlives this call.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
