//! Names no other test process, and no other lab of this one, uses.

use std::sync::atomic::{AtomicU32, Ordering};

/// `{prefix}`, this process's id in five base-36 digits, then a decimal counter: unique among
/// live processes (ids are below 36⁵ on Linux) and calls. Short, for the 15-byte interface
/// name limit: with a 2-byte prefix and up to 999 calls, 5 bytes are left for a suffix, which
/// should start with a letter or a `-` so that the counter's end stays clear.
///
/// # Examples
/// ```
/// let a = xvs_testkit::unique_name("xe");
/// let b = xvs_testkit::unique_name("xe");
/// assert_ne!(a, b);
/// assert!(a.starts_with("xe") && a.len() <= 2 + 5 + 3);
/// ```
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}{n}", base36(std::process::id(), 5))
}

/// `n` in base 36, zero-padded to `width` digits.
fn base36(mut n: u32, width: usize) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut digits = Vec::new();
    while n > 0 || digits.len() < width {
        digits.push(char::from(DIGITS[(n % 36) as usize]));
        n /= 36;
    }
    digits.iter().rev().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base36_pads_and_widens() {
        assert_eq!(base36(0, 5), "00000");
        assert_eq!(base36(35, 5), "0000z");
        assert_eq!(base36(36, 5), "00010");
        // PID_MAX_LIMIT, the largest pid Linux hands out, fits in five digits.
        assert_eq!(base36(4_194_304, 5).len(), 5);
        assert_eq!(base36(u32::MAX, 5), "1z141z3");
    }

    #[test]
    fn names_are_distinct_and_short() {
        let a = unique_name("x");
        let b = unique_name("x");
        assert_ne!(a, b);
        assert!(a.len() <= 1 + 5 + 10);
    }
}
