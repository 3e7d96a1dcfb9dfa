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
