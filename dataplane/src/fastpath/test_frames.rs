//! Frames the programs' tests run through BPF_PROG_TEST_RUN.

/// 02:..:01 -> 02:..:02, IPv4 10.0.0.1:1000 -> 10.0.0.2:2000 UDP, TTL 64, 4 bytes of
/// payload; the header checksum is whatever a test needs.
pub(super) static UDP: [u8; 46] = [
    2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, // ethernet
    0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2, // ipv4
    0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0, 1, 2, 3, 4, // udp
];

/// 02:..:01 -> 02:..:02, IPv4 10.0.0.1:1000 -> 10.0.0.2:2000 TCP with these flags, no
/// payload (checksums are not the programs' business here).
pub(super) fn tcp(flags: u8) -> [u8; 54] {
    let mut f = [0u8; 54];
    f[..34].copy_from_slice(&UDP[..34]);
    f[16..18].copy_from_slice(&40u16.to_be_bytes());
    f[23] = 6;
    f[34..38].copy_from_slice(&UDP[34..38]);
    f[46] = 0x50;
    f[47] = flags;
    f[48..50].copy_from_slice(&[0xff, 0xff]);
    f
}
