//! The switch: workers, UMEMs and ports, driven by one control thread.
//!
//! [`Switch`] is the dataplane's public face. It is owned by a single control thread, which
//! calls it to add and remove ports, publish configurations and read counters; every slow
//! syscall (bind, program load, close) happens here, never in a worker. Workers get their
//! sockets, configurations and queries as commands, and a change is acknowledged only after
//! every worker has applied it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use flowtable::conntrack::CtConfig;
use flowtable::{Config, PortId};
use xvs_sys::SyscallError;
use xvs_sys::netlink::generic;

use crate::conntrack::SharedConntrack;
use crate::counters::{MAX_PORTS, PortStats};
use crate::fastpath::{FastPathMaps, FastPort};
use crate::hook::xdp::probe_fast_path as probe_program;
use crate::hook::{HookChoice, HookKind};
use crate::port::Port;
use crate::umem::Umem;
use crate::worker::{Command, TxMap, Worker, WorkerEvent, WorkerSetup, WorkerShared};

mod error;
mod handover;
mod options;
mod ports;
mod stats;
#[cfg(test)]
mod tests;
mod upcall;
mod workers;

pub use error::SwitchError;
use error::memlock_limit;
pub use handover::BPFFS;
pub use options::{DEFAULT_UPCALL, PortOptions, SwitchOptions, default_umem_frames};
pub use stats::{PortCounters, WorkerInfo};
use workers::WorkerHandle;

/// Fewest and most frames a fill ring is given.
const MIN_FILL: u32 = 16;
const MAX_FILL: u32 = 1024;

/// UMEM ids: the copy-mode UMEM and the zero-copy one.
const COPY_UMEM: u16 = 0;
const ZERO_COPY_UMEM: u16 = 1;

/// The switch.
pub struct Switch {
    options: SwitchOptions,
    /// The zero of the pipeline clock that workers and the control thread share.
    clock_zero: Instant,
    workers: Vec<WorkerHandle>,
    events: Receiver<WorkerEvent>,
    umems: Vec<Arc<Umem>>,
    fill_target: Arc<AtomicU32>,
    ports: BTreeMap<PortId, Port>,
    baselines: BTreeMap<PortId, PortStats>,
    config: Arc<Config>,
    tags: BTreeSet<u16>,
    started: Instant,
    /// The fast path's maps, when it is on.
    fast: Option<Arc<FastPathMaps>>,
    /// The configuration epoch the kernel entries must carry.
    config_epoch: u32,
    fast_ports: Vec<Option<FastPort>>,
    /// The upcall device, when ports may have the tc hook.
    upcall: Option<upcall::Upcall>,
    /// Links a predecessor handed over, by interface index, until their ports take them.
    handed_over: BTreeMap<u32, handover::Pinned>,
    /// The connections every worker tracks in.
    conntrack: SharedConntrack,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("workers", &self.workers.len())
            .field("ports", &self.ports.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Switch {
    /// Starts the workers, with no ports.
    ///
    /// # Errors
    /// The UMEM cannot be mapped, or a worker cannot be created.
    pub fn start(options: SwitchOptions, config: Config) -> Result<Switch, SwitchError> {
        if options.workers.is_empty() || options.workers.len() > 64 {
            return Err(SwitchError::Invalid("between 1 and 64 workers".into()));
        }
        if !options.frame_size.is_power_of_two() || options.frame_size < 2048 {
            return Err(SwitchError::Invalid(
                "frame size must be a power of two of at least 2048".into(),
            ));
        }
        if !options.ring_size.is_power_of_two() || options.ring_size < 64 {
            return Err(SwitchError::Invalid(
                "ring size must be a power of two of at least 64".into(),
            ));
        }
        let umem =
            Umem::new(COPY_UMEM, options.umem_frames, options.frame_size).map_err(|source| {
                SwitchError::Umem {
                    frames: options.umem_frames,
                    mib: ((u64::from(options.umem_frames) * u64::from(options.frame_size)) >> 20)
                        as u32,
                    memlock: memlock_limit(),
                    source,
                }
            })?;
        let umems = vec![Arc::new(umem)];
        let fast = if options.fast_path {
            match probe_fast_path() {
                Ok(maps) => Some(Arc::new(maps)),
                Err(e) => {
                    tracing::warn!("fast path unavailable, forwarding in userspace only: {e}");
                    None
                }
            }
        } else {
            None
        };
        let clock_zero = Instant::now();
        let config = Arc::new(config);
        let fill_target = Arc::new(AtomicU32::new(options.ring_size));
        let shared: Vec<Arc<WorkerShared>> = (0..options.workers.len())
            .map(|id| WorkerShared::new(id).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let (events_tx, events) = mpsc::channel();
        let conntrack = SharedConntrack::new(CtConfig::default());
        let mut workers = Vec::new();
        for (id, &cpu) in options.workers.iter().enumerate() {
            let (commands_tx, commands_rx) = mpsc::channel();
            let setup = WorkerSetup {
                cpu,
                busy_poll: options.busy_poll,
                cache_capacity: options.cache_capacity,
                clock_zero,
                umems: umems.clone(),
                fill_target: fill_target.clone(),
                fill_budget: options.umem_frames / (2 * options.workers.len() as u32),
                fast_path: fast.clone(),
                conntrack: Some(conntrack.clone()),
            };
            let worker = Worker::new(
                setup,
                shared[id].clone(),
                shared.clone(),
                config.clone(),
                commands_rx,
                events_tx.clone(),
            );
            let thread = std::thread::Builder::new()
                .name(format!("xvs-worker-{id}"))
                .spawn(move || worker.run())
                .map_err(|io_error| SyscallError {
                    call: "pthread_create",
                    io_error,
                })?;
            workers.push(WorkerHandle {
                shared: shared[id].clone(),
                commands: commands_tx,
                thread: Some(thread),
                cpu,
            });
        }
        let mut switch = Switch {
            options,
            clock_zero,
            workers,
            events,
            umems,
            fill_target,
            ports: BTreeMap::new(),
            baselines: BTreeMap::new(),
            config,
            tags: BTreeSet::new(),
            started: Instant::now(),
            fast,
            config_epoch: 1,
            fast_ports: vec![None; MAX_PORTS],
            upcall: None,
            handed_over: BTreeMap::new(),
            conntrack,
        };
        if let Some(dir) = &switch.options.handover {
            switch.handed_over = handover::pinned_in(dir);
            if !switch.handed_over.is_empty() {
                tracing::info!(
                    links = switch.handed_over.len(),
                    "a predecessor handed over links"
                );
            }
        }
        if switch.options.hook.may_use_tc() {
            match switch.add_upcall() {
                Ok(()) => {}
                // The default falls back to XDP everywhere: one robust dataplane first.
                Err(e) if switch.options.hook == HookChoice::Auto => {
                    tracing::warn!("{e}; every port gets the XDP hook");
                    switch.options.hook = HookChoice::Only(HookKind::Xdp);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(switch)
    }

    /// Whether the in-kernel fast path is on.
    pub fn fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Turns the in-kernel fast path on or off while forwarding: every port's program is
    /// replaced atomically on its live attachment, so no frame meets a detached interface.
    ///
    /// # Errors
    /// The kernel refuses the fast path's program, or a link update or a worker fails.
    pub fn set_fast_path(&mut self, on: bool) -> Result<(), SwitchError> {
        if on == self.fast.is_some() {
            return Ok(());
        }
        let maps = if on {
            Some(Arc::new(probe_fast_path()?))
        } else {
            None
        };
        // Workers first learn of the maps (so that frames the new programs punt are handled
        // with the offloader), then each port switches program.
        for w in &self.workers {
            w.send(Command::SetFastPath(maps.clone()))?;
        }
        self.fast = maps;
        for port in self.ports.values_mut() {
            port.hook.set_fast_path(port.id, self.fast.as_deref())?;
            self.fast_ports[usize::from(port.id)] = match &self.fast {
                Some(maps) => {
                    let ifindex = port.interface.ifindex;
                    let target = Self::accepts_redirects(ifindex)
                        && maps.add_target(port.id, ifindex).is_ok();
                    Some(FastPort {
                        ifindex,
                        target,
                        hook: port.hook.kind(),
                        peer: ports::peer_elsewhere(&port.interface.name),
                        partial_checksums: port.interface.needs_checksum_fix(),
                    })
                }
                None => None,
            };
        }
        self.send_fast_ports()?;
        tracing::info!(on, "fast path switched");
        let config = (*self.config).clone();
        self.publish(config)
    }

    /// Tells the workers how the fast path sees the ports.
    fn send_fast_ports(&self) -> Result<(), SwitchError> {
        if self.fast.is_some() {
            let ports = Arc::new(self.fast_ports.clone());
            for w in &self.workers {
                w.send(Command::SetFastPorts(ports.clone()))?;
            }
        }
        Ok(())
    }

    /// Whether frames may be redirected to `ifindex` in the kernel (for a veth: whether its
    /// peer has an XDP program or GRO on).
    fn accepts_redirects(ifindex: u32) -> bool {
        generic::xdp_features(ifindex).is_ok_and(|f| f & generic::XDP_ACT_NDO_XMIT != 0)
    }

    /// Time since the switch started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Nanoseconds on the clock the workers' pipelines use.
    pub fn now_ns(&self) -> u64 {
        self.clock_zero.elapsed().as_nanos() as u64
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Publishes a new configuration to every worker and returns once all have applied it:
    /// after this, no packet is decided by the old one.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn publish(&mut self, config: Config) -> Result<(), SwitchError> {
        let config = Arc::new(config);
        let mut owners = vec![Vec::new(); MAX_PORTS];
        for port in self.ports.values() {
            for q in &port.queues {
                if !owners[usize::from(port.id)].contains(&q.worker) {
                    owners[usize::from(port.id)].push(q.worker);
                }
            }
        }
        let map = Arc::new(TxMap { owners });
        // Retire every kernel entry before the change is acknowledged: entries decided under
        // the old configuration stop matching at once.
        self.config_epoch = self.config_epoch.wrapping_add(1).max(1);
        if let Some(maps) = &self.fast {
            maps.set_epoch(self.config_epoch)?;
        }
        for w in &self.workers {
            w.send(Command::SetConfig(config.clone(), self.config_epoch))?;
            w.send(Command::SetTxMap(map.clone()))?;
        }
        self.config = config;
        self.barrier()?;
        if let Some(maps) = &self.fast {
            maps.collect_garbage(self.config_epoch);
        }
        Ok(())
    }

    /// Returns once every worker has applied every command sent so far.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn barrier(&self) -> Result<(), SwitchError> {
        workers::barrier(&self.workers)
    }

    /// Stops the workers, closes every socket and detaches every XDP program.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let mut returned = Vec::new();
        for w in &self.workers {
            if let Ok(backends) = w.ask(Command::Stop) {
                returned.extend(backends);
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        // Detach every hook before closing the sockets it steered to.
        self.ports.clear();
        let upcall = self.upcall.take();
        let upcall_name = upcall.map(|u| {
            drop(u.hook);
            u.name
        });
        for (_, backend) in returned {
            drop(backend.close());
        }
        if let Some(name) = upcall_name {
            upcall::remove_link(&name);
        }
    }
}

/// Creates the fast path's maps and checks that the kernel accepts its program.
fn probe_fast_path() -> Result<FastPathMaps, SwitchError> {
    let maps = FastPathMaps::new()?;
    probe_program(&maps)?;
    Ok(maps)
}

impl Drop for Switch {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.thread.is_some()) {
            self.stop();
        }
    }
}
