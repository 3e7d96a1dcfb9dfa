//! Port backends: how one queue's frames get in and out of the switch.
//!
//! A worker drives every queue through [`QueueBackend`], one trait for one queue's I/O:
//! receive a batch, send a batch, push what was sent to the device, take back the frames the
//! device finished with, lend it frames to receive into, and the fd to sleep on. Frames are
//! always chunks of a shared UMEM, whatever the backend, so a decision moves descriptors.
//!
//! Which port a received frame came in on is not the backend's business: a queue has an
//! [`Ingress`], either one port (an AF_XDP socket bound to that port's queue) or the frame
//! itself (a device that carries the traffic of many ports, each frame prefixed with its port;
//! see `flowtable::wire::upcall`), or none (a queue that only sends).
//!
//! Backends: `afxdp` (an AF_XDP socket). A new kind of port is a new file here.

use std::fmt;
use std::os::fd::BorrowedFd;

use flowtable::PortId;
use xvs_sys::frame::{Frame, Packet};

pub(crate) mod afxdp;
#[cfg(test)]
pub(crate) mod memory;

/// Where a queue's received frames came in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    /// Every frame came in on this port.
    Port(PortId),
    /// Each frame carries its ingress port in an upcall prefix, which the worker takes off.
    Tagged,
    /// The queue only sends (an AF_XDP socket on a port whose frames a tc program handles).
    None,
}

/// What [`QueueBackend::flush`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flushed {
    /// Wake-ups of the device (syscalls).
    pub kicks: u32,
    /// The device went away (errno): the queue is dead until the control thread removes it.
    pub down: Option<i32>,
}

/// One queue's I/O, as the worker that owns it drives it. Calls never block.
pub trait QueueBackend: fmt::Debug + Send {
    /// Moves up to `max` received packets into `batch`; returns how many.
    fn receive(&mut self, batch: &mut Vec<Packet>, max: u32) -> u32;

    /// Queues packets from the front of `batch` for sending; what did not fit stays in
    /// `batch`. Returns how many were queued.
    fn send(&mut self, batch: &mut Vec<Packet>) -> u32;

    /// Makes the device send what was queued (as far as it takes it now).
    fn flush(&mut self) -> Flushed;

    /// Whether queued packets wait for [`QueueBackend::flush`].
    fn has_pending(&self) -> bool;

    /// Takes back up to `max` frames the device finished sending, into `free`.
    fn reap(&mut self, free: &mut Vec<Frame>, max: u32) -> u32;

    /// Frames lent to the device to receive into.
    fn lent(&self) -> u32;

    /// Lends up to `max` frames from `free` to receive into (and wakes the device if it
    /// waits for them); returns how many.
    fn refill(&mut self, free: &mut Vec<Frame>, max: u32) -> u32;

    /// The fd that becomes readable when packets arrive.
    fn poll_fd(&self) -> BorrowedFd<'_>;

    /// Closes the queue and returns every frame it still held, wherever it was.
    fn close(self: Box<Self>) -> Vec<Frame>;
}
