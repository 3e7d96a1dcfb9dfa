//! Differential tests of the fast path: for every frame of a generated world, what the kernel
//! would do (the programs as modelled in `model.rs`, and where root may, the real programs
//! under `BPF_PROG_TEST_RUN`) against what the userspace worker does.
//!
//! Each frame goes, in order:
//! 1. to the kernel model, with the entries installed so far: on a hit that redirects or
//!    drops, the frame the kernel emits and where must be exactly what userspace emits;
//! 2. to a real worker over memory queues (XDP ports' frames as the XDP program hands them
//!    up, tc ports' through the upcall device with their prefix), which emits frames on
//!    the ports' queues;
//! 3. to a replica of the worker's pipeline (no cache, so that every frame is decided from
//!    the tables and yields the `Miss` the offloader reads), whose decision the offloader's
//!    own translation ([`entry`]) turns into a kernel entry, if any: the key the program
//!    would build from the frame must be the entry's key (so that the kernel hits), and the
//!    program with that entry must emit what userspace emitted for the frame;
//! 4. the entry is installed, and entries whose dependencies the frame changed removed, as
//!    the offloader does.
//!
//! The generated worlds (`world.rs`) come from a fixed seed, so that the end of a run can
//! check that every kind of entry was met; `PROPTEST_CASES=20000 cargo test -p dataplane
//! --lib fastpath::differential` searches longer, from a random seed. `scenarios.rs` holds
//! worlds written out by hand.

mod real;
mod scenarios;
mod world;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use flowtable::pipeline::MAX_DEPS;
use flowtable::{Config, FlowKey, Pipeline, PortId};
use proptest::test_runner::{RngAlgorithm, TestCaseError, TestRng, TestRunner};

use self::real::RealKernel;
use self::world::{Addressing, Arrival, IFINDEX_BASE, PacketSpec, World};
use super::abi::{KernelKey, KernelValue};
use super::model::{self, Ingress, Outcome};
use super::offloader::{Entry, FastPort, FastPorts, entry};
use crate::backend::Ingress as QueueIngress;
use crate::backend::memory::{MemoryQueue, Wire};
use crate::hook::HookKind;
use crate::umem::Umem;
use crate::worker::{Command, Queue, Worker, WorkerSetup, WorkerShared};

/// The epoch every entry is decided under (the maps start at it).
const EPOCH: u32 = 1;
/// The upcall device's port number.
const UPCALL_PORT: PortId = 0;

/// A worker over memory queues: one per port (receiving for XDP ports, sending for all), and
/// the upcall device's, which receives for tc ports.
struct Userspace {
    worker: Worker,
    _commands: mpsc::Sender<Command>,
    ports: Vec<Arc<Mutex<Wire>>>,
    upcall: Arc<Mutex<Wire>>,
}

impl Userspace {
    fn new(world: &World, config: &Arc<Config>) -> Userspace {
        let umem = Arc::new(Umem::new(0, 512, 4096).expect("anonymous memory"));
        let setup = WorkerSetup {
            cpu: None,
            busy_poll: true,
            cache_capacity: 1024,
            clock_zero: Instant::now(),
            umems: vec![umem.clone()],
            fill_target: Arc::new(AtomicU32::new(16)),
            fill_budget: 256,
            fast_path: None,
            conntrack: None,
        };
        let shared = Arc::new(WorkerShared::new(0).expect("eventfd"));
        let (commands, commands_rx) = mpsc::channel();
        let (events, _) = mpsc::channel();
        let worker = Worker::new(
            setup,
            shared.clone(),
            vec![shared],
            config.clone(),
            commands_rx,
            events,
        );
        let queue = |port: PortId, ingress: QueueIngress, sends: bool, finish: bool| {
            let (backend, wire) = MemoryQueue::new(umem.area().clone());
            let queue = Queue::new(port, 0, ingress, sends, Box::new(backend), finish, 0);
            commands
                .send(Command::AddQueue(Box::new(queue)))
                .expect("the worker listens");
            wire
        };
        let ports = world
            .ports
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let id = i as PortId + 1;
                match p.hook {
                    HookKind::Xdp => queue(id, QueueIngress::Port(id), true, p.veth),
                    HookKind::Tc => queue(id, QueueIngress::None, true, true),
                }
            })
            .collect();
        let upcall = queue(UPCALL_PORT, QueueIngress::Tagged, false, true);
        let mut userspace = Userspace {
            worker,
            _commands: commands,
            ports,
            upcall,
        };
        userspace.turn(4);
        userspace
    }

    fn turn(&mut self, steps: usize) {
        for _ in 0..steps {
            assert!(self.worker.step().is_continue());
        }
    }

    /// Hands `bytes` to the worker as the hook of `port` would, and returns what it sent,
    /// by port.
    fn receive(&mut self, port: PortId, hook: HookKind, bytes: &[u8]) -> Vec<(PortId, Vec<u8>)> {
        let wire = match hook {
            HookKind::Xdp => self.ports[usize::from(port) - 1].clone(),
            HookKind::Tc => self.upcall.clone(),
        };
        wire.lock().expect("wire").inbound.push_back(bytes.to_vec());
        self.turn(2);
        assert!(wire.lock().expect("wire").inbound.is_empty(), "received");
        let mut sent = Vec::new();
        for (i, wire) in self.ports.iter().enumerate() {
            for frame in std::mem::take(&mut wire.lock().expect("wire").outbound) {
                sent.push((i as PortId + 1, frame));
            }
        }
        sent
    }
}

/// A kernel entry as the offloader keeps it.
#[derive(Debug, Clone, Copy)]
struct Installed {
    value: KernelValue,
    deps: [Option<u16>; MAX_DEPS],
    seq: u64,
}

/// What a run saw, to show that the property was exercised.
#[derive(Debug, Default, Clone)]
struct Seen {
    /// Entries planned, by what they do (see [`kind_of`]).
    kinds: BTreeMap<String, u64>,
    frames: u64,
    /// Entries planned (and their frames compared).
    planned: u64,
    /// Frames the kernel model hit with an entry installed earlier.
    hits: u64,
    /// Entries whose key the program could not build from the frame (headers it leaves to
    /// userspace).
    unreachable: u64,
    /// Runs of the real programs compared with the model.
    real_runs: u64,
}

/// One world: the worker, the replica that decides for the offloader, the kernel's entries.
struct Harness<'a> {
    world: World,
    config: Arc<Config>,
    addressing: Addressing,
    userspace: Userspace,
    replica: Pipeline,
    fast_ports: FastPorts,
    table: HashMap<KernelKey, Installed>,
    now: u64,
    real: Option<&'a RealKernel>,
    seen: Seen,
}

impl<'a> Harness<'a> {
    fn new(world: World, real: Option<&'a RealKernel>) -> Harness<'a> {
        let (config, addressing) = world.build();
        let userspace = Userspace::new(&world, &config);
        let mut replica = Pipeline::new(config.clone(), 1024);
        replica.set_caching(false);
        replica.track_invalidations(true);
        let mut fast_ports: FastPorts = vec![None; world.ports.len() + 1];
        for (i, p) in world.ports.iter().enumerate() {
            fast_ports[i + 1] = Some(FastPort {
                ifindex: IFINDEX_BASE + i as u32 + 1,
                target: p.target,
                hook: p.hook,
                partial_checksums: p.veth,
                // Every world's tc port leads into a container of its own.
                peer: true,
            });
        }
        Harness {
            world,
            config,
            addressing,
            userspace,
            replica,
            fast_ports,
            table: HashMap::new(),
            now: 0,
            real,
            seen: Seen::default(),
        }
    }

    fn hook(&self, port: PortId) -> HookKind {
        self.world.ports[usize::from(port) - 1].hook
    }

    /// One packet through both paths: the entry the offloader installs for it, if any; an
    /// error says where the paths part.
    fn packet(&mut self, spec: &PacketSpec) -> Result<Option<Entry>, String> {
        let arrival = self.world.frame(&self.addressing, spec);
        self.seen.frames += 1;
        let Arrival {
            port,
            frame,
            csum_partial,
        } = &arrival;
        let hook = self.hook(*port);
        let ingress = Ingress {
            frame,
            port: *port,
            hook,
            finish_checksums: self.world.ports[usize::from(*port) - 1].veth,
            csum_partial: *csum_partial,
        };
        let table = &self.table;
        let before = model::run(&ingress, |k| table.get(k).map(|e| e.value), EPOCH);
        let hit = model::key(&ingress).and_then(|k| table.get(&k).map(|e| (k, e.value)));
        // What userspace gets: what the program hands up, or (for a frame the kernel
        // forwards) what it would have handed up without the entry.
        let up = match &before {
            Outcome::Up(bytes) => bytes.clone(),
            _ => match model::run(&ingress, |_| None, EPOCH) {
                Outcome::Up(bytes) => bytes,
                other => return Err(format!("a miss that is not one: {other:?}")),
            },
        };
        let sent = self.userspace.receive(*port, hook, &up);
        if let Some(real) = self.real {
            real.compare(&ingress, hit, &before)?;
            self.seen.real_runs += 1;
        }
        if !matches!(before, Outcome::Up(_)) {
            self.seen.hits += 1;
            self.agree(hook, &before, &sent)
                .map_err(|e| format!("a kernel hit ({hit:x?}): {e}"))?;
        }

        // The frame as the worker decided it: an XDP port's as handed up, a tc port's as on
        // the wire (the worker puts the tag from the prefix back).
        let seen = match hook {
            HookKind::Xdp => up,
            HookKind::Tc => frame.clone(),
        };
        let Ok((key, _)) = FlowKey::extract(&seen, *port) else {
            return match sent.is_empty() {
                true => Ok(None),
                false => Err("userspace sent a frame it cannot parse".into()),
            };
        };
        self.now += 1_000;
        let (decision, miss) = self
            .replica
            .decide_detailed(&key, seen.len() as u32, self.now);
        let decision = decision.clone();
        let miss = miss.expect("every decision of the replica is a miss");
        let planned = entry(
            &self.fast_ports,
            EPOCH,
            &key,
            &decision,
            &miss,
            &self.config,
        );
        if let Some(Entry {
            key: kkey, value, ..
        }) = planned
        {
            self.seen.planned += 1;
            *self.seen.kinds.entry(kind_of(hook, &value)).or_default() += 1;
            match model::key(&ingress) {
                Some(built) if built != kkey => {
                    return Err(format!(
                        "the program builds key {built:x?}, the offloader installs {kkey:x?} \
                         (for {decision:?})"
                    ));
                }
                Some(_) => {}
                None => self.seen.unreachable += 1,
            }
            let outcome = model::run(&ingress, |k| (*k == kkey).then_some(value), EPOCH);
            if let Some(real) = self.real {
                real.compare(&ingress, Some((kkey, value)), &outcome)?;
                self.seen.real_runs += 1;
            }
            self.agree(hook, &outcome, &sent)
                .map_err(|e| format!("the entry for {decision:?} ({value:x?}): {e}"))?;
            self.table.insert(
                kkey,
                Installed {
                    value,
                    deps: miss.deps,
                    seq: miss.seq,
                },
            );
        }
        self.invalidate();
        Ok(planned)
    }

    /// What the kernel did is what userspace did.
    fn agree(
        &self,
        hook: HookKind,
        kernel: &Outcome,
        sent: &[(PortId, Vec<u8>)],
    ) -> Result<(), String> {
        match kernel {
            Outcome::Up(_) => Ok(()),
            Outcome::Drop if sent.is_empty() => Ok(()),
            Outcome::Drop => Err(format!(
                "the kernel drops, userspace sends to {:?}",
                sent.iter().map(|(p, _)| *p).collect::<Vec<_>>()
            )),
            Outcome::Redirect {
                slot,
                ifindex,
                peer,
                frame,
                csum_partial,
            } => {
                let out = match hook {
                    HookKind::Xdp => {
                        let out = *slot as PortId;
                        if !self
                            .fast_ports
                            .get(usize::from(out))
                            .copied()
                            .flatten()
                            .is_some_and(|p| p.target)
                        {
                            return Err(format!("redirect to DEVMAP slot {slot}, not a target"));
                        }
                        out
                    }
                    HookKind::Tc => {
                        let out = (ifindex - IFINDEX_BASE) as PortId;
                        let into_tc = self.hook(out) == HookKind::Tc;
                        if *peer != into_tc {
                            return Err(format!("redirect to port {out} with peer {peer}"));
                        }
                        out
                    }
                };
                let mut frame = frame.clone();
                if *csum_partial {
                    // The receiver (or the device) finishes what the skb says is partial.
                    model::finish_partial(&mut frame);
                }
                match sent {
                    [(port, bytes)] if *port == out && *bytes == frame => Ok(()),
                    [(port, bytes)] if *port == out => Err(format!(
                        "on port {out}, {}",
                        difference("the kernel's frame", &frame, "userspace's", bytes)
                    )),
                    _ => Err(format!(
                        "the kernel sends a frame to port {out}, userspace to {:?}",
                        sent.iter().map(|(p, _)| *p).collect::<Vec<_>>()
                    )),
                }
            }
        }
    }

    /// Removes the entries whose dependencies changed, as `Offloader::invalidate` does.
    fn invalidate(&mut self) {
        let mut changed = Vec::new();
        if let Some(seq) = self.replica.take_invalidations(&mut changed) {
            self.table.retain(|_, e| e.seq >= seq);
        }
        for (bucket, seq) in changed {
            self.table
                .retain(|_, e| e.seq >= seq || !e.deps.contains(&Some(bucket)));
        }
        self.replica.take_events().for_each(drop);
        self.replica.take_solicitations().for_each(drop);
    }
}

/// Where two frames part, briefly.
fn difference(a_name: &str, a: &[u8], b_name: &str, b: &[u8]) -> String {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    let window = |f: &[u8]| f[at.saturating_sub(4)..(at + 8).min(f.len())].to_vec();
    format!(
        "{a_name} ({} bytes) and {b_name} ({} bytes) part at byte {at}: {:02x?} and {:02x?} \
         (from byte {})",
        a.len(),
        b.len(),
        window(a),
        window(b),
        at.saturating_sub(4)
    )
}

/// Runs `cases` worlds, each with its warm-up and a sequence of packets, against the model
/// and, with `real`, the real programs.
fn check(cases: u32, real: Option<&RealKernel>) -> Seen {
    // By default the same worlds every run, whose coverage the end checks; PROPTEST_CASES
    // asks for a longer search, from a random seed.
    let search: Option<u32> = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok());
    let config = proptest::test_runner::Config {
        cases: search.unwrap_or(cases),
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    };
    let mut runner = match search {
        Some(_) => TestRunner::new(config),
        None => TestRunner::new_with_rng(
            config,
            TestRng::from_seed(RngAlgorithm::ChaCha, b"xvs fast path differential test!"),
        ),
    };
    let total = Mutex::new(Seen::default());
    let strategy = (world::world(), world::packets());
    let result = runner.run(&strategy, |(world, packets)| {
        let description = world::describe(&world);
        let mut harness = Harness::new(world, real);
        let warm_up = world::warm_up(&harness.world, &harness.addressing);
        for (i, packet) in warm_up.iter().chain(&packets).enumerate() {
            harness.packet(packet).map_err(|e| {
                TestCaseError::fail(format!(
                    "{description}\nrules {:?}\npacket {i} {packet:?}: {e}",
                    harness.world.rules
                ))
            })?;
        }
        let mut total = total.lock().expect("not poisoned");
        for (kind, n) in &harness.seen.kinds {
            *total.kinds.entry(kind.clone()).or_default() += n;
        }
        total.frames += harness.seen.frames;
        total.planned += harness.seen.planned;
        total.hits += harness.seen.hits;
        total.unreachable += harness.seen.unreachable;
        total.real_runs += harness.seen.real_runs;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    let seen = total.into_inner().expect("not poisoned");
    eprintln!("{seen:#?}");
    assert!(seen.hits > 0, "no frame met an entry");
    for kind in [
        "xdp drop",
        "xdp output",
        "xdp output push",
        "xdp output strip",
        "xdp output set",
        "xdp routed",
        "tc drop",
        "tc output",
        "tc output peer",
        "tc output push peer",
        "tc output strip peer",
        "tc output set peer",
        "tc routed peer",
    ] {
        assert!(seen.kinds.contains_key(kind), "no entry of kind {kind:?}");
    }
    seen
}

/// What an entry does, in a few words: the hook, drop or output (routed: MACs rewritten and
/// TTL decremented), the VLAN operation, whether into a container's peer.
fn kind_of(hook: HookKind, value: &KernelValue) -> String {
    use super::abi::{FLAG_PEER, FLAG_REWRITE_MACS, Verdict, VlanOp};
    let mut kind = String::from(match hook {
        HookKind::Xdp => "xdp",
        HookKind::Tc => "tc",
    });
    if value.verdict == Verdict::Drop as u8 {
        return kind + " drop";
    }
    kind += match value.flags & FLAG_REWRITE_MACS {
        0 => " output",
        _ => " routed",
    };
    kind += match value.vlan_op {
        op if op == VlanOp::Push as u8 => " push",
        op if op == VlanOp::Strip as u8 => " strip",
        op if op == VlanOp::Set as u8 => " set",
        _ => "",
    };
    if value.flags & FLAG_PEER != 0 {
        kind += " peer";
    }
    kind
}

#[test]
fn the_kernel_emits_what_userspace_emits() {
    check(256, None);
}

#[test]
fn the_real_programs_do_what_the_model_does() {
    if !xvs_testkit::is_root() {
        xvs_testkit::skip!("BPF_PROG_TEST_RUN needs root");
    }
    let real = match RealKernel::new() {
        Ok(real) => real,
        Err(e) => xvs_testkit::skip!("the fast path's programs cannot be loaded here: {e}"),
    };
    let seen = check(128, Some(&real));
    assert!(seen.real_runs > 0);
}
