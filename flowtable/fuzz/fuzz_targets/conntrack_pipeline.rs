//! Frames through a stateful-firewall pipeline: see `flowtable::fuzzing::conntrack_pipeline`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowtable::fuzzing::conntrack_pipeline(data));
