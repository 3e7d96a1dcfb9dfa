//! The worker's loop over memory queues: no root, no kernel object but anonymous memory.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use flowtable::wire::{EthernetAddress, upcall};
use flowtable::{Config, Decision, PortConfig, Step, VlanMode};

use super::*;
use crate::backend::memory::{MemoryQueue, Wire};

const FRAMES: u32 = 1024;
const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const BROADCAST: [u8; 6] = [0xff; 6];

/// A 60-byte frame of a local experimental EtherType (bridged on MACs alone).
fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut f = vec![0u8; 60];
    f[0..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&0x88b6u16.to_be_bytes());
    f
}

/// `frame` as it arrives on a shared device: prefixed with its ingress port (and the VLAN
/// tag it carried as metadata).
fn tagged(port: PortId, bytes: &[u8], tag: Option<upcall::Tag>) -> Vec<u8> {
    let mut buf = vec![0u8; upcall::LEN + bytes.len()];
    buf[upcall::LEN..].copy_from_slice(bytes);
    let (offset, len) = upcall::push(&mut buf, upcall::LEN, bytes.len(), port, tag).unwrap();
    buf[offset..offset + len].to_vec()
}

struct Bench {
    worker: Worker,
    umem: Arc<Umem>,
    commands: mpsc::Sender<Command>,
    wires: Vec<(PortId, Arc<Mutex<Wire>>)>,
}

impl Bench {
    /// A worker with ports 1..=`ports` in a config, and no queues yet.
    fn new(ports: PortId) -> Bench {
        Bench::with_vlans(&vec![VlanMode::All; usize::from(ports)])
    }

    /// A worker with ports 1.. in the given VLAN modes, and no queues yet.
    fn with_vlans(modes: &[VlanMode]) -> Bench {
        let umem = Arc::new(Umem::new(0, FRAMES, 2048).expect("anonymous memory"));
        let mut config = Config::default();
        for (id, vlan) in (1..).zip(modes) {
            config.set_port(PortConfig {
                id,
                name: format!("p{id}"),
                mac: EthernetAddress([2, 0, 0, 0, 1, id as u8]),
                vlan: vlan.clone(),
                security: Default::default(),
            });
        }
        let setup = WorkerSetup {
            cpu: None,
            busy_poll: true,
            cache_capacity: 1024,
            clock_zero: Instant::now(),
            umems: vec![umem.clone()],
            fill_target: Arc::new(AtomicU32::new(64)),
            fill_budget: FRAMES / 2,
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
            Arc::new(config),
            commands_rx,
            events,
        );
        Bench {
            worker,
            umem,
            commands,
            wires: Vec::new(),
        }
    }

    /// Adds a memory queue of `port` with `ingress`; returns its wire.
    fn queue(&mut self, port: PortId, ingress: Ingress) -> Arc<Mutex<Wire>> {
        let (backend, wire) = MemoryQueue::new(self.umem.area().clone());
        let sends = ingress != Ingress::Tagged;
        let queue = Queue::new(port, 0, ingress, sends, Box::new(backend), false, 0);
        self.commands
            .send(Command::AddQueue(Box::new(queue)))
            .unwrap();
        self.wires.push((port, wire.clone()));
        wire
    }

    /// Runs the loop until nothing is left to receive (and a few turns more for completions).
    fn run(&mut self) {
        for _ in 0..8 {
            assert!(self.worker.step().is_continue());
        }
    }

    fn sent(wire: &Arc<Mutex<Wire>>) -> Vec<Vec<u8>> {
        std::mem::take(&mut wire.lock().unwrap().outbound)
    }

    fn receive(wire: &Arc<Mutex<Wire>>, bytes: Vec<u8>) {
        wire.lock().unwrap().inbound.push_back(bytes);
    }
}

#[test]
fn learns_floods_then_forwards_to_the_learned_port() {
    let mut bench = Bench::new(3);
    let p1 = bench.queue(1, Ingress::Port(1));
    let p2 = bench.queue(2, Ingress::Port(2));
    let p3 = bench.queue(3, Ingress::Port(3));
    bench.run();
    Bench::receive(&p1, frame(BROADCAST, A));
    bench.run();
    assert_eq!(Bench::sent(&p2), vec![frame(BROADCAST, A)], "flooded to 2");
    assert_eq!(Bench::sent(&p3), vec![frame(BROADCAST, A)], "flooded to 3");
    assert!(
        Bench::sent(&p1).is_empty(),
        "never back to the ingress port"
    );
    Bench::receive(&p2, frame(A, B));
    bench.run();
    assert_eq!(
        Bench::sent(&p1),
        vec![frame(A, B)],
        "to where A was learned"
    );
    assert!(Bench::sent(&p3).is_empty(), "and nowhere else");
    let counters = bench.worker.dp.shared.counters.port(1);
    assert_eq!((counters.rx_packets, counters.tx_packets), (1, 1));
}

#[test]
fn one_tagged_queue_serves_many_ports() {
    let mut bench = Bench::new(4);
    // Port 4 stands for the shared device: its queue receives for ports 1-3.
    let shared = bench.queue(4, Ingress::Tagged);
    let p1 = bench.queue(1, Ingress::Port(1));
    let p2 = bench.queue(2, Ingress::Port(2));
    let p3 = bench.queue(3, Ingress::Port(3));
    bench.run();
    Bench::receive(&shared, tagged(2, &frame(BROADCAST, B), None));
    bench.run();
    assert_eq!(
        Bench::sent(&p1),
        vec![frame(BROADCAST, B)],
        "the tag is gone"
    );
    assert_eq!(Bench::sent(&p3), vec![frame(BROADCAST, B)]);
    assert!(
        Bench::sent(&p2).is_empty(),
        "not back to port 2, named by the tag"
    );
    assert!(
        Bench::sent(&shared).is_empty(),
        "a tagged queue sends for no port"
    );
    // B was learned on port 2, from the tag.
    Bench::receive(&p1, frame(B, A));
    bench.run();
    assert_eq!(Bench::sent(&p2), vec![frame(B, A)]);
    assert_eq!(bench.worker.dp.shared.counters.port(2).rx_packets, 1);
}

#[test]
fn a_vlan_tag_carried_in_the_prefix_is_the_frames_tag() {
    // Port 1: access VLAN 10; port 2: trunk of VLAN 10; port 3: the shared device.
    let mut bench = Bench::with_vlans(&[
        VlanMode::Access(10),
        VlanMode::Trunk {
            allowed: vec![10],
            native: None,
        },
        VlanMode::All,
    ]);
    let shared = bench.queue(3, Ingress::Tagged);
    let p1 = bench.queue(1, Ingress::Port(1));
    let p2 = bench.queue(2, Ingress::Port(2));
    bench.run();
    let tag = upcall::Tag {
        tci: 10,
        service: false,
    };
    Bench::receive(&shared, tagged(2, &frame(BROADCAST, B), Some(tag)));
    bench.run();
    assert_eq!(
        Bench::sent(&p1),
        vec![frame(BROADCAST, B)],
        "VLAN 10 from the trunk, untagged on the access port"
    );
    assert!(Bench::sent(&p2).is_empty());
    // The same frame without its tag is on the trunk's native VLAN, which it does not have.
    Bench::receive(&shared, tagged(2, &frame(BROADCAST, B), None));
    bench.run();
    assert!(
        Bench::sent(&p1).is_empty(),
        "untagged on that trunk is no VLAN 10"
    );
}

#[test]
fn a_frame_without_a_valid_tag_is_a_counted_drop() {
    let mut bench = Bench::new(4);
    let shared = bench.queue(4, Ingress::Tagged);
    let p1 = bench.queue(1, Ingress::Port(1));
    bench.run();
    Bench::receive(&shared, frame(BROADCAST, A));
    Bench::receive(&shared, tagged(0, &frame(BROADCAST, A), None));
    bench.run();
    assert!(Bench::sent(&p1).is_empty());
    let malformed = DropCause::Pipeline(DropReason::Malformed);
    assert_eq!(
        bench
            .worker
            .dp
            .shared
            .counters
            .port(4)
            .drop_count(malformed),
        2
    );
}

#[test]
fn every_frame_comes_home_when_queues_go() {
    let mut bench = Bench::new(2);
    let p1 = bench.queue(1, Ingress::Port(1));
    let _p2 = bench.queue(2, Ingress::Port(2));
    bench.run();
    for _ in 0..100 {
        Bench::receive(&p1, frame(BROADCAST, A));
    }
    bench.run();
    let (reply, backends) = mpsc::channel();
    bench
        .commands
        .send(Command::RemovePort { port: 1, reply })
        .unwrap();
    bench.run();
    let removed = backends.recv().unwrap();
    assert_eq!(removed.len(), 1);
    let (reply, rest) = mpsc::channel();
    bench.commands.send(Command::Stop(reply)).unwrap();
    assert!(bench.worker.step().is_break());
    let mut frames: usize = removed.into_iter().map(|b| b.close().len()).sum();
    frames += rest
        .recv()
        .unwrap()
        .into_iter()
        .map(|(_, b)| b.close().len())
        .sum::<usize>();
    assert_eq!(
        frames + bench.umem.pooled(),
        FRAMES as usize,
        "every frame is in the pool or was held by a queue"
    );
}

#[test]
fn busy_time_loops_and_table_sizes_are_published() {
    let mut bench = Bench::new(2);
    let p1 = bench.queue(1, Ingress::Port(1));
    let p2 = bench.queue(2, Ingress::Port(2));
    bench.run();
    let idle = bench.worker.dp.shared.counters.worker();
    assert_eq!(idle.busy_ns, 0, "no packet, no busy time");
    assert_eq!(idle.loops, 8);
    Bench::receive(&p1, frame(BROADCAST, A));
    Bench::receive(&p2, frame(A, B));
    bench.run();
    bench.worker.publish_stats();
    let stats = bench.worker.dp.shared.counters.worker();
    assert_eq!(stats.loops, 16);
    assert!(stats.busy_loops > 0);
    assert!(stats.busy_ns > 0, "busy iterations took time");
    assert_eq!(stats.mac_entries, 2, "A and B learned");
    assert_eq!(stats.fast_path_entries, 0, "no fast path");
    assert_eq!(bench.worker.dp.shared.counters.loops(), 16);
}

#[test]
fn receive_rings_are_topped_up_before_the_worker_sleeps() {
    let mut bench = Bench::new(3);
    bench.worker.setup.busy_poll = false;
    bench.queue(1, Ingress::Port(1));
    bench.queue(2, Ingress::Port(2));
    // A queue that only sends gets nothing.
    bench.queue(3, Ingress::None);
    bench.run();
    let lent = |bench: &Bench| -> Vec<u32> {
        bench
            .worker
            .dp
            .queues
            .iter()
            .map(|q| q.backend.lent())
            .collect()
    };
    // Forwarding, every ring holds the target (64 here).
    assert_eq!(lent(&bench), [64, 64, 0]);
    // Idle until it sleeps: the budget (FRAMES / 2), shared by the two receiving rings, is
    // lent, so that a burst after idle has room while the worker wakes.
    while bench.worker.dp.shared.counters.worker().sleeps == 0 {
        assert!(bench.worker.step().is_continue());
    }
    assert_eq!(lent(&bench), [FRAMES / 4, FRAMES / 4, 0]);
    // Once traffic flows, the steady refill keeps a ring about the target again (it refills
    // by batches of 32), not at its idle share.
    let p1 = bench.wires[0].1.clone();
    for _ in 0..200 {
        Bench::receive(&p1, frame(BROADCAST, A));
    }
    bench.run();
    assert!((32..=64).contains(&lent(&bench)[0]), "{:?}", lent(&bench));
    assert_eq!(
        Bench::sent(&bench.wires[1].1).len(),
        200,
        "the burst went through"
    );
}

/// An IPv4 TCP frame from A to B, 10.0.0.1:1000 -> 10.0.0.2:80, with a complete checksum or,
/// with `partial`, the pseudo-header sum that Linux leaves for offload (as a container's veth
/// delivers it).
fn tcp_frame(partial: bool) -> Vec<u8> {
    use flowtable::wire::{checksum, ipv4};

    let (src, dst) = (Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2));
    let mut segment = vec![0u8; 20];
    segment[0..2].copy_from_slice(&1000u16.to_be_bytes());
    segment[2..4].copy_from_slice(&80u16.to_be_bytes());
    segment[12] = 0x50;
    segment.extend_from_slice(b"GET / HTTP/1.1\r\n");
    let len = segment.len() as u16;
    let pseudo = checksum::pseudo_header_v4(src, dst, 6, len);
    if partial {
        segment[16..18].copy_from_slice(&checksum::fold(pseudo).to_be_bytes());
    } else {
        checksum::fill(&mut segment, pseudo, 16, false);
    }
    let mut f = frame(B, A)[..12].to_vec();
    f.extend_from_slice(&[0x08, 0x00]);
    let mut header = [0u8; 20];
    ipv4::emit(&mut header, src, dst, 6, len, 64);
    f.extend_from_slice(&header);
    f.extend_from_slice(&segment);
    f
}

/// `bytes` in a frame of the worker's UMEM, as a queue hands it over.
fn received(bench: &mut Bench, bytes: &[u8]) -> Packet {
    let mut frame = bench.worker.dp.free[0].pop().expect("a free frame");
    let head = FRAME_HEADROOM as usize;
    bench.worker.dp.areas[0].bytes_mut(&mut frame)[head..head + bytes.len()].copy_from_slice(bytes);
    Packet {
        frame,
        offset: FRAME_HEADROOM,
        len: bytes.len() as u32,
    }
}

/// A decision that rewrites the destination address and port reaches the output with both
/// rewritten and every checksum valid (computed from scratch), also for a frame whose TCP
/// checksum the sender left partial: the worker finishes it on receipt, before the
/// incremental updates. Without that finishing the updated checksum would be wrong, which the
/// last case shows.
#[test]
fn header_rewrites_reach_the_output_with_valid_checksums() {
    use flowtable::fuzzing::{Checksums, checksums};

    let mut bench = Bench::new(2);
    let _p1 = bench.queue(1, Ingress::Port(1));
    let p2 = bench.queue(2, Ingress::Port(2));
    bench.run();
    let new_dst = Ipv4Addr::new(10, 0, 0, 99);
    let decision = Decision::from_steps(&[
        Step::SetIpDst(IpAddr::V4(new_dst)),
        Step::SetTpDst(8080),
        Step::Output { port: 2, tag: None },
    ]);
    let valid = Checksums {
        ipv4_header: Some(true),
        l4: Some(true),
    };
    for (partial, finish) in [(false, false), (false, true), (true, true), (true, false)] {
        let bytes = tcp_frame(partial);
        assert_eq!(checksums(&bytes).l4, Some(!partial));
        let mut packet = received(&mut bench, &bytes);
        bench
            .worker
            .dp
            .parse(&mut packet, 1, finish)
            .expect("a TCP frame parses");
        let config = bench.worker.config.clone();
        bench.worker.dp.execute(&decision, &config, packet, 1);
        bench.run();
        let sent = Bench::sent(&p2);
        assert_eq!(sent.len(), 1, "partial {partial}, finish {finish}");
        let out = &sent[0];
        assert_eq!(out[30..34], new_dst.octets());
        assert_eq!(out[36..38], 8080u16.to_be_bytes());
        assert_eq!(out[14 + 20 + 20..], bytes[14 + 20 + 20..], "the payload");
        if partial && !finish {
            assert_eq!(
                checksums(out).l4,
                Some(false),
                "a partial checksum, updated"
            );
        } else {
            assert_eq!(checksums(out), valid, "partial {partial}, finish {finish}");
        }
    }
}
