//! Frames through parsing and the pipeline: see `flowtable::fuzzing::frame_pipeline`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowtable::fuzzing::frame_pipeline(data));
