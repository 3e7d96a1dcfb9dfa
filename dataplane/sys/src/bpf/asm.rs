//! A small eBPF assembler: the instructions xvs generates, and a [`Builder`] whose jumps go
//! to typed [`Label`]s resolved when the program is finished.
//!
//! Every program of the workspace (the dataplane's hooks, the generator's, the bench's) is
//! written with it, so there is one encoder and one label resolver.

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
    /// `%=` (unsigned; a zero divisor gives the dividend).
    Mod = 0x90,
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

/// A jump target: made by [`Builder::label`], placed by [`Builder::bind`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Label(usize);

/// A program under construction: instructions, and jumps to labels patched by
/// [`Builder::finish`].
#[derive(Debug, Default)]
pub struct Builder {
    insns: Vec<Insn>,
    labels: Vec<Option<usize>>,
    jumps: Vec<(usize, Label)>,
}

impl Builder {
    /// An empty program.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// A new label, to be bound once.
    pub fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    /// Places `label` at the next instruction.
    ///
    /// # Panics
    /// If the label is already bound.
    pub fn bind(&mut self, label: Label) -> &mut Self {
        let slot = &mut self.labels[label.0];
        assert!(slot.is_none(), "label {} bound twice", label.0);
        *slot = Some(self.insns.len());
        self
    }

    /// Appends instructions.
    pub fn push(&mut self, insns: impl IntoIterator<Item = Insn>) -> &mut Self {
        self.insns.extend(insns);
        self
    }

    /// Instructions so far.
    pub fn len(&self) -> usize {
        self.insns.len()
    }

    /// Whether no instruction was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    fn jump(&mut self, insn: Insn, to: Label) -> &mut Self {
        self.jumps.push((self.insns.len(), to));
        self.insns.push(insn);
        self
    }

    /// `if dst op imm goto to`.
    pub fn jmp_imm(&mut self, op: Jmp, dst: u8, imm: i32, to: Label) -> &mut Self {
        self.jump(jmp_imm(op, dst, imm, 0), to)
    }

    /// `if dst op src goto to`.
    pub fn jmp_reg(&mut self, op: Jmp, dst: u8, src: u8, to: Label) -> &mut Self {
        self.jump(jmp_reg(op, dst, src, 0), to)
    }

    /// `goto to`.
    pub fn ja(&mut self, to: Label) -> &mut Self {
        self.jump(ja(0), to)
    }

    /// The instructions, with every jump resolved.
    ///
    /// # Panics
    /// If a jump goes to a label never bound, or further than a 16-bit offset reaches.
    pub fn finish(mut self) -> Vec<Insn> {
        for (at, label) in std::mem::take(&mut self.jumps) {
            let target = self.labels[label.0]
                .unwrap_or_else(|| panic!("jump at {at} to label {} never bound", label.0));
            let off = target as i64 - at as i64 - 1;
            self.insns[at].off = i16::try_from(off).expect("jump in range");
        }
        self.insns
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jumps_resolve_forward_and_back() {
        let mut b = Builder::new();
        let top = b.label();
        let out = b.label();
        b.bind(top);
        b.push([mov_imm(0, 1)]);
        b.jmp_imm(Jmp::Eq, 0, 0, out);
        b.ja(top);
        b.bind(out);
        b.push([exit()]);
        let insns = b.finish();
        assert_eq!(insns[1].off, 1, "forward over one instruction");
        assert_eq!(insns[2].off, -3, "back to the first");
    }

    #[test]
    #[should_panic(expected = "never bound")]
    fn unbound_label_panics() {
        let mut b = Builder::new();
        let nowhere = b.label();
        b.ja(nowhere);
        let _ = b.finish();
    }
}
