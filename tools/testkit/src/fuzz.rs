//! Replaying the checked-in inputs of a fuzz target on stable, in `cargo test`.

use std::path::Path;

/// Runs `check` on every input of `target` under the fuzz crate at `fuzz`: its `seeds/`,
/// `corpus/` and `regressions/` directories, in name order.
///
/// # Panics
/// When there is no input at all, an input cannot be read, or `check` panics on one (the
/// message names the file).
pub fn replay_fuzz_inputs(fuzz: &Path, target: &str, check: fn(&[u8])) {
    let mut inputs = Vec::new();
    for kind in ["seeds", "corpus", "regressions"] {
        if let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join(target)) {
            inputs.extend(entries.map(|e| e.expect("a directory entry").path()));
        }
    }
    assert!(
        !inputs.is_empty(),
        "no inputs for {target} in {}",
        fuzz.display()
    );
    inputs.sort();
    for path in inputs {
        let input = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&input));
        assert!(outcome.is_ok(), "{target} fails on {}", path.display());
    }
}
