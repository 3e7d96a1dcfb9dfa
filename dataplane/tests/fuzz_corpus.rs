//! Replays the checked-in inputs of the fuzz targets (`fuzz/`: hand-made seeds, the corpus
//! cargo-fuzz grew from them, and inputs of crashes since fixed) through the same checks the
//! targets run, on stable, in every `cargo test`.

use std::path::Path;

fn replay(target: &str, check: fn(&[u8])) {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    xvs_testkit::replay_fuzz_inputs(&fuzz, target, check);
}

#[test]
fn kernel_map_encoding_corpus() {
    replay(
        "kernel_map_encoding",
        dataplane::fuzzing::kernel_map_encoding,
    );
}
