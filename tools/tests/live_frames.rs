//! What the kernel does with the pages of XDP live frames, which the design of
//! `xvs_tools::program::live_tx` rests on.

use std::os::fd::{AsFd, AsRawFd};

use xvs_sys::bpf::abi::{action, helper, xdp_md};
use xvs_sys::bpf::asm::{self, Alu, Jmp, Size};
use xvs_sys::bpf::{self, Map, MapType, load_xdp};
use xvs_sys::netdev;

/// A page goes back to the test run's page pool after each run and comes round again without
/// its data being reset: a byte the program increments in the frame keeps counting up across
/// runs. (So the generator writes every varying field whole, and never updates one relative
/// to what the page holds.)
///
/// The program drops every frame, on loopback: nothing is sent anywhere.
#[test]
fn live_frames_pages_keep_what_the_program_wrote() {
    if let Err(e) = xvs_tools::host::check_privileges() {
        xvs_testkit::skip!("{e}");
    }
    const AT: i16 = 59;
    let map = Map::create(MapType::Array, 4, 8, 1, 0, "pktgen_pages").expect("map");
    let fd = asm::load_map_fd(1, map.as_fd().as_raw_fd());
    // r7 = data; if data + 60 > data_end: drop. r4 = frame[59]; seen = max(seen, r4);
    // frame[59] = r4 + 1; drop.
    let insns = vec![
        asm::mov_reg(6, 1),
        asm::load(Size::W, 7, 6, xdp_md::DATA),
        asm::load(Size::W, 8, 6, xdp_md::DATA_END),
        asm::mov_reg(2, 7),
        asm::alu_imm(Alu::Add, 2, 60),
        asm::jmp_reg(Jmp::Gt, 2, 8, 13),
        asm::store_imm(Size::W, 10, -4, 0),
        fd[0],
        fd[1],
        asm::mov_reg(2, 10),
        asm::alu_imm(Alu::Add, 2, -4),
        asm::call(helper::MAP_LOOKUP_ELEM),
        asm::jmp_imm(Jmp::Eq, 0, 0, 6),
        asm::load(Size::B, 4, 7, AT),
        asm::load(Size::Dw, 5, 0, 0),
        asm::jmp_reg(Jmp::Ge, 5, 4, 1),
        asm::store_reg(Size::Dw, 0, 4, 0),
        asm::alu_imm(Alu::Add, 4, 1),
        asm::store_reg(Size::B, 7, 4, AT),
        asm::mov_imm(0, action::XDP_DROP),
        asm::exit(),
    ];
    let prog = load_xdp(&insns, "pktgen_pages").expect("load");
    let frame = [0u8; 60];
    let mut ctx = [0u8; 24];
    ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    let lo = netdev::if_nametoindex("lo").expect("lo");
    ctx[12..16].copy_from_slice(&lo.to_ne_bytes());
    let runs = 64 * 100;
    let run = bpf::prog_test_run(
        prog.as_fd(),
        &frame,
        &ctx,
        runs,
        bpf::F_TEST_XDP_LIVE_FRAMES,
        64,
    );
    if let Err(e) = &run
        && e.errno() == Some(libc::EINVAL)
    {
        xvs_testkit::skip!("no XDP live frames on this kernel ({e})");
    }
    run.expect("test run");
    let mut seen = [0u8; 8];
    assert!(map.lookup(&0u32.to_ne_bytes(), &mut seen).expect("lookup"));
    let seen = u64::from_ne_bytes(seen);
    // 64 pages for 6400 runs: each page came round about 100 times, and counted up.
    assert!(seen >= 50, "the highest count a page held was {seen}");
}
