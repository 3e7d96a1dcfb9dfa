//! Flow text through the parsers and back: see `flowtable::fuzzing::flow_spec`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| flowtable::fuzzing::flow_spec(data));
