//! The Internet checksum (RFC 1071), incremental updates (RFC 1624), and finishing the partial
//! checksums that Linux leaves for offload.

use core::net::{Ipv4Addr, Ipv6Addr};

/// The ones' complement sum of `data` (odd lengths padded with a zero byte), folded into
/// 16 bits but not complemented, and returned as a `u32` so that sums add without overflow.
pub fn sum(data: &[u8]) -> u32 {
    let mut acc: u64 = 0;
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_be_bytes(chunk.try_into().expect("chunks of 8"));
        let (s, carry) = acc.overflowing_add(word);
        acc = s + u64::from(carry);
    }
    let rem = chunks.remainder();
    if !rem.is_empty() {
        let mut tail = [0u8; 8];
        tail[..rem.len()].copy_from_slice(rem);
        let (s, carry) = acc.overflowing_add(u64::from_be_bytes(tail));
        acc = s + u64::from(carry);
    }
    // Fold 64 -> 32 -> 16 bits with end-around carry (2^16 = 1 mod 0xffff).
    let mut folded = (acc >> 32) + (acc & 0xffff_ffff);
    folded = (folded >> 32) + (folded & 0xffff_ffff);
    u32::from(fold(folded as u32))
}

/// Folds a 32-bit ones' complement sum into 16 bits (not complemented).
pub fn fold(mut sum: u32) -> u16 {
    while sum >> 16 != 0 {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    sum as u16
}

/// The sum of the IPv4 pseudo-header for an L4 segment of `len` bytes.
pub fn pseudo_header_v4(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, len: u16) -> u32 {
    let s = src.octets();
    let d = dst.octets();
    let words = [
        u16::from_be_bytes([s[0], s[1]]),
        u16::from_be_bytes([s[2], s[3]]),
        u16::from_be_bytes([d[0], d[1]]),
        u16::from_be_bytes([d[2], d[3]]),
        u16::from(protocol),
        len,
    ];
    u32::from(fold(words.iter().map(|&w| u32::from(w)).sum()))
}

/// The sum of the IPv6 pseudo-header for an L4 segment of `len` bytes.
pub fn pseudo_header_v6(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, len: u32) -> u32 {
    let mut total = sum(&src.octets()) + sum(&dst.octets());
    total += (len >> 16) + (len & 0xffff) + u32::from(next_header);
    u32::from(fold(total))
}

/// The checksum field after a 16-bit word covered by it changed from `old` to `new`
/// (RFC 1624, equation 3: HC' = ~(~HC + ~m + m')).
pub fn update(checksum: u16, old: u16, new: u16) -> u16 {
    let total = u32::from(!checksum) + u32::from(!old) + u32::from(new);
    !fold(total)
}

/// The checksum field after the bytes `old`, which it covers, became `new` (RFC 1624,
/// equation 3, over several words at once: the sum of the complements of the old words is the
/// complement of their sum). Both start at an even offset of what the checksum covers and have
/// the same, even, length (an address, a port, the two bytes around a changed one).
pub fn update_bytes(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len(), "a field of one length");
    let total = u32::from(!checksum) + u32::from(!fold(sum(old))) + u32::from(fold(sum(new)));
    !fold(total)
}

/// [`update_bytes`] for a TCP, UDP or ICMPv6 checksum field: a UDP field of 0 (the sender
/// computed no checksum) stays 0, and a UDP checksum that comes out 0 is written 0xffff, since
/// 0 would say "none" (RFC 768).
pub fn update_l4(checksum: u16, old: &[u8], new: &[u8], is_udp: bool) -> u16 {
    if is_udp && checksum == 0 {
        return 0;
    }
    match update_bytes(checksum, old, new) {
        0 if is_udp => 0xffff,
        updated => updated,
    }
}

/// What [`finish_partial`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// The checksum field held only the pseudo-header sum (CHECKSUM_PARTIAL); it is now the
    /// full checksum.
    Finished,
    /// The field held something else: a complete checksum, or garbage that the receiver will
    /// judge. Left alone.
    Untouched,
}

/// Finishes the L4 checksum of a TCP or UDP segment if it was left for offload.
///
/// Linux hands veth peers segments with `CHECKSUM_PARTIAL`: the checksum field holds the
/// folded pseudo-header sum, and the device (here, nobody) is to finish it. Received through
/// AF_XDP, such a segment arrives with the partial value and a receiver would drop it. A field
/// equal to the pseudo-header sum is finished; doing so is right even for a segment whose
/// complete checksum happened to have that value, since the result is the same.
///
/// `segment` is the L4 header and payload, `pseudo` the pseudo-header sum for it, and
/// `checksum_at` the offset of its checksum field.
pub fn finish_partial(segment: &mut [u8], pseudo: u32, checksum_at: usize, is_udp: bool) -> Finish {
    let Some(field) = segment.get(checksum_at..checksum_at + 2) else {
        return Finish::Untouched;
    };
    let current = u16::from_be_bytes([field[0], field[1]]);
    let partial = fold(pseudo);
    // Ones' complement has two zeros; accept either spelling of the folded value.
    let is_partial = current == partial || (current == 0 && partial == 0xffff);
    if !is_partial || (is_udp && current == 0) {
        return Finish::Untouched;
    }
    let mut full = !fold(sum(segment));
    if is_udp && full == 0 {
        full = 0xffff;
    }
    segment[checksum_at..checksum_at + 2].copy_from_slice(&full.to_be_bytes());
    Finish::Finished
}

/// Computes and writes the checksum of an L4 segment from scratch (the field is zeroed
/// first).
///
/// # Panics
/// If `checksum_at + 2` exceeds the segment.
pub fn fill(segment: &mut [u8], pseudo: u32, checksum_at: usize, is_udp: bool) {
    segment[checksum_at..checksum_at + 2].fill(0);
    let mut value = !fold(pseudo + sum(segment));
    if is_udp && value == 0 {
        value = 0xffff;
    }
    segment[checksum_at..checksum_at + 2].copy_from_slice(&value.to_be_bytes());
}

/// Whether an L4 segment's checksum verifies against its pseudo-header sum.
pub fn verify(segment: &[u8], pseudo: u32) -> bool {
    fold(pseudo + sum(segment)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference_sum(data: &[u8]) -> u16 {
        let mut acc: u32 = 0;
        for pair in data.chunks(2) {
            let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
            acc += u32::from(word);
        }
        fold(acc)
    }

    #[test]
    fn sum_matches_bytewise_reference() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1501).collect();
        for len in 0..data.len() {
            assert_eq!(
                sum(&data[..len]) as u16,
                reference_sum(&data[..len]),
                "len {len}"
            );
        }
    }

    #[test]
    fn rfc1071_example() {
        // RFC 1071 section 3: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
        assert_eq!(
            sum(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]),
            0xddf2
        );
    }

    #[test]
    fn finish_partial_completes_and_leaves_complete_alone() {
        let src = Ipv4Addr::new(10, 0, 0, 1);
        let dst = Ipv4Addr::new(10, 0, 0, 2);
        // A UDP segment: ports 1000 -> 2000, length 12, 4 bytes of payload.
        let mut seg = [0x03, 0xe8, 0x07, 0xd0, 0x00, 0x0c, 0, 0, 1, 2, 3, 4];
        let pseudo = pseudo_header_v4(src, dst, 17, 12);
        // What Linux leaves: the folded pseudo-header sum.
        seg[6..8].copy_from_slice(&fold(pseudo).to_be_bytes());
        assert_eq!(finish_partial(&mut seg, pseudo, 6, true), Finish::Finished);
        assert!(verify(&seg, pseudo));
        let done = seg;
        assert_eq!(finish_partial(&mut seg, pseudo, 6, true), Finish::Untouched);
        assert_eq!(seg, done);
        let mut filled = seg;
        fill(&mut filled, pseudo, 6, true);
        assert_eq!(filled, done);
    }

    #[test]
    fn update_matches_recompute() {
        let mut header = [
            0x45u8, 0, 0, 0x54, 0, 0, 0x40, 0, 0x40, 0x01, 0, 0, 192, 168, 1, 1, 192, 168, 1, 2,
        ];
        let c = !fold(sum(&header));
        header[10..12].copy_from_slice(&c.to_be_bytes());
        let old = u16::from_be_bytes([header[8], header[9]]);
        header[8] = 0x3f;
        let new = u16::from_be_bytes([header[8], header[9]]);
        let updated = update(c, old, new);
        header[10..12].fill(0);
        assert_eq!(updated, !fold(sum(&header)));
    }
}
