//! The tc sink, `xvs-pktgen count --sink tc`, and the kernel fact that makes the bench need
//! it: a packet that a tc program hands to a veth's peer with `bpf_redirect_peer` enters the
//! peer's stack without going through the veth's NAPI, so a tcx ingress program on the peer
//! sees it and an XDP program there does not.

#[expect(
    dead_code,
    reason = "each test binary uses a part of the shared helpers"
)]
mod common;

use std::fs::File;
use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::Duration;

use common::{IP_B, VethPair, can_run, count, spawn_pktgen_until, summary};
use nix::sched::{CloneFlags, setns};
use nix::sys::socket::{setsockopt, sockopt};
use xvs_sys::bpf::abi::helper;
use xvs_sys::bpf::asm::{call, exit, mov_imm};
use xvs_sys::bpf::{TcxLink, load_sched_cls};
use xvs_sys::netdev;
use xvs_testkit::{Netns, unique_name};

/// How long a test waits for a counter to end after it should have.
const GRACE: Duration = Duration::from_secs(20);

/// Two "containers": namespaces whose `eth0` is a veth to a host end (`{id}hs`, `{id}hd`),
/// IPv6 off, everything up. Dropped in field order: the veths, the namespaces, the lock.
struct Containers {
    src_ns: String,
    dst_ns: String,
    src_host: String,
    dst_host: String,
    _veths: [xvs_testkit::VethPair; 2],
    _namespaces: [Netns; 2],
    _serial: std::sync::MutexGuard<'static, ()>,
}

/// The MAC address of the destination container's `eth0`.
const DST_MAC: &str = "02:00:5e:00:01:0d";

impl Containers {
    fn new() -> Containers {
        let serial = xvs_testkit::serial();
        let id = unique_name("xrp");
        let src = Netns::new(format!("{id}s")).expect("make the source namespace");
        let dst = Netns::new(format!("{id}d")).expect("make the destination namespace");
        let (src_host, dst_host) = (format!("{id}hs"), format!("{id}hd"));
        let mut veths = Vec::new();
        for (ns, host, mac) in [
            (&src, &src_host, "02:00:5e:00:01:0a"),
            (&dst, &dst_host, DST_MAC),
        ] {
            for key in ["all", "default"] {
                ns.sysctl(&format!("net.ipv6.conf.{key}.disable_ipv6=1"))
                    .expect("turn IPv6 off");
            }
            let veth = xvs_testkit::VethPair::build(host, "eth0")
                .peer_netns(ns)
                .peer_address(mac)
                .create()
                .expect("make a veth pair");
            xvs_testkit::sysctl(&format!("net.ipv6.conf.{host}.disable_ipv6=1"))
                .expect("turn IPv6 off on the host end");
            veth.set_up().expect("bring the veths up");
            veths.push(veth);
        }
        Containers {
            src_ns: src.name().to_owned(),
            dst_ns: dst.name().to_owned(),
            src_host,
            dst_host,
            _veths: veths.try_into().expect("two pairs"),
            _namespaces: [src, dst],
            _serial: serial,
        }
    }

    /// Counts on the destination's `eth0` with `sink` while the source sends 64-byte frames
    /// at 10 kpps for a second; returns (sent, counted, the growth of `eth0`'s rx_packets).
    fn send_and_count(&self, sink: &str) -> (u64, u64, u64) {
        let counter = spawn_pktgen_until(
            &self.dst_ns,
            &["count", "--dev", "eth0", "--sink", sink, "--json"],
            "counting on",
        );
        let rx_before = rx_packets(&self.dst_ns);
        // AF_XDP TX hands the frames to the veth as skbs: the host end takes them without
        // NAPI of its own.
        let sent = common::pktgen_in(
            &self.src_ns,
            &[
                "send",
                "--dev",
                "eth0",
                "--dst-mac",
                DST_MAC,
                "--mode",
                "afxdp",
                "--rate",
                "10000",
                "--duration",
                "1",
                "--json",
            ],
        );
        assert!(
            sent.status.success(),
            "send failed: {}",
            String::from_utf8_lossy(&sent.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
        let rx = rx_packets(&self.dst_ns) - rx_before;
        counter.interrupt();
        let counted = counter.finish(GRACE);
        assert!(counted.success, "count failed: {}", counted.stderr);
        let sent = summary(&String::from_utf8_lossy(&sent.stdout));
        let counted = summary(&counted.stdout);
        eprintln!("{sink} sink: sent {sent}\ncounted {counted}\neth0 rx_packets +{rx}");
        (
            count(&sent, "/sent_packets"),
            count(&counted, "/received_packets"),
            rx,
        )
    }
}

/// `rx_packets` of `eth0` in namespace `ns`.
fn rx_packets(ns: &str) -> u64 {
    let json = xvs_testkit::must(&["ip", "-n", ns, "-j", "-s", "link", "show", "eth0"]);
    let v: serde_json::Value = serde_json::from_str(&json).expect("ip -j");
    v[0]["stats64"]["rx"]["packets"]
        .as_u64()
        .unwrap_or_else(|| panic!("no rx packets in {v}"))
}

/// The experiment behind the bench's tc sink. On the source container's host end, a tcx
/// ingress program `bpf_redirect_peer`s every packet to the destination's host end, which
/// puts it straight into the destination container's `eth0` (as xvs's tc fast path does).
/// A tc sink on that `eth0` counts (nearly) every frame; an XDP sink there counts none,
/// though `eth0`'s own rx counter shows the frames arrived.
#[test]
fn redirect_peer_reaches_the_peers_tcx_ingress_and_not_its_xdp() {
    if !can_run("redirect_peer_reaches_the_peers_tcx_ingress_and_not_its_xdp") {
        return;
    }
    let lab = Containers::new();
    let dst_host = netdev::if_nametoindex(&lab.dst_host).expect("the destination's host end");
    let src_host = netdev::if_nametoindex(&lab.src_host).expect("the source's host end");
    // bpf_redirect_peer(dst_host, 0): TC_ACT_REDIRECT on success, TC_ACT_SHOT otherwise.
    let prog = load_sched_cls(
        &[
            mov_imm(1, dst_host as i32),
            mov_imm(2, 0),
            call(helper::REDIRECT_PEER),
            exit(),
        ],
        "xpg_peer",
    )
    .expect("the verifier takes the redirect");
    let link = match TcxLink::attach(prog.as_fd(), src_host, &lab.src_host) {
        Ok(link) => link,
        Err(e) => xvs_testkit::skip!("no tcx here: {e}"),
    };

    let (sent, counted, rx) = lab.send_and_count("tc");
    assert!(sent > 0, "nothing was sent");
    assert!(
        counted * 10 >= sent * 9,
        "the tc sink saw {counted} of {sent} redirected frames"
    );
    assert!(rx * 10 >= sent * 9, "eth0 received {rx} of {sent}");

    let (sent, counted, rx) = lab.send_and_count("xdp");
    assert!(rx * 10 >= sent * 9, "eth0 received {rx} of {sent}");
    assert_eq!(
        counted, 0,
        "the XDP sink saw redirected frames, which skip the veth's NAPI"
    );
    drop(link);
}

/// A GSO skb counts as its segments: UDP datagrams sent with `UDP_SEGMENT` cross the veth
/// whole (it takes UDP GSO) and reach the sink as one skb of `gso_segs` segments each.
#[test]
fn the_tc_sink_counts_a_gso_skb_as_its_segments() {
    if !can_run("the_tc_sink_counts_a_gso_skb_as_its_segments") {
        return;
    }
    let pair = VethPair::new_ipv4();
    let counter = pair.spawn_until(
        &pair.ns_b,
        &["count", "--dev", &pair.dev_b, "--sink", "tc", "--json"],
        "counting on",
    );
    let netns = File::open(format!("/run/netns/{}", pair.ns_a)).expect("side A's namespace");
    // A thread of its own enters side A's namespace (setns changes the calling thread only).
    std::thread::spawn(move || {
        setns(netns.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
        let socket = UdpSocket::bind("0.0.0.0:0").expect("a UDP socket");
        let to = (IP_B, 9);
        setsockopt(&socket, sockopt::UdpGsoSegment, &100).expect("UDP_SEGMENT");
        for _ in 0..3 {
            // 1000 bytes in segments of 100: one skb of 10 segments.
            socket.send_to(&[0; 1000], to).expect("send a GSO datagram");
        }
        setsockopt(&socket, sockopt::UdpGsoSegment, &0).expect("UDP_SEGMENT off");
        for _ in 0..2 {
            socket.send_to(&[0; 100], to).expect("send a datagram");
        }
    })
    .join()
    .expect("the sending thread");
    std::thread::sleep(Duration::from_millis(300));
    counter.interrupt();
    let counted = counter.finish(GRACE);
    assert!(counted.success, "count failed: {}", counted.stderr);
    let counted = summary(&counted.stdout);
    eprintln!("counted {counted}");
    assert_eq!(counted["mode"], "tc");
    assert_eq!(count(&counted, "/received_packets"), 3 * 10 + 2);
    // Bytes: each skb's len, Ethernet header included (a GSO skb's headers once), and the
    // FCS of every packet.
    let skb = |payload: u64| 14 + 20 + 8 + payload;
    assert_eq!(
        count(&counted, "/received_bytes"),
        3 * skb(1000) + 2 * skb(100) + 32 * 4
    );
}

#[test]
fn the_tc_sink_does_not_combine_with_afxdp_receiving() {
    for mode in ["--latency", "--inspect"] {
        let out = std::process::Command::new(common::pktgen())
            .args(["count", "--dev", "lo", "--sink", "tc", mode])
            .output()
            .expect("run xvs-pktgen");
        assert!(!out.status.success());
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(e.contains("cannot be used with"), "{e}");
    }
}
