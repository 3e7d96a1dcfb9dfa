//! The reference: no switch at all, but an XDP program on each host veth that redirects every
//! frame to the other veth through a one-slot DEVMAP, in native (driver) mode:
//!
//! ```text
//! r1 = devmap ll              ; holds the other veth's ifindex at key 0
//! r2 = 0                      ; key
//! r3 = XDP_PASS               ; flags: the action if the slot is empty
//! call bpf_redirect_map
//! exit
//! ```
//!
//! A veth takes redirected frames only when its peer can run NAPI (an XDP program or GRO on
//! the peer), so GRO is turned on for both namespaces' `eth0` (the sink's counter is a tc
//! program, which gives the veth no NAPI).
//! The programs are bpf_links held by this process: dropping them detaches them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use anyhow::Context;
use serde_json::{Value, json};
use xvs_sys::bpf::abi::{action, helper};
use xvs_sys::bpf::{Insn, Map, MapType, XdpLink, XdpMode, asm, load_xdp};
use xvs_sys::netdev;

use super::Switch;
use crate::lab::Topology;

/// The program: redirect to whatever device slot 0 of `devmap` holds.
fn redirect_program(devmap: BorrowedFd<'_>) -> Vec<Insn> {
    use asm::*;
    let map = load_map_fd(1, devmap.as_raw_fd());
    vec![
        map[0],
        map[1],
        mov_imm(2, 0),
        mov_imm(3, action::XDP_PASS),
        call(helper::REDIRECT_MAP),
        exit(),
    ]
}

/// One direction: a program on `from` redirecting to `to`.
#[derive(Debug)]
struct Direction {
    // Field order is drop order: detach first, then the program and its map go.
    link: XdpLink,
    _prog: OwnedFd,
    _map: Map,
}

impl Direction {
    fn attach(from: &str, to: &str) -> anyhow::Result<Direction> {
        let to_index = netdev::if_nametoindex(to).with_context(|| format!("no interface {to}"))?;
        let from_index =
            netdev::if_nametoindex(from).with_context(|| format!("no interface {from}"))?;
        let map = Map::create(MapType::Devmap, 4, 4, 1, 0, "xe_redirect")
            .context("creating the DEVMAP")?;
        map.update(&0u32.to_ne_bytes(), &to_index.to_ne_bytes(), 0)
            .with_context(|| format!("putting {to} in the DEVMAP"))?;
        let prog = load_xdp(&redirect_program(map.as_fd()), "xe_redirect")?;
        let link = XdpLink::attach(prog.as_fd(), from_index, from, Some(XdpMode::Driver))?;
        Ok(Direction {
            link,
            _prog: prog,
            _map: map,
        })
    }
}

/// Both directions of the redirect.
#[derive(Debug)]
pub(crate) struct XdpRedirect {
    forward: Direction,
    backward: Direction,
}

impl XdpRedirect {
    /// Attaches the programs and turns GRO on in the namespaces (restored by the topology).
    ///
    /// # Errors
    /// Map, load or attach failures, or ethtool failing.
    pub(crate) fn start(topo: &mut Topology) -> anyhow::Result<XdpRedirect> {
        let (src_ns, sink_ns) = (topo.src_ns.clone(), topo.sink_ns.clone());
        topo.set_offload(Some(&src_ns), "eth0", "gro", true)?;
        topo.set_offload(Some(&sink_ns), "eth0", "gro", true)?;
        Ok(XdpRedirect {
            forward: Direction::attach(&topo.vsrc, &topo.vsink)?,
            backward: Direction::attach(&topo.vsink, &topo.vsrc)?,
        })
    }
}

impl Switch for XdpRedirect {
    fn setup(&self) -> Value {
        json!({
            "program": "bpf_redirect_map into a DEVMAP, both directions",
            "xdp_mode": [self.forward.link.mode().name(), self.backward.link.mode().name()],
            "gro_on_namespace_eth0": true,
        })
    }
}
