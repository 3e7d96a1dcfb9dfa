//! The fast path's map keys and values, encoded and decoded: see
//! `dataplane::fuzzing::kernel_map_encoding`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| dataplane::fuzzing::kernel_map_encoding(data));
