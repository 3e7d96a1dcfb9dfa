//! Replays the checked-in inputs of the fuzz targets (`fuzz/`: hand-made seeds, the corpus
//! cargo-fuzz grew from them, and inputs of crashes since fixed) through the same checks the
//! targets run, on stable, in every `cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
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

#[test]
fn frame_pipeline_corpus() {
    replay("frame_pipeline", flowtable::fuzzing::frame_pipeline);
}

#[test]
fn flow_spec_corpus() {
    replay("flow_spec", flowtable::fuzzing::flow_spec);
}

#[test]
fn conntrack_pipeline_corpus() {
    replay("conntrack_pipeline", flowtable::fuzzing::conntrack_pipeline);
}
