//! XDP programs, generated as bytecode in Rust (no C toolchain), and their attachment.
//!
//! The default program steers every frame of a queue to the AF_XDP socket bound to that queue:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)      ; ctx->rx_queue_index
//! r1 = xskmap ll              ; the port's XSKMAP
//! r3 = XDP_PASS               ; flags: the action when the slot is empty
//! call bpf_redirect_map
//! exit
//! ```
//!
//! It is attached with a bpf_link, which the kernel detaches when the last fd of the link
//! closes: a crashed switch leaves no program behind (one attached through netlink would
//! survive it, and block the next attach).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use crate::sys::SyscallError;
use crate::sys::bpf::{self, Insn, Map, MapType, ProgLoadError};

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

/// A tiny eBPF assembler: just the instructions xvs generates.
pub mod asm {
    use super::Insn;

    const BPF_LD: u8 = 0x00;
    const BPF_LDX: u8 = 0x01;
    const BPF_ST: u8 = 0x02;
    const BPF_STX: u8 = 0x03;
    const BPF_JMP: u8 = 0x05;
    const BPF_ALU64: u8 = 0x07;

    const BPF_W: u8 = 0x00;
    const BPF_H: u8 = 0x08;
    const BPF_B: u8 = 0x10;
    const BPF_DW: u8 = 0x18;
    const BPF_IMM: u8 = 0x00;
    const BPF_MEM: u8 = 0x60;
    const BPF_ATOMIC: u8 = 0xc0;

    const BPF_K: u8 = 0x00;
    const BPF_X: u8 = 0x08;

    /// ALU operations.
    #[derive(Debug, Clone, Copy)]
    #[repr(u8)]
    pub enum Alu {
        /// `+=`
        Add = 0x00,
        /// `-=`
        Sub = 0x10,
        /// `&=`
        And = 0x50,
        /// `|=`
        Or = 0x40,
        /// `<<=`
        Lsh = 0x60,
        /// `>>=`
        Rsh = 0x70,
        /// `=`
        Mov = 0xb0,
        /// `^=`
        Xor = 0xa0,
    }

    /// Jump conditions.
    #[derive(Debug, Clone, Copy)]
    #[repr(u8)]
    pub enum Jmp {
        /// Always.
        Ja = 0x00,
        /// `==`
        Eq = 0x10,
        /// `>` unsigned.
        Gt = 0x20,
        /// `>=` unsigned.
        Ge = 0x30,
        /// `!=`
        Ne = 0x50,
        /// `<` unsigned.
        Lt = 0xa0,
        /// `<=` unsigned.
        Le = 0xb0,
        /// `<` signed.
        Slt = 0xc0,
    }

    /// Access sizes.
    #[derive(Debug, Clone, Copy)]
    pub enum Size {
        /// 1 byte.
        B,
        /// 2 bytes.
        H,
        /// 4 bytes.
        W,
        /// 8 bytes.
        Dw,
    }

    impl Size {
        fn code(self) -> u8 {
            match self {
                Size::B => BPF_B,
                Size::H => BPF_H,
                Size::W => BPF_W,
                Size::Dw => BPF_DW,
            }
        }
    }

    fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }

    /// `dst op= imm` (64-bit).
    pub fn alu_imm(op: Alu, dst: u8, imm: i32) -> Insn {
        insn(BPF_ALU64 | op as u8 | BPF_K, dst, 0, 0, imm)
    }

    /// `dst op= src` (64-bit).
    pub fn alu_reg(op: Alu, dst: u8, src: u8) -> Insn {
        insn(BPF_ALU64 | op as u8 | BPF_X, dst, src, 0, 0)
    }

    /// `dst = imm`.
    pub fn mov_imm(dst: u8, imm: i32) -> Insn {
        alu_imm(Alu::Mov, dst, imm)
    }

    /// `dst = src`.
    pub fn mov_reg(dst: u8, src: u8) -> Insn {
        alu_reg(Alu::Mov, dst, src)
    }

    /// `dst = *(size *)(src + off)`.
    pub fn load(size: Size, dst: u8, src: u8, off: i16) -> Insn {
        insn(BPF_LDX | BPF_MEM | size.code(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = src`.
    pub fn store_reg(size: Size, dst: u8, src: u8, off: i16) -> Insn {
        insn(BPF_STX | BPF_MEM | size.code(), dst, src, off, 0)
    }

    /// `*(size *)(dst + off) = imm`.
    pub fn store_imm(size: Size, dst: u8, off: i16, imm: i32) -> Insn {
        insn(BPF_ST | BPF_MEM | size.code(), dst, 0, off, imm)
    }

    /// `lock *(u64 *)(dst + off) += src`.
    pub fn atomic_add64(dst: u8, src: u8, off: i16) -> Insn {
        insn(BPF_STX | BPF_ATOMIC | BPF_DW, dst, src, off, 0)
    }

    /// `dst = map` (a 64-bit immediate load of a map fd; two instructions).
    pub fn load_map_fd(dst: u8, fd: i32) -> [Insn; 2] {
        const BPF_PSEUDO_MAP_FD: u8 = 1;
        [
            insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, fd),
            insn(0, 0, 0, 0, 0),
        ]
    }

    /// `dst = &map.value[offset]` for a single-entry ARRAY map: a direct pointer into the
    /// value, with no helper call (two instructions).
    pub fn load_map_value(dst: u8, fd: i32, offset: i32) -> [Insn; 2] {
        const BPF_PSEUDO_MAP_VALUE: u8 = 2;
        [
            insn(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_VALUE, 0, fd),
            insn(0, 0, 0, 0, offset),
        ]
    }

    /// `if dst op imm goto +off`.
    pub fn jmp_imm(op: Jmp, dst: u8, imm: i32, off: i16) -> Insn {
        insn(BPF_JMP | op as u8 | BPF_K, dst, 0, off, imm)
    }

    /// `if dst op src goto +off`.
    pub fn jmp_reg(op: Jmp, dst: u8, src: u8, off: i16) -> Insn {
        insn(BPF_JMP | op as u8 | BPF_X, dst, src, off, 0)
    }

    /// `goto +off`.
    pub fn ja(off: i16) -> Insn {
        insn(BPF_JMP | Jmp::Ja as u8, 0, 0, off, 0)
    }

    /// `call helper`.
    pub fn call(helper: i32) -> Insn {
        insn(BPF_JMP | 0x80, 0, 0, 0, helper)
    }

    /// `exit`.
    pub fn exit() -> Insn {
        insn(BPF_JMP | 0x90, 0, 0, 0, 0)
    }

    /// `dst = htobe(dst)` of `bits` (16, 32 or 64): a byte swap on little-endian hosts, so a
    /// value loaded from the packet becomes its numeric value, and back.
    pub fn to_be(dst: u8, bits: i32) -> Insn {
        const BPF_ALU: u8 = 0x04;
        const BPF_END: u8 = 0xd0;
        const BPF_TO_BE: u8 = 0x08;
        insn(BPF_ALU | BPF_END | BPF_TO_BE, dst, 0, 0, bits)
    }

    /// A program under construction, with named jump targets resolved at the end.
    #[derive(Debug, Default)]
    pub struct Builder {
        insns: Vec<Insn>,
        labels: std::collections::HashMap<&'static str, usize>,
        fixups: Vec<(usize, &'static str)>,
    }

    impl Builder {
        /// Appends instructions.
        pub fn push(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Self {
            self.insns.extend(insns);
            self
        }

        /// Marks the next instruction as `name`.
        ///
        /// # Panics
        /// If `name` is already defined.
        pub fn label(&mut self, name: &'static str) -> &mut Self {
            let previous = self.labels.insert(name, self.insns.len());
            assert!(previous.is_none(), "label {name} defined twice");
            self
        }

        fn jump(&mut self, insn: Insn, target: &'static str) -> &mut Self {
            self.fixups.push((self.insns.len(), target));
            self.insns.push(insn);
            self
        }

        /// `if dst op imm goto target`.
        pub fn jmp_imm_to(
            &mut self,
            op: Jmp,
            dst: u8,
            imm: i32,
            target: &'static str,
        ) -> &mut Self {
            self.jump(jmp_imm(op, dst, imm, 0), target)
        }

        /// `if dst op src goto target`.
        pub fn jmp_reg_to(&mut self, op: Jmp, dst: u8, src: u8, target: &'static str) -> &mut Self {
            self.jump(jmp_reg(op, dst, src, 0), target)
        }

        /// `goto target`.
        pub fn ja_to(&mut self, target: &'static str) -> &mut Self {
            self.jump(ja(0), target)
        }

        /// The instructions, with every jump resolved.
        ///
        /// # Panics
        /// If a jump names an undefined label or is out of range.
        pub fn finish(mut self) -> Vec<Insn> {
            for (at, name) in std::mem::take(&mut self.fixups) {
                let target = *self
                    .labels
                    .get(name)
                    .unwrap_or_else(|| panic!("undefined label {name}"));
                let off = target as i64 - at as i64 - 1;
                self.insns[at].off = i16::try_from(off).expect("jump in range");
            }
            self.insns
        }
    }
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

/// Errors of loading and attaching programs.
#[derive(Debug, thiserror::Error)]
pub enum ProgError {
    /// A map could not be created or written.
    #[error(transparent)]
    Map(SyscallError),
    /// The verifier refused the program.
    #[error("the kernel refused the XDP program: {0}")]
    Load(#[from] ProgLoadError),
    /// The program could not be attached in any mode.
    #[error("cannot attach XDP to {ifname}: {error}")]
    Attach {
        /// The interface.
        ifname: String,
        /// The last attach error.
        #[source]
        error: SyscallError,
    },
}

/// The program that redirects each queue's frames to its AF_XDP socket.
pub fn redirect_to_xsk(xskmap: BorrowedFd<'_>) -> Vec<Insn> {
    use asm::*;
    let map = load_map_fd(1, xskmap.as_raw_fd());
    vec![
        load(Size::W, 2, 1, xdp_md::RX_QUEUE_INDEX),
        map[0],
        map[1],
        mov_imm(3, action::XDP_PASS),
        call(helper::REDIRECT_MAP),
        exit(),
    ]
}

/// Loads an XDP program.
///
/// # Errors
/// The verifier refuses it (the error carries its log) or CAP_BPF is missing.
pub fn load_xdp(insns: &[Insn], name: &str) -> Result<OwnedFd, ProgError> {
    Ok(bpf::prog_load(bpf::PROG_TYPE_XDP, insns, name, 0)?)
}

/// An XSKMAP: queue index → AF_XDP socket.
#[derive(Debug)]
pub struct XskMap(Map);

impl XskMap {
    /// A map for `queues` queues.
    ///
    /// # Errors
    /// `BPF_MAP_CREATE` fails.
    pub fn new(queues: u32, name: &str) -> Result<XskMap, SyscallError> {
        Map::create(MapType::Xskmap, 4, 4, queues.max(1), 0, name).map(XskMap)
    }

    /// Steers `queue` to `socket`.
    ///
    /// # Errors
    /// `BPF_MAP_UPDATE_ELEM` fails (queue out of range, socket not bound).
    pub fn set(&self, queue: u32, socket: BorrowedFd<'_>) -> Result<(), SyscallError> {
        let fd = socket.as_raw_fd() as u32;
        self.0.update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), 0)
    }

    /// Stops steering `queue` to any socket (its frames go to the stack again).
    ///
    /// # Errors
    /// `BPF_MAP_DELETE_ELEM` fails.
    pub fn clear(&self, queue: u32) -> Result<(), SyscallError> {
        self.0.delete(&queue.to_ne_bytes()).map(drop)
    }

    /// The map's fd.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// Where an XDP program runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    /// In the driver (native XDP): `drv`.
    Driver,
    /// On the skb path (generic XDP): `skb`.
    Generic,
}

impl XdpMode {
    fn flags(self) -> u32 {
        const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
        const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
        match self {
            XdpMode::Driver => XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => XDP_FLAGS_SKB_MODE,
        }
    }

    /// `drv` or `skb`, as `ip link` says.
    pub fn name(self) -> &'static str {
        match self {
            XdpMode::Driver => "drv",
            XdpMode::Generic => "skb",
        }
    }
}

/// An XDP program attached to an interface by a bpf_link. Dropping it detaches the program.
#[derive(Debug)]
pub struct XdpLink {
    link: OwnedFd,
    mode: XdpMode,
}

impl XdpLink {
    /// Attaches `prog` to `ifindex`, in `mode` if given, else native first and generic if the
    /// driver has no native XDP.
    ///
    /// # Errors
    /// [`ProgError::Attach`] with the last error: EBUSY when another program is attached.
    pub fn attach(
        prog: BorrowedFd<'_>,
        ifindex: u32,
        ifname: &str,
        mode: Option<XdpMode>,
    ) -> Result<XdpLink, ProgError> {
        let modes: &[XdpMode] = match mode {
            Some(XdpMode::Driver) => &[XdpMode::Driver],
            Some(XdpMode::Generic) => &[XdpMode::Generic],
            None => &[XdpMode::Driver, XdpMode::Generic],
        };
        let mut last = None;
        for &mode in modes {
            match bpf::link_create_xdp(prog, ifindex, mode.flags()) {
                Ok(link) => return Ok(XdpLink { link, mode }),
                // Another program is there: trying another mode will not help.
                Err(e) if e.errno() == Some(libc::EBUSY) || e.errno() == Some(libc::EEXIST) => {
                    return Err(ProgError::Attach {
                        ifname: ifname.to_owned(),
                        error: e,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(ProgError::Attach {
            ifname: ifname.to_owned(),
            error: last.expect("at least one mode tried"),
        })
    }

    /// The mode the program runs in.
    pub fn mode(&self) -> XdpMode {
        self.mode
    }

    /// Replaces the program atomically.
    ///
    /// # Errors
    /// `BPF_LINK_UPDATE` fails (the interface went away).
    pub fn replace(&self, prog: BorrowedFd<'_>) -> Result<(), SyscallError> {
        bpf::link_update(self.link.as_fd(), prog)
    }
}
