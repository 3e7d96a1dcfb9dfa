//! Typed views over packet bytes, in the manner of smoltcp's `wire`.
//!
//! Each view wraps a buffer `T: AsRef<[u8]>`. `new_unchecked` wraps without looking;
//! `new_checked` (which calls `check_len`) verifies that every field the accessors read lies
//! inside the buffer, after which no accessor panics. Untrusted bytes always go through
//! `new_checked`. Setters live in an `impl` for `T: AsMut<[u8]>`.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod ipv4;
pub mod ipv6;
pub mod l4;
pub mod upcall;

use core::fmt;

pub use ethernet::{EtherType, EthernetAddress};

/// Why bytes could not be read as a header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer is shorter than the header (or than a length field says).
    Truncated,
    /// A field holds a value the header cannot have (a version, a header length).
    Malformed,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated header"),
            WireError::Malformed => f.write_str("malformed header"),
        }
    }
}

impl core::error::Error for WireError {}

/// A range of bytes in a header.
type Field = core::ops::Range<usize>;

fn get_u16(bytes: &[u8], field: Field) -> u16 {
    u16::from_be_bytes([bytes[field.start], bytes[field.start + 1]])
}

fn set_u16(bytes: &mut [u8], field: Field, value: u16) {
    bytes[field].copy_from_slice(&value.to_be_bytes());
}

fn get_u32(bytes: &[u8], field: Field) -> u32 {
    let mut b = [0; 4];
    b.copy_from_slice(&bytes[field]);
    u32::from_be_bytes(b)
}
