//! Replays the checked-in inputs of the fuzz targets (`fuzz/`: hand-made seeds, the corpus
//! cargo-fuzz grew from them, and inputs of crashes since fixed) through the same checks the
//! targets run, on stable, in every `cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    xvs_testkit::replay_fuzz_inputs(&fuzz, target, check);
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
