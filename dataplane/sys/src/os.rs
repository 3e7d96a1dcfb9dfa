//! Threads, CPUs, waiting, time: `sched_setaffinity`, `poll`, `eventfd`, `clock_gettime`,
//! `tgkill`.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use super::{SyscallError, cvt, cvt_long};

/// Pins the calling thread to one CPU.
///
/// # Errors
/// EINVAL when the CPU does not exist or is not allowed.
pub fn pin_current_thread(cpu: usize) -> Result<(), SyscallError> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(SyscallError {
            call: "sched_setaffinity",
            io_error: std::io::Error::from_raw_os_error(libc::EINVAL),
        });
    }
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: cpu < CPU_SETSIZE, checked above.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let ret = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) };
    cvt(ret, "sched_setaffinity").map(drop)
}

/// The CPUs this process may run on.
///
/// # Errors
/// `sched_getaffinity` fails.
pub fn allowed_cpus() -> Result<Vec<usize>, SyscallError> {
    // SAFETY: all-zero is a valid empty cpu_set_t.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is writable and of the size passed.
    let ret = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    cvt(ret, "sched_getaffinity")?;
    Ok((0..libc::CPU_SETSIZE as usize)
        // SAFETY: i < CPU_SETSIZE.
        .filter(|&i| unsafe { libc::CPU_ISSET(i, &set) })
        .collect())
}

/// `CLOCK_MONOTONIC` in nanoseconds: the clock every process of the machine reads alike,
/// whatever its network namespace, so that one process can time-stamp a packet and another
/// measure its delay.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a live, writable timespec; CLOCK_MONOTONIC always exists, so the call
    // cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Sends `signal` to thread `tid` of this process (`tgkill`). A blocking system call in that
/// thread that checks for signals, such as a long `BPF_PROG_TEST_RUN`, then fails with EINTR
/// once the signal's handler has run; the process must have a handler installed for it, or
/// the default action (for most signals, ending the process) applies.
///
/// # Errors
/// ESRCH when the thread has exited, EINVAL for a bad signal number.
pub fn signal_thread(tid: i32, signal: i32) -> Result<(), SyscallError> {
    let pid = std::process::id() as libc::pid_t;
    // SAFETY: tgkill takes no pointers; the kernel checks the ids and the signal number.
    let ret = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal) };
    cvt_long(ret, "tgkill").map(drop)
}

/// The kernel id of the calling thread.
pub fn gettid() -> i32 {
    // SAFETY: gettid has no preconditions and cannot fail.
    unsafe { libc::gettid() }
}

/// Waits until one of `fds` is readable (or has an error), or `timeout_ms` passes. Returns,
/// for each fd, whether it is ready, and whether it reported an error or hang-up.
///
/// # Errors
/// `poll` fails with anything but EINTR (which counts as a timeout).
pub fn poll_readable(
    fds: &[BorrowedFd<'_>],
    ready: &mut Vec<(bool, bool)>,
    timeout_ms: i32,
) -> Result<usize, SyscallError> {
    let mut pollfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: pollfds is a valid array of nfds pollfd structs that outlives the call.
    let ret = unsafe {
        libc::poll(
            pollfds.as_mut_ptr(),
            pollfds.len() as libc::nfds_t,
            timeout_ms,
        )
    };
    ready.clear();
    if ret < 0 {
        let err = SyscallError::last("poll");
        if err.errno() == Some(libc::EINTR) {
            ready.extend(pollfds.iter().map(|_| (false, false)));
            return Ok(0);
        }
        return Err(err);
    }
    ready.extend(pollfds.iter().map(|p| {
        (
            p.revents & libc::POLLIN != 0,
            p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
        )
    }));
    Ok(ret as usize)
}

/// An eventfd: a counter another thread bumps to wake a sleeper in `poll`.
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    /// Creates a non-blocking eventfd.
    ///
    /// # Errors
    /// `eventfd` fails (out of fds).
    pub fn new() -> Result<EventFd, SyscallError> {
        // SAFETY: eventfd has no memory preconditions; we check the result.
        let raw = cvt(
            unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) },
            "eventfd",
        )?;
        // SAFETY: a fresh fd that nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(raw) }))
    }

    /// Wakes the sleeper.
    pub fn notify(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 readable bytes from `one`; a full counter (EAGAIN) already wakes.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Resets the counter after a wakeup.
    pub fn drain(&self) {
        let mut value: u64 = 0;
        // SAFETY: reads 8 bytes into `value`; EAGAIN when already zero is fine.
        unsafe { libc::read(self.0.as_raw_fd(), (&mut value as *mut u64).cast(), 8) };
    }
}

impl AsFd for EventFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_ns_moves_forward_with_instant() {
        let a = monotonic_ns();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = monotonic_ns();
        assert!(b >= a + 2_000_000, "{a} -> {b}");
    }

    #[test]
    fn signal_thread_reaches_only_live_threads() {
        // Signal 0 checks that the thread exists without sending anything.
        assert!(signal_thread(gettid(), 0).is_ok());
        let tid = std::thread::spawn(gettid).join().unwrap();
        let err = signal_thread(tid, 0).unwrap_err();
        assert_eq!(err.errno(), Some(libc::ESRCH));
    }
}
