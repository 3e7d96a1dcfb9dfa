//! Adding and removing ports: the hook, the sockets of every queue, the workers that serve
//! them; and following interfaces that go away or change what they accept.

use std::collections::BTreeSet;
use std::os::fd::BorrowedFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use flowtable::{PortConfig, PortId, VlanMode};
use xvs_sys::bpf::{TcxLink, XdpLink, XdpMode};
use xvs_sys::frame::Frame;
use xvs_sys::netlink::Rtnetlink;
use xvs_sys::xsk::{BindMode, RingSizes, XskRings, XskSocket};

use super::error::memlock_limit;
use super::{
    COPY_UMEM, MAX_FILL, MIN_FILL, PortOptions, Switch, SwitchError, ZERO_COPY_UMEM, handover,
};
use crate::backend::afxdp::AfXdpQueue;
use crate::backend::{Ingress, QueueBackend};
use crate::counters::MAX_PORTS;
use crate::fastpath::FastPort;
use crate::hook::{Hook, HookChoice, HookKind, LoadedXdp, TcHook};
use crate::port::{Interface, Port, PortInfo, PortQueue, QueueInfo, open_socket};
use crate::umem::Umem;
use crate::worker::{Command, Queue, WorkerEvent};

/// A socket just opened for a port, not yet handed to its worker.
pub(super) struct Opened {
    pub(super) queue: PortQueue,
    pub(super) socket: XskSocket,
    pub(super) rings: XskRings,
}

impl Opened {
    /// Closes it again, with every frame it held.
    fn close(self) -> Vec<Frame> {
        self.socket.close(self.rings)
    }
}

/// The sockets of a new port, the UMEM they use, and whether zero-copy.
type OpenedQueues = (Vec<Opened>, u16, bool);

impl Switch {
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
    pub(super) fn update_fill_target(&self, adding: usize) {
        // Sockets that receive: XDP ports' and the upcall device's (a tc port's only sends).
        let receiving = |p: &Port| match p.hook.kind() {
            HookKind::Xdp => p.queues.len(),
            HookKind::Tc => 0,
        };
        let upcall = self.upcall.as_ref().map_or(0, |u| u.queues.len());
        let sockets: usize = self.ports.values().map(receiving).sum::<usize>() + upcall + adding;
        let per_socket = (self.options.umem_frames as usize / (4 * sockets.max(1))) as u32;
        let target = per_socket.clamp(MIN_FILL, MAX_FILL.min(self.options.ring_size));
        self.fill_target.store(target, Ordering::Relaxed);
    }

    /// A live socket of UMEM `umem` to share it through, if any.
    fn umem_anchor(&self, umem: u16) -> Option<xvs_sys::xsk::XskHandle> {
        let ports = self.ports.values().map(|p| (p.umem, &p.queues));
        let upcall = self.upcall.iter().map(|u| (u.umem, &u.queues));
        ports
            .chain(upcall)
            .filter(|(u, _)| *u == umem)
            .flat_map(|(_, queues)| queues.first())
            .map(|q| q.socket.clone())
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
    pub(super) fn open_queues(
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
    ) -> Result<Vec<Opened>, SwitchError> {
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
        let mut opened: Vec<Opened> = Vec::new();
        let workers = self.workers.len();
        let anchor = self.umem_anchor(umem_id);
        for queue in 0..queues {
            let tag = self.alloc_tag();
            let open = |share_with: Option<BorrowedFd<'_>>| {
                open_socket(
                    umem.area(),
                    tag,
                    interface.ifindex,
                    queue,
                    sizes,
                    mode,
                    share_with,
                )
            };
            let result = match (&anchor, opened.first()) {
                (Some(handle), _) => handle
                    .with_fd(|fd| open(Some(fd)))
                    .unwrap_or_else(|| open(None)),
                (None, Some(first)) => open(Some(first.socket.as_fd())),
                (None, None) => open(None),
            };
            match result {
                Ok((socket, rings)) => {
                    let worker = queue as usize % workers;
                    let handle = socket.handle();
                    opened.push(Opened {
                        queue: PortQueue {
                            queue,
                            worker,
                            tag,
                            socket: handle,
                        },
                        socket,
                        rings,
                    });
                }
                Err(source) => {
                    self.tags.remove(&tag);
                    self.close_opened(opened, &umem);
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
                .is_some_and(|o| o.socket.is_zero_copy().unwrap_or(false))
        {
            self.close_opened(opened, &umem);
            return Err(SwitchError::Invalid("zero-copy not granted".into()));
        }
        Ok(opened)
    }

    /// Closes sockets that never reached a worker, giving their frames and tags back.
    pub(super) fn close_opened(&mut self, opened: Vec<Opened>, umem: &Umem) {
        for o in opened {
            self.tags.remove(&o.queue.tag);
            umem.give(o.close());
        }
    }

    /// XDP on the interface, steering each of its `queues` queues to a socket of its own.
    fn attach_xdp(
        &mut self,
        id: PortId,
        interface: &Interface,
        queues: u32,
        options: &PortOptions,
    ) -> Result<(Hook, Vec<Opened>, u16, bool), SwitchError> {
        let finish = interface.needs_checksum_fix();
        let loaded = LoadedXdp::load(id, queues, self.fast.as_deref(), finish)?;
        self.attach_steered(loaded, interface, queues, options.xdp_mode)
    }

    /// Opens a socket for each of `queues` queues, attaches the loaded XDP program (in `mode`
    /// if given) and steers every queue to its socket; on failure, leaves nothing behind.
    pub(super) fn attach_steered(
        &mut self,
        loaded: LoadedXdp,
        interface: &Interface,
        queues: u32,
        mode: Option<XdpMode>,
    ) -> Result<(Hook, Vec<Opened>, u16, bool), SwitchError> {
        let (opened, umem, zero_copy) = self.open_queues(interface, queues)?;
        // Attach last: until then the interface's traffic keeps going to the stack (or, on a
        // planned restart, to the predecessor's program, which this one replaces).
        let link = self
            .adoptable(interface, HookKind::Xdp, mode)
            .and_then(|pinned| {
                let mode = pinned.mode.unwrap_or(XdpMode::Generic);
                let link = XdpLink::adopt(&pinned.path, interface.ifindex, mode);
                pinned.unpin();
                link.inspect_err(|e| tracing::warn!(name = interface.name, "not adopted: {e}"))
                    .ok()
            });
        let attached = match link {
            Some(link) => Ok(loaded.adopt(link)),
            None => loaded.attach(interface.ifindex, &interface.name, mode),
        };
        let hook = match attached {
            Ok(hook) => Hook::Xdp(hook),
            Err(e) => {
                let umem = self.umems[usize::from(umem)].clone();
                self.close_opened(opened, &umem);
                return Err(e.into());
            }
        };
        for o in &opened {
            if let Err(e) = hook.steer(o.queue.queue, o.socket.as_fd()) {
                let umem = self.umems[usize::from(umem)].clone();
                drop(hook);
                self.close_opened(opened, &umem);
                return Err(e.into());
            }
        }
        Ok((hook, opened, umem, zero_copy))
    }

    /// A tc program at the interface's tcx ingress, and one socket that only sends, served by
    /// a worker picked by port number (frames come in through the upcall device).
    fn attach_tc(
        &mut self,
        id: PortId,
        interface: &Interface,
    ) -> Result<(Hook, Vec<Opened>, u16, bool), SwitchError> {
        let upcall = self
            .upcall
            .as_ref()
            .map(|u| (u.ifindex, u.queues.len() as u32));
        let upcall = upcall.ok_or_else(|| {
            SwitchError::Invalid(format!(
                "{} cannot have the tc hook: xvsd has no upcall device (it runs with --hook xdp)",
                interface.name
            ))
        })?;
        let (mut opened, umem, zero_copy) = self.open_queues(interface, 1)?;
        let workers = self.workers.len();
        for o in &mut opened {
            o.queue.worker = usize::from(id) % workers;
        }
        let link = self
            .adoptable(interface, HookKind::Tc, None)
            .and_then(|pinned| {
                let link = TcxLink::adopt(&pinned.path, interface.ifindex);
                pinned.unpin();
                link.inspect_err(|e| tracing::warn!(name = interface.name, "not adopted: {e}"))
                    .ok()
            });
        let attached = match link {
            Some(link) => TcHook::adopt(link, id, upcall, self.fast.as_deref()),
            None => TcHook::attach(
                id,
                interface.ifindex,
                &interface.name,
                upcall,
                self.fast.as_deref(),
            ),
        };
        match attached {
            Ok(hook) => Ok((Hook::Tc(hook), opened, umem, zero_copy)),
            Err(e) => {
                let umem = self.umems[usize::from(umem)].clone();
                self.close_opened(opened, &umem);
                Err(e.into())
            }
        }
    }

    /// The link a predecessor handed over on `interface`, if it is of the hook `kind` (and in
    /// XDP mode `mode`, when one is asked). One of another kind or mode is unpinned at once,
    /// so that it leaves the interface before this port's own attach.
    fn adoptable(
        &mut self,
        interface: &Interface,
        kind: HookKind,
        mode: Option<XdpMode>,
    ) -> Option<handover::Pinned> {
        let pinned = self.take_pinned(interface.ifindex)?;
        if pinned.kind == kind && (mode.is_none() || mode == pinned.mode) {
            tracing::info!(
                name = interface.name,
                hook = kind.name(),
                "adopting a handed-over link"
            );
            Some(pinned)
        } else {
            pinned.unpin();
            None
        }
    }

    /// Refuses, before anything is attached to it, a device that must not be a port: the
    /// loopback device (a hook there takes the host's own traffic), one that does not carry
    /// Ethernet frames, one that is a port of a bridge, bond or VRF already (the hook would
    /// take its frames from under that device), and this switch's own upcall device.
    fn check_suitable(&self, name: &str) -> Result<(), SwitchError> {
        let unsuitable = |reason: String| {
            Err(SwitchError::Invalid(format!(
                "{name} cannot be a port: {reason}"
            )))
        };
        let upcall = &self.options.upcall;
        if name == upcall || name.strip_prefix(upcall.as_str()) == Some("x") {
            return unsuitable(format!(
                "it is this switch's upcall device (the veth pair {upcall} and {upcall}x)"
            ));
        }
        let mut rtnl = Rtnetlink::open()?;
        let link = rtnl
            .link(name)?
            .ok_or_else(|| SwitchError::NoSuchInterface(name.to_owned()))?;
        if link.loopback {
            return unsuitable(
                "it is the loopback device (a hook there would take the host's own traffic)".into(),
            );
        }
        if !link.ethernet {
            return unsuitable(format!(
                "it does not carry Ethernet frames ({} device)",
                link.kind.as_deref().unwrap_or("a non-Ethernet")
            ));
        }
        if let Some(master) = link.master {
            let master = rtnl
                .link_by_index(master)
                .ok()
                .flatten()
                .map_or_else(|| format!("ifindex {master}"), |m| m.name);
            return unsuitable(format!(
                "it is a port of the {} {master} (take it out first: ip link set {name} \
                 nomaster)",
                link.port_kind.as_deref().unwrap_or("device")
            ));
        }
        Ok(())
    }

    /// Adds an interface as a port, serving all its queues (or `options.queues`), without
    /// disturbing traffic between the other ports.
    ///
    /// # Errors
    /// No such interface, already a port, a device that must not be a port (loopback, not
    /// Ethernet, a port of a bridge or bond, the upcall device), or any kernel step fails
    /// (with nothing left behind).
    pub fn add_port(&mut self, name: &str, options: &PortOptions) -> Result<PortInfo, SwitchError> {
        if self.ports.values().any(|p| p.interface.name == name) {
            return Err(SwitchError::PortExists(name.to_owned()));
        }
        self.check_suitable(name)?;
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
        let chosen = options
            .hook
            .unwrap_or_else(|| self.options.hook.for_driver(&interface.driver));
        let asked = options.hook.is_some() || self.options.hook != HookChoice::Auto;
        let (hook, opened, umem, zero_copy) = match chosen {
            HookKind::Xdp => self.attach_xdp(id, &interface, queues, options)?,
            HookKind::Tc => match self.attach_tc(id, &interface) {
                Ok(attached) => attached,
                // Where tcx is refused (a kernel before 6.6), auto means XDP.
                Err(e) if !asked => {
                    tracing::warn!(name, "tc hook refused, XDP instead: {e}");
                    self.attach_xdp(id, &interface, queues, options)?
                }
                Err(e) => return Err(e),
            },
        };
        let kind = hook.kind();
        let finish = interface.needs_checksum_fix();
        if let Some(maps) = &self.fast {
            let ifindex = interface.ifindex;
            let target = Self::accepts_redirects(ifindex) && maps.add_target(id, ifindex).is_ok();
            self.fast_ports[usize::from(id)] = Some(FastPort {
                ifindex,
                target,
                hook: hook.kind(),
                peer: peer_elsewhere(name),
                partial_checksums: finish,
            });
            self.send_fast_ports()?;
        }
        self.update_fill_target(match kind {
            HookKind::Xdp => opened.len(),
            HookKind::Tc => 0,
        });
        let mut port_queues = Vec::with_capacity(opened.len());
        for Opened {
            queue,
            socket,
            rings,
        } in opened
        {
            let backend: Box<dyn QueueBackend> = Box::new(AfXdpQueue::new(socket, rings));
            // A tc port's socket only sends: its frames reach the workers by the upcall device.
            let ingress = match kind {
                HookKind::Xdp => Ingress::Port(id),
                HookKind::Tc => Ingress::None,
            };
            let worker_queue = Queue::new(id, queue.queue, ingress, true, backend, finish, umem);
            self.workers[queue.worker].send(Command::AddQueue(Box::new(worker_queue)))?;
            port_queues.push(queue);
        }
        let port = Port {
            id,
            interface,
            umem,
            zero_copy,
            queues: port_queues,
            hook,
        };
        let mut config = (*self.config).clone();
        config.set_port(PortConfig {
            id,
            name: name.to_owned(),
            mac: port.interface.mac,
            vlan: options.vlan.clone(),
            security: Default::default(),
        });
        let info = self.port_info(&port);
        tracing::info!(
            port = id,
            name,
            queues = port.queues.len(),
            hook = port.hook.kind().name(),
            mode = port.hook.xdp_mode().map(|m| m.name()),
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
            port.hook.release(q.queue);
        }
        let mut backends: Vec<Box<dyn QueueBackend>> = Vec::new();
        let owners: BTreeSet<usize> = port.queues.iter().map(|q| q.worker).collect();
        for w in owners {
            backends.extend(self.workers[w].ask(|reply| Command::RemovePort { port: id, reply })?);
        }
        let umem = self.umems[usize::from(port.umem)].clone();
        let Port {
            queues,
            hook,
            interface,
            ..
        } = port;
        // Detach before closing: no frame is steered to a closing socket.
        drop(hook);
        for q in &queues {
            self.tags.remove(&q.tag);
        }
        let mut reclaimed = 0;
        for backend in backends {
            let frames = backend.close();
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

    pub(super) fn port_info(&self, port: &Port) -> PortInfo {
        PortInfo {
            id: port.id,
            name: port.interface.name.clone(),
            ifindex: port.interface.ifindex,
            mac: port.interface.mac,
            driver: port.interface.driver.clone(),
            hook: port.hook.kind(),
            xdp_mode: port.hook.xdp_mode(),
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
}

/// Whether interface `name` is linked to a device in another namespace (a container's veth),
/// so that a tc program may deliver into that device's ingress directly. Unknown: no.
pub(crate) fn peer_elsewhere(name: &str) -> bool {
    Rtnetlink::open()
        .and_then(|mut rtnl| rtnl.link(name))
        .ok()
        .flatten()
        .is_some_and(|link| link.peer_elsewhere)
}
