//! The fast path's BPF maps, shared by every port's program: the flow table, the DEVMAP of
//! redirect targets, the state (epoch and coarse clock) and the checksum scratch buffer. All
//! reads and writes go through the layouts of `super::abi`.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU32, Ordering};

use flowtable::PortId;
use xvs_sys::SyscallError;
use xvs_sys::bpf::{Map, MapType};

use super::MAX_FLOWS;
use super::abi::{FastPathState, KEY_LEN, KernelKey, KernelValue, STATE_LEN, VALUE_LEN};

/// Interfaces the DEVMAP holds at most.
const MAX_TARGETS: u32 = 1024;

/// Bytes of the checksum scratch buffer (segments up to one less are finished in the kernel).
pub(crate) const SCRATCH_LEN: usize = 2048;

/// One CPU's copy of a per-CPU value, as `bpf()` lays them out: 8-byte aligned slots.
const VALUE_STRIDE: usize = VALUE_LEN.next_multiple_of(8);

/// The maps every port's program shares.
#[derive(Debug)]
pub struct FastPathMaps {
    flows: Map,
    devmap: Map,
    state: Map,
    /// A per-CPU buffer the program copies TCP/UDP segments into to finish their checksums.
    scratch: Map,
    current_epoch: AtomicU32,
}

impl FastPathMaps {
    /// Creates the maps.
    ///
    /// # Errors
    /// `BPF_MAP_CREATE` fails.
    pub fn new() -> Result<FastPathMaps, SyscallError> {
        let maps = FastPathMaps {
            flows: Map::create(
                MapType::PercpuHash,
                KEY_LEN as u32,
                VALUE_LEN as u32,
                MAX_FLOWS,
                0,
                "xvs_flows",
            )?,
            // An array indexed by port number: cheaper to look up than a hash by ifindex.
            devmap: Map::create(MapType::Devmap, 4, 4, MAX_TARGETS, 0, "xvs_ports")?,
            state: Map::create(MapType::Array, 4, STATE_LEN as u32, 1, 0, "xvs_state")?,
            scratch: Map::create(
                MapType::PercpuArray,
                4,
                SCRATCH_LEN as u32,
                1,
                0,
                "xvs_scratch",
            )?,
            current_epoch: AtomicU32::new(0),
        };
        maps.set_epoch(1)?;
        Ok(maps)
    }

    pub(crate) fn flows_fd(&self) -> BorrowedFd<'_> {
        self.flows.as_fd()
    }

    pub(crate) fn devmap_fd(&self) -> BorrowedFd<'_> {
        self.devmap.as_fd()
    }

    pub(crate) fn state_fd(&self) -> BorrowedFd<'_> {
        self.state.as_fd()
    }

    pub(crate) fn scratch_fd(&self) -> BorrowedFd<'_> {
        self.scratch.as_fd()
    }

    /// Sets the current configuration epoch (entries of any other epoch stop matching) and
    /// the clock entries stamp their last use with.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails.
    pub fn set_epoch(&self, epoch: u32) -> Result<(), SyscallError> {
        self.current_epoch.store(epoch, Ordering::Relaxed);
        self.write_state(epoch)
    }

    /// Advances the clock the program stamps entries with (CLOCK_MONOTONIC, as often as the
    /// control thread ticks: aging and idleness need no finer time, and the program saves a
    /// helper call per packet).
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails.
    pub fn tick_clock(&self) -> Result<(), SyscallError> {
        self.write_state(self.current_epoch.load(Ordering::Relaxed))
    }

    fn write_state(&self, epoch: u32) -> Result<(), SyscallError> {
        let state = FastPathState {
            epoch,
            clock_ns: xvs_sys::os::monotonic_ns(),
            ..FastPathState::default()
        };
        self.state.update(&0u32.to_ne_bytes(), &state.to_bytes(), 0)
    }

    /// Lets the programs redirect to port `port`, interface `ifindex`.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails (the device cannot be a redirect target).
    pub fn add_target(&self, port: PortId, ifindex: u32) -> Result<(), SyscallError> {
        self.devmap
            .update(&u32::from(port).to_ne_bytes(), &ifindex.to_ne_bytes(), 0)
    }

    /// Stops redirects to port `port`.
    pub fn remove_target(&self, port: PortId) {
        let _ = self.devmap.delete(&u32::from(port).to_ne_bytes());
    }

    /// Writes an entry, the same value for every CPU.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails (the map is full).
    pub(crate) fn insert(&self, key: &KernelKey, value: &KernelValue) -> Result<(), SyscallError> {
        let one = value.to_bytes();
        let mut all = vec![0u8; self.flows.value_len()];
        for cpu in all.chunks_exact_mut(VALUE_STRIDE) {
            cpu[..VALUE_LEN].copy_from_slice(&one);
        }
        self.flows.update(&key.to_bytes(), &all, 0)
    }

    /// Deletes an entry, if it is there.
    pub(crate) fn remove(&self, key: &KernelKey) {
        let _ = self.flows.delete(&key.to_bytes());
    }

    /// Every CPU's copy of an entry's value, or `None` if the entry is gone. `buf` is
    /// scratch space kept by the caller.
    fn values(&self, key: &KernelKey, buf: &mut Vec<u8>) -> Option<Vec<KernelValue>> {
        buf.resize(self.flows.value_len(), 0);
        if !self.flows.lookup(&key.to_bytes(), buf).ok()? {
            return None;
        }
        Some(
            buf.chunks_exact(VALUE_STRIDE)
                .map(|cpu| KernelValue::from_bytes(cpu[..VALUE_LEN].try_into().expect("a value")))
                .collect(),
        )
    }

    /// Packets, bytes and the latest last-seen time (CLOCK_MONOTONIC ns, coarse) of an entry,
    /// summed over CPUs; `None` if the entry is gone.
    pub(crate) fn counters(&self, key: &KernelKey, buf: &mut Vec<u8>) -> Option<(u64, u64, u64)> {
        let values = self.values(key, buf)?;
        Some(values.iter().fold((0, 0, 0), |t, v| {
            (t.0 + v.packets, t.1 + v.bytes, t.2.max(v.last_seen))
        }))
    }

    /// Every key in the map (by walking it). A key deleted under the walk makes the kernel
    /// start over, so the walk stops at the map's capacity.
    fn keys(&self) -> Vec<KernelKey> {
        let mut keys = Vec::new();
        let mut last: Option<[u8; KEY_LEN]> = None;
        let mut next = [0u8; KEY_LEN];
        while keys.len() < MAX_FLOWS as usize
            && self
                .flows
                .next_key(last.as_ref().map(|k| &k[..]), &mut next)
                .unwrap_or(false)
        {
            keys.push(KernelKey::from_bytes(&next));
            last = Some(next);
        }
        keys
    }

    /// Deletes every flow entry not of `epoch`; returns how many.
    pub fn collect_garbage(&self, epoch: u32) -> usize {
        let mut buf = Vec::new();
        let stale: Vec<KernelKey> = self
            .keys()
            .into_iter()
            .filter(|k| {
                self.values(k, &mut buf)
                    .and_then(|v| v.first().map(|v| v.epoch != epoch))
                    .unwrap_or(false)
            })
            .collect();
        for k in &stale {
            self.remove(k);
        }
        stale.len()
    }

    /// Number of entries (by walking the map; for diagnostics).
    pub fn count(&self) -> usize {
        self.keys().len()
    }
}
