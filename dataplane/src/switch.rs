//! The switch: workers, UMEMs and ports, driven by one control thread.
//!
//! [`Switch`] is the dataplane's public face. It is owned by a single control thread, which
//! calls it to add and remove ports, publish configurations and read counters; every slow
//! syscall (bind, program load, close) happens here, never in a worker. Workers get their
//! sockets, configurations and queries as commands, and a change is acknowledged only after
//! every worker has applied it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use flowtable::{Config, PortConfig, PortId, VlanMode};
use xvs_sys::bpf::{ProgError, XdpLink, XdpMode, XskMap, load_xdp, redirect_to_xsk};
use xvs_sys::xsk::{BindMode, RingSizes, XdpStatistics, XskRings};
use xvs_sys::{SyscallError, netdev, procfs};

use crate::counters::{MAX_PORTS, PortStats, WorkerStats};
use crate::fastpath::{self, FastPathMaps, FastPort};
use crate::port::{Interface, Port, PortInfo, PortQueue, QueueInfo, open_socket};
use crate::umem::Umem;
use crate::worker::{
    Command, FdbEntry, NeighborEntry, QueueSocket, TxMap, Worker, WorkerEvent, WorkerSetup,
    WorkerShared,
};

/// How long the control thread waits for a worker to answer.
const WORKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Fewest and most frames a fill ring is given.
const MIN_FILL: u32 = 16;
const MAX_FILL: u32 = 1024;

/// UMEM ids: the copy-mode UMEM and the zero-copy one.
const COPY_UMEM: u16 = 0;
const ZERO_COPY_UMEM: u16 = 1;

/// How to build a switch.
#[derive(Debug, Clone)]
pub struct SwitchOptions {
    /// One entry per worker: the CPU to pin it to, or `None` to leave it floating.
    pub workers: Vec<Option<usize>>,
    /// Frames per UMEM.
    pub umem_frames: u32,
    /// Bytes per frame (a power of two, at least 2048).
    pub frame_size: u32,
    /// Slots of each ring.
    pub ring_size: u32,
    /// Never sleep, even without traffic.
    pub busy_poll: bool,
    /// Slots of each worker's flow cache.
    pub cache_capacity: usize,
    /// Forward decided flows in the kernel (XDP redirect) where the kernel supports it.
    pub fast_path: bool,
}

/// The default UMEM size in frames: 16384 (32 MiB of 2 KiB frames) where the process may lock
/// that much (it has CAP_IPC_LOCK, which exempts AF_XDP UMEMs from RLIMIT_MEMLOCK, or a high
/// enough limit), else as many as RLIMIT_MEMLOCK allows with room to spare, at least 1024.
pub fn default_umem_frames(frame_size: u32) -> u32 {
    const WANT: u32 = 16384;
    if procfs::Capabilities::effective().is_some_and(|c| c.has(procfs::CAP_IPC_LOCK)) {
        return WANT;
    }
    let soft = procfs::memlock_limit().unwrap_or(0);
    // Leave a quarter for other locked memory of the same user.
    let fits = (soft / 4 * 3 / u64::from(frame_size)).min(u64::from(WANT)) as u32;
    fits.clamp(1024, WANT)
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            workers: vec![None],
            umem_frames: default_umem_frames(2048),
            frame_size: 2048,
            ring_size: 2048,
            busy_poll: false,
            cache_capacity: flowtable::cache::DEFAULT_CAPACITY,
            fast_path: true,
        }
    }
}

/// How to add a port.
#[derive(Debug, Clone, Default)]
pub struct PortOptions {
    /// How many queues to serve (default: every queue the interface has).
    pub queues: Option<u32>,
    /// Force an XDP mode (default: native, else generic).
    pub xdp_mode: Option<XdpMode>,
    /// VLAN mode.
    pub vlan: VlanMode,
}

/// What can go wrong in the switch.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    /// No interface of that name.
    #[error("no such interface: {0}")]
    NoSuchInterface(String),
    /// The interface is a port already.
    #[error("{0} is already a port")]
    PortExists(String),
    /// No port of that name.
    #[error("no such port: {0}")]
    NoSuchPort(String),
    /// Every port number is taken.
    #[error("too many ports (at most {})", MAX_PORTS - 1)]
    TooManyPorts,
    /// A bad argument.
    #[error("{0}")]
    Invalid(String),
    /// The UMEM could not be mapped or registered.
    #[error(
        "cannot set up a UMEM of {frames} frames ({mib} MiB): {source}; locked memory is limited \
         to {memlock} (RLIMIT_MEMLOCK) without CAP_IPC_LOCK: use fewer --umem-frames"
    )]
    Umem {
        /// Frames asked for.
        frames: u32,
        /// Size in MiB.
        mib: u32,
        /// The current RLIMIT_MEMLOCK, readable.
        memlock: String,
        /// The failing call.
        #[source]
        source: SyscallError,
    },
    /// An AF_XDP socket could not be set up.
    #[error("AF_XDP socket on {ifname} queue {queue}: {source}")]
    Socket {
        /// The interface.
        ifname: String,
        /// The queue.
        queue: u32,
        /// The failing call.
        #[source]
        source: SyscallError,
    },
    /// The XDP program could not be loaded or attached.
    #[error(transparent)]
    Prog(#[from] ProgError),
    /// Another failing call.
    #[error(transparent)]
    Syscall(#[from] SyscallError),
    /// A worker did not answer.
    #[error("worker {0} did not answer")]
    WorkerGone(usize),
}

/// One worker's statistics, with where it runs.
#[derive(Debug, Clone)]
pub struct WorkerInfo {
    /// The worker's index.
    pub id: usize,
    /// The CPU it is pinned to.
    pub cpu: Option<usize>,
    /// Its kernel thread id.
    pub tid: i32,
    /// Its counters.
    pub stats: WorkerStats,
    /// Its per-port counters, for ports it touched.
    pub ports: Vec<(PortId, PortStats)>,
}

/// A port's counters: the dataplane's and the kernel's.
#[derive(Debug, Clone)]
pub struct PortCounters {
    /// The port.
    pub id: PortId,
    /// The interface.
    pub name: String,
    /// Summed over workers, since the port was added.
    pub stats: PortStats,
    /// The kernel's AF_XDP counters, summed over the port's sockets.
    pub kernel: XdpStatistics,
}

/// The sockets of a new port with their rings, the UMEM they use, and whether zero-copy.
type OpenedQueues = (Vec<(PortQueue, XskRings)>, u16, bool);

struct WorkerHandle {
    shared: Arc<WorkerShared>,
    commands: Sender<Command>,
    thread: Option<JoinHandle<()>>,
    cpu: Option<usize>,
}

impl WorkerHandle {
    fn send(&self, command: Command) -> Result<(), SwitchError> {
        self.commands
            .send(command)
            .map_err(|_| SwitchError::WorkerGone(self.shared.id))?;
        self.shared.wake.notify();
        Ok(())
    }

    fn ask<T>(&self, make: impl FnOnce(Sender<T>) -> Command) -> Result<T, SwitchError> {
        let (tx, rx) = mpsc::channel();
        self.send(make(tx))?;
        rx.recv_timeout(WORKER_TIMEOUT)
            .map_err(|_| SwitchError::WorkerGone(self.shared.id))
    }
}

/// The switch.
pub struct Switch {
    options: SwitchOptions,
    epoch: Instant,
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
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("workers", &self.workers.len())
            .field("ports", &self.ports.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// RLIMIT_MEMLOCK, readable.
fn memlock_limit() -> String {
    match procfs::memlock_limit() {
        Some(u64::MAX) => "unlimited".to_owned(),
        Some(bytes) => format!("{} MiB", bytes >> 20),
        None => "unknown".to_owned(),
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
        let epoch = Instant::now();
        let config = Arc::new(config);
        let fill_target = Arc::new(AtomicU32::new(options.ring_size));
        let shared: Vec<Arc<WorkerShared>> = (0..options.workers.len())
            .map(|id| WorkerShared::new(id).map(Arc::new))
            .collect::<Result<_, _>>()?;
        let (events_tx, events) = mpsc::channel();
        let mut workers = Vec::new();
        for (id, &cpu) in options.workers.iter().enumerate() {
            let (commands_tx, commands_rx) = mpsc::channel();
            let setup = WorkerSetup {
                cpu,
                busy_poll: options.busy_poll,
                cache_capacity: options.cache_capacity,
                epoch,
                umems: umems.clone(),
                fill_target: fill_target.clone(),
                fill_budget: options.umem_frames / (2 * options.workers.len() as u32),
                fast_path: fast.clone(),
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
        Ok(Switch {
            options,
            epoch,
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
        })
    }

    /// Whether the in-kernel fast path is on.
    pub fn fast_path(&self) -> bool {
        self.fast.is_some()
    }

    /// Turns the in-kernel fast path on or off while forwarding: every port's program is
    /// replaced atomically on its live bpf_link, so no frame meets a detached interface.
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
            let insns = match &self.fast {
                Some(maps) => fastpath::program(maps, port.xskmap.as_fd(), port.id),
                None => redirect_to_xsk(port.xskmap.as_fd()),
            };
            let new = load_xdp(&insns, "xvs_port")?;
            port.link.replace(new.as_fd())?;
            port.prog = new;
            self.fast_ports[usize::from(port.id)] = match &self.fast {
                Some(maps) => {
                    let ifindex = port.interface.ifindex;
                    let target = Self::accepts_redirects(ifindex)
                        && maps.add_target(port.id, ifindex).is_ok();
                    Some(FastPort { ifindex, target })
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
        netdev::xdp_features(ifindex).is_ok_and(|f| f & netdev::XDP_ACT_NDO_XMIT != 0)
    }

    /// Makes the workers fold the kernel entries' counters in now.
    fn sync_fast_path(&self) -> Result<(), SwitchError> {
        if self.fast.is_some() {
            for w in &self.workers {
                w.ask(Command::SyncFastPath)?;
            }
        }
        Ok(())
    }

    /// Every kernel entry, with its counters.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn fast_path_dump(&self) -> Result<Vec<crate::fastpath::FastEntry>, SwitchError> {
        let mut all = Vec::new();
        if self.fast.is_some() {
            for w in &self.workers {
                all.extend(w.ask(Command::FastPathEntries)?);
            }
        }
        Ok(all)
    }

    /// Kernel entries installed, by ingress port.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn fast_path_entries(&self) -> Result<BTreeMap<PortId, usize>, SwitchError> {
        let mut total = BTreeMap::new();
        if self.fast.is_some() {
            for w in &self.workers {
                for (port, n) in w.ask(Command::FastPathCounts)? {
                    *total.entry(port).or_insert(0) += n;
                }
            }
        }
        Ok(total)
    }

    /// Time since the switch started.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Nanoseconds on the clock the workers' pipelines use.
    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The number of workers.
    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    fn alloc_tag(&mut self) -> u16 {
        let tag = (1..=u16::MAX)
            .find(|t| !self.tags.contains(t))
            .expect("fewer than 65535 sockets");
        self.tags.insert(tag);
        tag
    }

    fn alloc_port_id(&self) -> Result<PortId, SwitchError> {
        (1..MAX_PORTS as PortId)
            .find(|id| !self.ports.contains_key(id))
            .ok_or(SwitchError::TooManyPorts)
    }

    /// Sets how many frames each fill ring holds, for the current sockets plus `adding`.
    ///
    /// Frames lent to a fill ring cannot be taken back until packets use them, so the target
    /// is set before new sockets get their first frames, and workers also keep the sum of
    /// their fill rings under half their share of the UMEM (see the worker's refill).
    fn update_fill_target(&self, adding: usize) {
        let sockets: usize = self.ports.values().map(|p| p.queues.len()).sum::<usize>() + adding;
        let per_socket = (self.options.umem_frames as usize / (4 * sockets.max(1))) as u32;
        let target = per_socket.clamp(MIN_FILL, MAX_FILL.min(self.options.ring_size));
        self.fill_target.store(target, Ordering::Relaxed);
    }

    /// A live socket of UMEM `umem` to share it through, if any.
    fn umem_anchor(&self, umem: u16) -> Option<&xvs_sys::xsk::XskSocket> {
        self.ports
            .values()
            .filter(|p| p.umem == umem)
            .flat_map(|p| p.queues.first())
            .map(|q| &q.socket)
            .next()
    }

    fn zero_copy_umem(&mut self) -> Result<Arc<Umem>, SwitchError> {
        if let Some(u) = self.umems.iter().find(|u| u.id() == ZERO_COPY_UMEM) {
            return Ok(u.clone());
        }
        let umem = Arc::new(
            Umem::new(
                ZERO_COPY_UMEM,
                self.options.umem_frames,
                self.options.frame_size,
            )
            .map_err(|source| SwitchError::Umem {
                frames: self.options.umem_frames,
                mib: ((u64::from(self.options.umem_frames) * u64::from(self.options.frame_size))
                    >> 20) as u32,
                memlock: memlock_limit(),
                source,
            })?,
        );
        // Workers learn of it before any socket of it reaches them.
        for w in &self.workers {
            w.send(Command::AddUmem(umem.clone()))?;
        }
        self.umems.push(umem.clone());
        Ok(umem)
    }

    /// Opens the sockets of a new port, zero-copy where the driver allows and copy mode
    /// otherwise. Returns the queues with their rings, the UMEM used and whether zero-copy.
    fn open_queues(
        &mut self,
        interface: &Interface,
        queues: u32,
    ) -> Result<OpenedQueues, SwitchError> {
        if interface.may_zero_copy()
            && let Ok(opened) = self.open_queues_in(interface, queues, ZERO_COPY_UMEM)
        {
            return Ok((opened, ZERO_COPY_UMEM, true));
        }
        let opened = self.open_queues_in(interface, queues, COPY_UMEM)?;
        Ok((opened, COPY_UMEM, false))
    }

    fn open_queues_in(
        &mut self,
        interface: &Interface,
        queues: u32,
        umem_id: u16,
    ) -> Result<Vec<(PortQueue, XskRings)>, SwitchError> {
        let umem = if umem_id == ZERO_COPY_UMEM {
            self.zero_copy_umem()?
        } else {
            self.umems[usize::from(COPY_UMEM)].clone()
        };
        let sizes = RingSizes {
            rx_tx: self.options.ring_size,
            fill_comp: self.options.ring_size,
        };
        let mode = if umem_id == ZERO_COPY_UMEM {
            BindMode::ZeroCopy
        } else {
            BindMode::Copy
        };
        let mut opened: Vec<(PortQueue, XskRings)> = Vec::new();
        let workers = self.workers.len();
        for queue in 0..queues {
            let tag = self.alloc_tag();
            let anchor = self
                .umem_anchor(umem_id)
                .or_else(|| opened.first().map(|(q, _)| &q.socket));
            let result = open_socket(
                umem.area(),
                tag,
                interface.ifindex,
                queue,
                sizes,
                mode,
                anchor,
            );
            match result {
                Ok((socket, rings)) => {
                    let worker = queue as usize % workers;
                    opened.push((
                        PortQueue {
                            queue,
                            worker,
                            socket,
                        },
                        rings,
                    ));
                }
                Err(source) => {
                    self.tags.remove(&tag);
                    for (q, rings) in opened {
                        self.tags.remove(&q.socket.tag());
                        umem.give(q.socket.close(rings));
                    }
                    return Err(SwitchError::Socket {
                        ifname: interface.name.clone(),
                        queue,
                        source,
                    });
                }
            }
        }
        if umem_id == ZERO_COPY_UMEM
            && !opened
                .first()
                .is_some_and(|(q, _)| q.socket.is_zero_copy().unwrap_or(false))
        {
            for (q, rings) in opened {
                self.tags.remove(&q.socket.tag());
                umem.give(q.socket.close(rings));
            }
            return Err(SwitchError::Invalid("zero-copy not granted".into()));
        }
        Ok(opened)
    }

    /// Adds an interface as a port, serving all its queues (or `options.queues`), without
    /// disturbing traffic between the other ports.
    ///
    /// # Errors
    /// No such interface, already a port, or any kernel step fails (with nothing left
    /// behind).
    pub fn add_port(&mut self, name: &str, options: &PortOptions) -> Result<PortInfo, SwitchError> {
        if self.ports.values().any(|p| p.interface.name == name) {
            return Err(SwitchError::PortExists(name.to_owned()));
        }
        let interface = Interface::lookup(name).map_err(|e| match e.errno() {
            Some(libc::ENODEV) | Some(libc::EINVAL) => {
                SwitchError::NoSuchInterface(name.to_owned())
            }
            _ => SwitchError::Syscall(e),
        })?;
        let queues = match options.queues {
            Some(0) => {
                return Err(SwitchError::Invalid(
                    "a port needs at least one queue".into(),
                ));
            }
            Some(n) if n > interface.queues => {
                return Err(SwitchError::Invalid(format!(
                    "{name} has {} queue(s), not {n}",
                    interface.queues
                )));
            }
            Some(n) => n,
            None => interface.queues,
        };
        let id = self.alloc_port_id()?;
        let xskmap = XskMap::new(queues, &format!("xvs_xsks_{id}"))?;
        let insns = match &self.fast {
            Some(maps) => fastpath::program(maps, xskmap.as_fd(), id),
            None => redirect_to_xsk(xskmap.as_fd()),
        };
        let prog = load_xdp(&insns, "xvs_port")?;
        let (opened, umem, zero_copy) = self.open_queues(&interface, queues)?;
        let (queues_state, rings): (Vec<PortQueue>, Vec<XskRings>) = opened.into_iter().unzip();
        // Attach last: until then the interface's traffic keeps going to the stack.
        let link = match XdpLink::attach(
            std::os::fd::AsFd::as_fd(&prog),
            interface.ifindex,
            name,
            options.xdp_mode,
        ) {
            Ok(link) => link,
            Err(e) => {
                let umem = self.umems[usize::from(umem)].clone();
                for (q, r) in queues_state.into_iter().zip(rings) {
                    self.tags.remove(&q.socket.tag());
                    umem.give(q.socket.close(r));
                }
                return Err(e.into());
            }
        };
        let port = Port {
            id,
            interface,
            umem,
            zero_copy,
            queues: queues_state,
            xskmap,
            prog,
            link,
        };
        port.map_queues()?;
        let finish = port.interface.needs_checksum_fix();
        if let Some(maps) = &self.fast {
            let ifindex = port.interface.ifindex;
            let target =
                Self::accepts_redirects(ifindex) && maps.add_target(port.id, ifindex).is_ok();
            self.fast_ports[usize::from(id)] = Some(FastPort { ifindex, target });
            self.send_fast_ports()?;
        }
        self.update_fill_target(port.queues.len());
        for (q, rings) in port.queues.iter().zip(rings) {
            let socket = QueueSocket::new(id, q.queue, rings, finish, umem);
            self.workers[q.worker].send(Command::AddQueue(Box::new(socket)))?;
        }
        let mut config = (*self.config).clone();
        config.set_port(PortConfig {
            id,
            name: name.to_owned(),
            mac: port.interface.mac,
            vlan: options.vlan.clone(),
        });
        let info = self.port_info(&port);
        tracing::info!(
            port = id,
            name,
            queues = port.queues.len(),
            mode = port.link.mode().name(),
            zero_copy,
            "port added"
        );
        self.ports.insert(id, port);
        self.baselines.insert(id, self.sum_port(id));
        self.publish(config)?;
        Ok(info)
    }

    /// Removes a port, giving its interface back to the kernel stack.
    ///
    /// # Errors
    /// No such port, or a worker did not answer.
    pub fn del_port(&mut self, name: &str) -> Result<(), SwitchError> {
        let id = self
            .ports
            .values()
            .find(|p| p.interface.name == name)
            .map(|p| p.id)
            .ok_or_else(|| SwitchError::NoSuchPort(name.to_owned()))?;
        self.remove_port(id)
    }

    fn remove_port(&mut self, id: PortId) -> Result<(), SwitchError> {
        if let Some(maps) = &self.fast {
            // No frame is redirected to it from now on; the epoch bump below retires every
            // kernel entry that named it.
            maps.remove_target(id);
            self.fast_ports[usize::from(id)] = None;
            self.send_fast_ports()?;
        }
        let mut config = (*self.config).clone();
        config.remove_port(id);
        self.publish(config)?;
        let port = self.ports.remove(&id).expect("caller checked");
        for q in &port.queues {
            port.clear_queue(q.queue);
        }
        let mut rings: Vec<XskRings> = Vec::new();
        let owners: BTreeSet<usize> = port.queues.iter().map(|q| q.worker).collect();
        for w in owners {
            rings.extend(self.workers[w].ask(|reply| Command::RemovePort { port: id, reply })?);
        }
        let umem = self.umems[usize::from(port.umem)].clone();
        let Port {
            queues,
            link,
            interface,
            ..
        } = port;
        drop(link);
        let mut reclaimed = 0;
        for q in queues {
            self.tags.remove(&q.socket.tag());
            let position = rings
                .iter()
                .position(|r| r.is_of(&q.socket))
                .expect("every queue's rings come back");
            let frames = q.socket.close(rings.swap_remove(position));
            reclaimed += frames.len();
            umem.give(frames);
        }
        self.baselines.remove(&id);
        self.update_fill_target(0);
        tracing::info!(port = id, name = interface.name, reclaimed, "port removed");
        Ok(())
    }

    /// Sets a port's VLAN mode.
    ///
    /// # Errors
    /// No such port, or a worker did not answer.
    pub fn set_port_vlan(&mut self, name: &str, vlan: VlanMode) -> Result<(), SwitchError> {
        let mut config = (*self.config).clone();
        let mut port = config
            .port_by_name(name)
            .cloned()
            .ok_or_else(|| SwitchError::NoSuchPort(name.to_owned()))?;
        port.vlan = vlan;
        config.set_port(port);
        self.publish(config)
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
        let replies: Vec<_> = self
            .workers
            .iter()
            .map(|w| {
                let (tx, rx) = mpsc::channel();
                w.send(Command::Barrier(tx)).map(|()| (w.shared.id, rx))
            })
            .collect::<Result<_, _>>()?;
        for (id, rx) in replies {
            rx.recv_timeout(WORKER_TIMEOUT)
                .map_err(|_| SwitchError::WorkerGone(id))?;
        }
        Ok(())
    }

    fn port_info(&self, port: &Port) -> PortInfo {
        PortInfo {
            id: port.id,
            name: port.interface.name.clone(),
            ifindex: port.interface.ifindex,
            mac: port.interface.mac,
            driver: port.interface.driver.clone(),
            xdp_mode: port.link.mode(),
            zero_copy: port.zero_copy,
            fast_path: self.fast.is_some(),
            redirect_target: self.fast_ports[usize::from(port.id)].is_some_and(|f| f.target),
            queues: port
                .queues
                .iter()
                .map(|q| QueueInfo {
                    queue: q.queue,
                    worker: q.worker,
                    cpu: self.workers[q.worker].cpu,
                })
                .collect(),
        }
    }

    /// Every port.
    pub fn ports(&self) -> Vec<PortInfo> {
        self.ports.values().map(|p| self.port_info(p)).collect()
    }

    fn sum_port(&self, id: PortId) -> PortStats {
        let mut total = PortStats::default();
        for w in &self.workers {
            total.add(&w.shared.counters.port(id));
        }
        total
    }

    /// Counters of every port since it was added, whichever level forwarded the packets.
    pub fn port_counters(&self) -> Vec<PortCounters> {
        if let Err(e) = self.sync_fast_path() {
            tracing::warn!("fast path counters not folded in: {e}");
        }
        self.ports
            .values()
            .map(|p| {
                let base = self.baselines.get(&p.id).copied().unwrap_or_default();
                let mut kernel = XdpStatistics::default();
                for q in &p.queues {
                    if let Ok(s) = q.socket.statistics() {
                        kernel.rx_dropped += s.rx_dropped;
                        kernel.rx_invalid_descs += s.rx_invalid_descs;
                        kernel.tx_invalid_descs += s.tx_invalid_descs;
                        kernel.rx_ring_full += s.rx_ring_full;
                        kernel.rx_fill_ring_empty_descs += s.rx_fill_ring_empty_descs;
                        kernel.tx_ring_empty_descs += s.tx_ring_empty_descs;
                    }
                }
                PortCounters {
                    id: p.id,
                    name: p.interface.name.clone(),
                    stats: self.sum_port(p.id).since(&base),
                    kernel,
                }
            })
            .collect()
    }

    /// Every worker's counters, and its per-port counters for the current ports.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.workers
            .iter()
            .map(|w| WorkerInfo {
                id: w.shared.id,
                cpu: w.cpu,
                tid: w.shared.tid.load(Ordering::Relaxed),
                stats: w.shared.counters.worker(),
                ports: self
                    .ports
                    .keys()
                    .map(|&id| (id, w.shared.counters.port(id)))
                    .collect(),
            })
            .collect()
    }

    /// Frames free in the UMEM pools (for diagnostics and leak tests).
    pub fn pooled_frames(&self) -> usize {
        self.umems.iter().map(|u| u.pooled()).sum()
    }

    /// The learned MAC table (as the first worker sees it; the others hold replicas).
    ///
    /// # Errors
    /// The worker did not answer.
    pub fn fdb(&self) -> Result<Vec<FdbEntry>, SwitchError> {
        self.sync_fast_path()?;
        let mut entries = self.workers[0].ask(Command::Fdb)?;
        entries.sort_by_key(|e| (e.vlan, e.mac));
        Ok(entries)
    }

    /// Packets and bytes each rule decided, summed over the workers, by rule id.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn rule_stats(&self) -> Result<std::collections::HashMap<u32, (u64, u64)>, SwitchError> {
        self.sync_fast_path()?;
        let mut total = std::collections::HashMap::new();
        for w in &self.workers {
            for (rule, (packets, bytes)) in w.ask(Command::RuleStats)? {
                let t: &mut (u64, u64) = total.entry(rule).or_default();
                t.0 += packets;
                t.1 += bytes;
            }
        }
        Ok(total)
    }

    /// The router's resolved neighbours (as the first worker sees them).
    ///
    /// # Errors
    /// The worker did not answer.
    pub fn neighbors(&self) -> Result<Vec<NeighborEntry>, SwitchError> {
        let mut entries = self.workers[0].ask(Command::Neighbors)?;
        entries.sort_by_key(|e| e.ip);
        Ok(entries)
    }

    /// Forgets every learned address, in every worker.
    ///
    /// # Errors
    /// A worker did not answer.
    pub fn fdb_flush(&self) -> Result<(), SwitchError> {
        for w in &self.workers {
            w.send(Command::FdbFlush)?;
        }
        self.barrier()
    }

    /// Handles what workers reported and drops ports whose interface went away. Returns the
    /// names of the ports removed. Call it periodically.
    pub fn check_ports(&mut self) -> Vec<String> {
        while let Ok(event) = self.events.try_recv() {
            match event {
                WorkerEvent::SocketDown { port, queue, errno } => {
                    tracing::warn!(port, queue, errno, "port socket went down");
                }
            }
        }
        if let Some(maps) = &self.fast {
            if let Err(e) = maps.tick_clock() {
                tracing::warn!("fast path clock not advanced: {e}");
            }
            self.refresh_targets();
        }
        let gone: Vec<(PortId, String)> = self
            .ports
            .values()
            .filter(|p| !p.is_present())
            .map(|p| (p.id, p.interface.name.clone()))
            .collect();
        let mut removed = Vec::new();
        for (id, name) in gone {
            tracing::warn!(port = id, name, "interface disappeared; removing the port");
            match self.remove_port(id) {
                Ok(()) => removed.push(name),
                Err(e) => tracing::error!(port = id, name, "cannot remove vanished port: {e}"),
            }
        }
        removed
    }

    /// Follows changes of which ports accept redirected frames (a container turning GRO on or
    /// off on its end of a veth).
    fn refresh_targets(&mut self) {
        let Some(maps) = self.fast.clone() else {
            return;
        };
        let mut changed = false;
        for port in self.ports.values() {
            let Some(fp) = self.fast_ports[usize::from(port.id)].as_mut() else {
                continue;
            };
            let now = Self::accepts_redirects(fp.ifindex);
            if now != fp.target {
                changed = true;
                fp.target = now && maps.add_target(port.id, fp.ifindex).is_ok();
                if !now {
                    maps.remove_target(port.id);
                }
                tracing::info!(
                    port = port.id,
                    name = port.interface.name,
                    redirect_target = fp.target,
                    "fast path target changed"
                );
            }
        }
        if changed {
            if let Err(e) = self.send_fast_ports() {
                tracing::warn!("{e}");
            }
            // Re-decide every flow: ones that could not be offloaded may be now, and entries
            // redirecting to a port that lost the ability must go.
            let config = (*self.config).clone();
            if let Err(e) = self.publish(config) {
                tracing::warn!("{e}");
            }
        }
    }

    /// Stops the workers, closes every socket and detaches every XDP program.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let mut returned = Vec::new();
        for w in &self.workers {
            if let Ok(rings) = w.ask(Command::Stop) {
                returned.extend(rings);
            }
        }
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
        for (_, port) in std::mem::take(&mut self.ports) {
            let Port { queues, link, .. } = port;
            drop(link);
            for q in queues {
                if let Some(i) = returned.iter().position(|(_, r)| r.is_of(&q.socket)) {
                    let (_, rings) = returned.swap_remove(i);
                    drop(q.socket.close(rings));
                }
            }
        }
    }
}

/// Creates the fast path's maps and checks that the kernel accepts its program.
fn probe_fast_path() -> Result<FastPathMaps, SwitchError> {
    let maps = FastPathMaps::new()?;
    let xsks = XskMap::new(1, "xvs_probe")?;
    load_xdp(&fastpath::program(&maps, xsks.as_fd(), 0), "xvs_probe")?;
    Ok(maps)
}

impl Drop for Switch {
    fn drop(&mut self) {
        if self.workers.iter().any(|w| w.thread.is_some()) {
            self.stop();
        }
    }
}
