//! The BPF program ABI xvs writes against: helper ids, return codes, context offsets.
//!
//! Numbers are those of `<linux/bpf.h>`; a hook's program generator reads them from here and
//! nowhere else.

/// XDP return codes.
pub mod action {
    /// Drop the frame and signal an error (the `xdp_exception` tracepoint fires).
    pub const XDP_ABORTED: i32 = 0;
    /// Drop the frame.
    pub const XDP_DROP: i32 = 1;
    /// Let the kernel stack have it.
    pub const XDP_PASS: i32 = 2;
    /// Send it back out of the interface it came in on.
    pub const XDP_TX: i32 = 3;
    /// Redirect it (to a socket, a device, a CPU).
    pub const XDP_REDIRECT: i32 = 4;
}

/// Helper function ids.
pub mod helper {
    /// `bpf_map_lookup_elem`.
    pub const MAP_LOOKUP_ELEM: i32 = 1;
    /// `bpf_redirect_map`.
    pub const REDIRECT_MAP: i32 = 51;
    /// `bpf_ktime_get_ns`.
    pub const KTIME_GET_NS: i32 = 5;
    /// `bpf_csum_diff`.
    pub const CSUM_DIFF: i32 = 28;
    /// `bpf_xdp_adjust_head`: grows or shrinks the frame at its start.
    pub const XDP_ADJUST_HEAD: i32 = 44;
    /// `bpf_xdp_load_bytes`: copies bytes of the frame out.
    pub const XDP_LOAD_BYTES: i32 = 189;
    /// `bpf_ktime_get_coarse_ns`: a cheap clock of jiffy resolution.
    pub const KTIME_GET_COARSE_NS: i32 = 160;
    /// `bpf_xdp_adjust_tail`: grows or shrinks the frame at its end.
    pub const XDP_ADJUST_TAIL: i32 = 65;
    /// `bpf_xdp_get_buff_len`: the frame's length, fragments included.
    pub const XDP_GET_BUFF_LEN: i32 = 188;
    /// `bpf_l3_csum_replace`: updates an L3 checksum for a changed field.
    pub const L3_CSUM_REPLACE: i32 = 10;
    /// `bpf_skb_vlan_push`: tags an skb (the tag is metadata until it leaves).
    pub const SKB_VLAN_PUSH: i32 = 18;
    /// `bpf_skb_vlan_pop`: removes an skb's tag.
    pub const SKB_VLAN_POP: i32 = 19;
    /// `bpf_redirect`: to a device's egress (or ingress with `BPF_F_INGRESS`).
    pub const REDIRECT: i32 = 23;
    /// `bpf_get_hash_recalc`: the skb's flow hash, computed if it has none.
    pub const GET_HASH_RECALC: i32 = 34;
    /// `bpf_skb_pull_data`: makes the first bytes of an skb linear (readable directly).
    pub const SKB_PULL_DATA: i32 = 39;
    /// `bpf_skb_change_head`: adds room in front of the MAC header, keeping the network
    /// header, the protocol and GSO as they are.
    pub const SKB_CHANGE_HEAD: i32 = 43;
    /// `bpf_redirect_peer`: to the ingress of a veth's (or netkit's) peer, in its namespace,
    /// without the backlog.
    pub const REDIRECT_PEER: i32 = 155;
}

/// tc (and tcx) return codes.
pub mod tc_action {
    /// Let the skb go on (tcx: `TCX_PASS`).
    pub const TC_ACT_OK: i32 = 0;
    /// Drop it.
    pub const TC_ACT_SHOT: i32 = 2;
    /// A redirect helper said where it goes.
    pub const TC_ACT_REDIRECT: i32 = 7;
}

/// Offsets in `struct __sk_buff`.
pub mod sk_buff {
    /// `len`: bytes of the skb, all segments of a GSO skb.
    pub const LEN: i16 = 0;
    /// `queue_mapping`: for a received skb, its RX queue plus one (0: none recorded), which
    /// the transmit queue is picked from when it is sent on (writable).
    pub const QUEUE_MAPPING: i16 = 12;
    /// `protocol`: the EtherType (network order), after any VLAN tag.
    pub const PROTOCOL: i16 = 16;
    /// `vlan_present`: whether a tag is held as metadata (not in the data).
    pub const VLAN_PRESENT: i16 = 20;
    /// `vlan_tci`: that tag's TCI.
    pub const VLAN_TCI: i16 = 24;
    /// `vlan_proto`: that tag's protocol (network order).
    pub const VLAN_PROTO: i16 = 28;
    /// `ifindex`: the device the skb is on.
    pub const IFINDEX: i16 = 40;
    /// `data`.
    pub const DATA: i16 = 76;
    /// `data_end`.
    pub const DATA_END: i16 = 80;
    /// `gso_segs`: segments of a GSO skb (0 or 1 otherwise).
    pub const GSO_SEGS: i16 = 164;
}

/// Offsets in `struct xdp_md`.
pub mod xdp_md {
    /// `data`.
    pub const DATA: i16 = 0;
    /// `data_end`.
    pub const DATA_END: i16 = 4;
    /// `ingress_ifindex`.
    pub const INGRESS_IFINDEX: i16 = 12;
    /// `rx_queue_index`.
    pub const RX_QUEUE_INDEX: i16 = 16;
}
