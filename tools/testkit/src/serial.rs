//! One test at a time, for tests that measure or time things on a small machine.

use std::sync::{Mutex, MutexGuard};

static SERIAL: Mutex<()> = Mutex::new(());

/// Takes the process-wide test lock, held until the guard drops. A test that panicked while
/// holding it does not poison it for the others.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
