//! A CNI result through the parser and back in every version: see
//! `xvs_cli::fuzzing::cni_result`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| xvs_cli::fuzzing::cni_result(data));
